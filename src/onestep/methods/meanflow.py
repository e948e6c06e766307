"""MeanFlow (Geng et al. 2025): regression of the average velocity u(z_t, r, t) over [r, t].

Trains from DATA, not from the teacher (needs_data): x = Batch.data, e = Batch.z (standard normal,
independent of the data batch); the teacher is never called.

Flow convention: methods/common.py, z_t = (1 - t) x + t e, v = e - x. Time scale: the two-time
student u_theta(z_t, r, t) is the network f(z_t, S t, S r) with S = `time_scale`, by default 1 (t and
r in [0, 1] enter the sinusoidal embedding as they are, as in MeanFlow's code), NOT the T t of the
other flow methods: on the 0..T scale the embedding's frequencies reach 1 rad per unit, so du/dt is
O(T) at initialisation and the JVP target feeds back until the loss diverges (measured: the tiny-MLP
2-D loss grows 10 -> 5000 in 200 steps at S = T; falls 2.4 -> 1.5 at S = 1). The MeanFlow identity

    u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),   d/dt = v . d_z + d_t

gives the target u_tgt = sg[v - (t - r) du/dt], with (u, du/dt) from one torch.func.jvp along the
tangent (v, 1, 0) of the inputs (z_t, t, r). Loss per sample, with the adaptive weight

    L = sg[w] || u_theta(z_t, r, t) - u_tgt ||^2,   w = 1 / (|| u_theta - u_tgt ||^2 + c)^p

(t, r) ~ logit-normal(mean, std), sorted so r <= t, and r = t for a share 1 - `ratio_r_neq_t`
of the batch (plain flow matching there, u(z_t, t, t) = v); by default the official CIFAR-10 sampler
(mean -2.0, std 2.0, ratio 0.75: `MF_CIFAR`), not ImageNet's (-0.4, 1.0, 0.25). Computed in fp32 with autocast off
(bf16/fp16 JVPs give the NaN spikes users report).

Sampling: one step x = e - u(e, 0, 1); n steps t_i = 1 - i/n, z_{t_{i+1}} = z_{t_i} - (t_i - t_{i+1}) u(z_{t_i}, t_{i+1}, t_i).

Cost: the JVP is about a forward + tangent pass, then the backward: about 5 forward equivalents per
step; the default 4000 steps = 20k, about the curriculum default (4000 x 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from onestep.methods.base import Batch, Context, Knobs, MethodBase, knob
from onestep.methods.common import expand, interpolate, logit_normal

MF_CIFAR = "Gsunshine/py-meanflow meanflow/scripts/cifar10_v0.sh (the official CIFAR-10 run, read in its fork revsic/py-meanflow)"


@dataclass(frozen=True)
class MeanFlowConfig(Knobs):
    """MeanFlow (src/onestep/methods/meanflow.py); trains from data."""

    steps: int = knob(4000, "total optimiser steps", minimum=1)
    ratio_r_neq_t: float = knob(0.75, f"share of the batch with r < t (the rest r = t); {MF_CIFAR}: --ratio 0.75 "
                                "(ImageNet's 0.25 was this file's earlier default)", minimum=0, maximum=1)
    time_mean: float = knob(-2.0, f"logit-normal mean of t and r; {MF_CIFAR}: --P_mean_t = --P_mean_r = -2.0 "
                            "(ImageNet: -0.4)")
    time_std: float = knob(2.0, f"logit-normal std of t and r; {MF_CIFAR}: --P_std_t = --P_std_r = 2.0 (ImageNet: 1.0)",
                           exclusiveMinimum=0)
    p: float = knob(0.75, f"adaptive weight 1 / (||err||^2 + c)^p; {MF_CIFAR}: --norm_p 0.75", minimum=0)
    c: float = knob(1e-3, "adaptive weight's c; MeanFlow paper (norm_eps 1e-3)", exclusiveMinimum=0)
    time_scale: float = knob(1.0, "the network sees time_scale * t (1: t in [0, 1]; T = 1000 diverges, see meanflow.py)",
                             exclusiveMinimum=0)


def sample_times(n: int, cfg: MeanFlowConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, r), (n,) each, r <= t; r = t outside a share `ratio_r_neq_t`."""
    a, b = logit_normal(n, cfg.time_mean, cfg.time_std, gen), logit_normal(n, cfg.time_mean, cfg.time_std, gen)
    t, r = torch.maximum(a, b), torch.minimum(a, b)
    equal = torch.rand(n, generator=gen) >= cfg.ratio_r_neq_t
    return t, torch.where(equal, t, r)


def meanflow_target(student: nn.Module, x: torch.Tensor, e: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                    S: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(u_theta(z_t, r, t) with its graph, u_tgt = sg[v - (t - r) du/dt]) by one forward-mode JVP."""
    z_t, v = interpolate(x, e, t), e - x  # (B, *shape)

    def u(z, t_, r_):
        return student(z, S * t_, S * r_)

    u_pred, dudt = torch.func.jvp(u, (z_t, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    return u_pred, (v - expand(t - r, x.ndim) * dudt).detach()


class MeanFlow(MethodBase):
    """MeanFlow average-velocity regression from data; see the module docstring."""

    Config = MeanFlowConfig
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "ratio_r_neq_t": {"low": 0.1, "high": 0.9, "log": False},  # the time sampler: share, mean and std
        "time_mean": {"low": -3.0, "high": 0.5, "log": False},
        "time_std": {"low": 0.8, "high": 2.5, "log": False},
    }

    needs_data = True
    sample_steps = (1, 2, 4)
    times = 2

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = self.Config.from_dict(cfg)
        self.ctx, self.seed, self.S = ctx, seed, self.cfg.time_scale
        self.total_steps = self.cfg.steps

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x, e = batch.data.float(), batch.z.float()  # (B, *shape)
        t, r = (s.to(x.device) for s in sample_times(x.shape[0], self.cfg, gen))  # (B,)
        with torch.autocast(device_type="cuda" if x.is_cuda else "cpu", enabled=False):  # JVP in fp32
            u_pred, u_tgt = meanflow_target(student, x, e, t, r, self.S)
            err = ((u_pred - u_tgt) ** 2).flatten(1).sum(1)  # (B,)
        w = (err.detach() + self.cfg.c) ** -self.cfg.p
        return w * err, {"mse": err.mean().detach()}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        x = z
        for i in range(steps):
            t = torch.full((z.shape[0],), 1.0 - i / steps, device=z.device)
            r = t - 1.0 / steps
            x = x - student(x, self.S * t, self.S * r.clamp(min=0)) / steps
        return x
