"""Consistency distillation (Song et al. 2023) with the improved-CT settings (iCT, Song & Dhariwal 2023).

The consistency function, its boundary-condition parameterisation, the index grid, the lognormal
pair sampling, the pseudo-Huber distance and the VP-index mapping are those of ct.py (see its
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

Defaults: `steps` = 4000 (the curriculum default's count), iCT's s0 = 10, s1 = 1280.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from onestep.diffusion import Teacher
from onestep.methods.base import Batch, Context
from onestep.methods.ct import CTConfig, ICTMethod, bcast, edm_sigmas, pseudo_huber


@dataclass(frozen=True)
class CDConfig(CTConfig):
    """CT's iCT settings, plus the teacher's ODE solver."""

    solver: str = "heun"  # heun | euler (= DDIM)


@torch.no_grad()
def pf_ode_step(teacher: Teacher, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, heun: bool = True) -> torch.Tensor:
    """The teacher's PF-ODE from VP index t down to s >= 1 (per sample): one Heun (or Euler = DDIM) step."""
    sch = teacher.schedule
    sig = edm_sigmas(sch).to(x.device)
    a_t, a_s = sch.at("abar", t, x.ndim), sch.at("abar", s, x.ndim)
    ds = bcast(sig[s] - sig[t], x.ndim)
    e1 = teacher.eps(x, t)
    xs = x / a_t.sqrt() + ds * e1  # Euler in the EDM state
    if heun:
        e2 = teacher.eps(a_s.sqrt() * xs, s)
        xs = x / a_t.sqrt() + ds * (e1 + e2) / 2
    return a_s.sqrt() * xs


class CD(ICTMethod):
    """Consistency distillation (iCT settings, Heun teacher steps); see the module docstring."""

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        c = CDConfig.from_dict(cfg)
        if c.solver not in ("heun", "euler"):
            raise ValueError(f"method.solver must be heun or euler, got '{c.solver}'")
        super().__init__(c, ctx, seed)

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x0 = batch.x0  # (B, *shape) teacher samples
        t_lo, t_hi = (t.to(x0.device) for t in self.grid.pairs(step, x0.shape[0], gen))  # (B,), (B,)
        eps = torch.randn(x0.shape, generator=gen).to(x0.device)
        x_hi = self.f.noised(x0, eps, t_hi)
        x_lo = pf_ode_step(self.ctx.teacher, x_hi, t_hi, t_lo, heun=self.cfg.solver == "heun")
        f_hi = self.f(student, x_hi, t_hi)
        with torch.no_grad():
            f_lo = self.f(student, x_lo, t_lo)  # sg: the current net (iCT)
        sig = self.f.sigma.to(x0.device)
        w = 1.0 / (sig[t_hi] - sig[t_lo])  # (B,)
        d = pseudo_huber(f_hi, f_lo, self.c)
        return w * d, {"d": d.mean().detach(), "sigma_hi": sig[t_hi].mean()}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        return self.f.sample(student, z, steps, self.seed)
