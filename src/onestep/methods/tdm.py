"""TDM, trajectory distribution matching for a few-step student (Luo et al. 2025, seeds/003), on its official recipe.

Distils the teacher; data-free (noise z only, no teacher ODE solves, no pairs used). The recipe is TDM's own
training script, Luo-Yihong/TDM `train_tdm_demo.py` with the README's launch command (`--total_steps 900
--use_huber --use_separate`); where this file departs from it, the knob's doc or this docstring says why.

Student. An x0 network G_theta(x_t, t) (TDM's student is the teacher's epsilon network, `predicted_origin`), run as
a K-step DDIM sampler on the grid t^K_i = t_top - i t_top/K (i = 0..K, t_0 = t_top, t_K = 0) from x_{t_0} = z:
x0_hat_i = G(x_{t_i}, t_i), x_{t_{i+1}} = sqrt(abar_{t_{i+1}}) x0_hat_i + sqrt(1 - abar_{t_{i+1}}) eps_hat_i with
eps_hat_i = (x_{t_i} - sqrt(abar_{t_i}) x0_hat_i) / sqrt(1 - abar_{t_i}) (`generate_new`: one K = 4, t_top = 900;
the demo's t_g = k t_top/4 - 1 in the 0-based index is our t_top (k/4), the seed's 1-based index). A sampler with
n steps, n a divisor of a trained K, calls G only at trained times, so 1, 2 and 4 steps are scored from K = 4.

Objective, per sample (one trajectory step i ~ U{0..K-1}, the earlier steps run without gradient):
  x_mid = DDIM-moved state at t_mid = t_{i+1} (`add_noise(model_latents, model_eps, timesteps_mid)`), diffused
  forward to tau ~ U{max(t_min, t_mid) .. hi - 1}, hi = t_i - 10 (`--use_separate`: each step its own interval) or
  t_top - 10: x_tau = sqrt(abar_tau / abar_mid) x_mid + sqrt(1 - abar_tau - abar_tau (1 - abar_mid) / abar_mid) n
  (`Predictor.add_noise`);
  generator: L = mean_elements (sqrt((x0_hat - sg(x0_hat + D_phi(x_tau) - D_psi(x_tau)))^2 + c^2) - c) / w,
  w = mean_elements |x0_hat - D_phi(x_tau)| (`loss_instruct` with `--use_huber`, c = 1e-3, per element);
  fake score psi: mean_elements (D_psi(x_tau) - x0_hat)^2 min(SNR_tau, 5) r (`loss_score`), r = exp(-mean m^2 / 2)
  / exp(-mean n^2 / 2) the importance weight of the state's total noise m (x_tau = sqrt(abar_tau) x0_hat +
  sqrt(1 - abar_tau) m, `obtain_mixed_noise`) against the fresh noise n.
D_phi is the teacher's denoiser, D_psi the fake's: a trainable copy of the teacher's epsilon network, one per
trained K (TDM-unify's steps-aware fake scores; the demo's one K needs one), updated `fake_updates` times per
student step by AdamW(betas (0, 0.95), weight decay 0.01) at `fake_lr`, before the student's step on its own draw.

Not taken from the demo: its classifier-free guidance term (these tiers are unconditional), its EMA and
`--use_randmid` (both off in the launch command), and its student optimiser (AdamW betas (0, 0.95), weight decay
0.01, grad norm 1, cosine restarts): the student's optimiser is the trainer's, the same for every method.

Cost (forward = 1, forward + backward = 3), mean over i for K = 4: trajectory 1.5 forwards, student 3, teacher 1,
fake 1; aux step 1.5 + 1 + 3 fake_updates: about 12 per step with fake_updates = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
from torch import nn

from onestep.methods.base import Batch, ConfigError, Context, Knobs, MethodBase, knob
from onestep.methods.common import denoise, expand, fake_eps, fake_score, fake_updates


@dataclass(frozen=True)
class TDMConfig(Knobs):
    """Trajectory distribution matching (src/onestep/methods/tdm.py); the recipe and budget are the module docstring's."""

    steps: int = knob(1000, "student optimiser steps", minimum=1)
    ks: tuple[int, ...] = knob((4,), "student step counts trained, cycled by step; TDM's demo trains one, 4 "
                               "(Luo-Yihong/TDM train_tdm_demo.py, generate_new(steps=4)); sampling scores every "
                               "divisor of a trained count", items={"minimum": 1})
    t_top: int = knob(900, "the top of the student's grid, t_0 (seed index); TDM's README launch command "
                      "--total_steps 900 (the script's default 800)", minimum=1)
    separate: bool = knob(True, "tau in step i's own interval [t_{i+1}, t_i - 10) (README: --use_separate); false: "
                          "[t_{i+1}, t_top - 10)")
    fake_updates: int = knob(1, "fake-score updates per student step; train_tdm_demo.py: one optimizer_d step per "
                             "generator step", minimum=1)
    fake_lr: float = knob(5e-3, "fake scores' AdamW learning rate; train_tdm_demo.py gives the fake learning_rate "
                          "and the generator learning_rate / 5: 5 x config.yaml's student.lr (1e-3)",
                          exclusiveMinimum=0)
    snr_cap: float = knob(5.0, "fake-loss weight min(SNR_tau, snr_cap); train_tdm_demo.py loss_score: 5",
                          exclusiveMinimum=0)
    t_min: int = knob(20, "lowest tau (seed index); train_tdm_demo.py lowt = max(20, t_mid)", minimum=1)
    huber_c: float = knob(1e-3, "per-element pseudo-Huber c of the student loss; train_tdm_demo.py --use_huber: "
                          "huber_c = 1e-3", exclusiveMinimum=0)

    @classmethod
    def check(cls, m: dict, cfg: dict) -> None:
        T = cfg["diffusion"]["T"]
        if m["t_top"] > T:
            raise ConfigError(f"method.t_top: {m['t_top']} is out of range; allowed: 1..diffusion.T = {T}")
        if any(k > m["t_top"] for k in m["ks"]):
            raise ConfigError(f"method.ks: {m['ks']} is out of range; allowed: step counts 1..method.t_top = "
                              f"{m['t_top']}")


