"""TDM, trajectory distribution matching for a few-step student (Luo et al. 2025, seeds/003).

Distils the teacher; data-free (noise z only, no teacher ODE solves, no pairs used).

Student. A K-step deterministic sampler on the grid t^K_i = T - i T/K (i = 0..K, t_0 = T, t_K = 0):
from x_{t_0} = z, the two-time student predicts x0_hat_i = G_theta(x_{t_i}, t_i, t_{i+1}) and a DDIM
step moves x_{t_i} -> x_{t_{i+1}} = sqrt(abar_{t_{i+1}}) x0_hat_i + sqrt(1 - abar_{t_{i+1}}) eps_hat_i,
eps_hat_i = (x_{t_i} - sqrt(abar_{t_i}) x0_hat_i) / sqrt(1 - abar_{t_i}). The second time t_{i+1}
tells the student the step size, i.e. K (TDM-unify's step-count conditioning).

Objective. For step i the student's sample is diffused only over its own interval
tau in [t_{i+1}, t_i) (intervals of different steps do not overlap), x_tau = sqrt(abar_tau) x0_hat_i +
sqrt(1 - abar_tau) eps, and matched to the teacher's marginal p_{phi, tau} by score distillation, as
in DMD (methods/dmd2.py; maths in methods/common.py): grad = (D_psi - D_phi)(x_tau) / mean|x0_hat_i - D_phi(x_tau)|, with the
seed's pseudo-Huber surrogate

    L = sqrt(|| x0_hat_i - sg(x0_hat_i - grad) ||^2 + c^2) - c,   c = 0.00054 sqrt(d)

Gradients flow through the last student step only (the earlier steps of the trajectory are run
without gradient, as the seed's memory-saving choice). The step count K of a training step is a pure
function of the step (cycling through `ks`), and each K has its own fake score psi_K (steps-aware
fake scores: a shared one is biased, seed 003), each a copy of the teacher trained online in
`aux_step` on detached student samples of its own intervals, with its own optimiser, by the DMD2 code's
fake-score loss (tianweiy/DMD2 main/edm/edm_guidance.py `compute_loss_fake`, common.fake_x0_loss: the x0-MSE of
its denoiser weighted 1/sigma^2 + 1/s_d^2), at the student's learning rate (DMD2: --guidance_lr = --generator_lr).
TDM's own code was not read here: its fake loss and update ratio are DMD2's, which TDM builds on.
Where the seed is silent: the sample diffused over interval i is the student's x0 prediction of
that step (not x_{t_{i+1}}), which keeps the fake score a plain DDPM epsilon network; tau >= t_min.

Cost (forward = 1, forward + backward = 3), mean over K in (1, 2, 4): trajectory (K - 1)/2 forwards,
student 3, teacher 1, fake 1, aux step (K + 1)/2 + 3 fake_updates: about 22 per step with
fake_updates = 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep.methods.base import Batch, ConfigError, Context, Knobs, MethodBase, knob
from onestep.methods.common import (
    dm_gradient,
    fake_score,
    fake_updates,
    fake_x0_loss,
    huber_c,
    pseudo_huber,
    sigma_data,
)


@dataclass(frozen=True)
class TDMConfig(Knobs):
    """Trajectory distribution matching (src/onestep/methods/tdm.py); the budget is the module docstring's."""

    steps: int = knob(1000, "student optimiser steps", minimum=1)
    ks: tuple[int, ...] = knob((1, 2, 4), "student step counts trained (cycled by step)", items={"minimum": 1})
    fake_updates: int = knob(5, "fake-score updates per student step; DMD2's ratio (tianweiy/DMD2 "
                             "experiments/imagenet/imagenet_lr2e-6_scratch.sh --dfake_gen_update_ratio 5)", minimum=1)
    fake_lr: float = knob(1e-3, "fake-scores' Adam learning rate; DMD2's rule --guidance_lr = --generator_lr: "
                          "config.yaml's student.lr (1e-3)", exclusiveMinimum=0)
    sigma_data: float | Literal["auto"] = knob(0.5, "s_d of the fake loss weight 1/sigma^2 + 1/s_d^2; tianweiy/DMD2 "
                                               "main/edm/train_edm.py --sigma_data 0.5; auto: the data's std",
                                               exclusiveMinimum=0)
    t_min: int = knob(20, "lowest noise level (seed index) of the distribution-matching gradient; DMD2's 0.02 T "
                      "(main/edm/train_edm.py --min_step_percent 0.02)", minimum=1)
    huber_c: None | float = knob(None, "pseudo-Huber c; null = 0.00054 sqrt(d)", exclusiveMinimum=0)

    @classmethod
    def check(cls, m: dict, cfg: dict) -> None:
        T = cfg["diffusion"]["T"]
        if any(k > T for k in m["ks"]):
            raise ConfigError(f"method.ks: {m['ks']} is out of range; allowed: step counts 1..diffusion.T = {T}")


def grid(T: int, K: int) -> torch.Tensor:
    """t^K_i = T - i T/K (rounded), i = 0..K; (K+1,)."""
    return torch.tensor([round(T - i * T / K) for i in range(K + 1)])


