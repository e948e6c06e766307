"""Consistency distillation (Song et al. 2023), by default as its official code runs it (openai/consistency_models).

The consistency function, its boundary-condition parameterisation, the index grid and the VP-index
mapping are methods/common.py's (see ct.py's docstring: sigma_t = sqrt((1 - abar_t) / abar_t),
f_theta(x_t, t) = c_skip x_t / sqrt(abar_t) + c_out F_theta(x_t, t)). CD differs from CT in where the lower
state comes from: the TEACHER moves x_{t_{i+1}} down to t_i by one Heun step of its probability-flow ODE,

    x_{t_{i+1}} = sqrt(abar) x0 + sqrt(1 - abar) eps,   x0 = teacher samples (the pairs' x0)
    x_{t_i} = Heun(x_{t_{i+1}}, t_{i+1} -> t_i)
    L = lambda(sigma_i) d(f_theta(x_{t_{i+1}}, t_{i+1}), sg f_{theta^-}(x_{t_i}, t_i)).

Heun in the VP index space: with xt = x_t / sqrt(abar_t) (the EDM state) the PF-ODE is
d xt / d sigma = eps(x_t, t), so Euler is xs = xt + (sigma_s - sigma_t) eps_1 (exactly the DDIM jump)
and Heun averages eps_1 with eps_2 = eps(sqrt(abar_s) xs_Euler, s); two teacher evaluations per sample.
Data-free: x0 are the teacher's own samples, so no real data is read.

The default recipe is the CD paper's code (openai/consistency_models scripts/launch.sh, its CD lines:
`--target_ema_mode fixed --start_ema 0.95 --scale_mode fixed --start_scales 40 --loss_norm l2
--weight_schedule uniform`; cm/karras_diffusion.py `consistency_losses`): a FIXED grid of N = 40 Karras levels
(s0 = s1 = 39 intervals), the interval i uniform, lambda = 1, d = the per-element mean of the squared
difference (`mean_flat`), and the target theta^- an EMA of the student at rate 0.95 (common.TargetEMA), apart
from the trainer's evaluation EMA. The improved-CT recipe (Song & Dhariwal 2023) is the knob setting
`s0: 10, s1: 1280, pairs: lognormal, weighting: ict, distance: pseudo_huber, target: online`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep.methods.base import Batch, Context, knob
from onestep.methods.common import EDMRead, ICTConfig, ICTMethod, TargetEMA, pf_ode_step

CD_CODE = "openai/consistency_models scripts/launch.sh (CD runs)"


@dataclass(frozen=True)
class CDConfig(ICTConfig):
    """Consistency distillation (src/onestep/methods/cd.py): by default the CD paper's official recipe (fixed N = 40,
    uniform intervals and weights, l2, EMA target 0.95); the iCT recipe is a knob setting (module docstring)."""

    s0: int = knob(39, f"grid intervals N(0) - 1 at step 0; {CD_CODE}: --scale_mode fixed --start_scales 40 "
                   "(N = 40 levels, 39 intervals); iCT: 10", minimum=1)
    s1: int = knob(39, f"final grid intervals; {CD_CODE}: fixed N, so s1 = s0 = 39; iCT: 1280", minimum=1)
    solver: Literal["heun", "euler"] = knob("heun", "teacher PF-ODE step (euler = DDIM); CD paper: heun "
                                            "(cm/karras_diffusion.py heun_solver)")
    pairs: Literal["uniform", "lognormal"] = knob(
        "uniform", "how the grid interval i is drawn; CD code (cm/karras_diffusion.py consistency_losses): uniform, "
        "th.randint(0, num_scales - 1); lognormal: iCT's p(i) from p_mean, p_std")
    weighting: Literal["uniform", "ict"] = knob(
        "uniform", f"lambda(sigma_i); {CD_CODE}: --weight_schedule uniform (lambda = 1); ict: 1 / (sigma_(i+1) - "
        "sigma_i) (iCT paper), which on this grid gives the pairs above sigma 10 under 1% of the gradient weight")
    distance: Literal["l2", "pseudo_huber"] = knob(
        "l2", f"d(a, b); {CD_CODE}: --loss_norm l2 (mean_flat of the squared difference; its LPIPS runs need images); "
        "pseudo_huber: iCT's, c = huber_c")
    target: Literal["ema", "online"] = knob(
        "ema", f"the target network theta^-; {CD_CODE}: --target_ema_mode fixed, an EMA of the student; online: "
        "the current weights under stop-gradient (iCT)")
    target_ema: float = knob(0.95, f"EMA rate of the target theta^-; {CD_CODE}: --start_ema 0.95", minimum=0,
                             exclusiveMaximum=1)


class CD(EDMRead, ICTMethod):
    """Consistency distillation (official CD recipe by default, Heun teacher steps); see the module docstring."""

    Config = CDConfig
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "target": {"choices": ["ema", "online"]},
        "weighting": {"choices": ["uniform", "ict"]},
        "target_ema": {"low": 0.9, "high": 0.999, "log": False},
    }

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        super().__init__(cfg, ctx, seed)
        c = self.cfg
        self.ict_weight, self.l2 = c.weighting == "ict", c.distance == "l2"
        self.target = TargetEMA(c.target_ema) if c.target == "ema" else None

    def target_net(self, student: nn.Module) -> nn.Module:
        return student if self.target is None else self.target(student)

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if self.target is not None:
            self.target.update(student)  # theta^- <- mu theta^- + (1 - mu) theta (a copy at step 0)
        return {}

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x0 = batch.x0  # (B, *shape) teacher samples
        t_lo, t_hi = (t.to(x0.device) for t in self.grid.pairs(step, x0.shape[0], gen, self.cfg.pairs == "uniform"))
        eps = torch.randn(x0.shape, generator=gen).to(x0.device)
        x_hi = self.f.noised(x0, eps, t_hi)
        x_lo = pf_ode_step(self.ctx.teacher, x_hi, t_hi, t_lo, heun=self.cfg.solver == "heun")
        return self.pair_loss(student, x_hi, x_lo, t_hi, t_lo)

    def state_dict(self) -> dict:
        return {} if self.target is None else self.target.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.target is not None and state:
            self.target.load_state_dict(state)
