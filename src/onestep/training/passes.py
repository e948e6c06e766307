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