@lru_cache
def grid(t_top: int, K: int) -> torch.Tensor:
    """t^K_i = t_top - i t_top/K (rounded), i = 0..K; (K+1,). Built once per (t_top, K): every training step reads it
    two or three times; never written to."""
    return torch.tensor([round(t_top - i * t_top / K) for i in range(K + 1)])


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
        "t_top": {"low": 500, "high": 1000, "log": False},  # the top of the student's grid
    }
    teacher_read = "x0"  # init_from_teacher: G(x, t) the teacher's x0 prediction at t (base.py, nets.EpsHead)

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = self.Config.from_dict(cfg)
        self.ctx, self.seed = ctx, seed
        if not 1 <= self.cfg.t_top <= ctx.schedule.T:
            raise ValueError(f"method.t_top must be in 1..T = {ctx.schedule.T}, got {self.cfg.t_top}")
        if any(not 1 <= k <= self.cfg.t_top for k in self.cfg.ks) or not self.cfg.ks:
            raise ValueError(f"method.ks must be step counts in 1..t_top = {self.cfg.t_top}, got {list(self.cfg.ks)}")
        self.sample_steps = tuple(sorted({n for k in self.cfg.ks for n in range(1, k + 1) if k % n == 0}))
        self.total_steps = self.cfg.steps
        self.fakes = nn.ModuleDict({str(k): fake_score(ctx.teacher) for k in sorted(set(self.cfg.ks))})  # psi_K
        self.opt = torch.optim.AdamW(self.fakes.parameters(), lr=self.cfg.fake_lr, betas=(0.0, 0.95),
                                     weight_decay=0.01)

    def schedule(self, step: int) -> dict[str, float]:
        return {"K": self.cfg.ks[step % len(self.cfg.ks)]}

    def _steps(self, K: int, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: the trajectory step i ~ U{0..K-1}; (t_i, t_{i+1}), (B,) each."""
        ts = grid(self.cfg.t_top, K)
        i = torch.randint(0, K, (x.shape[0],), generator=gen)
        return ts[i].to(x.device), ts[i + 1].to(x.device)

    @torch.no_grad()
    def trajectory(self, student: nn.Module, z: torch.Tensor, K: int, t_i: torch.Tensor) -> torch.Tensor:
        """x_{t_i} of the K-step student sampler from z, per sample (no gradient); (B, *shape)."""
        ts, sch, x = grid(self.cfg.t_top, K).to(z.device), self.ctx.schedule, z
        for j in range(K - 1):
            s, t = ts[j].expand(z.shape[0]), ts[j + 1].expand(z.shape[0])
            moved = ddim_move(x, student(x, s), sch.at("abar", s, x.ndim), sch.at("abar", t, x.ndim))
            x = torch.where(expand(t_i < s, x.ndim), moved, x)  # samples whose t_i is below s move on
        return x

    def _tau(self, t_i: torch.Tensor, t_mid: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """tau ~ U{max(t_mid, t_min) .. hi - 1}, hi = t_i - 10 (separate) or t_top - 10, at least one level; (B,)."""
        lo = t_mid.clamp(min=self.cfg.t_min)
        hi = (t_i if self.cfg.separate else torch.full_like(t_i, self.cfg.t_top)) - 10
        hi = torch.maximum(hi, lo + 1)
        u = torch.rand(t_i.shape[0], generator=gen).to(t_i.device)
        return (lo + (u * (hi - lo)).long()).clamp(max=self.ctx.schedule.T)

    def _draw(self, student: nn.Module, z: torch.Tensor, K: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One trajectory step per sample: x0_hat (with the student's gradient), tau, x_tau and its total noise m."""
        sch, nd = self.ctx.schedule, z.ndim
        t_i, t_mid = self._steps(K, z, gen)
        x = self.trajectory(student, z, K, t_i)
        x0_hat = student(x, t_i)
        tau = self._tau(t_i, t_mid, gen)
        a_i, a_mid, a_tau = sch.at("abar", t_i, nd), sch.at("abar", t_mid, nd), sch.at("abar", tau, nd)
        with torch.no_grad():
            eps_hat = (x - a_i.sqrt() * x0_hat) / (1 - a_i).sqrt()
            x_mid = a_mid.sqrt() * x0_hat + (1 - a_mid).sqrt() * eps_hat
            n = torch.randn(x.shape, generator=gen).to(x.device)
            keep = (a_tau / a_mid).sqrt()
            beta = ((1 - a_tau) - keep**2 * (1 - a_mid)).clamp(min=0).sqrt()
            x_tau = keep * x_mid + beta * n
            m = (keep * (1 - a_mid).sqrt() * eps_hat + beta * n) / (1 - a_tau).sqrt()
        return {"x0_hat": x0_hat, "tau": tau, "a_tau": a_tau, "x_tau": x_tau, "m": m, "n": n}

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        K = self.cfg.ks[step % len(self.cfg.ks)]
        fake = self.fakes[str(K)]

        def loss_fn() -> torch.Tensor:  # a fresh trajectory draw per update, on detached student samples
            with torch.no_grad():
                d = self._draw(student, batch.z, K, gen)
            return self.fake_loss(fake, d)

        return fake_updates(fake, self.opt, self.cfg.fake_updates, loss_fn)

    def fake_loss(self, fake: nn.Module, d: dict[str, torch.Tensor]) -> torch.Tensor:
        """TDM's loss_score per sample, (B,): min(SNR_tau, cap) r mean_elements (D_psi(x_tau) - x0_hat)^2."""
        a, x_tau, x0 = d["a_tau"], d["x_tau"], d["x0_hat"].detach()
        err = ((denoise(fake_eps(fake, x_tau, d["tau"]), x_tau, a) - x0) ** 2).flatten(1).mean(1)
        snr = (a / (1 - a)).flatten().clamp(max=self.cfg.snr_cap)
        r = torch.exp(-0.5 * d["m"].pow(2).flatten(1).mean(1) + 0.5 * d["n"].pow(2).flatten(1).mean(1))
        return err * snr * r

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        K = self.cfg.ks[step % len(self.cfg.ks)]
        d = self._draw(student, batch.z, K, gen)  # gradient through the last step only
        x0_hat, x_tau, a, tau = d["x0_hat"], d["x_tau"], d["a_tau"], d["tau"]
        with torch.no_grad():
            d_real = denoise(self.ctx.teacher.eps(x_tau, tau), x_tau, a)
            d_fake = denoise(fake_eps(self.fakes[str(K)], x_tau, tau), x_tau, a)
            target = x0_hat + d_real - d_fake
            w = (x0_hat - d_real).abs().flatten(1).mean(1).clamp(min=1e-8)  # (B,)
        c = self.cfg.huber_c
        loss = ((((x0_hat - target) ** 2 + c * c).sqrt() - c).flatten(1).mean(1)) / w
        return loss, {"L_tdm": loss.mean().detach()}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        ts, sch, x = grid(self.cfg.t_top, steps).to(z.device), self.ctx.schedule, z
        for j in range(steps):
            s, t = ts[j].expand(z.shape[0]), ts[j + 1].expand(z.shape[0])
            x = ddim_move(x, student(x, s), sch.at("abar", s, x.ndim), sch.at("abar", t, x.ndim))
        return x  # t_K = 0: abar = 1, x = x0_hat

    def state_dict(self) -> dict:
        return {"fakes": self.fakes.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.fakes.load_state_dict(state["fakes"])
        self.opt.load_state_dict(state["opt"])

    def to(self, device: str | torch.device) -> TDM:
        self.fakes.to(device)
        return self
