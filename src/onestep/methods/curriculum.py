"""Curriculum Trajectory Matching (seeds/000): a one-step student G_theta(z, t) trained stage by stage.

Grid. t_k = floor(T (K - k) / K + 1/2) for k = 0..K, evenly spaced, t_K = 0 (the last stage is the data).
t_0 = T is the prior: G^(0)(z) := z, since x_T ~ N(0, I) is exactly the noise z.

Stage k trains, for `steps_per_stage` optimiser steps,

    L_k = E[ w(t_k) || G(z, t_k) - sqrt(abar_{t_k}) x0 ||^2 ],  w(t) = 1 / (2 (1 - abar_t))
    R_k = E || G(z, t_k) - xhat_{t_k} ||^2,  xhat_{t_k} = teacher step applied to sg[G^(k-1)(z)]
    total = L_k + lambda R_k

with (z, x0) the teacher pairs, x0 ~ p_teacher(. | z). After training, G(z, 0) is the one-step
generator.

What L_k matches (`target`). Under `mean` (the seed's, default) the target sqrt(abar_{t_k}) x0 is the
conditional mean E[x_{t_k} | x0] of q(x_{t_k} | x0); a sample of the marginal q(x_{t_k}) is that mean plus
sqrt(1 - abar_{t_k}) noise. The deterministic G(z, t_k) therefore learns a shrunk endpoint (0.28 x0 at
t = 500, 0.017 x0 at t = 900 for the linear schedule), a point off the teacher's trajectory, while R_k
pulls it toward the teacher's step from G^(k-1): the two terms disagree. Under `trajectory` the target
is the teacher's deterministic DDIM state x_{t_k}(z) from the same z (the pairs' own solve, read at t_k:
diffusion.ddim_trajectory), so every stage is a point of a real trajectory and R_k is consistent with L_k;
the states at the run's grid come with the pairs (rule trajectory, `onestep train --trajectory`).
With w clipped at `max_weight` the last stage (t_K = 0, w = 100 against lambda = 0.1) is close to
endpoint distillation (kd) under either target. docs/curriculum.md discusses both.

Choices where the seed is silent (each one a config key under `method`):

- `max_weight` (default 100): w(t) is clipped at this value. w grows without bound as t -> 0
  (abar_0 = 1), so the last stage would otherwise dwarf R_k.
- `anchor`: what "stage k-1" means when the order is not forward.
  `grid` (default): the adjacent noisier grid point t_{k-1} (about t_k + T/K), whatever the
  training order, so the teacher step always goes down the trajectory as the seed writes it and
  the ordering ablation changes only the order, not the losses. `trained`: the stage trained just
  before in the chosen order (the prior for the first stage); under reversed or random orders the
  bridge can then go up in t, which only `consistency_step: ddim` can do (DDIM inversion).
- `consistency_step`: how the teacher bridges t_{k-1} to t_k when K < T. `ddpm` is the seed's
  single DDPM step as written (it lands on t_{k-1} - 1, exact only for K = T); `ddim` (default)
  is the exact deterministic DDIM jump t_{k-1} -> t_k with the teacher's epsilon.
- `replay` (default 0.25): the share of each batch drawn, uniformly, from the stages already
  trained, so stage k does not overwrite what earlier stages taught. 0 trains stage k alone.
- Ordering `random` is a permutation of 1..K seeded by the run seed.
- `budget` (optional): a fixed total of optimiser steps; `steps_per_stage` then follows as
  floor((budget - consolidation) / K), so the K ablation compares curricula at equal cost.
- `consolidation` (default 0, the seed's schedule): recency and budget control. N optimiser steps
  after the K stages in which every sample's stage k is drawn uniformly from 1..K (its anchor as
  `anchor` says), whatever the ordering and K: the last N steps are then identical for every
  ordering and every K, so the evaluated stage G(z, 0) is not favoured by having been trained last
  (forward) or penalised by having been trained first (reversed). `report()` gives the optimiser
  steps that trained the evaluated stage (`evaluated_stage_steps`, a pure function of the schedule,
  `steps_on_stage`): each step counted by the share of its batch on that stage.

- `balance` (default `seed`): the scales of the terms. Under the seed's weighting the last stage's
  L_K = 100 ||.||^2 buries lambda R_K (lambda = 0.1) and the adversarial term (weight 0.1), so the
  loss and lambda ablations hardly act at t = 0. `unweighted` normalises L_k by its weight (L_k = d,
  on the scale of R_k); `adaptive` keeps w(t_k) d and sets, per step, lambda_eff = lambda
  ||grad_W L_k|| / ||grad_W R_k|| (and the adversarial term's weight to `adversarial.weight` times
  L_k's gradient norm) with W the student's last weight matrix, as VQGAN weighs its adversarial loss;
  the scales are constants (no gradient).
  Every step logs the per-term magnitudes `term_L`, `term_R` (lambda_eff R_k), `term_adv`.

Open questions of the seed, as knobs:

- `loss` at late stages: the distance in L_k for stages with t_k <= `late_t` (l2 before it):
  L_k = E[ w(t_k) d(G(z, t_k), sqrt(abar_{t_k}) x0) ] with d from `losses.DISTANCES` (`l2`,
  `pseudo_huber`, `perceptual`), or `adversarial`: l2 plus `adversarial.weight` times a generator
  term from a discriminator D(x, t) trained alongside on real sqrt(abar_t) x0 against G(z, t)
  (its own optimiser, `aux_step`). `perceptual.backbone` names the feature network and is recorded.
- `consistency`: `adjacent` is the seed's R_k (stage k tied to its anchor k-1 through
  `consistency_step`). `global` ties stage k to earlier grid points j < k (j = 0 the prior) through
  exact teacher DDIM jumps t_j -> t_k: R_k = mean over j of || G(z, t_k) - DDIM_{t_j -> t_k}(sg[G(z, t_j)]) ||^2,
  with `global_stages` draws of j per sample and step, each bridged in `global_substeps` DDIM
  sub-steps t_j = s_0 > s_1 > .. > s_n = t_k (s_i = t_j + (t_k - t_j) i / n, floored): n = 1 is one
  DDIM jump, as crude as the teacher's one-step DDIM from j = 0; each draw costs n teacher
  evaluations and one student forward pass (logged as `teacher_evals_per_sample`).

The curriculum is a pure function of the step (`stage_at`), unit-tested and logged each tick.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep import data
from onestep.columns import Column
from onestep.diffusion import ddim_jump, ddpm_step, grid_times
from onestep.methods.base import Batch, ConfigError, Context, Knobs, MethodBase, knob
from onestep.methods.curriculum_stages import (
    STAGE_COLUMNS,
    adaptive_scale,
    anchor_of,
    loss_weight,
    stage_at,
    stage_errors,
    stage_order,
    steps_on_stage,
    timesteps,
    trajectory_columns,
)
from onestep.methods.losses import DISTANCES, L2, Adversarial, AdversarialConfig, lpips_features


@dataclass(frozen=True)
class PerceptualConfig(Knobs):
    """The perceptual distance's feature network."""

    backbone: Literal["features", "lpips"] = knob(
        "features", "features: the dataset's own feature network (the one FID uses); lpips: LPIPS (weights on disk)")


