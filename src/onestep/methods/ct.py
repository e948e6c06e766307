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
- erf((ln sigma_i - P_mean) / (sqrt 2 P_std)), P_mean (iCT: -1.1 on CIFAR-10; default 0 here, see
common.ICTConfig), P_std = 2.0, and the grid size follows
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

Defaults (common.ICTConfig): `steps` = 4000 optimiser steps at the student batch size, the curriculum
default's count (K = 10 x 400); s0 = 10, s1 = 1280 as in iCT, so N doubles every 500 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from onestep.methods.base import Batch
from onestep.methods.common import ICTConfig, ICTMethod


@dataclass(frozen=True)
class CTConfig(ICTConfig):
    """Consistency training, iCT settings (src/onestep/methods/ct.py); trains from data."""


class CT(ICTMethod):
    """Consistency training (iCT settings); see the module docstring. The parameterisation, grid and
    pseudo-Huber are methods/common.py's."""

    Config = CTConfig
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "p_mean": {"low": -1.5, "high": 1.5, "log": False},
        "p_std": {"low": 0.5, "high": 2.5, "log": False},
    }
    needs_data = True

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x0 = batch.data  # (B, *shape) real data
        t_lo, t_hi = (t.to(x0.device) for t in self.grid.pairs(step, x0.shape[0], gen))  # (B,), (B,)
        z = torch.randn(x0.shape, generator=gen).to(x0.device)  # the SAME z for both states
        return self.pair_loss(student, self.f.noised(x0, z, t_hi), self.f.noised(x0, z, t_lo), t_hi, t_lo)
