"""Consistency distillation (Song et al. 2023) with the improved-CT settings (iCT, Song & Dhariwal 2023).

The consistency function, its boundary-condition parameterisation, the index grid, the lognormal
pair sampling, the pseudo-Huber distance and the VP-index mapping are methods/common.py's (see ct.py's
docstring: sigma_t = sqrt((1 - abar_t) / abar_t), f_theta(x_t, t) = c_skip x_t / sqrt(abar_t) +
c_out F_theta(x_t, t)). CD differs in where the lower state comes from: instead of the same noise,
the TEACHER moves x_{t_{i+1}} down to t_i by one Heun step of its probability-flow ODE,

    x_{t_{i+1}} = sqrt(abar) x0 + sqrt(1 - abar) eps,   x0 = teacher samples (the pairs' x0)
    x_{t_i} = Heun(x_{t_{i+1}}, t_{i+1} -> t_i)
    L = lambda(sigma_i) d(f_theta(x_{t_{i+1}}, t_{i+1}), sg f_theta(x_{t_i}, t_i)).

Heun in the VP index space: with xt = x_t / sqrt(abar_t) (the EDM state) the PF-ODE is
d xt / d sigma = eps(x_t, t), so Euler is xs = xt + (sigma_s - sigma_t) eps_1 (exactly the DDIM jump)
and Heun averages eps_1 with eps_2 = eps(sqrt(abar_s) xs_Euler, s); two teacher evaluations per sample.
The target is the stop-gradient current network (iCT), not an EMA copy (the original CD).
Data-free: x0 are the teacher's own samples, so no real data is read.

Defaults (common.ICTConfig): `steps` = 4000 (the curriculum default's count), iCT's s0 = 10, s1 = 1280.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep.methods.base import Batch, knob
from onestep.methods.common import ICTConfig, ICTMethod, pf_ode_step


@dataclass(frozen=True)
class CDConfig(ICTConfig):
    """Consistency distillation, iCT settings (src/onestep/methods/cd.py): CT's knobs plus the teacher's ODE solver."""

    solver: Literal["heun", "euler"] = knob("heun", "teacher PF-ODE step (euler = DDIM)")


class CD(ICTMethod):
    """Consistency distillation (iCT settings, Heun teacher steps); see the module docstring."""

    Config = CDConfig
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "p_mean": {"low": -1.5, "high": 1.5, "log": False},
        "p_std": {"low": 0.5, "high": 2.5, "log": False},
    }

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x0 = batch.x0  # (B, *shape) teacher samples
        t_lo, t_hi = (t.to(x0.device) for t in self.grid.pairs(step, x0.shape[0], gen))  # (B,), (B,)
        eps = torch.randn(x0.shape, generator=gen).to(x0.device)
        x_hi = self.f.noised(x0, eps, t_hi)
        x_lo = pf_ode_step(self.ctx.teacher, x_hi, t_hi, t_lo, heun=self.cfg.solver == "heun")
        return self.pair_loss(student, x_hi, x_lo, t_hi, t_lo)