@dataclass(frozen=True)
class CurriculumConfig(Knobs):
    """Curriculum Trajectory Matching (src/onestep/methods/curriculum.py). Defaults: the module docstring's
    choices; K = 10 x 400 steps (4000, the budget every baseline matches), lambda = 0.1."""

    K: int = knob(10, "number of stages", minimum=1)
    steps_per_stage: int = knob(400, "optimiser steps per stage", minimum=1)
    lam: float | Literal["tuned"] = knob(0.1, "weight of R_k, or 'tuned' for the best lambda of the tune_lambda study",
                                         key="lambda", minimum=0)
    ordering: Literal["forward", "reversed", "random"] = knob("forward", "training order of the stages (T -> 0 forward)")
    anchor: Literal["grid", "trained"] = knob("grid", "stage k-1: the adjacent noisier grid point, or the stage trained just before")
    consistency_step: Literal["ddim", "ddpm"] = knob("ddim", "teacher bridge t_{k-1} -> t_k: exact DDIM jump, or the seed's DDPM step")
    replay: float = knob(0.25, "share of each batch drawn from stages already trained", minimum=0, maximum=1)
    max_weight: float = knob(100.0, "clip of w(t) = 1 / (2 (1 - abar_t)) near t = 0", exclusiveMinimum=0)
    budget: int | None = knob(None, "a fixed total of optimiser steps; when set, steps_per_stage = "
                                    "floor((budget - consolidation) / K)",
                              minimum=1)
    consistency: Literal["adjacent", "global"] = knob(
        "adjacent", "adjacent: the seed's R_k; global: stage k tied to earlier grid points j < k by exact DDIM jumps")
    global_stages: int = knob(4, "earlier stages j drawn per sample and step (global)", minimum=1)
    global_substeps: int = knob(1, "DDIM sub-steps of each global bridge t_j -> t_k (teacher evaluations per draw)",
                                minimum=1)
    consolidation: int = knob(0, "optimiser steps after the K stages drawing each sample's stage uniformly from all "
                                 "K: the same final phase for every ordering and K (recency / budget control)", minimum=0)
    balance: Literal["seed", "unweighted", "adaptive"] = knob(
        "seed", "scales of the terms: seed (w(t_k) L_k + lambda R_k), unweighted (L_k without w), adaptive "
        "(lambda and the adversarial weight scaled to the last layer's gradient norm of L_k, VQGAN)")
    target: Literal["mean", "trajectory"] = knob(
        "mean", "L_k's target: mean, the seed's sqrt(abar_{t_k}) x0 (conditional mean); trajectory, the teacher's "
        "DDIM state x_{t_k}(z) from the same z (its states: rule trajectory)")
    loss: Literal["l2", "pseudo_huber", "perceptual", "adversarial"] = knob(
        "l2", "the distance in L_k for stages with t_k <= late_t (l2 before); adversarial adds a discriminator term to l2")
    late_t: int = knob(250, "stages with t_k <= late_t use `loss`", minimum=0)
    perceptual: PerceptualConfig = knob(PerceptualConfig(), "loss perceptual: the feature network")
    adversarial: AdversarialConfig = knob(AdversarialConfig(), "loss adversarial: discriminator D(x, t), its own optimiser")

    @classmethod
    def from_dict(cls, d: dict, top: bool = True) -> CurriculumConfig:
        c = super().from_dict(d, top)
        if c.budget is not None:  # a fixed total of steps: the steps per stage follow from K
            c = replace(c, steps_per_stage=max(1, (c.budget - c.consolidation) // c.K))
        return c

    @classmethod
    def check(cls, m: dict, cfg: dict) -> None:
        T = cfg["diffusion"]["T"]
        if not 1 <= m["K"] <= T:
            raise ConfigError(f"method.K: {m['K']} is out of range; allowed: 1 <= K <= diffusion.T = {T}")
        if m["budget"] is not None and m["budget"] < m["K"]:
            raise ConfigError(f"method.budget: {m['budget']} is below method.K ({m['K']}): every stage needs at least "
                              f"one optimiser step; allowed: budget >= K, or budget null (steps_per_stage)")
        if m["budget"] is not None and m["budget"] - m["consolidation"] < m["K"]:
            raise ConfigError(f"method.consolidation: {m['consolidation']} leaves fewer than K = {m['K']} of "
                              f"method.budget = {m['budget']} steps for the stages; allowed: consolidation <= budget - K")
        if m["consistency_step"] == "ddpm" and m["anchor"] == "trained" and m["ordering"] != "forward":
            raise ConfigError(
                f"method.consistency_step: 'ddpm' cannot bridge upward in t, which anchor 'trained' needs "
                f"under ordering '{m['ordering']}'; allowed: consistency_step ddim, or anchor grid")
        if m["consistency"] == "global" and m["consistency_step"] == "ddpm":
            raise ConfigError("method.consistency_step: 'ddpm' does not apply to consistency 'global', which "
                              "ties stage k to every earlier t_j by exact DDIM jumps; allowed: ddim")
        if m["loss"] == "perceptual" and not data.is_image(cfg["dataset"]):
            raise ConfigError(f"method.loss: 'perceptual' needs images; dataset '{cfg['dataset']['name']}' is 2-D "
                              "points with no perceptual feature space; allowed here: l2, pseudo_huber, adversarial")
        feature_net = cfg["evaluation"]["feature_net"]
        if m["loss"] == "perceptual" and m["perceptual"]["backbone"] == "features" and feature_net != "classifier":
            raise ConfigError(f"method.perceptual.backbone: 'features' uses the dataset's classifier features, but "
                              f"evaluation.feature_net is '{feature_net}'; allowed: lpips, or evaluation.feature_net "
                              "classifier")


BRIDGES = {"ddim": ddim_jump, "ddpm": ddpm_step}  # method.consistency_step: the teacher step t_{k-1} -> t_k


class Curriculum(MethodBase):
    """Curriculum Trajectory Matching; see the module docstring."""

    Config = CurriculumConfig
    teacher_read = "x0_at_T"  # init_from_teacher: G(z, t) the teacher's x0 prediction at T (base.py, nets.EpsHead)
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "lambda": {"low": 1e-3, "high": 10.0, "log": True},
        "replay": {"low": 0.0, "high": 0.5, "log": False},
    }

    @classmethod
    def total_steps_of(cls, section: dict) -> int:
        c = cls.Config.from_dict(section)
        return c.K * c.steps_per_stage + c.consolidation

    @classmethod
    def with_total_steps(cls, section: dict, steps: int) -> dict:
        return {**section, "budget": int(steps)}  # steps_per_stage = floor((budget - consolidation) / K)

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = self.Config.from_dict(cfg)
        self.ctx, self.seed = ctx, seed
        self.T = ctx.schedule.T
        self.ts = torch.tensor(timesteps(self.T, self.cfg.K))  # (K+1,)
        order = stage_order(self.cfg.K, self.cfg.ordering, seed)
        self.order = torch.tensor(order)  # (K,) grid index by position
        self.anchor = torch.tensor([anchor_of(order, p, self.cfg.anchor) for p in range(self.cfg.K)])  # (K,)
        self.position_of = torch.zeros(self.cfg.K + 1, dtype=torch.long)  # (K+1,) position of grid index k
        self.position_of[self.order] = torch.arange(self.cfg.K)
        self.bridge = BRIDGES[self.cfg.consistency_step]
        self.total_steps = self.cfg.K * self.cfg.steps_per_stage + self.cfg.consolidation
        self.l2 = L2(ctx.shape)
        self.adv = Adversarial(ctx.shape, self.cfg.adversarial) if self.cfg.loss == "adversarial" else None

    @cached_property
    def column(self) -> torch.Tensor | None:
        """(K+1,) column of Batch.extra["traj"] per grid index (target trajectory), checked at the first loss
        (sampling needs no states); None under target mean."""
        return trajectory_columns(timesteps(self.T, self.cfg.K), self.ctx.trajectory_t) \
            if self.cfg.target == "trajectory" else None

    def stage_target(self, batch: Batch, k: torch.Tensor) -> torch.Tensor:
        """L_k's target per sample (B, *shape): sqrt(abar_{t_k}) x0 (mean) or x_{t_k}(z) (trajectory, x0 at t_K = 0)."""
        x0 = batch.x0
        if self.column is None:
            return self.ctx.schedule.at("abar", self.ts[k].to(x0.device), x0.ndim).sqrt() * x0
        states = torch.cat([batch.extra["traj"], x0[:, None]], 1)  # (B, M+1, *shape): column M is t = 0
        col = self.column.to(x0.device)[k.to(x0.device)]  # (B,)
        return states[torch.arange(x0.shape[0], device=x0.device), col]

    @cached_property
    def distance(self):
        """The late-stage distance, built at the first loss (sampling alone needs no feature network)."""
        late = "l2" if self.cfg.loss == "adversarial" else self.cfg.loss
        lpips = late == "perceptual" and self.cfg.perceptual.backbone == "lpips"
        return DISTANCES[late](self.ctx.shape, lpips_features(self.ctx.shape) if lpips else self.ctx.features)

    def schedule(self, step: int) -> dict[str, float]:
        s = stage_at(step, self.cfg, self.T, self.seed)
        return {"phase": s.position, "stage_k": s.k, "t_k": s.t, "t_anchor": s.t_anchor,
                "consolidation": float(s.consolidation)}

    def report(self) -> dict[str, float]:
        """What the tables show of the schedule: the optimiser steps that trained the evaluated stage K."""
        return {"evaluated_stage_steps": steps_on_stage(self.cfg, self.seed)}

    @classmethod
    def state_grid(cls, section: dict, T: int) -> tuple[str, tuple[int, ...]]:
        K = cls.Config.from_dict(section).K
        return f"K{K}", grid_times(T, [K])

    @classmethod
    def train_states(cls, section: dict) -> bool:
        return cls.Config.from_dict(section).target == "trajectory"

    @classmethod
    def eval_states(cls, section: dict) -> bool:
        return True  # per-stage errors of G(z, t_k) on the held-out stage noise

    @classmethod
    def phases(cls, section: dict) -> int:
        return cls.Config.from_dict(section).K

    @classmethod
    def columns(cls) -> tuple[Column, ...]:
        return STAGE_COLUMNS

    def diagnostics(self, student: nn.Module, states: dict, z: torch.Tensor) -> dict:
        """G(z, t_k) at every stage against the mean target and the teacher's trajectory (`stage_errors`)."""
        st = stage_errors(student, states, z, self.ctx.schedule, self.cfg.K)
        series = [(k, {"stage_t": st["t"][i], "stage_err_mean": st["err_mean"][i], "stage_err_traj": st["err_traj"][i]})
                  for i, k in enumerate(st["k"])]
        return {"record": {"stages": st}, "metrics": {"traj_err": st["traj_err"], "mean_err": st["mean_err"]},
                "series": series}

    def _stages(self, step: int, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (k, k_anchor): the current stage, or with prob. `replay` an earlier-trained one; in the
        consolidation phase k uniform on 1..K whatever the ordering (the same draws for every ordering)."""
        s = stage_at(step, self.cfg, self.T, self.seed)
        if s.consolidation:
            k = torch.randint(1, self.cfg.K + 1, (n,), generator=gen)  # (n,) grid index
            return k, self.anchor[self.position_of[k]]
        pos = torch.full((n,), s.position)
        if self.cfg.replay > 0 and s.position > 0:
            replay = torch.rand(n, generator=gen) < self.cfg.replay
            pos = torch.where(replay, torch.randint(0, s.position, (n,), generator=gen), pos)
        return self.order[pos], self.anchor[pos]  # (n,), (n,)

    def _anchors(self, k: torch.Tensor, k_anchor: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        """Grid indices the consistency term ties stage k to: its anchor, or `global_stages` draws of j < k."""
        if self.cfg.consistency == "adjacent":
            return [k_anchor]
        return [(torch.rand(k.shape, generator=gen) * k).long() for _ in range(self.cfg.global_stages)]  # j ~ U{0..k-1}

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        z = batch.z  # (B, *shape)
        sch, nd = self.ctx.schedule, z.ndim
        k, k_anchor = self._stages(step, z.shape[0], gen)
        t = self.ts[k].to(z.device)  # (B,)

        g = student(z, t)  # G_theta^(k)(z)
        abar_t = sch.at("abar", t, nd)
        target = self.stage_target(batch, k)  # (B, *shape)
        w = loss_weight(abar_t.flatten(), self.cfg.max_weight)  # (B,)
        late_k = self.ts[k] <= self.cfg.late_t  # (B,) on the host: stages that get the late-stage loss
        late = late_k.to(z.device)  # (B,)
        d = self.l2(g, target)  # (B,)
        if bool(late_k.any()) and not isinstance(self.distance, L2):  # decided on the host: no device sync
            d = torch.where(late, self.distance(g, target), d)
        L = d if self.cfg.balance == "unweighted" else w * d  # (B,)
        logs = {"L_k": L.mean().detach()}

        x_hats = self._targets(student, z, t, self._anchors(k, k_anchor, gen))
        R = torch.stack([self.l2(g, x_hat) for x_hat in x_hats]).mean(0)  # (B,)
        substeps = self.cfg.global_substeps if self.cfg.consistency == "global" else 1
        logs |= {"R_k": R.mean().detach(), "teacher_evals_per_sample": float(len(x_hats) * substeps)}

        A = torch.where(late, self.adv(g, t), torch.zeros_like(L)) if self.adv is not None else None  # (B,) late only
        lam, a_scale = self.cfg.lam, 1.0
        if self.cfg.balance == "adaptive":
            lam = lam * adaptive_scale(student, L, R)
            # A carries adversarial.weight: the scale makes weight x A_raw's gradient norm weight x L_k's (VQGAN)
            a_scale = self.cfg.adversarial.weight * adaptive_scale(student, L, A) if A is not None else 1.0
            logs |= {"lambda_eff": torch.as_tensor(lam).detach(), "adv_scale": torch.as_tensor(a_scale).detach()}
        loss = L + lam * R  # (B,)
        logs |= {"term_L": L.mean().detach(), "term_R": (lam * R).mean().detach()}
        if A is not None:
            loss = loss + a_scale * A
            logs |= {"adv_g": A.mean().detach(), "term_adv": (a_scale * A).mean().detach()}
        return loss, logs

    @torch.no_grad()
    def _targets(self, student: nn.Module, z: torch.Tensor, t: torch.Tensor, anchors: list[torch.Tensor]) -> list[torch.Tensor]:
        """xhat_{t_k} = teacher bridge t_j -> t_k applied to sg[G^(j)(z)], one per anchor draw j (B,);
        global: `global_substeps` DDIM sub-steps s_i = t_j + floor((t_k - t_j) i / n)."""
        out = []
        for j in anchors:
            tj = self.ts[j].to(z.device)  # (B,)
            prior = (tj == self.T).view(-1, *[1] * (z.ndim - 1))
            x = torch.where(prior, z, student(z, tj))  # sg[G^(j)(z)], G^(0)(z) = z
            if self.cfg.consistency == "adjacent":
                out.append(self.bridge(self.ctx.teacher, x, tj, t))  # (B, *shape)
                continue
            n = self.cfg.global_substeps
            for i in range(n):  # s_i -> s_{i+1}, per sample; s_n = t_k
                s_i = tj + torch.div((t - tj) * i, n, rounding_mode="floor")
                s_next = tj + torch.div((t - tj) * (i + 1), n, rounding_mode="floor")
                x = ddim_jump(self.ctx.teacher, x, s_i, s_next)
            out.append(x)
        return out

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Adversarial loss only: one discriminator step on the current stage's late samples."""
        if self.adv is None:
            return {}
        s = stage_at(step, self.cfg, self.T, self.seed)
        if s.t > self.cfg.late_t:
            return {}
        z = batch.z
        t = torch.full((z.shape[0],), s.t, device=z.device)  # (B,)
        target = self.stage_target(batch, torch.full((z.shape[0],), s.k))  # (B, *shape) L_k's target
        real = target[torch.randperm(z.shape[0], generator=gen).to(z.device)]  # unpaired with z
        with torch.no_grad():
            fake = student(z, t)
        return {"adv_d": self.adv.step(real, fake, t)}

    def to(self, device) -> Curriculum:
        if self.adv is not None:
            self.adv.to(device)
        return self

    def state_dict(self) -> dict:
        return {"adversarial": self.adv.state_dict()} if self.adv is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.adv is not None:
            self.adv.load_state_dict(state["adversarial"])

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        return student(z, torch.zeros(z.shape[0], dtype=torch.long, device=z.device))  # G(z, 0)
