"""Progressive distillation (Salimans & Ho 2022): halving rounds down to one step.

Round r trains an N_r-step student, N_r = start_steps / 2^r (start_steps a power of two), on the
uniform index grid t_i = round(i T / N_r), i = 0..N_r, against a 2 N_r-step "teacher": the DDPM
teacher in round 0, the frozen student of round r - 1 afterwards (the student becomes the teacher).
For a sampled i, with t = t_i, s = t_{i-1} and the half point m = round((i - 1/2) T / N_r):

    x_t   = alpha_t x0 + sigma_t eps                    (x0 teacher samples, fresh eps)
    x''_s = DDIM(DDIM(x_t, t -> m), m -> s)             (two teacher half steps, no gradient)
    xtilde = (x''_s - (sigma_s / sigma_t) x_t) / (alpha_s - (sigma_s / sigma_t) alpha_t)
    L     = max(SNR_t, 1) || xhat_theta(x_t, t) - xtilde ||^2        ("truncated SNR" weighting)

here alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), SNR_t = abar_t / (1 - abar_t) (VP DDPM
index space, abar_0 = 1). xtilde is the x-prediction that makes ONE student DDIM step t -> s land on
the teacher's two-step result; at s = 0 it is x''_0 itself. The student predicts v
(Salimans & Ho's v-parameterisation, well conditioned at t = T where alpha_T ~ 0.006):
xhat = alpha_t x_t - sigma_t v_theta(x_t, t), and its DDIM step uses eps = (x_t - alpha_t xhat) / sigma_t.

x0 are the teacher's samples (the pairs), not real data, so the method is data-free like the paper's
use of the teacher; the student starts fresh unless `student.init_from_teacher` is set: then it is the teacher's epsilon
network read as v, v = (eps - sigma_t x_t) / alpha_t (nets.EpsHead), so its xhat is the teacher's x0
prediction and round 0 starts from the teacher, as the official code starts each student from its teacher.
Sampling with 1, 2 or 4 student DDIM steps on the same uniform grid (the last round trains 1 step; 2 and 4 reuse what the
earlier rounds taught).

Round 0's teacher clips its x0 prediction to [-clip_x0, clip_x0] (the pairs' `clip_x0`: tail noise is
otherwise sent far off the data, and the 32-step DDIM measured 13.9x the floor unclipped against 4.84x
clipped on the checkerboard). The official code (google-research/google-research
diffusion_distillation/diffusion_distillation/dpm.py, `training_losses`) runs its teacher's two DDIM steps
with clip_x=False and clips at sampling only (`ddim_step`, clip_x); images in [-1, 1] rarely leave it.

Defaults: start_steps = 128 (a 256-step clipped DDIM teacher in round 0), 8 rounds 128 -> ... -> 1 of
steps_per_round = 500, i.e. 4000 optimiser steps, the curriculum default's count. The official runs start
far higher (diffusion_distillation/diffusion_distillation/config/cifar_distill.py: a 1024-step teacher,
50k optimiser steps per halving); here round 0 is as many steps as the budget leaves each round 500 steps.
Teacher evaluations: 2 per sample per step in round 0 only; later rounds evaluate the frozen student.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep.methods.base import Batch, ConfigError, Context, Knobs, MethodBase, knob


@dataclass(frozen=True)
class ProgressiveConfig(Knobs):
    """Progressive distillation (src/onestep/methods/progressive.py)."""

    start_steps: Literal[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] = knob(
        128, "student steps of round 0 (a power of two; its teacher takes twice as many); official: a 1024-step "
        "teacher (google-research diffusion_distillation config/cifar_distill.py); chosen here: 128 (a 256-step "
        "teacher) so that 8 rounds of 500 steps fit the 4000-step budget")
    steps_per_round: int = knob(500, "optimiser steps per halving round (total = rounds x this); official: 50k "
                                "(cifar_distill.py); chosen here: 8 rounds x 500 = the curriculum default's 4000",
                                minimum=1)
    clip_x0: float | Literal["auto"] | None = knob(
        "auto", "clip round 0's teacher x0 prediction to [-c, c] at each of its DDIM steps: auto = the data's largest "
        "|coordinate| (as pairs.clip_x0); null: off, as the official training loss (dpm.py training_losses, "
        "clip_x=False; it clips at sampling)", exclusiveMinimum=0)

    @property
    def rounds(self) -> int:
        return int(math.log2(self.start_steps)) + 1


def round_at(step: int, cfg: ProgressiveConfig) -> int:
    """Distillation round trained at optimiser step `step` (0-based)."""
    return min(step // cfg.steps_per_round, cfg.rounds - 1)


def student_steps(r: int, cfg: ProgressiveConfig) -> int:
    """N_r = start_steps / 2^r: the student's steps in round r (its teacher takes 2 N_r)."""
    return cfg.start_steps // 2**r


def target_x(x_s: torch.Tensor, x_t: torch.Tensor, a_t: torch.Tensor, a_s: torch.Tensor) -> torch.Tensor:
    """xtilde: the x-prediction whose DDIM step t -> s (abar a_t -> a_s) from x_t lands on x_s."""
    ratio = ((1 - a_s) / (1 - a_t)).sqrt()  # sigma_s / sigma_t
    return (x_s - ratio * x_t) / (a_s.sqrt() - ratio * a_t.sqrt())