def ddim_move(x: torch.Tensor, x0_hat: torch.Tensor, abar_s: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """DDIM step s -> t with the predicted x0 (abar_* broadcastable to x)."""
    eps_hat = (x - abar_s.sqrt() * x0_hat) / (1 - abar_s).sqrt()
    return abar_t.sqrt() * x0_hat + (1 - abar_t).sqrt() * eps_hat


class TDM(MethodBase):
    """Trajectory distribution matching; see the module docstring."""

    Config = TDMConfig
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "fake_updates": {"choices": [1, 2, 5, 10]},
        "t_min": {"low": 1, "high": 200, "log": True},  # the noise range: the lowest level tau of the DM gradient
    }
    times = 2
    teacher_read = "x0"  # init_from_teacher: x0_hat(x, s, t) the teacher's x0 prediction at s (base.py, nets.EpsHead)

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = self.Config.from_dict(cfg)
        self.ctx, self.seed, self.T = ctx, seed, ctx.schedule.T
        if any(not 1 <= k <= self.T for k in self.cfg.ks) or not self.cfg.ks:
            raise ValueError(f"method.ks must be step counts in 1..T = {self.T}, got {list(self.cfg.ks)}")
        self.sample_steps = tuple(sorted(set(self.cfg.ks)))
        self.total_steps = self.cfg.steps
        self.c = huber_c(self.cfg.huber_c, ctx.shape)
        self.fakes = nn.ModuleDict({str(k): fake_score(ctx.teacher) for k in self.sample_steps})  # psi_K
        self.opt = torch.optim.Adam(self.fakes.parameters(), lr=self.cfg.fake_lr)
        self.s_d = sigma_data(self.cfg.sigma_data, ctx)

    def schedule(self, step: int) -> dict[str, float]:
        return {"K": self.cfg.ks[step % len(self.cfg.ks)]}

    def _steps(self, K: int, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: the trajectory step i ~ U{0..K-1}; (t_i, t_{i+1}), (B,) each."""
        ts = grid(self.T, K)
        i = torch.randint(0, K, (x.shape[0],), generator=gen)
        return ts[i].to(x.device), ts[i + 1].to(x.device)

    @torch.no_grad()
    def trajectory(self, student: nn.Module, z: torch.Tensor, K: int, t_i: torch.Tensor) -> torch.Tensor:
        """x_{t_i} of the K-step student sampler from z, per sample (no gradient); (B, *shape)."""
        ts, sch, x = grid(self.T, K).to(z.device), self.ctx.schedule, z
        for j in range(K - 1):
            s, t = ts[j].expand(z.shape[0]), ts[j + 1].expand(z.shape[0])
            moved = ddim_move(x, student(x, s, t), sch.at("abar", s, x.ndim), sch.at("abar", t, x.ndim))
            x = torch.where((t_i < s).view(-1, *[1] * (x.ndim - 1)), moved, x)  # samples whose t_i is below s move on
        return x

    def _tau(self, t_i: torch.Tensor, t_next: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """tau ~ U{max(t_{i+1}, t_min) .. t_i - 1}: step i's own interval."""
        lo = t_next.clamp(min=self.cfg.t_min)
        u = torch.rand(t_i.shape[0], generator=gen).to(t_i.device)
        return (lo + (u * (t_i - lo).clamp(min=1)).long()).clamp(max=self.T)

    def _x0_hat(self, student: nn.Module, z: torch.Tensor, K: int, gen: torch.Generator):
        t_i, t_next = self._steps(K, z, gen)
        x = self.trajectory(student, z, K, t_i)
        return student(x, t_i, t_next), t_i, t_next

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        K = self.cfg.ks[step % len(self.cfg.ks)]
        fake = self.fakes[str(K)]
        with torch.no_grad():
            x0_hat, t_i, t_next = self._x0_hat(student, batch.z, K, gen)
        def loss_fn() -> torch.Tensor:
            eps = torch.randn(x0_hat.shape, generator=gen).to(x0_hat.device)
            return fake_x0_loss(fake, self.ctx.schedule, x0_hat, self._tau(t_i, t_next, gen), eps, self.s_d)

        return fake_updates(fake, self.opt, self.cfg.fake_updates, loss_fn)

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        K = self.cfg.ks[step % len(self.cfg.ks)]
        x0_hat, t_i, t_next = self._x0_hat(student, batch.z, K, gen)  # gradient through the last step only
        tau = self._tau(t_i, t_next, gen)
        eps = torch.randn(x0_hat.shape, generator=gen).to(x0_hat.device)
        grad = dm_gradient(self.ctx.teacher, self.fakes[str(K)], x0_hat.detach(), tau, eps)
        loss = pseudo_huber(x0_hat, (x0_hat - grad).detach(), self.c)
        return loss, {"L_tdm": loss.mean().detach()}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        ts, sch, x = grid(self.T, steps).to(z.device), self.ctx.schedule, z
        for j in range(steps):
            s, t = ts[j].expand(z.shape[0]), ts[j + 1].expand(z.shape[0])
            x0_hat = student(x, s, t)
            x = ddim_move(x, x0_hat, sch.at("abar", s, x.ndim), sch.at("abar", t, x.ndim))
        return x  # t_K = 0: abar = 1, x = x0_hat

    def state_dict(self) -> dict:
        return {"fakes": self.fakes.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.fakes.load_state_dict(state["fakes"])
        self.opt.load_state_dict(state["opt"])

    def to(self, device: str | torch.device) -> TDM:
        self.fakes.to(device)
        return self
