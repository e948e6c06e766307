"""Training loops: the DDPM teacher, and a method-blind student trainer.

Checkpoints are dicts {"kind", "net", "shape", "config", "state_dict"} so the config travels with
the weights (the EMA weights are the ones saved and used).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from onestep import data
from onestep.diffusion import Schedule, Teacher, ddpm_scheduler
from onestep.methods import METHODS
from onestep.methods.base import Batch, Context
from onestep.nets import build_net, count_params

Logger = Callable[..., None]  # log(values: dict[str, float], step: int, series: str = "step")


class CheckpointError(RuntimeError):
    pass


class DivergenceError(RuntimeError):
    """A non-finite training loss (NaN or Inf)."""


class EMA:
    """Exponential moving average of a module's parameters (decay per optimiser step)."""

    def __init__(self, net: nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        for s, p in zip(self.shadow.parameters(), net.parameters(), strict=True):
            s.lerp_(p, 1.0 - self.decay)


def lr_at(step: int, total: int, base: float, warmup: int, schedule: str) -> float:
    """Linear warm-up, then constant or cosine decay to 1% of base."""
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "cosine":
        frac = (step - warmup) / max(1, total - warmup)
        return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
    return base


def save_checkpoint(path: str | Path, kind: str, net_cfg: dict, shape, cfg: dict, net: nn.Module) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"kind": kind, "net": net_cfg, "shape": list(shape), "config": cfg, "state_dict": net.state_dict()}, tmp)
    tmp.replace(path)  # atomic: a kill mid-write never leaves a corrupt checkpoint


def load_checkpoint(path: str | Path, kind: str) -> tuple[nn.Module, dict]:
    """(network with its weights, checkpoint dict); a clear error naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path} is not a {kind} checkpoint")
    net = build_net(ckpt["net"], tuple(ckpt["shape"]))
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not match its network config: {e}") from e
    return net.eval(), ckpt


def load_teacher(path: str | Path, device: str = "cpu") -> Teacher:
    net, ckpt = load_checkpoint(path, "teacher")
    return Teacher(net.to(device), Schedule.from_config(ckpt["config"]["diffusion"]))


def train_teacher(cfg: dict, device: str, log: Logger, progress: bool = True) -> tuple[nn.Module, dict]:
    """Epsilon-prediction DDPM (diffusers DDPMScheduler.add_noise), EMA weights returned."""
    tc = cfg["teacher"]
    torch.manual_seed(tc["seed"])
    shape = data.shape(cfg["dataset"])
    net = build_net(tc["net"], shape).to(device)
    ema = EMA(net, tc["ema"])
    opt = torch.optim.Adam(net.parameters(), lr=tc["lr"])
    sched = ddpm_scheduler(cfg["diffusion"])
    gen = torch.Generator().manual_seed(tc["seed"])
    T, B, steps = cfg["diffusion"]["T"], tc["batch_size"], tc["steps"]
    batches = data_batches(cfg["dataset"], B, gen)
    t0, running = time.time(), 0.0
    for step in tqdm(range(steps), desc="teacher", disable=not progress, mininterval=2.0):
        x0 = next(batches).to(device)
        eps = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, T, (B,), generator=gen).to(device)  # diffusers index
        xt = sched.add_noise(x0, eps, t)
        loss = ((net(xt, t) - eps) ** 2).mean()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, tc["lr"], tc.get("warmup", 0), tc.get("lr_schedule", "cosine"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(net)
        running = running + loss.detach()  # no per-step host sync
        if (step + 1) % tc["log_every"] == 0:
            log({"teacher_loss": float(running) / tc["log_every"], "lr": opt.param_groups[0]["lr"]}, step + 1)
            running = 0.0
    wall = time.time() - t0
    summary = {"wall_time_s": wall, "samples_per_s": steps * B / wall, "steps": steps,
               "params": count_params(net)}
    return ema.shadow, summary


def data_batches(ds: dict, batch_size: int, gen: torch.Generator):
    """Endless minibatches of real data (B, *shape): fresh toy samples, or draws from the image pool."""
    pool = None if ds["name"] in data.TOY else data.full(ds)
    while True:
        if pool is None:
            yield data.TOY[ds["name"]](batch_size, gen)
        else:
            yield pool[torch.randint(0, pool.shape[0], (batch_size,), generator=gen)]


def pair_batches(pairs: dict[str, torch.Tensor], batch_size: int, gen: torch.Generator):
    """Endless minibatches of teacher pairs (z, x0), reshuffled each epoch."""
    n = pairs["z"].shape[0]
    while True:
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            if idx.numel() == batch_size:
                yield Batch(pairs["z"][idx], pairs["x0"][idx])


def student_net_config(cfg: dict) -> dict:
    """`student.net`, with `times` raised to what the method's student needs (METHODS[name].times)."""
    net = dict(cfg["student"]["net"])
    times = max(net.get("times", 1), METHODS[cfg["method"]["name"]].times)
    return {**net, "times": times} if times != 1 else net


