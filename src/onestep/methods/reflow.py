"""Rectified flow with one reflow round on the teacher pairs, then one-step distillation (Liu et al. 2022).

Distils the teacher: it trains on the teacher pairs (z, x0), never on data, and calls the teacher
network zero times during training (the pairs are paid for once, by the `pairs` rule).

Flow convention and time scale: methods/common.py (x_t = (1 - t) x0 + t z, v = z - x0, the network
sees T t). The student is a velocity field v_theta(x_t, t); started from the teacher (student.init_from_teacher) it is
the teacher's epsilon network read as a flow (nets.EpsHead `flow`): x_t is the VP state x_t / sqrt((1 - t)^2 + t^2)
at abar = (1 - t)^2 / ((1 - t)^2 + t^2), and v = eps - x0 of the teacher's prediction there (the first flow's
velocity, as the official reflow starts from the 1-rectified flow).

Phase 0, reflow (`reflow_steps` optimiser steps). The teacher's DDIM solve is the first flow; its
pairs (z, x0) are the coupling the reflowed ("2-rectified") flow is trained on:

    L_flow = E_{t ~ U(0, 1)} || v_theta(x_t, t) - (z - x0) ||^2,   x_t = (1 - t) x0 + t z

Phase 1, distillation (`distill_steps`). At the phase boundary the student is frozen as v_2 and
the one-step map z - v_theta(z, 1) is regressed on an accurate solve of the reflowed flow's own ODE
from the same z (stop-gradient): `distill_ode_steps` steps of `distill_solver` (Heun, second order, by
default: 16 steps = 32 evaluations of v_2; the paper solves with an adaptive RK45; an earlier version
here took 4 Euler steps, whose error the student then learnt):

    L_distill = || z - v_theta(z, 1) - sg[ODE_{v_2}(z)] ||^2  +  flow_weight L_flow

The L_flow term keeps the rest of the field, so 2- and 4-step Euler sampling stay usable.
Sampling: Euler from t = 1 to 0 in 1, 2 or 4 steps.

Cost (network forward equivalents, forward = 1, forward + backward = 3, batch 512): phase 0 costs 3
per step, phase 1 3 + (2 for heun) x distill_ode_steps + 3 flow_weight-term = 38 with the defaults;
3000 x 3 + 1000 x 38 = 47k, above the curriculum default's 4000 x 5 = 20k (the v_2 solve is cheap
forwards without gradient; the old 4 Euler steps gave 19k).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep.methods.base import Batch, Context, Knobs, MethodBase, knob
from onestep.methods.common import euler, heun, interpolate


@dataclass(frozen=True)
class ReflowConfig(Knobs):
    """Rectified flow + one reflow round + distillation (src/onestep/methods/reflow.py)."""

    reflow_steps: int = knob(3000, "optimiser steps of flow matching on the teacher pairs; chosen here (budget)",
                             minimum=1)
    distill_steps: int = knob(1000, "optimiser steps of one-step distillation; chosen here (budget)", minimum=0)
    distill_solver: Literal["heun", "euler"] = knob(
        "heun", "ODE solver of the frozen reflowed flow giving the distillation target; the paper (Liu et al. "
        "2022) uses an adaptive RK45; chosen here: Heun, second order, fixed steps")
    distill_ode_steps: int = knob(16, "steps of distill_solver from t = 1 to 0; chosen here: 16 Heun steps "
                                  "(error far below the students' on a nearly straight reflowed flow)", minimum=1)
    flow_weight: float = knob(1.0, "weight of the flow-matching term kept during distillation; chosen here "
                              "(keeps 2- and 4-step sampling usable)", minimum=0)


def flow_loss(v_net, x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor, T: int) -> torch.Tensor:
    """|| v(x_t, t) - (z - x0) ||^2 per sample, (B,)."""
    v = v_net(interpolate(x0, z, t), T * t)  # (B, *shape)
    return ((v - (z - x0)) ** 2).flatten(1).sum(1)


class Reflow(MethodBase):
    """One reflow round on the teacher pairs, then one-step distillation; see the module docstring."""

    teacher_read = "flow"  # init_from_teacher: v = eps - x0 of the teacher at the matched VP state (nets.EpsHead)

    Config = ReflowConfig
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "flow_weight": {"low": 0.0, "high": 2.0, "log": False},
    }

    @classmethod
    def total_steps_of(cls, section: dict) -> int:
        c = cls.Config.from_dict(section)
        return c.reflow_steps + c.distill_steps

    @classmethod
    def with_total_steps(cls, section: dict, steps: int) -> dict:
        """Both phases scaled by the same share: reflow_steps : distill_steps stays as it is."""
        c = cls.Config.from_dict(section)
        reflow = max(1, round(int(steps) * c.reflow_steps / (c.reflow_steps + c.distill_steps)))
        return {**section, "reflow_steps": reflow, "distill_steps": max(0, int(steps) - reflow)}

    sample_steps = (1, 2, 4)

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = self.Config.from_dict(cfg)
        self.ctx, self.seed, self.T = ctx, seed, ctx.schedule.T
        self.total_steps = self.cfg.reflow_steps + self.cfg.distill_steps
        self.frozen: nn.Module | None = None  # v_2, the reflowed flow frozen at the phase boundary

    def schedule(self, step: int) -> dict[str, float]:
        return {"phase": int(step >= self.cfg.reflow_steps)}

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if step >= self.cfg.reflow_steps and self.frozen is None:
            self.frozen = copy.deepcopy(student).eval().requires_grad_(False)
        return {}

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        z, x0 = batch.z, batch.x0  # (B, *shape)
        t = torch.rand(z.shape[0], generator=gen).to(z.device)  # (B,)
        L_flow = flow_loss(student, x0, z, t, self.T)
        if step < self.cfg.reflow_steps:
            return L_flow, {"L_flow": L_flow.mean().detach()}
        if self.frozen is None:
            raise RuntimeError("reflow: the distillation phase needs aux_step to freeze the reflowed flow first")
        ones = torch.ones(z.shape[0], device=z.device)
        x_hat = self.distill_target(z)  # sg[ODE_{v_2}(z)]
        L_distill = ((z - student(z, self.T * ones) - x_hat) ** 2).flatten(1).sum(1)
        loss = L_distill + self.cfg.flow_weight * L_flow
        return loss, {"L_flow": L_flow.mean().detach(), "L_distill": L_distill.mean().detach()}

    @torch.no_grad()
    def distill_target(self, z: torch.Tensor) -> torch.Tensor:
        """sg[ODE_{v_2}(z)]: the frozen reflowed flow solved from t = 1 to 0 (distill_solver, distill_ode_steps)."""
        solve = heun if self.cfg.distill_solver == "heun" else euler
        return solve(lambda x, s: self.frozen(x, self.T * s), z, self.cfg.distill_ode_steps)

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        return euler(lambda x, s: student(x, self.T * s), z, steps)

    def state_dict(self) -> dict:
        return {} if self.frozen is None else {"frozen": self.frozen}

    def load_state_dict(self, state: dict) -> None:
        self.frozen = state.get("frozen")

    def to(self, device: str | torch.device) -> Reflow:
        if self.frozen is not None:
            self.frozen.to(device)
        return self
