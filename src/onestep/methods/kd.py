"""Knowledge distillation of teacher endpoints (Luhman & Luhman 2021): the seed's L_distill.

    L_distill = E_{z, x0 ~ p_teacher(. | z)} || G_theta(z) - x0 ||^2

with (z, x0) the pre-generated teacher pairs (DDIM solves from fixed noise z). G_theta(z) is the
student network at the prior's index, G_theta(z) = F_theta(z, T) (z is x_T). `distance: l1` gives
Luhman & Luhman's CIFAR-10 L1 instead of L2. EMA weights are the trainer's.

Teacher evaluations in training: none (the pairs are generated once per teacher, shared with every
pair-trained method). Default `steps` = 4000 optimiser steps, the curriculum default's count
(K = 10 x 400); one student forward per step, so the cheapest method per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep.methods.base import Batch, Context, Knobs, MethodBase, knob

DISTANCES = ("l2", "l1")


@dataclass(frozen=True)
class KDConfig(Knobs):
    """Endpoint knowledge distillation (src/onestep/methods/kd.py)."""

    steps: int = knob(4000, "total optimiser steps", minimum=1)
    distance: Literal["l2", "l1"] = knob("l2", "distance of G(z) to the teacher's x0")


class KD(MethodBase):
    """Endpoint distillation; see the module docstring."""

    Config = KDConfig
    teacher_read = "x0_at_T"  # init_from_teacher: G(z, t) the teacher's x0 prediction at T (base.py, nets.EpsHead)
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "distance": {"choices": ["l2", "l1"]},
    }

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = self.Config.from_dict(cfg)
        if self.cfg.distance not in DISTANCES:
            raise ValueError(f"method.distance must be one of {', '.join(DISTANCES)}, got '{self.cfg.distance}'")
        self.T = ctx.schedule.T
        self.total_steps = self.cfg.steps

    def generate(self, student: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return student(z, torch.full((z.shape[0],), self.T, dtype=torch.long, device=z.device))  # G(z) = F(z, T)

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        diff = self.generate(student, batch.z) - batch.x0  # (B, *shape)
        loss = (diff.abs() if self.cfg.distance == "l1" else diff**2).flatten(1).sum(1)  # (B,)
        return loss, {"L_distill": loss.mean().detach()}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        return self.generate(student, z)
