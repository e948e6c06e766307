"""DMD2, distribution matching distillation with an online fake score (Yin et al. 2024).

Distils the teacher (the "real" score); data-free: the generator sees noise z only (and the teacher
pairs when the optional DMD regression term is on).

Generator x = G_theta(z) (the student network at time 0, like the curriculum's G(z, 0)). Noise it in
the seed's DDPM indexing, x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps; the teacher and the fake score
are both epsilon networks, read as denoisers (maths in methods/common.py)

    D(x_t) = (x_t - sqrt(1 - abar_t) eps(x_t, t)) / sqrt(abar_t)
    grad   = (D_fake(x_t) - D_real(x_t)) / mean|x - D_real(x_t)|            (per sample, no gradient)
    L      = 0.5 || x - sg(x - grad) ||^2  +  reg_weight || x - x0 ||^2      (x0: the teacher pair of z)

so dL/dx = grad (the KL gradient of the seed, score_fake - score_real up to the normaliser).
reg_weight = 0 is DMD2 (no regression, no GAN head here); reg_weight > 0 is DMD's regression term.

Noise levels, as the official code draws them (tianweiy/DMD2 main/edm/edm_guidance.py, main/edm/train_edm.py):
a Karras grid of `levels` = 1000 sigmas from sigma_min 0.002 to sigma_max 80 (rho 7), smallest first, each
mapped to the VP index of nearest sigma_t (common.karras_indices); the DM gradient draws a level uniformly in
[t_min, t_max] = [20, 980] (min/max_step_percent 0.02, 0.98), the fake-score loss uniformly over all levels.

The fake score eps_psi starts as a copy of the teacher and is trained online in `aux_step` by the official
fake loss (`compute_loss_fake`, common.fake_x0_loss): the x0-MSE of its denoiser weighted 1/sigma^2 + 1/s_d^2
(EDM's "karras" weight), on DETACHED generator samples, `fake_updates` = 5 times per generator step
(--dfake_gen_update_ratio 5), each on a fresh generator batch (the official loop draws new noise every
iteration), with its own Adam at the generator's rate (--guidance_lr = --generator_lr); it never sees a
gradient of the generator loss.

Cost (forward = 1, forward + backward = 3): generator step 3 + teacher 1 + fake 1; aux step per fake update
one generator forward + 3: 5 + 4 x 5 = 25 per step with fake_updates = 5 (18 with main's earlier 4 updates on
one batch). Teacher evaluations: one per sample per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep.methods.base import Batch, ConfigError, Context, Knobs, MethodBase, knob
from onestep.methods.common import dm_gradient, fake_score, fake_updates, fake_x0_loss, karras_indices, sigma_data

DMD2_CODE = "tianweiy/DMD2"
IMAGENET_RUN = f"{DMD2_CODE} experiments/imagenet/imagenet_lr2e-6_scratch.sh"
TRAIN_EDM = f"{DMD2_CODE} main/edm/train_edm.py"


@dataclass(frozen=True)
class DMD2Config(Knobs):
    """DMD2 (src/onestep/methods/dmd2.py): the official fake loss, update ratio, rates and noise grid by default."""

    steps: int = knob(1100, "generator optimiser steps; chosen here: about the curriculum default's cost "
                      "(module docstring)", minimum=1)
    fake_updates: int = knob(5, f"fake-score updates per generator step; {IMAGENET_RUN}: --dfake_gen_update_ratio 5",
                             minimum=1)
    fake_lr: float = knob(1e-3, f"fake-score Adam learning rate; {IMAGENET_RUN}: --guidance_lr = --generator_lr "
                          "(2e-6, for its U-Net); ours: config.yaml's student.lr (1e-3), the generator's rate here",
                          exclusiveMinimum=0)
    levels: int = knob(1000, f"levels of the Karras noise grid; {TRAIN_EDM}: --num_train_timesteps 1000", minimum=2)
    sigma_min: float = knob(0.002, f"smallest sigma of the grid; {TRAIN_EDM}: --sigma_min 0.002 (below this "
                            "teacher's sigma_1 = 0.01 the levels map to index 1)", exclusiveMinimum=0)
    sigma_max: float = knob(80.0, f"largest sigma of the grid; {TRAIN_EDM}: --sigma_max 80", exclusiveMinimum=0)
    rho: float = knob(7.0, f"Karras grid exponent; {TRAIN_EDM}: --rho 7", exclusiveMinimum=0)
    sigma_data: float | Literal["auto"] = knob(0.5, f"s_d of the fake loss weight 1/sigma^2 + 1/s_d^2; {TRAIN_EDM}: "
                                               "--sigma_data 0.5; auto: the data's std", exclusiveMinimum=0)
    t_min: int = knob(20, f"lowest grid level of the distribution-matching gradient; {TRAIN_EDM}: "
                      "--min_step_percent 0.02 (x levels)", minimum=0)
    t_max: int = knob(980, f"highest grid level of the distribution-matching gradient; {TRAIN_EDM}: "
                      "--max_step_percent 0.98 (x levels)", minimum=0)
    reg_weight: float = knob(0.0, "weight of DMD's regression ||G(z) - x0||^2 on teacher pairs; 0 = DMD2 (the "
                             "DMD2 paper drops it)", minimum=0)

    @classmethod
    def check(cls, m: dict, cfg: dict) -> None:
        if not m["t_min"] <= m["t_max"] < m["levels"]:
            raise ConfigError(f"method.t_max: {m['t_max']} is out of range; allowed: method.t_min = {m['t_min']} "
                              f"<= t_max < method.levels = {m['levels']}")
        if m["sigma_min"] >= m["sigma_max"]:
            raise ConfigError(f"method.sigma_max: {m['sigma_max']} is not above method.sigma_min = {m['sigma_min']}; "
                              "allowed: sigma_max > sigma_min")


class DMD2(MethodBase):
    """Distribution matching with an online fake score; see the module docstring."""

    Config = DMD2Config
    teacher_read = "x0_at_T"  # init_from_teacher: G(z, t) the teacher's x0 prediction at T (base.py, nets.EpsHead)
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "fake_updates": {"choices": [1, 2, 5, 10]},
        "t_min": {"low": 0, "high": 500, "log": False},  # the noise range of the DM gradient, in grid levels
        "t_max": {"low": 600, "high": 999, "log": False},
        "sigma_max": {"low": 10.0, "high": 157.0, "log": True},
    }

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = c = self.Config.from_dict(cfg)
        self.ctx, self.seed = ctx, seed
        self.total_steps = c.steps
        self.fake = fake_score(ctx.teacher)
        self.opt = torch.optim.Adam(self.fake.parameters(), lr=c.fake_lr)
        self.idx = karras_indices(ctx.schedule, c.levels, c.sigma_min, c.sigma_max, c.rho)  # (levels,) VP indices
        self.s_d = sigma_data(c.sigma_data, ctx)

    def generate(self, student: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return student(z, torch.zeros(z.shape[0], dtype=torch.long, device=z.device))  # G(z, 0)

    def _noise(self, x: torch.Tensor, gen: torch.Generator, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, eps): VP indices of grid levels drawn uniformly in lo..hi, (B,); standard normal noise like x."""
        k = torch.randint(lo, hi + 1, (x.shape[0],), generator=gen)
        return self.idx[k].to(x.device), torch.randn(x.shape, generator=gen).to(x.device)

    def fake_loss(self, student: nn.Module, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The official fake loss on a fresh generator batch G(z'), z' ~ N(0, I) like z; (B,)."""
        with torch.no_grad():
            x = self.generate(student, torch.randn(z.shape, generator=gen).to(z.device))  # detached samples
        return fake_x0_loss(self.fake, self.ctx.schedule, x, *self._noise(x, gen, 0, self.cfg.levels - 1), self.s_d)

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return fake_updates(self.fake, self.opt, self.cfg.fake_updates, lambda: self.fake_loss(student, batch.z, gen))

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x = self.generate(student, batch.z)  # (B, *shape)
        grad = dm_gradient(self.ctx.teacher, self.fake, x.detach(), *self._noise(x, gen, self.cfg.t_min, self.cfg.t_max))
        L_dm = 0.5 * ((x - (x - grad).detach()) ** 2).flatten(1).sum(1)
        logs = {"L_dm": L_dm.mean().detach()}
        if self.cfg.reg_weight <= 0:
            return L_dm, logs
        L_reg = ((x - batch.x0) ** 2).flatten(1).sum(1)
        return L_dm + self.cfg.reg_weight * L_reg, logs | {"L_reg": L_reg.mean().detach()}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        return self.generate(student, z)

    def state_dict(self) -> dict:
        return {"fake": self.fake.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.fake.load_state_dict(state["fake"])
        self.opt.load_state_dict(state["opt"])

    def to(self, device: str | torch.device) -> DMD2:
        self.fake.to(device)
        return self
