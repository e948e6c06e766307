"""Drifting models (2026, seeds/001): a generator whose samples drift toward the data during training.

Trains from DATA, not from the teacher (needs_data): positives y+ = Batch.data, generator noise
eps = Batch.z; the teacher is never called.

Generator x = f_theta(eps) (the student network at time 0). Drift field at a generated x, with
kernel-normalised weights (softmax over each sample set) so that

    V_{p,q}(x) = sum_{y+, y-} k~(x, y+) k~(x, y-) (y+ - y-) = sum_+ k~(x, y+) y+ - sum_- k~(x, y-) y-
    k(x, y) = exp(-||x - y|| / (tau s)),  s = mean distance of the batch (no gradient), summed over `taus`

attraction toward data y+ ~ p, repulsion from generated y- ~ q (the other samples of the same
generated batch, x itself masked out). Swapping p and q negates V (anti-symmetry), so V = 0 when
q = p; the same normaliser s is used for both sets so the swap is exact. Loss

    L = || f_theta(eps) - sg(f_theta(eps) + V(f_theta(eps))) ||^2   (= ||V||^2 in value, -2 V . df in gradient)

Kernels act on raw coordinates (flattened samples). For images the published method uses a frozen
feature encoder; that is NOT implemented here (raw pixels only), so image runs are a weak baseline.

Cost: a forward + backward (3) plus (B x B) kernels, negligible against the network on 2-D; the
default 6000 steps = 18k, about the curriculum default (4000 x 5 = 20k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from onestep.methods.base import Batch, Context, Knobs, MethodBase, knob


@dataclass(frozen=True)
class DriftingConfig(Knobs):
    """Drifting models (src/onestep/methods/drifting.py); trains from data."""

    steps: int = knob(6000, "total optimiser steps", minimum=1)
    taus: tuple[float, ...] = knob((0.02, 0.05, 0.2), "kernel temperatures (distances normalised by the batch mean)",
                                   items={"exclusiveMinimum": 0})


def drift_field(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, taus: tuple[float, ...],
                scale: torch.Tensor | None = None, neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """V_{p,q}(x) for x (B, D), positives (N+, D), negatives (N-, D): sum over taus of
    softmax_+(-d/tau s) @ pos - softmax_-(-d/tau s) @ neg. `neg_mask` (B, N-) True drops a pair."""
    d_pos, d_neg = torch.cdist(x, pos), torch.cdist(x, neg)  # (B, N+), (B, N-)
    if scale is None:
        scale = torch.cat([d_pos.flatten(), d_neg.flatten()]).mean()
    V = torch.zeros_like(x)
    for tau in taus:
        logits_neg = -d_neg / (tau * scale)
        if neg_mask is not None:
            logits_neg = logits_neg.masked_fill(neg_mask, float("-inf"))
        V = V + torch.softmax(-d_pos / (tau * scale), 1) @ pos - torch.softmax(logits_neg, 1) @ neg
    return V  # (B, D)


class Drifting(MethodBase):
    """Attraction-repulsion drift toward data; see the module docstring."""

    Config = DriftingConfig
    search_space: ClassVar[dict[str, dict]] = {}  # tune_baselines: STUDENT_SPACE alone

    needs_data = True

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = self.Config.from_dict(cfg)
        if not self.cfg.taus or min(self.cfg.taus) <= 0:
            raise ValueError(f"method.taus must be positive temperatures, got {list(self.cfg.taus)}")
        self.ctx, self.seed = ctx, seed
        self.total_steps = self.cfg.steps

    def generate(self, student: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return student(z, torch.zeros(z.shape[0], dtype=torch.long, device=z.device))  # f(eps)

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x = self.generate(student, batch.z)  # (B, *shape)
        flat = x.detach().flatten(1)  # (B, D)
        with torch.no_grad():
            self_pair = torch.eye(flat.shape[0], dtype=torch.bool, device=flat.device)
            V = drift_field(flat, batch.data.flatten(1), flat, self.cfg.taus, neg_mask=self_pair).view_as(x)
        loss = ((x - (x + V).detach()) ** 2).flatten(1).sum(1)
        return loss, {"drift_norm": V.flatten(1).norm(dim=1).mean()}

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        return self.generate(student, z)
