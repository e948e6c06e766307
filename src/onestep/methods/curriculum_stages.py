"""The curriculum's schedule as pure functions of the step (grid t_k, order, anchors, the stage at each step,
the steps on a stage, the weight w(t_k), the adaptive balance), the check of stored trajectory states against the grid, and the
per-stage evaluation of a trained student (its columns). methods/curriculum.py is the method itself."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from onestep.columns import Column
from onestep.errors import ConfigError
from onestep.methods.base import Knobs

ORDERINGS = ("forward", "reversed", "random")


@dataclass(frozen=True)
class Stage:
    position: int  # 0-based position in the training order
    k: int  # grid index 1..K
    t: int  # t_k
    k_anchor: int  # grid index of "stage k-1" (0 = the prior)
    t_anchor: int
    consolidation: bool = False  # the final phase: stages drawn uniformly (k, t: the evaluated stage K, t_K = 0)


@lru_cache
def timesteps(T: int, K: int) -> tuple[int, ...]:
    """(t_0, ..., t_K) evenly spaced from t_0 = T to t_K = 0: t_k = floor(T (K - k) / K + 1/2), the rounded
    linspace (T - k T/K where K divides T). Its gaps are floor(T/K) or that + 1, never the jump to 0 that
    t_k = T - k floor(T/K) makes for T/2 < K < T (K = 600: 1000 ... 401 -> 0)."""
    if not 1 <= K <= T:
        raise ValueError(f"method.K must be in 1..{T} (T = diffusion.T), got {K}")
    return tuple((2 * T * (K - k) + K) // (2 * K) for k in range(K + 1))


@lru_cache
def stage_order(K: int, ordering: str, seed: int) -> tuple[int, ...]:
    """Grid indices 1..K in training order."""
    if ordering == "forward":
        return tuple(range(1, K + 1))
    if ordering == "reversed":
        return tuple(range(K, 0, -1))
    if ordering == "random":
        perm = torch.randperm(K, generator=torch.Generator().manual_seed(seed))
        return tuple(int(i) + 1 for i in perm)
    raise ValueError(f"method.ordering must be one of {', '.join(ORDERINGS)}, got '{ordering}'")


def stage_at(step: int, cfg: Knobs, T: int, seed: int) -> Stage:
    """Which stage, which t_k and which anchor are trained at optimiser step `step` (in the consolidation
    phase, position K: every stage, drawn per sample; the evaluated stage K stands for it)."""
    ts = timesteps(T, cfg.K)
    order = stage_order(cfg.K, cfg.ordering, seed)
    if step >= cfg.K * cfg.steps_per_stage and cfg.consolidation > 0:
        return Stage(cfg.K, cfg.K, 0, cfg.K - 1, ts[cfg.K - 1], consolidation=True)
    position = min(step // cfg.steps_per_stage, cfg.K - 1)
    k, k_anchor = order[position], anchor_of(order, position, cfg.anchor)
    return Stage(position, k, ts[k], k_anchor, ts[k_anchor])


def steps_on_stage(cfg: Knobs, seed: int, k: int | None = None) -> float:
    """Optimiser steps that trained stage k (default K, the evaluated G(z, 0)), each step counted by the
    expected share of its batch on k: 1 - replay while k is the current stage (1 at the first position),
    replay / p while a later stage at position p replays the p stages before it, 1 / K in consolidation.
    A pure function of the schedule."""
    k = cfg.K if k is None else k
    order = stage_order(cfg.K, cfg.ordering, seed)
    total = 0.0
    for p, kp in enumerate(order):
        if kp == k:
            total += cfg.steps_per_stage * (1.0 - cfg.replay if p > 0 else 1.0)
        elif k in order[:p]:
            total += cfg.steps_per_stage * cfg.replay / p
    return total + cfg.consolidation / cfg.K


def anchor_of(order: tuple[int, ...], position: int, anchor: str) -> int:
    """Grid index of "stage k-1" for the stage at `position` of the training order (0 = the prior)."""
    if anchor == "grid":
        return order[position] - 1
    return order[position - 1] if position > 0 else 0


class TrajectoryError(ConfigError):
    pass


def trajectory_columns(ts: tuple[int, ...], stored: tuple[int, ...] | None) -> torch.Tensor:
    """Per grid index k (K+1,): the column of the stored DDIM states at t_k (len(stored) for t_K = 0, x0;
    the prior t_0 = T is never a target). Raises TrajectoryError naming the missing input."""
    need = [t for t in ts[1:] if t > 0]
    missing = sorted(set(need) - set(stored or ()))
    if missing:
        have = "no DDIM states" if not stored else f"states at {len(stored)} other times"
        raise TrajectoryError(
            f"method.target: 'trajectory' needs the teacher's DDIM states x_t(z) at the grid of K = {len(ts) - 1}, but "
            f"the teacher pairs given hold {have} (missing t = {missing[:5]}{' ...' if len(missing) > 5 else ''}); "
            f"pass their states at this grid, onestep train --trajectory <teacher>/trajectory/pairs-K{len(ts) - 1}.npz "
            "(rule trajectory; the workflow does), or use target mean")
    pos = {t: i for i, t in enumerate(stored or ())}
    return torch.tensor([pos.get(t, len(pos)) if t > 0 else len(pos) for t in ts])


def loss_weight(abar_t: torch.Tensor, max_weight: float) -> torch.Tensor:
    """w(t) = 1 / (2 (1 - abar_t)), clipped at max_weight (infinite at t = 0)."""
    return (0.5 / (1.0 - abar_t).clamp(min=0.0)).clamp(max=max_weight)


def last_weight(student: nn.Module) -> torch.Tensor:
    """The student's last weight matrix (the last parameter with two or more dimensions)."""
    return [p for p in student.parameters() if p.requires_grad and p.ndim >= 2][-1]


