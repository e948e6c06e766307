"""Counts of the student network's forward and backward passes: the budget a run spends besides its steps."""

from __future__ import annotations

import torch
from torch import nn


class Passes:
    """Counts the samples through the student network's forward passes (the online net and its EMA copy),
    split into passes with autograd on (each one backpropagated: a forward + backward) and without (targets,
    sampling): the budget a run spends besides its optimiser steps and teacher evaluations. The method's own
    networks (fake score, discriminator) are not the student and are not counted."""

    def __init__(self, *nets: nn.Module):
        self.backward, self.forward_only = 0, 0
        self.handles = [n.register_forward_hook(self._hook) for n in nets]

    def _hook(self, module, args, out) -> None:
        n = args[0].shape[0] if args and hasattr(args[0], "shape") else 0
        if torch.is_grad_enabled():
            self.backward += n
        else:
            self.forward_only += n

    def summary(self) -> dict[str, int]:
        return {"student_forwards": self.backward + self.forward_only, "student_backwards": self.backward}

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class AuxSteps:
    """Counts the optimiser steps of every optimiser but the student's while open: the method's own networks'
    updates (a fake score's, a discriminator's; sub-steps of one training step), a budget of their own beside the
    student's optimiser steps. Method-blind: a global optimiser-step hook, whatever optimisers the method built."""

    def __init__(self, student_opt: torch.optim.Optimizer, done: int = 0):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.student, self.steps = student_opt, done
        self.handle = register_optimizer_step_post_hook(self._hook)

    def _hook(self, opt, args, kwargs) -> None:
        if opt is not self.student:
            self.steps += 1

    def close(self) -> None:
        self.handle.remove()
