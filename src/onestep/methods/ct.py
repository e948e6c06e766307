"""Consistency training (Song et al. 2023) with the improved-CT settings (iCT, Song & Dhariwal 2023).

Trains from DATA, not from the teacher (`needs_data = True`): no teacher evaluation is spent.

Symbols (methods.md, EDM/Karras): x = x0 + sigma eps, consistency function
    f_theta(x, sigma) = c_skip(sigma) x + c_out(sigma) F_theta(x, sigma),
    c_skip = s_d^2 / ((sigma - s_min)^2 + s_d^2),  c_out = (sigma - s_min) s_d / sqrt(sigma^2 + s_d^2),
so f(x, s_min) = x exactly (boundary condition). For adjacent grid points sigma_{i+1} > sigma_i and
the SAME noise z: x_{i+1} = x0 + sigma_{i+1} z, x_i = x0 + sigma_i z, and
    L = lambda(sigma_i) d(f_theta(x_{i+1}, sigma_{i+1}), sg f_theta(x_i, sigma_i)),
    lambda = 1 / (sigma_{i+1} - sigma_i),  d(a, b) = sqrt(||a - b||^2 + c^2) - c,  c = 0.00054 sqrt(dim),
the target being the stop-gradient CURRENT network (iCT, no EMA teacher). i is drawn from the
lognormal-derived distribution p(i) ~ erf((ln sigma_{i+1} - P_mean) / (sqrt 2 P_std))
- erf((ln sigma_i - P_mean) / (sqrt 2 P_std)), P_mean = -1.1, P_std = 2.0, and the grid size follows
the iCT doubling curriculum N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2(s1 / s0) + 1)).

Mapping to this repo's VP DDPM index space (t = 0..T, abar_0 = 1). A VP state
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps is the EDM state scaled by sqrt(abar_t):
x_t / sqrt(abar_t) = x0 + sigma_t eps with
    sigma_t = sqrt((1 - abar_t) / abar_t)          (0.01 at t = 1 to 157 at t = T, linear betas),
so every index t is the EDM noise level sigma_t, and
    f_theta(x_t, t) = c_skip(sigma_t) x_t / sqrt(abar_t) + c_out(sigma_t) F_theta(x_t, t),
with F the student network fed the VP state x_t (unit scale: it plays EDM's c_in) and the index t.
s_min = sigma_1 (the boundary is the first index, f(x_1, 1) = x_1 / sqrt(abar_1)). The Karras grid
(rho = 7) of N levels between sigma_1 and sigma_T is mapped to the nearest index (in log sigma) and
deduplicated, so at large N the grid has fewer than N points (at most T). The two states of a pair
are x_{t_{i+1}}, x_{t_i} = sqrt(abar) x0 + sqrt(1 - abar) z with one z: the EDM pair scaled.
Sampling (1, 2, 4 steps): x = f(z, T), then for the next times of the uniform index grid
T (n - j) / n, re-noise x to that time with fresh noise and apply f again (multistep consistency
sampling). Our networks have no dropout, so the two passes share their randomness trivially.

Defaults: `steps` = 4000 optimiser steps at the student batch size, the curriculum default's count
(K = 10 x 400); s0 = 10, s1 = 1280 as in iCT, so N doubles every 500 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from onestep.diffusion import Schedule
from onestep.methods.base import Batch, Context, MethodBase


@dataclass(frozen=True)
class CTConfig:
    steps: int = 4000
    s0: int = 10
    s1: int = 1280
    rho: float = 7.0
    p_mean: float = -1.1
    p_std: float = 2.0
    sigma_data: float = 0.5
    huber_c: float | None = None  # None: 0.00054 sqrt(dim) (iCT)

    @classmethod
    def from_dict(cls, d: dict) -> CTConfig:
        return cls(**{k: v for k, v in d.items() if k != "name"})


# ---------------------------------------------------------------- iCT pieces, shared with cd and ctm


def edm_sigmas(schedule: Schedule) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T (sigma_0 = 0): the EDM noise level of index t."""
    abar = schedule.abar.double()
    return ((1 - abar) / abar).sqrt().float()  # (T+1,)