def adaptive_scale(student: nn.Module, L: torch.Tensor, other: torch.Tensor, eps: float = 1e-8,
                   limit: float = 1e4) -> torch.Tensor:
    """||grad_W mean L|| / ||grad_W mean other|| at the last weight W (VQGAN's adaptive weight), detached,
    clipped to [0, limit]; 1 where `other` has no gradient there (e.g. an all-zero adversarial term)."""
    W = last_weight(student)
    gL, = torch.autograd.grad(L.mean(), W, retain_graph=True, allow_unused=True)
    gO, = torch.autograd.grad(other.mean(), W, retain_graph=True, allow_unused=True)
    if gL is None or gO is None or float(gO.norm()) <= eps:
        return torch.ones((), device=L.device)
    return (gL.norm() / (gO.norm() + eps)).clamp(max=limit).detach()


# the curriculum's own columns (report/ shows each when some run of the table has the number)
STAGE_COLUMNS = (
    Column("traj_err", "traj. err (mean over t_k)", path=("stages", "traj_err"),
           caption="traj. err: RMS per coordinate of G(z, t_k) against the teacher's DDIM state x_{t_k}(z), mean "
                   "over the K stages, on the held-out stage noise (the stages figure)."),
    Column("mean_err", "mean-target err (mean over t_k)", path=("stages", "mean_err")),
    Column("evaluated_stage_steps", "optimiser steps that trained the evaluated stage",
           path=("method_report", "evaluated_stage_steps"),
           caption="Optimiser steps that trained the evaluated stage: each step counted by the share of its batch "
                   "on stage K (t = 0), from the schedule (a consolidation phase of N steps adds N/K)."),
)


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """RMS error per coordinate over every sample."""
    return float(((a - b) ** 2).mean().sqrt())


@torch.no_grad()
def stage_errors(model: torch.nn.Module, states: dict[str, np.ndarray], z: torch.Tensor, schedule, K: int,
                 batch_size: int = 8192) -> dict:
    """Per-stage evaluation of a curriculum student G(z, t) on the held-out stage noise z (n, *shape):
    for every stage k = 1..K, the RMS error per coordinate of G(z, t_k) against (a) the seed's target
    sqrt(abar_{t_k}) x0(z) (`err_mean`) and (b) the teacher's trajectory point x_{t_k}(z) (`err_traj`),
    x0 and x_{t_k} the teacher's DDIM solve of z and its states (rule trajectory, `states`; at t_K = 0
    both are x0). `traj_err` / `mean_err`: the means over the K stages."""
    ts = timesteps(schedule.T, K)
    x0, xt = torch.from_numpy(states["x0"]), torch.from_numpy(states["xt"])  # (n, *shape), (n, K-1, *shape)
    if x0.shape != z.shape:
        raise TrajectoryError(f"trajectory states: {tuple(x0.shape)} samples, but the stage noise is {tuple(z.shape)} "
                           "(evaluation.stage_samples changed?); rebuild them (rule trajectory)")
    col = trajectory_columns(ts, tuple(int(t) for t in states["trajectory_t"]))
    full = torch.cat([xt, x0[:, None]], 1)  # (n, K, *shape): column K-1 is t = 0
    device = next(model.parameters(), torch.empty(0)).device
    out = {"K": K, "k": [], "t": [], "err_mean": [], "err_traj": []}
    for k in range(1, K + 1):
        t = ts[k]
        g = torch.cat([model(zb.to(device), torch.full((zb.shape[0],), t, device=device)).float().cpu()
                       for zb in z.split(batch_size)])  # (n, *shape) G(z, t_k)
        out["k"].append(k)
        out["t"].append(t)
        out["err_mean"].append(_rms(g, schedule.abar[t].sqrt() * x0))
        out["err_traj"].append(_rms(g, full[:, int(col[k])]))
    out["traj_err"] = float(np.mean(out["err_traj"]))
    out["mean_err"] = float(np.mean(out["err_mean"]))
    return out
