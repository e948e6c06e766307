"""Shortcut models (Frans et al. 2025): flow matching conditioned on the step size d, with self-consistency.

Trains from DATA, not from the teacher (needs_data): x = Batch.data, e = Batch.z; the teacher is
never called.

Flow convention and time scale: methods/common.py (x_t = (1 - t) x + t e, sampling runs t = 1 -> 0,
so a step of size d goes x_{t-d} = x_t - d s). The two-time student s_theta(x_t, t, d) is the
network f(x_t, T t, T d). Per batch, a share 1 - `bootstrap` is plain flow matching at the
SMALLEST step size d = 1/M (M = `max_steps`), the rest self-consistency with 2d on the dyadic grid
{1, 1/2, ..., 2/M} and t a multiple of 2d (t >= 2d so both d-steps stay in [0, 1]):

    flow matching:     || s_theta(x_t, t, 1/M) - (e - x) ||^2
    self-consistency:  || s_theta(x_t, t, 2d) - sg[ s_ema(x_t, t, d)/2 + s_ema(x'_{t-d}, t - d, d)/2 ] ||^2,
                       x'_{t-d} = x_t - d s_ema(x_t, t, d)

So every step size a target queries (d in {1/2, ..., 1/M}) and every one sampling uses (1, 1/2, 1/4)
is itself trained: 1/M by flow matching, 2/M ... 1 by self-consistency. The official code
(kvfrans/shortcut-models, targets_shortcut.py) labels the flow-matching part with dt_base =
log2(denoise_timesteps), i.e. d = 1/M, and forms the bootstrap targets with the EMA parameters
(`bootstrap_ema = 1`); an earlier version here trained flow matching at d = 0 and queried d = 1/M,
which no target reached. The targets use the trainer's EMA copy (`ctx.ema`) when `ema_target` is on
(and the online weights under stop-gradient when it is off, or outside the trainer).
Sampling: n Euler steps of size d = 1/n with s(x, t, d), for n = 1, 2, 4.

Cost: the flow part is a forward + backward (3) on 3/4 of the batch; the consistency part two
no-grad forwards plus a forward + backward on 1/4 (5/4): about 3.5 per step; the default 5500 steps
= 19k, about the curriculum default (4000 x 5 = 20k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep.methods.base import Batch, Context, Knobs, MethodBase, knob
from onestep.methods.common import expand, interpolate


@dataclass(frozen=True)
class ShortcutConfig(Knobs):
    """Shortcut models (src/onestep/methods/shortcut.py); trains from data."""

    steps: int = knob(5500, "total optimiser steps; chosen here: about the curriculum default's cost "
                      "(module docstring)", minimum=1)
    bootstrap: float = knob(0.25, "share of the batch trained by self-consistency; paper (Frans et al. 2025, "
                            "training details): k = 1/4 (the official code's bootstrap_every = 8 gives 1/8)",
                            minimum=0, maximum=1)
    max_steps: Literal[2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] = knob(
        8, "M: the finest step size is 1/M, the one flow matching trains; paper and official code (kvfrans/"
        "shortcut-models, denoise_timesteps = 128): M = 128, a 7-level bootstrap chain over its long runs; chosen "
        "here for the budget: 8, the shortest chain that trains every sampled step size (1, 1/2, 1/4 by "
        "self-consistency on the flow-trained 1/8), since each level's target is only as good as the level below")
    ema_target: bool = knob(True, "self-consistency targets from the trainer's EMA copy (ctx.ema); paper's "
                            "official code: bootstrap_ema = 1. false: the online weights under stop-gradient")


def consistency_times(n: int, max_steps: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, d), (n,) each: 2d = 2^-k for k in 0..log2(M) - 1, t = j 2d for j in 1..1/(2d)."""
    levels = int(math.log2(max_steps))
    two_d = 2.0 ** -torch.randint(0, levels, (n,), generator=gen).float()
    j = torch.floor(torch.rand(n, generator=gen) / two_d) + 1  # 1..1/(2d)
    return j * two_d, two_d / 2


@torch.no_grad()
def consistency_target(student: nn.Module, x_t: torch.Tensor, t: torch.Tensor, d: torch.Tensor, T: int) -> torch.Tensor:
    """sg[s(x_t, t, d)/2 + s(x'_{t-d}, t - d, d)/2], x'_{t-d} = x_t - d s(x_t, t, d)."""
    s1 = student(x_t, T * t, T * d)
    x_next = x_t - expand(d, x_t.ndim) * s1
    s2 = student(x_next, T * (t - d), T * d)
    return (s1 + s2) / 2


class Shortcut(MethodBase):
    """Step-size-conditioned flow matching with self-consistency targets; see the module docstring."""

    Config = ShortcutConfig
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "bootstrap": {"low": 0.1, "high": 0.5, "log": False},
        "max_steps": {"choices": [8, 16, 32, 128]},  # M: the bootstrap chain's length, log2 M levels
    }

    needs_data = True
    sample_steps = (1, 2, 4)
    times = 2

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = self.Config.from_dict(cfg)
        if self.cfg.max_steps < 2 or self.cfg.max_steps & (self.cfg.max_steps - 1):
            raise ValueError(f"method.max_steps must be a power of two >= 2, got {self.cfg.max_steps}")
        self.ctx, self.seed, self.T = ctx, seed, ctx.schedule.T
        self.total_steps = self.cfg.steps

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x, e = batch.data, batch.z  # (B, *shape)
        B, dev = x.shape[0], x.device
        n_sc = int(round(self.cfg.bootstrap * B))
        t_fm = torch.rand(B - n_sc, generator=gen)
        t_sc, d = consistency_times(n_sc, self.cfg.max_steps, gen)
        d_fm = torch.full((B - n_sc,), 1.0 / self.cfg.max_steps)  # flow matching at the smallest step
        t, d_in = torch.cat([t_fm, t_sc]).to(dev), torch.cat([d_fm, 2 * d]).to(dev)  # (B,)
        x_t = interpolate(x, e, t)
        net = self.ctx.ema if self.cfg.ema_target and self.ctx.ema is not None else student
        target = torch.cat([(e - x)[: B - n_sc], consistency_target(net, x_t[B - n_sc:], t[B - n_sc:], d.to(dev), self.T)])
        err = ((student(x_t, self.T * t, self.T * d_in) - target) ** 2).flatten(1).sum(1)  # (B,)
        logs = {"L_fm": err[: B - n_sc].mean().detach()}
        return err, logs | ({"L_sc": err[B - n_sc:].mean().detach()} if n_sc else {})

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        x, d = z, torch.full((z.shape[0],), 1.0 / steps, device=z.device)
        for i in range(steps):
            t = torch.full((z.shape[0],), 1.0 - i / steps, device=z.device)
            x = x - student(x, self.T * t, self.T * d) / steps
        return x
