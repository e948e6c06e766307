"""Maths shared by several methods (not a method; no registry entry). Method files import from here,
from base.py and losses.py, never from each other.

- EDM in the VP index space (ct.py's docstring): index t has the EDM noise level
  sigma_t = sqrt((1 - abar_t) / abar_t) and the EDM state x_t / sqrt(abar_t) (`edm_sigmas`).
- Consistency parameterisation (Song et al. 2023; EDM's with s_min = 0):
  c_skip = s_d^2 / ((sigma - s_min)^2 + s_d^2),  c_out = (sigma - s_min) s_d / sqrt(sigma^2 + s_d^2).
- iCT discretisation (Song & Dhariwal 2023): N(k) = min(s0 2^floor(k / K'), s1) + 1, the Karras
  rho-grid mapped to indices, lognormal pair probabilities; pseudo-Huber d(a, b) = sqrt(||a - b||^2 + c^2) - c
  with iCT's c = 0.00054 sqrt(d), d = numel of a sample (the one constant of cd, ct, tdm and losses.PseudoHuber).
- The teacher's PF-ODE step in the VP index space (Heun or Euler = DDIM).
- Distribution matching (DMD, DMD2, TDM): the denoiser D(x_t) = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
  the online fake score eps_psi (a trainable copy of the teacher's network) and the DM gradient.
- Flow matching (reflow, meanflow, shortcut): x_t = (1 - t) x + t e, t in [0, 1], data x at t = 0,
  noise e at t = 1, velocity v = dx_t/dt = e - x; sampling integrates t = 1 -> 0. Every network
  takes times on the DDPM index scale 0..T, so a flow time t enters it as T t (float).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
from torch import nn

from onestep.diffusion import Schedule, Teacher, denoise, edm_scalings  # noqa: F401 (re-exported to methods)
from onestep.methods.base import Batch, ConfigError, Context, Knobs, MethodBase, knob


def expand(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) to broadcast against a (B, ...) tensor."""
    return v.view(-1, *([1] * (ndim - 1)))


# ---------------------------------------------------------------- EDM levels, consistency parameterisation


def edm_sigmas(schedule: Schedule) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T (sigma_0 = 0): the EDM noise level of index t."""
    abar = schedule.abar.double()
    return ((1 - abar) / abar).sqrt().float()  # (T+1,)


def sigma_data(value: float | str, ctx: Context) -> float:
    """EDM's sigma_data in a method's context (resolve_sigma_data with `ctx.data_std`)."""
    return resolve_sigma_data(value, ctx.data_std)


def resolve_sigma_data(value: float | str, data_std: Callable[[], float] | None) -> float:
    """EDM's sigma_data: `value` when a number, else (`auto`) the data's std over every element, `data_std()`
    (0.5 is CIFAR-10's in [-1, 1]; the checkerboard's is about 1.15)."""
    if value != "auto":
        return float(value)
    if data_std is None:
        raise ConfigError("method.sigma_data: 'auto' needs the data's std, which this context does not offer; "
                          "allowed: a positive number, or auto inside training / evaluation")
    return float(data_std())


class EDMRead:
    """init_from_teacher for a method whose student is EDM's raw network F (cd, ctm): the teacher's epsilon network
    read as F with the method's own sigma_data, so its c_skip / c_out denoiser is the teacher's (nets.EpsHead)."""

    teacher_read = "edm"

    @classmethod
    def teacher_head(cls, section: dict, data_std: Callable[[], float]) -> dict:
        return {"read": "edm", "sigma_data": resolve_sigma_data(cls.Config.from_dict(section).sigma_data, data_std)}


SIGMA_DATA_DOC = ("EDM's sigma_data; auto: the data's std over every element (data.std, computed once from the dataset "
                  "config and logged as sigma_data). Default 0.5 (the papers' CIFAR-10 value), chosen here: on the "
                  "checkerboard (std 1.15) auto measured worse, ct one-step SWD 0.225 (auto) vs 0.137 (0.5) at p_mean 0, "
                  "cd 0.176 with auto (seed 0, N = 4096, docs/results.md)")


# ---------------------------------------------------------------- iCT discretisation, pseudo-Huber


def grid_size(step: int, total: int, s0: int, s1: int) -> int:
    """iCT discretisation curriculum N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2(s1/s0) + 1))."""
    k_prime = max(1, math.floor(total / (math.log2(s1 / s0) + 1)))
    return min(s0 * 2 ** (step // k_prime), s1) + 1


@lru_cache
def index_grid(sigmas: tuple[float, ...], n: int, rho: float) -> tuple[int, ...]:
    """Karras grid of n levels between sigma_1 and sigma_T (rho), each mapped to its nearest index
    t in 1..T in log sigma, deduplicated; ascending."""
    s = torch.tensor(sigmas, dtype=torch.float64)
    lo, hi = s[1] ** (1 / rho), s[-1] ** (1 / rho)
    levels = (lo + torch.arange(n, dtype=torch.float64) / (n - 1) * (hi - lo)) ** rho  # (n,) ascending
    idx = (s[1:].log()[None, :] - levels.log()[:, None]).abs().argmin(1) + 1  # (n,) index in 1..T
    return tuple(sorted(set(idx.tolist())))


def lognormal_probs(sig_lo: torch.Tensor, sig_hi: torch.Tensor, p_mean: float, p_std: float) -> torch.Tensor:
    """iCT's p(i) ~ erf((ln sigma_{i+1} - P_mean) / (sqrt 2 P_std)) - erf((ln sigma_i - P_mean) / (sqrt 2 P_std))."""
    cdf = lambda s: torch.erf((s.double().log() - p_mean) / (math.sqrt(2) * p_std))  # noqa: E731
    p = (cdf(sig_hi) - cdf(sig_lo)).clamp(min=0)
    return (p / p.sum()).float()


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """sqrt(||a - b||^2 + c^2) - c per sample: (B,)."""
    return (((a - b) ** 2).flatten(1).sum(1) + c * c).sqrt() - c


