"""The DDPM teacher in the seed's symbols, on top of diffusers' schedulers.

The betas and abar of the `diffusion` section are computed here as diffusers' DDPMScheduler computes them (float32,
the same formulas; tests/test_schedule.py checks them bit for bit), so a job that needs only the schedule
(training, evaluation) does not import diffusers, about 3 s of every such job's start.

Indexing. The seed writes abar_t = prod_{s=1}^t alpha_s for t = 1..T and x_T ~ N(0, I).
diffusers indexes the same schedule 0..T-1: `alphas_cumprod[i]` is the seed's abar_{i+1}.
`Schedule` keeps the seed's indexing with an extra t = 0 (abar_0 = 1, clean data), so the
curriculum's t_k (T down to 0, evenly spaced) runs from T down to 0 exactly as written; the teacher
network is called with the diffusers index t - 1 (`Teacher.eps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def _betas(cfg: dict) -> dict:
    """The `diffusion` config section as diffusers scheduler arguments (epsilon prediction, no clipping)."""
    return {"num_train_timesteps": cfg["T"], "beta_schedule": cfg.get("beta_schedule", "linear"),
            "beta_start": cfg.get("beta_start", 1e-4), "beta_end": cfg.get("beta_end", 0.02),
            "clip_sample": False, "prediction_type": "epsilon"}


def _glide_cosine(T: int, start: float, end: float) -> torch.Tensor:
    """squaredcos_cap_v2: diffusers' betas_for_alpha_bar, beta_i = min(1 - f((i + 1) / T) / f(i / T), 0.999)."""
    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float32)


BETAS = {  # diffusion.beta_schedule -> (T, beta_start, beta_end) -> (T,) float32 betas, DDPMScheduler's formulas
    "linear": lambda T, start, end: torch.linspace(start, end, T, dtype=torch.float32),
    "scaled_linear": lambda T, start, end: torch.linspace(start**0.5, end**0.5, T, dtype=torch.float32) ** 2,
    "squaredcos_cap_v2": _glide_cosine,
}


def ddpm_betas(cfg: dict) -> torch.Tensor:
    """(T,) float32 betas of the `diffusion` section in diffusers' index 0..T-1 (DDPMScheduler(...).betas)."""
    b = _betas(cfg)  # the section's defaults, in one place
    return BETAS[b["beta_schedule"]](b["num_train_timesteps"], b["beta_start"], b["beta_end"])


def alphas_cumprod(cfg: dict) -> torch.Tensor:
    """(T,) float32 abar in diffusers' index 0..T-1 (DDPMScheduler(...).alphas_cumprod)."""
    return torch.cumprod(1.0 - ddpm_betas(cfg), dim=0)


def ddpm_scheduler(cfg: dict):
    """diffusers DDPMScheduler from the `diffusion` config section."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**_betas(cfg))


def ddim_scheduler(cfg: dict):
    """DDIMScheduler on the same betas; 'trailing' spacing so one step starts at t = T."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**_betas(cfg), set_alpha_to_one=True, timestep_spacing="trailing")