class Progressive(MethodBase):
    """Progressive distillation; see the module docstring."""

    Config = ProgressiveConfig
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "start_steps": {"choices": [16, 32, 64, 128, 256, 512]},
    }
    teacher_read = "v"  # init_from_teacher: v from the teacher's eps, so xhat is its x0 prediction (nets.EpsHead)

    @classmethod
    def total_steps_of(cls, section: dict) -> int:
        c = cls.Config.from_dict(section)
        return c.rounds * c.steps_per_round

    @classmethod
    def with_total_steps(cls, section: dict, steps: int) -> dict:
        """The same total whatever `start_steps` (the rounds): steps_per_round = floor(steps / rounds)."""
        return {**section, "steps_per_round": max(1, int(steps) // cls.Config.from_dict(section).rounds)}

    sample_steps = (1, 2, 4)

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = self.Config.from_dict(cfg)
        s = self.cfg.start_steps
        if s < 1 or s & (s - 1):
            raise ValueError(f"method.start_steps must be a power of two, got {s}")
        self.ctx, self.sch, self.T = ctx, ctx.schedule, ctx.schedule.T
        self.total_steps = self.cfg.rounds * self.cfg.steps_per_round
        clip = self.cfg.clip_x0
        if clip == "auto" and ctx.data_bound is None:
            raise ConfigError("method.clip_x0: 'auto' needs the data's bound, which this context does not offer; "
                              "allowed: a positive number, null, or auto inside training / evaluation")
        self.clip = None if clip is None else (float(ctx.data_bound()) if clip == "auto" else float(clip))
        self.round = 0
        self.prev: nn.Module | None = None  # frozen student of the previous round (its teacher)
        self._pending: dict | None = None  # a loaded prev state, materialised at the next loss

    def schedule(self, step: int) -> dict[str, float]:
        r = round_at(step, self.cfg)
        return {"phase": r, "student_steps": student_steps(r, self.cfg)}

    def xhat(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x-prediction of a v-parameterised net: alpha_t x_t - sigma_t v(x_t, t)."""
        a = self.sch.at("abar", t, x.ndim)
        return a.sqrt() * x - (1 - a).sqrt() * net(x, t)

    def ddim(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """One DDIM step t -> s with a v-parameterised net."""
        a_t, a_s = self.sch.at("abar", t, x.ndim), self.sch.at("abar", s, x.ndim)
        x0 = self.xhat(net, x, t)
        eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        return a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps

    @torch.no_grad()
    def teacher_step(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.prev is None:  # round 0: the DDPM teacher's DDIM jump, its x0 prediction clipped
            a_t, a_s = self.sch.at("abar", t, x.ndim), self.sch.at("abar", s, x.ndim)
            x0 = (x - (1 - a_t).sqrt() * self.ctx.teacher.eps(x, t)) / a_t.sqrt()
            x0 = x0 if self.clip is None else x0.clamp(-self.clip, self.clip)
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
            return a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps
        return self.ddim(self.prev, x, t, s)

    def _advance(self, student: nn.Module, step: int) -> None:
        """On a new round the current student, frozen, becomes the teacher."""
        if self._pending is not None:
            self.prev = copy.deepcopy(student).eval().requires_grad_(False)
            self.prev.load_state_dict(self._pending)
            self._pending = None
        r = round_at(step, self.cfg)
        if r > self.round:
            self.prev = copy.deepcopy(student).eval().requires_grad_(False)
            self.round = r

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        self._advance(student, step)
        x0 = batch.x0  # (B, *shape) teacher samples
        B, n, nd, dev = x0.shape[0], student_steps(self.round, self.cfg), x0.ndim, x0.device
        i = torch.randint(1, n + 1, (B,), generator=gen).to(dev)  # student step i: t_i -> t_{i-1}
        t = torch.round(i * self.T / n).long()
        s = torch.round((i - 1) * self.T / n).long()
        m = torch.round((i - 0.5) * self.T / n).long()
        a_t, a_s = self.sch.at("abar", t, nd).to(dev), self.sch.at("abar", s, nd).to(dev)
        x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * torch.randn(x0.shape, generator=gen).to(dev)
        x_s = self.teacher_step(self.teacher_step(x_t, t, m), m, s)  # (B, *shape) two half steps
        x_tilde = target_x(x_s, x_t, a_t, a_s)
        w = (a_t / (1 - a_t)).clamp(min=1.0).flatten()  # max(SNR_t, 1)
        err = ((self.xhat(student, x_t, t) - x_tilde) ** 2).flatten(1).sum(1)
        return w * err, {"x_err": err.mean().detach()}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        x = z
        for j in range(steps, 0, -1):
            t = torch.full((z.shape[0],), round(j * self.T / steps), dtype=torch.long, device=z.device)
            s = torch.full_like(t, round((j - 1) * self.T / steps))
            x = self.ddim(student, x, t, s)
        return x

    def state_dict(self) -> dict:
        return {"round": self.round, "prev": None if self.prev is None else self.prev.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.round = state["round"]
        self.prev, self._pending = None, state["prev"]

    def to(self, device: str | torch.device) -> Progressive:
        if self.prev is not None:
            self.prev.to(device)
        return self