def huber_c(c: float | None, shape: tuple[int, ...]) -> float:
    """The pseudo-Huber c: `c` when set, else iCT's 0.00054 sqrt(d), d = numel of a sample."""
    return c if c is not None else 0.00054 * math.sqrt(math.prod(shape))


class ICTGrid:
    """The iCT discretisation of a run: grid size by step, index grid, lognormal pair sampling."""

    def __init__(self, schedule: Schedule, total: int, s0: int, s1: int, rho: float, p_mean: float, p_std: float):
        self.sigma = edm_sigmas(schedule)
        self.key = tuple(self.sigma.double().tolist())
        self.total, self.s0, self.s1, self.rho, self.p_mean, self.p_std = total, s0, s1, rho, p_mean, p_std

    def size(self, step: int) -> int:
        return grid_size(step, self.total, self.s0, self.s1)

    def grid(self, step: int) -> torch.Tensor:
        return torch.tensor(index_grid(self.key, self.size(step), self.rho))  # (M,) ascending indices

    def pairs(self, step: int, n: int, gen: torch.Generator, uniform: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(t_i, t_{i+1}) per sample, (n,) each: adjacent grid indices, i lognormal-distributed (iCT) or
        uniform over the intervals (`uniform`: CD, openai/consistency_models cm/karras_diffusion.py
        consistency_losses, `indices = th.randint(0, num_scales - 1, ...)`)."""
        g = self.grid(step)
        if uniform:
            i = torch.randint(0, len(g) - 1, (n,), generator=gen)
            return g[i], g[i + 1]
        p = lognormal_probs(self.sigma[g[:-1]], self.sigma[g[1:]], self.p_mean, self.p_std)  # (M-1,)
        i = torch.multinomial(p, n, replacement=True, generator=gen)
        return g[i], g[i + 1]


# ---------------------------------------------------------------- consistency function, teacher PF-ODE


class Consistency:
    """f_theta(x_t, t) = c_skip(sigma_t) x_t / sqrt(abar_t) + c_out(sigma_t) F_theta(x_t, t), s_min = sigma_1."""

    def __init__(self, schedule: Schedule, sigma_data: float):
        self.sigma = edm_sigmas(schedule)  # (T+1,)
        self.abar = schedule.abar
        self.s_d, self.s_min = sigma_data, float(self.sigma[1])
        self.T = schedule.T

    def __call__(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sig = expand(self.sigma.to(x.device)[t], x.ndim)  # (B, 1, ...)
        a = expand(self.abar.to(x.device)[t], x.ndim)
        c_skip, c_out = edm_scalings(sig, self.s_d, self.s_min)
        return c_skip * x / a.sqrt() + c_out * net(x, t)

    def noised(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        a = expand(self.abar.to(x0.device)[t], x0.ndim)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps

    @torch.no_grad()
    def sample(self, net: nn.Module, z: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
        """Multistep consistency sampling on the index grid T (n - j) / n, j = 0..n-1 (fresh noise, fixed seed)."""
        gen = torch.Generator().manual_seed(seed)
        full = lambda v: torch.full((z.shape[0],), v, dtype=torch.long, device=z.device)  # noqa: E731
        x = self(net, z, full(self.T))
        for j in range(1, steps):
            t = full(round(self.T * (steps - j) / steps))
            x = self(net, self.noised(x, torch.randn(z.shape, generator=gen).to(z.device), t), t)
        return x


@torch.no_grad()
def pf_ode_step(teacher: Teacher, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, heun: bool = True) -> torch.Tensor:
    """The teacher's PF-ODE from VP index t down to s >= 1 (per sample): one Heun (or Euler = DDIM) step.
    In the EDM state xt = x_t / sqrt(abar_t) the PF-ODE is d xt / d sigma = eps(x_t, t)."""
    sch = teacher.schedule
    sig = edm_sigmas(sch).to(x.device)
    a_t, a_s = sch.at("abar", t, x.ndim), sch.at("abar", s, x.ndim)
    ds = expand(sig[s] - sig[t], x.ndim)
    e1 = teacher.eps(x, t)
    xs = x / a_t.sqrt() + ds * e1  # Euler in the EDM state
    if heun:
        e2 = teacher.eps(a_s.sqrt() * xs, s)
        xs = x / a_t.sqrt() + ds * (e1 + e2) / 2
    return a_s.sqrt() * xs


class TargetEMA:
    """A method's own frozen EMA copy theta^- of the student, at its paper's rate (CD's target at 0.95, CTM's at
    0.999), apart from the trainer's evaluation EMA (`ctx.ema`, student.ema): theta^- <- mu theta^- + (1 - mu) theta,
    once per optimiser step (`update`, from `aux_step`: the student as the previous step left it), started as a
    copy of the student at step 0 (openai/consistency_models cm/train_util.py, `_update_target_ema`)."""

    def __init__(self, rate: float):
        self.rate, self.net, self._pending = rate, None, None

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        if self.net is None:
            self.net = copy.deepcopy(student).eval().requires_grad_(False)
            if self._pending is not None:  # a resumed run: the saved target, not a fresh copy
                self.net.load_state_dict(self._pending)
                self._pending = None
            return
        for tgt, src in zip(self.net.parameters(), student.parameters(), strict=True):
            tgt.lerp_(src.detach(), 1.0 - self.rate)

    def __call__(self, student: nn.Module) -> nn.Module:
        return student if self.net is None else self.net

    def state_dict(self) -> dict:
        return {"target": None if self.net is None else self.net.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net, self._pending = None, state.get("target")


# ---------------------------------------------------------------- iCT settings and base, shared by cd and ct


@dataclass(frozen=True)
class ICTConfig(Knobs):
    """iCT settings (Song & Dhariwal 2023): `steps` = 4000 optimiser steps at the student batch size, the
    curriculum default's count (K = 10 x 400); s0 = 10, s1 = 1280 as in iCT, so N doubles every 500 steps.
    sigma_data 0.5 or from the data (auto); P_mean 0 rather than iCT's CIFAR-10 -1.1 (see the knobs)."""

    steps: int = knob(4000, "total optimiser steps; chosen here: the curriculum default's count (K = 10 x 400)",
                      minimum=1)
    s0: int = knob(10, "initial discretisation steps N(0) - 1; iCT paper (s0 = 10)", minimum=1)
    s1: int = knob(1280, "final discretisation steps; iCT paper (s1 = 1280)", minimum=1)
    rho: float = knob(7.0, "Karras grid exponent; EDM / iCT (rho = 7)", exclusiveMinimum=0)
    p_mean: float = knob(0.0, "lognormal mean of ln sigma of the noise levels; chosen here: 0, since iCT's -1.1 "
                         "(iCT paper) is CIFAR-10's at sigma_data 0.5, and in this VP index mapping (sigma_t from "
                         "0.01 to 157) on the checkerboard (std 1.15) p_mean 0 measured better: ct 0.201 -> 0.073, "
                         "cd 0.168 -> 0.108 one-step SWD (docs/results.md); a tuning knob")
    p_std: float = knob(2.0, "lognormal std of ln sigma; iCT paper (P_std = 2.0)", exclusiveMinimum=0)
    sigma_data: float | Literal["auto"] = knob(0.5, SIGMA_DATA_DOC, exclusiveMinimum=0)
    huber_c: float | None = knob(None, "pseudo-Huber c; null for 0.00054 sqrt(dim) (iCT paper)",
                                 exclusiveMinimum=0)

    @classmethod
    def check(cls, m: dict, cfg: dict) -> None:
        if m["s1"] < m["s0"]:
            raise ConfigError(f"method.s1: {m['s1']} is below method.s0 = {m['s0']}; allowed: s1 >= s0")


class ICTMethod(MethodBase):
    """What consistency training and distillation share: the parameterisation f, the iCT grid N(k)
    (the phase is the doubling round of N), the pseudo-Huber constant; `Config` set by the subclass."""

    Config = ICTConfig
    sample_steps = (1, 2, 4)

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = c = self.Config.from_dict(cfg)
        self.ctx, self.seed = ctx, seed
        self.total_steps = c.steps
        self.f = Consistency(ctx.schedule, sigma_data(c.sigma_data, ctx))
        self.grid = ICTGrid(ctx.schedule, c.steps, c.s0, c.s1, c.rho, c.p_mean, c.p_std)
        self.c = huber_c(c.huber_c, ctx.shape)

    def schedule(self, step: int) -> dict[str, float]:
        n = self.grid.size(step)
        return {"phase": int(math.log2((n - 1) / self.cfg.s0)), "N": n, "sigma_data": self.f.s_d}

    ict_weight = True  # lambda = 1 / (sigma_{i+1} - sigma_i) (iCT); False: uniform (CD)
    l2 = False  # d = mean over elements of (a - b)^2 (CD's `l2`, mean_flat); False: pseudo-Huber (iCT)

    def target_net(self, student: nn.Module) -> nn.Module:
        """The network of the target f(x_{t_i}, t_i): the current one under stop-gradient (iCT)."""
        return student

    def pair_loss(self, student: nn.Module, x_hi: torch.Tensor, x_lo: torch.Tensor, t_hi: torch.Tensor,
                  t_lo: torch.Tensor):
        """lambda(sigma_i) d(f_theta(x_{t_{i+1}}, t_{i+1}), sg f_target(x_{t_i}, t_i)), lambda = 1 / (sigma_{i+1} - sigma_i)
        (iCT) or 1 (CD's uniform), d pseudo-Huber (iCT) or the per-element mean square (CD's l2)."""
        f_hi = self.f(student, x_hi, t_hi)
        with torch.no_grad():
            f_lo = self.f(self.target_net(student), x_lo, t_lo)  # sg: the current net (iCT) or the EMA target (CD)
        sig = self.f.sigma.to(x_hi.device)
        w = 1.0 / (sig[t_hi] - sig[t_lo]) if self.ict_weight else torch.ones_like(sig[t_hi])  # (B,)
        d = ((f_hi - f_lo) ** 2).flatten(1).mean(1) if self.l2 else pseudo_huber(f_hi, f_lo, self.c)
        return w * d, {"d": d.mean().detach(), "sigma_hi": sig[t_hi].mean()}

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        return self.f.sample(student, z, steps, self.seed)


# ---------------------------------------------------------------- distribution matching (DMD2, TDM)


def fake_score(teacher: Teacher) -> nn.Module:
    """eps_psi: a trainable copy of the teacher's epsilon network (called through `fake_eps`)."""
    return copy.deepcopy(teacher.net).train().requires_grad_(True)


def fake_eps(fake: nn.Module, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """eps_psi(x_t, t) in the seed's indexing, with the teacher's index shift (diffusion.Teacher.index)."""
    return fake(x_t, Teacher.index(t))


@torch.no_grad()
def dm_gradient(teacher: Teacher, fake: nn.Module, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """(D_fake(x_t) - D_real(x_t)) / mean|x - D_real(x_t)| at x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps; (B, *shape)."""
    abar = teacher.schedule.at("abar", t, x.ndim)
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * eps
    d_real = denoise(teacher.eps(x_t, t), x_t, abar)
    d_fake = denoise(fake_eps(fake, x_t, t), x_t, abar)
    norm = (x - d_real).abs().flatten(1).mean(1).clamp(min=1e-8)  # (B,)
    return (d_fake - d_real) / expand(norm, x.ndim)


def karras_indices(schedule: Schedule, n: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """DMD2's noise grid in the VP index space: the Karras grid of `n` levels from sigma_min to sigma_max (rho),
    smallest first (tianweiy/DMD2 main/edm/edm_guidance.py, `karras_sigmas`), each level mapped to the index
    t in 1..T of nearest log sigma_t (not deduplicated: level k is drawn as often as on the official grid); (n,) long."""
    s = edm_sigmas(schedule).double()
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    levels = (sigma_min ** (1 / rho) + ramp * (sigma_max ** (1 / rho) - sigma_min ** (1 / rho))) ** rho  # ascending
    return (s[1:].log()[None, :] - levels.log()[:, None]).abs().argmin(1) + 1


def fake_x0_loss(fake: nn.Module, schedule: Schedule, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                 s_d: float) -> torch.Tensor:
    """DMD2's fake-score loss (tianweiy/DMD2 main/edm/edm_guidance.py, `compute_loss_fake`) per sample, (B,): the
    x0-MSE (1/sigma_t^2 + 1/s_d^2) mean_elements (D_psi(x_t) - x)^2 on detached samples x, D_psi the fake epsilon
    network read as a denoiser; (B,). In epsilon terms it is (1 + sigma_t^2 / s_d^2) times the epsilon-MSE."""
    abar = schedule.at("abar", t, x.ndim)
    x = x.detach()
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * eps
    sig2 = (1 - abar.flatten()) / abar.flatten()  # sigma_t^2, (B,)
    err = ((denoise(fake_eps(fake, x_t, t), x_t, abar) - x) ** 2).flatten(1).mean(1)
    return (1 / sig2 + 1 / s_d**2) * err


def fake_updates(fake: nn.Module, opt: torch.optim.Optimizer, n: int, loss_fn) -> dict[str, torch.Tensor]:
    """`n` optimiser steps of the fake score; `loss_fn()` draws its samples and noise and returns (B,) losses."""
    total = 0.0
    for _ in range(n):
        loss = loss_fn().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total = total + loss.detach()
    opt.zero_grad(set_to_none=True)  # no fake-score gradients left behind
    return {"fake_loss": total / max(1, n)}


# ---------------------------------------------------------------- flow matching (reflow, meanflow, shortcut)


def interpolate(x: torch.Tensor, e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x + t e for per-sample t (B,)."""
    t = expand(t, x.ndim)
    return (1 - t) * x + t * e


def logit_normal(n: int, mean: float, std: float, gen: torch.Generator) -> torch.Tensor:
    """t = sigmoid(N(mean, std^2)), (n,) on the CPU generator."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=gen))


@torch.no_grad()
def euler(velocity, z: torch.Tensor, steps: int) -> torch.Tensor:
    """Euler solve of dx/dt = velocity(x, t) from t = 1 (x = z) to t = 0 in `steps` equal steps."""
    x = z
    for i in range(steps):
        t = torch.full((z.shape[0],), 1.0 - i / steps, device=z.device)
        x = x - velocity(x, t) / steps
    return x


@torch.no_grad()
def heun(velocity, z: torch.Tensor, steps: int) -> torch.Tensor:
    """Heun (second-order) solve of dx/dt = velocity(x, t) from t = 1 (x = z) to t = 0 in `steps` equal steps."""
    x, h = z, 1.0 / steps
    for i in range(steps):
        t = torch.full((z.shape[0],), 1.0 - i * h, device=z.device)
        v1 = velocity(x, t)
        v2 = velocity(x - h * v1, t - h)
        x = x - h * (v1 + v2) / 2
    return x