@dataclass
class Schedule:
    """beta_t, alpha_t, abar_t for t = 0..T in the seed's indexing (beta_0 = 0, abar_0 = 1)."""

    betas: torch.Tensor  # (T+1,)

    @classmethod
    def from_config(cls, cfg: dict) -> Schedule:
        return cls(torch.cat([torch.zeros(1), ddpm_betas(cfg)]))  # beta_0 = 0, then diffusers' index 0..T-1

    @property
    def T(self) -> int:
        return self.betas.shape[0] - 1

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @property
    def abar(self) -> torch.Tensor:
        return torch.cumprod(self.alphas.double(), 0).float()  # abar[0] = 1

    def at(self, name: str, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """getattr(self, name)[t] shaped (B, 1, ..., 1) to broadcast against a (B, ...) tensor."""
        v = getattr(self, name).to(t.device)[t.long()]  # (B,)
        return v.view(-1, *([1] * (ndim - 1)))


def denoise(eps: torch.Tensor, x_t: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """D(x_t) = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t): the x0 prediction of an epsilon prediction."""
    return (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()


def edm_scalings(sig: torch.Tensor, s_d: float, s_min: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) = (s_d^2 / ((sigma - s_min)^2 + s_d^2), (sigma - s_min) s_d / sqrt(sigma^2 + s_d^2))."""
    c_skip = s_d**2 / ((sig - s_min) ** 2 + s_d**2)
    c_out = (sig - s_min) * s_d / (sig**2 + s_d**2).sqrt()
    return c_skip, c_out


class Teacher(nn.Module):
    """Frozen epsilon-prediction DDPM: eps_phi(x_t, t) in the seed's indexing (t >= 1)."""

    def __init__(self, net: nn.Module, schedule: Schedule):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.schedule = schedule
        self.evals = 0  # teacher forward passes, counted per sample

    @staticmethod
    def index(t: torch.Tensor) -> torch.Tensor:
        """Seed index t -> the network's (diffusers) index t - 1; t = 0 uses the first step. Every
        epsilon network of the teacher's kind (the teacher, a fake score copied from it) is called so."""
        return (t.long() - 1).clamp(min=0)

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.evals += x.shape[0]
        return self.net(x, self.index(t))


@torch.no_grad()
def ddim_jump(teacher: Teacher, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact deterministic DDIM move of x from time s to time t (either direction), per sample."""
    sch = teacher.schedule
    eps = teacher.eps(x, s)  # (B, ...)
    a_s, a_t = sch.at("abar", s, x.ndim), sch.at("abar", t, x.ndim)
    x0 = (x - (1 - a_s).sqrt() * eps) / a_s.sqrt()
    return a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps


@torch.no_grad()
def ddpm_step(teacher: Teacher, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The seed's single teacher step from s (its posterior mean, no noise); lands at s - 1 whatever t is."""
    sch = teacher.schedule
    eps = teacher.eps(x, s)
    beta, alpha, a_s = (sch.at(n, s, x.ndim) for n in ("betas", "alphas", "abar"))
    return (x - beta / (1 - a_s).sqrt() * eps) / alpha.sqrt()


@torch.no_grad()
def ddim_sample(net: nn.Module, z: torch.Tensor, steps: int, cfg: dict, batch_size: int = 8192) -> torch.Tensor:
    """Teacher DDIM solve (diffusers DDIMScheduler, eta = 0) from noise z (B, ...) to x0."""
    sched = ddim_scheduler(cfg)
    sched.set_timesteps(steps)
    out = []
    for zb in z.split(batch_size):
        x = zb.clone()
        for t in sched.timesteps:  # diffusers keeps these on the CPU: move each to the network's device
            eps = net(x, t.to(x.device).expand(x.shape[0]))  # (B, ...)
            x = sched.step(eps, t, x, eta=0.0).prev_sample
        out.append(x)
    return torch.cat(out)


# ---------------------------------------------------------------- the pairs' solver (pairs.solver, pairs.clip_x0)


def _dpmpp(cfg: dict):
    """DPM-Solver++ (2M, multistep, Lu et al. 2022) on the same betas; 'trailing' so the first step starts at t = T."""
    from diffusers import DPMSolverMultistepScheduler

    b = {k: v for k, v in _betas(cfg).items() if k != "clip_sample"}
    return DPMSolverMultistepScheduler(**b, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing")


def _heun(cfg: dict):
    """Heun's second-order method (EDM's sampler, Karras et al. 2022) in diffusers' sigma space."""
    from diffusers import HeunDiscreteScheduler

    b = {k: v for k, v in _betas(cfg).items() if k != "clip_sample"}
    return HeunDiscreteScheduler(**b, timestep_spacing="trailing")


SOLVERS = {"ddim": ddim_scheduler, "dpm++": _dpmpp, "heun": _heun}  # pairs.solver: name -> scheduler(cfg)


# ---------------------------------------------------------------- RK4 on the PF-ODE (pairs.solver rk4: exact teachers)


def seed_sigmas(cfg: dict) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) at the seed's t = 0..T (sigma_0 = 0), float64 (T+1,)."""
    abar = alphas_cumprod(cfg).double()
    return torch.cat([torch.zeros(1, dtype=torch.float64), ((1 - abar) / abar).sqrt()])


def _index(sigma: float, table: torch.Tensor) -> float:
    """The fractional diffusers index (seed t - 1, in [-1, T - 1]) whose linear-in-sigma value is `sigma`."""
    hi = int(torch.searchsorted(table, torch.tensor(sigma, dtype=torch.float64)).clamp(1, len(table) - 1))
    lo = hi - 1
    return lo + (sigma - float(table[lo])) / float(table[hi] - table[lo]) - 1


def rk4_grid(cfg: dict, steps: int, times: tuple[int, ...] = (), rho: float = 7.0) -> list[float]:
    """sigma from sigma_T down to 0 in `steps` steps of EDM's rho-spacing, the sigmas of the seed `times` added."""
    table = seed_sigmas(cfg)
    top = float(table[-1]) ** (1 / rho)
    grid = {(top * (1 - i / steps)) ** rho for i in range(steps + 1)} | {float(table[t]) for t in times}
    return sorted(grid, reverse=True)


@torch.no_grad()
def rk4_trajectory(net: nn.Module, z: torch.Tensor, steps: int, cfg: dict, times: tuple[int, ...] = (),
                   batch_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The PF-ODE dy/dsigma = eps(y / sqrt(1 + sigma^2), t(sigma)) in the DDIM variable y = x_t / sqrt(abar_t),
    solved by classical RK4 from x_T = z to sigma = 0 (`rk4_grid`; 4 evaluations a step) in float64 when the
    network computes in it (`solve_dtype`: the analytic teacher), its states x_t at the seed `times` on the
    way: (x0 (B, ...), xt (B, M, ...) or None), as ddim_trajectory."""
    table, grid = seed_sigmas(cfg), rk4_grid(cfg, steps, times)
    dtype = getattr(net, "solve_dtype", torch.float32)
    at = {float(table[t]): m for m, t in enumerate(times)}

    def f(y, s):
        t = torch.full((y.shape[0],), _index(s, table), dtype=torch.float64, device=y.device)
        return net((y / (1 + s * s) ** 0.5).to(dtype), t).to(torch.float64)

    x0s, xts = [], []
    for zb in z.split(batch_size):
        y = zb.double() * (1 + grid[0] ** 2) ** 0.5
        xt = torch.empty(y.shape[0], len(times), *y.shape[1:], device=y.device) if times else None
        for s, s_next in zip(grid[:-1], grid[1:], strict=True):
            h = s_next - s
            k1 = f(y, s)
            k2 = f(y + h / 2 * k1, s + h / 2)
            k3 = f(y + h / 2 * k2, s + h / 2)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + f(y + h * k3, s_next))
            if s_next in at:
                xt[:, at[s_next]] = (y / (1 + s_next**2) ** 0.5).to(xt.dtype)
        x0s.append(y.float())
        xts.append(xt)
    return torch.cat(x0s), (torch.cat(xts) if times else None)


def rk4_sample(net: nn.Module, z: torch.Tensor, steps: int, cfg: dict, batch_size: int = 8192) -> torch.Tensor:
    return rk4_trajectory(net, z, steps, cfg, (), batch_size)[0]


ODES = {"rk4": rk4_sample}  # pairs.solver: name -> its own ODE solve (no diffusers scheduler)
TRAJECTORIES = {"rk4": rk4_trajectory}  # a solver's states x_t(z) (else DDIM's, ddim_trajectory)


class ClippedEps(nn.Module):
    """eps re-derived from a clipped x0 prediction (GLIDE / diffusers' DDIM `clip_sample`, for any solver):
    x0 = clip((x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), -c, c), eps' = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t).
    t is the network's (diffusers) index, fractional for Heun: abar_t from diffusers' linear interpolation of
    sigma_t = sqrt((1 - abar_t) / abar_t) in t."""

    def __init__(self, net: nn.Module, cfg: dict, c: float):
        super().__init__()
        self.net, self.c = net, c
        self.sigma = seed_sigmas(cfg)[1:]  # (T,) float64, diffusers' index; moved to the samples' device on first use

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = self.net(x, t)  # (B, ...)
        if self.sigma.device != x.device:
            self.sigma = self.sigma.to(x.device)
        tt = t.to(self.sigma).clamp(0, len(self.sigma) - 1)  # (B,), on the device: no host round trip per evaluation
        lo = tt.floor().long().clamp(max=len(self.sigma) - 2)
        sig = self.sigma[lo] + (tt - lo) * (self.sigma[lo + 1] - self.sigma[lo])  # (B,)
        a = (1 / (1 + sig**2)).float().view(-1, *([1] * (x.ndim - 1)))
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-self.c, self.c)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()


@torch.no_grad()
def teacher_sample(net: nn.Module, z: torch.Tensor, steps: int, cfg: dict, solver: str = "ddim",
                   clip_x0: float | None = None, batch_size: int = 8192) -> torch.Tensor:
    """The teacher's probability-flow ODE solved from noise z (B, ...) to x0 by a diffusers scheduler
    (SOLVERS[solver], `steps` steps; Heun spends 2 network evaluations per step but the last), the x0
    prediction clipped to [-clip_x0, clip_x0] at every evaluation when clip_x0 is set. ddim without
    clip_x0 is `ddim_sample`."""
    if solver not in SOLVERS and solver not in ODES:
        raise ValueError(f"pairs.solver: unknown solver {solver!r}; allowed: {', '.join([*SOLVERS, *ODES])}")
    model = net if clip_x0 is None else ClippedEps(net, cfg, clip_x0)
    if solver in ODES:
        return ODES[solver](model, z, steps, cfg, batch_size)
    out = []
    for zb in z.split(batch_size):
        sched = SOLVERS[solver](cfg)  # multistep solvers keep state: a fresh one per chunk
        sched.set_timesteps(steps)
        x = zb.clone() * sched.init_noise_sigma
        for t in sched.timesteps:
            eps = model(sched.scale_model_input(x, t), t.to(x.device).expand(x.shape[0]))  # (B, ...)
            x = sched.step(eps, t, x).prev_sample
        out.append(x)
    return torch.cat(out)


def pairs_label(pc: dict) -> str:
    """How the pairs' solver reads in a table row: 'dpm++ 50 steps, x0 clipped to +-2' (`pc`: solver,
    ddim_steps and clip_x0, e.g. config.Pairs.of(cfg).as_dict())."""
    clip = pc["clip_x0"]
    return (f"pairs: {pc['solver']} {pc['ddim_steps']} steps"
            + ("" if clip is None else f", x0 clipped to +-{clip:.3g}"))


@torch.no_grad()
def ddim_trajectory(net: nn.Module, z: torch.Tensor, steps: int, cfg: dict, times: tuple[int, ...] = (),
                    batch_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The teacher's deterministic DDIM solve from z (exactly `ddim_sample`'s, eta = 0) and its states
    x_t(z) at the seed times `times` (1..T-1): (x0 (B, ...), xt (B, M, ...) or None without times).

    A time t between two solver times s > s' is read off the DDIM step that crosses it, with that step's
    own eps(x_s, s) and x0-prediction: x_t = sqrt(abar_t) xhat0 + sqrt(1 - abar_t) eps, the exact DDIM
    move s -> t (x_t = x_s when t = s). No extra teacher evaluation; the states lie on the same
    trajectory as the pair's x0, whatever the curriculum grid."""
    sched = ddim_scheduler(cfg)
    sched.set_timesteps(steps)
    abar = Schedule.from_config(cfg).abar  # (T+1,) seed indexing
    seed_t = [int(t) + 1 for t in sched.timesteps] + [0]  # solver states' seed times, T .. 0
    # each requested t is read at the first step s_j -> s_{j+1} with s_{j+1} < t
    at_step = {j: [m for m, t in enumerate(times) if seed_t[j + 1] < t and (j == 0 or t <= seed_t[j])]
               for j in range(len(seed_t) - 1)}
    x0s, xts = [], []
    for zb in z.split(batch_size):
        x = zb.clone()
        xt = torch.empty(x.shape[0], len(times), *x.shape[1:], device=x.device) if times else None  # (B, M, ...)
        for j, t in enumerate(sched.timesteps):
            eps = net(x, t.to(x.device).expand(x.shape[0]))  # (B, ...)
            if at_step[j]:
                a_s = abar[seed_t[j]].to(x.device)
                x0_hat = (x - (1 - a_s).sqrt() * eps) / a_s.sqrt()
                for m in at_step[j]:
                    a_t = abar[times[m]].to(x.device)
                    xt[:, m] = a_t.sqrt() * x0_hat + (1 - a_t).sqrt() * eps
            x = sched.step(eps, t, x, eta=0.0).prev_sample
        x0s.append(x)
        xts.append(xt)
    return torch.cat(x0s), (torch.cat(xts) if times else None)


@torch.no_grad()
def teacher_pairs(net: nn.Module, shape: tuple[int, ...], num: int, seed: int, ddim_steps: int, cfg: dict,
                  device: str | torch.device = "cpu", chunk: int = 4096, solver: str = "ddim",
                  clip_x0: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`num` teacher pairs (z, x0): fixed noise z ~ N(0, I) from `seed` and its solve x0 (`solver`,
    `ddim_steps` steps, `clip_x0`: teacher_sample), both (num, *shape) on the CPU. `cfg`: the diffusion section."""
    from tqdm import tqdm

    z = torch.randn(num, *shape, generator=torch.Generator().manual_seed(seed))  # (N, *shape)
    x0 = [teacher_sample(net, zb.to(device), ddim_steps, cfg, solver, clip_x0).cpu()
          for zb in tqdm(z.split(chunk), desc=f"pairs ({solver} {ddim_steps} steps)")]
    return z, torch.cat(x0)


@torch.no_grad()
def teacher_states(net: nn.Module, z: torch.Tensor, ddim_steps: int, cfg: dict, times: tuple[int, ...],
                   device: str | torch.device = "cpu", chunk: int = 4096,
                   clip_x0: float | None = None, solver: str = "ddim") -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's DDIM solve of noise z (N, *shape) and its states at the seed `times`
    (`ddim_trajectory`), chunk by chunk: (x0 (N, *shape), xt (N, M, *shape)) on the CPU. Run once per
    teacher and grid (rule `trajectory`), with the pairs' x0 clipping (`clip_x0`, as the pairs' solver):
    on the pairs' z these are the DDIM states of the pairs' noises; the pairs' x0 may come from another
    solver (pairs.solver), so the endpoint a `trajectory` run regresses is the pairs' own."""
    from tqdm import tqdm

    net = net if clip_x0 is None else ClippedEps(net, cfg, clip_x0)
    solve = TRAJECTORIES.get(solver, ddim_trajectory)  # rk4 pairs: the states of the same RK4 solve; else DDIM's
    solved = [solve(net, zb.to(device), ddim_steps, cfg, times)
              for zb in tqdm(z.split(chunk), desc=f"trajectory ({solver if solver in TRAJECTORIES else 'DDIM'} "
                                                  f"{ddim_steps} steps, {len(times)} states)")]
    x0 = torch.cat([x.cpu() for x, _ in solved])
    if not times:
        return x0, torch.empty(z.shape[0], 0, *z.shape[1:])
    return x0, torch.cat([xt.cpu() for _, xt in solved])


def grid_times(T: int, Ks) -> tuple[int, ...]:
    """The interior curriculum grid times 0 < t_k < T of every K in `Ks`, ascending (the states rule
    `trajectory` stores): t_k = floor(T (K - k) / K + 1/2), k = 1..K-1, the curriculum's evenly spaced grid
    (methods/curriculum_stages.timesteps; t_0 = T is z itself, t_K = 0 is x0)."""
    return tuple(sorted({t for K in Ks for k in range(1, K) if 0 < (t := (2 * T * (K - k) + K) // (2 * K)) < T}))