def train_student(cfg: dict, teacher: Teacher, pairs: dict[str, torch.Tensor], device: str, log: Logger,
                  progress: bool = True, on_phase_end: Callable[[int, int, nn.Module], None] | None = None
                  ) -> tuple[nn.Module, dict]:
    """Method-blind: builds METHODS[cfg.method.name] and runs its per-sample loss for its total steps.

    `on_phase_end(phase, step, ema_model)` runs when the method's phase (curriculum stage) ends,
    e.g. an Optuna trial reporting a validation score. A non-finite loss raises DivergenceError.
    """
    sc, mc, seed = cfg["student"], cfg["method"], cfg["seed"]
    torch.manual_seed(seed)
    shape = tuple(pairs["z"].shape[1:])
    ctx = Context(teacher=teacher, schedule=teacher.schedule, shape=shape)
    method = METHODS[mc["name"]](mc, ctx, seed).to(device)
    student = build_net(student_net_config(cfg), shape).to(device)
    if sc.get("init_from_teacher"):  # a two-time student keeps its fresh second-time embedding
        missing, unexpected = student.load_state_dict(teacher.net.state_dict(), strict=False)
        if unexpected or any("temb_s" not in k and "class_embedding" not in k for k in missing):
            raise CheckpointError("student.init_from_teacher: the student's net config does not match the teacher's "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    ema = EMA(student, sc["ema"])
    opt = torch.optim.Adam(student.parameters(), lr=sc["lr"])
    gen = torch.Generator().manual_seed(seed)
    batches = pair_batches(pairs, sc["batch_size"], gen)
    # real data for methods that train from data, on its own generator so pair draws stay the same
    reals = data_batches(cfg["dataset"], sc["batch_size"], torch.Generator().manual_seed(seed + 1)) if method.needs_data else None
    total, every = method.total_steps, sc["log_every"]
    acc: dict[str, float] = {}
    phase_acc: dict[str, float] = {}
    phase, phase_start = None, 0

    def close_phase(end: int) -> None:
        """Per-phase (curriculum stage) means, logged at step = phase index; then the phase hook."""
        n = end - phase_start
        log({f"phase_{k}": float(v) / n for k, v in phase_acc.items()} | {"phase_end_step": end}, int(phase),
            series="phase")
        if on_phase_end is not None:
            on_phase_end(int(phase), end, ema.shadow)

    teacher.evals = 0
    t0 = time.time()
    for step in tqdm(range(total), desc=mc["name"], disable=not progress, mininterval=2.0):
        info = method.schedule(step)  # once per step: what is trained now
        if phase is not None and info.get("phase") != phase:
            close_phase(step)
            phase_acc, phase_start = {}, step
        phase = info.get("phase")
        b = next(batches)
        batch = Batch(b.z.to(device), b.x0.to(device), None if reals is None else next(reals).to(device))
        aux = method.aux_step(student, batch, step, gen)  # the method's own networks, if any
        loss, logs = method.loss(student, batch, step, gen)
        logs = {**aux, **logs}
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, sc["lr"], sc.get("warmup", 0), sc.get("lr_schedule", "constant"))
        opt.zero_grad(set_to_none=True)
        loss.mean().backward()
        opt.step()
        ema.update(student)
        logs["loss"] = loss.mean().detach()
        for k, v in logs.items():  # accumulate on device; one sync per log tick, not per step
            acc[k] = acc.get(k, 0.0) + v
            phase_acc[k] = phase_acc.get(k, 0.0) + v
        if (step + 1) % every == 0 or step + 1 == total:
            n = every if (step + 1) % every == 0 else (step + 1) % every
            values = {k: float(v) / n for k, v in acc.items()}
            if not math.isfinite(values["loss"]):
                raise DivergenceError(f"non-finite loss ({values['loss']}) at step {step + 1} of {total}")
            log({**values, **info}, step + 1)
            acc = {}
    if phase is not None:
        close_phase(total)
    wall = time.time() - t0
    summary = {"wall_time_s": wall, "samples_per_s": total * sc["batch_size"] / wall, "steps": total,
               "teacher_evals": teacher.evals, "params": count_params(student)}
    return ema.shadow, summary