def grid_size(step: int, total: int, s0: int, s1: int) -> int:
    """iCT discretisation curriculum N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2(s1/s0) + 1))."""
    k_prime = max(1, math.floor(total / (math.log2(s1 / s0) + 1)))
    return min(s0 * 2 ** (step // k_prime), s1) + 1


@lru_cache
def index_grid(sigmas: tuple[float, ...], n: int, rho: float) -> tuple[int, ...]:
    """Karras grid of n levels between sigma_1 and sigma_T (rho), each mapped to its nearest index
    t in 1..T in log sigma, deduplicated; ascending."""
    s = torch.tensor(sigmas, dtype=torch.float64)
    lo, hi = s[1] ** (1 / rho), s[-1] ** (1 / rho)
    levels = (lo + torch.arange(n, dtype=torch.float64) / (n - 1) * (hi - lo)) ** rho  # (n,) ascending
    idx = (s[1:].log()[None, :] - levels.log()[:, None]).abs().argmin(1) + 1  # (n,) index in 1..T
    return tuple(sorted(set(idx.tolist())))


def lognormal_probs(sig_lo: torch.Tensor, sig_hi: torch.Tensor, p_mean: float, p_std: float) -> torch.Tensor:
    """iCT's p(i) ~ erf((ln sigma_{i+1} - P_mean) / (sqrt 2 P_std)) - erf((ln sigma_i - P_mean) / (sqrt 2 P_std))."""
    cdf = lambda s: torch.erf((s.double().log() - p_mean) / (math.sqrt(2) * p_std))  # noqa: E731
    p = (cdf(sig_hi) - cdf(sig_lo)).clamp(min=0)
    return (p / p.sum()).float()


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """sqrt(||a - b||^2 + c^2) - c per sample: (B,)."""
    return (((a - b) ** 2).flatten(1).sum(1) + c * c).sqrt() - c


def huber_c(cfg_c: float | None, shape: tuple[int, ...]) -> float:
    return cfg_c if cfg_c is not None else 0.00054 * math.sqrt(math.prod(shape))


def bcast(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.view(-1, *[1] * (ndim - 1))


class Consistency:
    """f_theta(x_t, t) = c_skip(sigma_t) x_t / sqrt(abar_t) + c_out(sigma_t) F_theta(x_t, t), s_min = sigma_1."""

    def __init__(self, schedule: Schedule, sigma_data: float):
        self.sigma = edm_sigmas(schedule)  # (T+1,)
        self.abar = schedule.abar
        self.s_d, self.s_min = sigma_data, float(self.sigma[1])
        self.T = schedule.T

    def __call__(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sig = bcast(self.sigma.to(x.device)[t], x.ndim)  # (B, 1, ...)
        a = bcast(self.abar.to(x.device)[t], x.ndim)
        c_skip = self.s_d**2 / ((sig - self.s_min) ** 2 + self.s_d**2)
        c_out = (sig - self.s_min) * self.s_d / (sig**2 + self.s_d**2).sqrt()
        return c_skip * x / a.sqrt() + c_out * net(x, t)

    def noised(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        a = bcast(self.abar.to(x0.device)[t], x0.ndim)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps

    @torch.no_grad()
    def sample(self, net: nn.Module, z: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
        """Multistep consistency sampling on the index grid T (n - j) / n, j = 0..n-1 (fresh noise, fixed seed)."""
        gen = torch.Generator().manual_seed(seed)
        full = lambda v: torch.full((z.shape[0],), v, dtype=torch.long, device=z.device)  # noqa: E731
        x = self(net, z, full(self.T))
        for j in range(1, steps):
            t = full(round(self.T * (steps - j) / steps))
            x = self(net, self.noised(x, torch.randn(z.shape, generator=gen).to(z.device), t), t)
        return x


class ICTGrid:
    """The iCT discretisation of a run: grid size by step, index grid, lognormal pair sampling."""

    def __init__(self, schedule: Schedule, total: int, s0: int, s1: int, rho: float, p_mean: float, p_std: float):
        self.sigma = edm_sigmas(schedule)
        self.key = tuple(self.sigma.double().tolist())
        self.total, self.s0, self.s1, self.rho, self.p_mean, self.p_std = total, s0, s1, rho, p_mean, p_std

    def size(self, step: int) -> int:
        return grid_size(step, self.total, self.s0, self.s1)

    def grid(self, step: int) -> torch.Tensor:
        return torch.tensor(index_grid(self.key, self.size(step), self.rho))  # (M,) ascending indices

    def pairs(self, step: int, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(t_i, t_{i+1}) per sample, (n,) each: adjacent grid indices, i lognormal-distributed."""
        g = self.grid(step)
        p = lognormal_probs(self.sigma[g[:-1]], self.sigma[g[1:]], self.p_mean, self.p_std)  # (M-1,)
        i = torch.multinomial(p, n, replacement=True, generator=gen)
        return g[i], g[i + 1]


class ICTMethod(MethodBase):
    """What consistency training and distillation share: the parameterisation f, the iCT grid N(k)
    (the phase is the doubling round of N), the pseudo-Huber constant; `cfg` set by the subclass."""

    sample_steps = (1, 2, 4)

    def __init__(self, cfg, ctx: Context, seed: int):
        self.cfg, self.ctx, self.seed = cfg, ctx, seed
        self.total_steps = cfg.steps
        self.f = Consistency(ctx.schedule, cfg.sigma_data)
        self.grid = ICTGrid(ctx.schedule, cfg.steps, cfg.s0, cfg.s1, cfg.rho, cfg.p_mean, cfg.p_std)
        self.c = huber_c(cfg.huber_c, ctx.shape)

    def schedule(self, step: int) -> dict[str, float]:
        n = self.grid.size(step)
        return {"phase": int(math.log2((n - 1) / self.cfg.s0)), "N": n}


class CT(ICTMethod):
    """Consistency training (iCT settings); see the module docstring."""

    needs_data = True

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        super().__init__(CTConfig.from_dict(cfg), ctx, seed)

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x0 = batch.data  # (B, *shape) real data
        t_lo, t_hi = (t.to(x0.device) for t in self.grid.pairs(step, x0.shape[0], gen))  # (B,), (B,)
        z = torch.randn(x0.shape, generator=gen).to(x0.device)  # the SAME z for both states
        f_hi = self.f(student, self.f.noised(x0, z, t_hi), t_hi)
        with torch.no_grad():
            f_lo = self.f(student, self.f.noised(x0, z, t_lo), t_lo)  # sg: the current net (iCT)
        sig = self.f.sigma.to(x0.device)
        w = 1.0 / (sig[t_hi] - sig[t_lo])  # (B,)
        d = pseudo_huber(f_hi, f_lo, self.c)
        return w * d, {"d": d.mean().detach(), "sigma_hi": sig[t_hi].mean()}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        return self.f.sample(student, z, steps, self.seed)
