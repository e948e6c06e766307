"""The DDPM teacher (Ho et al. 2020) as a method: epsilon prediction on real data, the simple loss

    L_simple = E_{x0 ~ data, t ~ U{1..T}, eps ~ N(0, I)} || eps_phi(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) - eps ||^2

with x_t formed by diffusers' DDPMScheduler.add_noise on the `diffusion` section's betas and the
network called with diffusers' index t - 1 in 0..T-1 (diffusion.py: the seed's indexing).

Registered as `TEACHER`, not in `METHODS`: it is what the one-step students distil, never one of them,
so no ablation grid over `method.name` can pick it. It is trained by the students' loop
(train.fit) from data alone (`needs_data`, no teacher pairs, no teacher). The noise and times are
drawn for the whole batch in `prepare`, so gradient accumulation changes neither the random stream
nor (beyond rounding) the result. The loss is per element, (B, *shape): the trainer's mean of it is
the mean over every element, as diffusers' training scripts take it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from onestep.diffusion import ddim_sample, ddpm_scheduler
from onestep.methods.base import Batch, Context, MethodBase


@dataclass(frozen=True)
class DDPMConfig:
    steps: int = 20000
    diffusion: dict = field(default_factory=dict)  # the `diffusion` section: T and the betas

    @classmethod
    def from_dict(cls, d: dict) -> DDPMConfig:
        return cls(**{k: v for k, v in d.items() if k != "name"})


class DDPM(MethodBase):
    """Epsilon-prediction DDPM training; see the module docstring."""

    needs_data = True
    sample_steps = (50,)

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = DDPMConfig.from_dict(cfg)
        self.sched = ddpm_scheduler(self.cfg.diffusion)
        self.T = self.cfg.diffusion["T"]
        self.total_steps = self.cfg.steps

    def prepare(self, batch: Batch, step: int, gen: torch.Generator) -> Batch:
        x0 = batch.data  # (B, *shape)
        eps = torch.randn(x0.shape, generator=gen).to(x0.device)  # (B, *shape)
        t = torch.randint(0, self.T, (x0.shape[0],), generator=gen).to(x0.device)  # (B,) diffusers index
        xt = self.sched.add_noise(x0, eps, t)  # (B, *shape)
        return Batch(batch.z, batch.x0, batch.data, {"xt": xt, "t": t, "eps": eps})

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        loss = (student(batch.extra["xt"], batch.extra["t"]).float() - batch.extra["eps"]) ** 2  # (B, *shape)
        return loss, {}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 50) -> torch.Tensor:
        return ddim_sample(student, z, steps, self.cfg.diffusion)
