"""Consistency Trajectory Models (Kim et al. 2024): any-t-to-any-s jumps, soft consistency, DSM term.

Symbols (methods.md, EDM): G_theta(x_t, t, s) = (s/t) x_t + (1 - s/t) D_theta(x_t, t, s), a jump from
t to any s <= t, with the EDM-preconditioned denoiser D = c_skip x + c_out F_theta,
c_skip = s_d^2 / (sigma^2 + s_d^2), c_out = sigma s_d / sqrt(sigma^2 + s_d^2). Loss, for t, s <= u < t:

    x_est = G_sg(theta)(G_theta(x_t, t, s), s, 0)
    x_tgt = sg[ G_ema(G_ema(x_u, u, s), s, 0) ],       x_u = teacher Heun steps from x_t down to u
    L = ||x_est - x_tgt||^2 + dsm_weight ||D_theta(x_t, t, t) - x0||^2

(soft consistency: matched after both are carried to s and then to 0 by the same map; the outer
s -> 0 jump of x_est uses stop-gradient weights, so the gradient reaches theta through the inner
jump only, as in CTM). The target x_tgt uses the method's own EMA copy theta^- at rate 0.999
(common.TargetEMA; sony/ctm code/cm/script_util.py start_ema 0.999, apart from the trainer's evaluation EMA),
or with `ema_target` false the current weights under stop-gradient (iCT's choice); the distance is squared
L2 in data space (CTM: LPIPS on images, a feature distance 2-D points lack).

The DSM term as sony/ctm runs it (code/cm/karras_diffusion.py, the denoising loss; code/cm/resample.py
HalfLogNormalHalfUniformSampler): its own noise level per sample, half the batch ln sigma ~ N(-1.2, 1.2^2),
half the Karras ramp u ~ U[0, 0.7] from sigma_max 80 towards sigma_min 0.002, each mapped to the VP index of
nearest sigma_t, the state x_sigma = sqrt(abar) x0 + sqrt(1 - abar) eps', EDM's weight (sigma^2 + s_d^2) /
(sigma s_d)^2 ("karras_weight") on the per-element mean (D_theta(x_sigma, sigma, sigma) - x0)^2, and the
adaptive balance (calculate_adaptive_weight): L_dsm scaled by ||grad_W L_ctm|| / (||grad_W L_dsm|| + 1e-4),
clamped to [0, 1e4], W the student's last weight matrix, times `dsm_weight`. No GAN term.

VP index mapping (as ct.py, maths in common.py): index t has EDM level sigma_t = sqrt((1 - abar_t) / abar_t) and EDM
state x_t / sqrt(abar_t). So, with F_theta fed the VP state and both indices, F_theta(x_t, t, s)
(a two-time network: `times = 2`, the trainer builds it so),
    D(x_t, t, s) = c_skip(sigma_t) x_t / sqrt(abar_t) + c_out(sigma_t) F_theta(x_t, t, s)
    G(x_t, t, s) = sqrt(abar_s) [ (sigma_s / sigma_t) x_t / sqrt(abar_t) + (1 - sigma_s / sigma_t) D ]
returns the VP state at s; at s = 0 (sigma_0 = 0, abar_0 = 1) G = D, the one-step sample.
Times: t, u, s on the index grid {0} + the Karras rho = 7 grid of `N` levels (common.index_grid),
t at grid position >= 2, s uniform below t, u uniform in [max(s, grid point 1), t); the teacher
solves t -> u by one Heun step per grid interval (up to N - 1 steps, two evaluations each).
x0 are the teacher's samples (the pairs): data-free. Sampling with 1, 2 or 4 deterministic jumps
T -> T (n-1)/n -> ... -> 0 (gamma = 0 sampling).

Defaults (each knob's doc names its source): `steps` = 4000 optimiser steps (the curriculum default's
count), N = 18 (CTM's CIFAR-10 grid), dsm_weight = 1 on the balanced term, sigma_data 0.5 (auto: from the data),
EMA target at 0.999. Cost: the DSM term's own noise level adds a student forward and backward per step, the
balance two partial backward passes to the last layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from onestep.methods.base import Batch, Context, Knobs, MethodBase, knob
from onestep.methods.common import (
    SIGMA_DATA_DOC,
    EDMRead,
    TargetEMA,
    edm_scalings,
    edm_sigmas,
    expand,
    index_grid,
    pf_ode_step,
    sigma_data,
)


@dataclass(frozen=True)
class CTMConfig(Knobs):
    """Consistency trajectory models (src/onestep/methods/ctm.py)."""

    steps: int = knob(4000, "total optimiser steps; chosen here: the curriculum default's count", minimum=1)
    N: int = knob(18, "Karras grid levels of t, u, s; CTM paper (its CIFAR-10 grid, N = 18)", minimum=2)
    rho: float = knob(7.0, "Karras grid exponent; EDM / CTM (rho = 7)", exclusiveMinimum=0)
    sigma_data: float | Literal["auto"] = knob(0.5, SIGMA_DATA_DOC, exclusiveMinimum=0)
    dsm_weight: float = knob(1.0, "weight of the DSM term on top of the adaptive balance; sony/ctm code/cm/"
                             "script_util.py: denoising_weight 1", minimum=0)
    balance: bool = knob(True, "scale the DSM term by the gradient-norm ratio at the last layer; sony/ctm "
                         "script_util.py apply_adaptive_weight True; false: dsm_weight alone")
    dsm_weighting: Literal["edm", "none"] = knob("edm", "DSM weight of sigma; sony/ctm script_util.py "
                                                 "diffusion_weight_schedule karras_weight: (sigma^2 + s_d^2) / (sigma "
                                                 "s_d)^2; none: 1 on the summed squared error at the CTM time t")
    ema_target: bool = knob(True, "target from the method's EMA copy theta^- (rate target_ema), as the CTM code; "
                            "false: the current weights under stop-gradient (iCT)")
    target_ema: float = knob(0.999, "EMA rate of theta^-; sony/ctm code/cm/script_util.py start_ema 0.999",
                             minimum=0, exclusiveMaximum=1)


class CTM(EDMRead, MethodBase):
    """Consistency trajectory model; see the module docstring."""

    Config = CTMConfig
    search_space: ClassVar[dict[str, dict]] = {  # tune_baselines: its most sensitive knobs (+ STUDENT_SPACE)
        "N": {"choices": [10, 18, 40]},
        "dsm_weight": {"low": 0.0, "high": 2.0, "log": False},
        "target_ema": {"low": 0.99, "high": 0.9999, "log": False},
    }
    times = 2
    sample_steps = (1, 2, 4)

    def __init__(self, cfg: dict, ctx: Context, seed: int):
        self.cfg = c = self.Config.from_dict(cfg)
        self.ctx, self.T = ctx, ctx.schedule.T
        self.total_steps = c.steps
        self.sigma, self.abar = edm_sigmas(ctx.schedule), ctx.schedule.abar  # (T+1,), (T+1,)
        self.s_d = sigma_data(c.sigma_data, ctx)
        self.grid = torch.tensor((0, *index_grid(tuple(self.sigma.double().tolist()), c.N, c.rho)))  # (M,)
        if len(self.grid) < 3:
            raise ValueError(f"method.N: {c.N} gives fewer than 3 grid times; allowed: N >= 2")
        self.target = TargetEMA(c.target_ema) if c.ema_target else None

    def D(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """EDM-preconditioned denoiser D(x_t, t, s) in data space."""
        sig = expand(self.sigma.to(x.device)[t], x.ndim)
        a = expand(self.abar.to(x.device)[t], x.ndim)
        c_skip, c_out = edm_scalings(sig, self.s_d)
        return c_skip * x / a.sqrt() + c_out * net(x, t, s)

    def G(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Jump from VP index t to s <= t: the VP state at s."""
        sig, ab = self.sigma.to(x.device), self.abar.to(x.device)
        r = torch.where(s == t, 1.0, sig[s] / sig[t].clamp(min=1e-12))  # sigma_s / sigma_t in [0, 1]; G(x, t, t) = x
        r = expand(r, x.ndim)
        xt = x / expand(ab[t], x.ndim).sqrt()  # EDM state
        return expand(ab[s], x.ndim).sqrt() * (r * xt + (1 - r) * self.D(net, x, t, s))

    def G_sg(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """G with stop-gradient weights: the gradient flows through x only."""
        params = {k: v.detach() for k, v in net.named_parameters()}
        frozen = lambda x_, t_, s_: torch.func.functional_call(net, params, (x_, t_, s_))  # noqa: E731
        return self.G(frozen, x, t, s)

    def times_at(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grid positions (i_t, i_s, i_u), (n,) each: i_t >= 2, i_s < i_t, max(i_s, 1) <= i_u < i_t."""
        M = len(self.grid)
        i_t = torch.randint(2, M, (n,), generator=gen)
        i_s = (torch.rand(n, generator=gen) * i_t).long()  # uniform in 0..i_t-1
        lo = i_s.clamp(min=1)
        i_u = lo + (torch.rand(n, generator=gen) * (i_t - lo)).long()  # uniform in lo..i_t-1
        return i_t, i_s, i_u

    @torch.no_grad()
    def solve(self, x: torch.Tensor, i_t: torch.Tensor, i_u: torch.Tensor) -> torch.Tensor:
        """Teacher Heun steps along the grid from position i_t down to i_u (per sample). The positions
        are host tensors: which samples still move is decided on the host, so no step waits on the device."""
        grid = self.grid.to(x.device)
        x, pos, i_t, i_u = x.clone(), i_t.cpu().clone(), i_t.cpu(), i_u.cpu()
        for _ in range(int((i_t - i_u).max())):
            act = (pos > i_u).nonzero().flatten()  # (A,) host indices of samples still above their u
            a = act.to(x.device)
            x[a] = pf_ode_step(self.ctx.teacher, x[a], grid[pos[act]].to(x.device), grid[pos[act] - 1].to(x.device))
            pos[act] -= 1
        return x

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if self.target is not None:
            self.target.update(student)  # theta^- <- mu theta^- + (1 - mu) theta (a copy at step 0)
        return {}

    def dsm_times(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """sony/ctm's half-lognormal, half-uniform sigma sampler (module docstring), as VP indices; (n,) long."""
        h = n // 2
        lognormal = (-1.2 + 1.2 * torch.randn(h, generator=gen)).exp()
        u = torch.rand(n - h, generator=gen) * 0.7
        karras = (80.0 ** (1 / 7) + u * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
        sig = torch.cat([lognormal, karras]).double()
        return (self.sigma[1:].double().log()[None, :] - sig.log()[:, None]).abs().argmin(1) + 1

    def dsm(self, student: nn.Module, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, gen: torch.Generator):
        """The DSM term per sample, (B,): sony/ctm's (sampler, EDM weight, per-element mean) or the plain one."""
        if self.cfg.dsm_weighting == "none":
            return ((self.D(student, x_t, t, t) - x0) ** 2).flatten(1).sum(1)
        td = self.dsm_times(x0.shape[0], gen).to(x0.device)
        a = expand(self.abar.to(x0.device)[td], x0.ndim)
        x_d = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen).to(x0.device)
        sig = self.sigma.to(x0.device)[td]
        w = (sig**2 + self.s_d**2) / (sig * self.s_d) ** 2
        return w * ((self.D(student, x_d, td, td) - x0) ** 2).flatten(1).mean(1)

    def balance(self, student: nn.Module, L_ctm: torch.Tensor, L_dsm: torch.Tensor) -> torch.Tensor:
        """sony/ctm's adaptive weight ||grad_W L_ctm|| / (||grad_W L_dsm|| + 1e-4), clamped to [0, 1e4]; 1 when off."""
        last = [p for p in student.parameters() if p.requires_grad and p.ndim >= 2]
        if not self.cfg.balance or not last or not L_ctm.requires_grad:
            return torch.ones((), device=L_ctm.device)
        g1 = torch.autograd.grad(L_ctm.mean(), last[-1], retain_graph=True, allow_unused=True)[0]
        g2 = torch.autograd.grad(L_dsm.mean(), last[-1], retain_graph=True, allow_unused=True)[0]
        if g1 is None or g2 is None:
            return torch.ones((), device=L_ctm.device)
        return (g1.norm() / (g2.norm() + 1e-4)).clamp(0.0, 1e4).detach()

    def loss(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator):
        x0 = batch.x0  # (B, *shape) teacher samples
        dev, grid = x0.device, self.grid.to(x0.device)
        pos = self.times_at(x0.shape[0], gen)  # host tensors (the solve's schedule is planned there)
        i_t, i_s, i_u = (i.to(dev) for i in pos)
        t, s, u = grid[i_t], grid[i_s], grid[i_u]
        zero = torch.zeros_like(t)
        a = expand(self.abar.to(dev)[t], x0.ndim)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen).to(dev)
        x_u = self.solve(x_t, pos[0], pos[2])
        x_est = self.G_sg(student, self.G(student, x_t, t, s), s, zero)
        target = student if self.target is None else self.target(student)
        with torch.no_grad():
            x_tgt = self.G(target, self.G(target, x_u, u, s), s, zero)
        L_ctm = ((x_est - x_tgt) ** 2).flatten(1).sum(1)  # (B,)
        L_dsm = self.dsm(student, x0, x_t, t, gen)
        w = self.balance(student, L_ctm, L_dsm)
        return L_ctm + self.cfg.dsm_weight * w * L_dsm, {"L_ctm": L_ctm.mean().detach(), "L_dsm": L_dsm.mean().detach(),
                                                          "dsm_balance": w}

    def state_dict(self) -> dict:
        return {} if self.target is None else self.target.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.target is not None and state:
            self.target.load_state_dict(state)

    @torch.no_grad()
    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
        x = z
        for j in range(steps, 0, -1):
            t = torch.full((z.shape[0],), round(j * self.T / steps), dtype=torch.long, device=z.device)
            x = self.G(student, x, t, torch.full_like(t, round((j - 1) * self.T / steps)))
        return x
