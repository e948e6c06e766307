"""Training: one method-blind loop (`fit`) for the DDPM teacher (methods/ddpm.py) and every one-step
student (methods/): LR schedule, micro-batching, precision, EMA, logging, resume and preemption exist
once, here. The EMA weights are the ones returned (and saved: checkpoint.py).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm

from onestep import accel, data
from onestep.checkpoint import (  # noqa: F401 (load_resume, save_checkpoint: re-exported for tests)
    CheckpointError,
    Preempted,
    Resume,
    load_resume,
    restore_resume,
    save_checkpoint,
    save_resume,
)
from onestep.diffusion import Schedule, Teacher
from onestep.errors import OnestepError
from onestep.methods import TEACHERS, build_method, student_net  # noqa: F401 (student_net: re-exported)
from onestep.methods.base import Batch, Context
from onestep.nets import build_net, count_params

Logger = Callable[..., None]  # log(values: dict[str, float], step: int, series: str = "step")


class DivergenceError(OnestepError, RuntimeError):
    """A non-finite training loss (NaN or Inf)."""


class Passes:
    """Counts the samples through the student network's forward passes (the online net and its EMA copy),
    split into passes with autograd on (each one backpropagated: a forward + backward) and without (targets,
    sampling): the budget a run spends besides its optimiser steps and teacher evaluations. The method's own
    networks (fake score, discriminator) are not the student and are not counted."""

    def __init__(self, *nets: nn.Module):
        self.backward, self.forward_only = 0, 0
        self.handles = [n.register_forward_hook(self._hook) for n in nets]

    def _hook(self, module, args, out) -> None:
        n = args[0].shape[0] if args and hasattr(args[0], "shape") else 0
        if torch.is_grad_enabled():
            self.backward += n
        else:
            self.forward_only += n

    def summary(self) -> dict[str, int]:
        return {"student_forwards": self.backward + self.forward_only, "student_backwards": self.backward}

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class EMA:
    """Exponential moving average of a module's parameters (decay per optimiser step)."""

    def __init__(self, net: nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(net).eval().requires_grad_(False)
        self._shadow = list(self.shadow.parameters())  # loads copy into these tensors in place: built once

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """shadow <- shadow + (1 - decay) (net - shadow), every tensor in one multi-tensor call (a few
        kernel launches on CUDA instead of one per parameter tensor)."""
        torch._foreach_lerp_(self._shadow, list(net.parameters()), 1.0 - self.decay)


def lr_at(step: int, total: int, base: float, warmup: int, schedule: str) -> float:
    """Linear warm-up, then constant or cosine decay to 1% of base."""
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "cosine":
        frac = (step - warmup) / max(1, total - warmup)
        return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
    return base


def data_batches(ds: dict, batch_size: int, gen: torch.Generator, device: str | None = None):
    """Endless minibatches of real data (B, *shape): fresh toy samples, or draws from the image pool
    (held on the GPU when training there: no loader between the data and the device)."""
    pool = None if ds["name"] in data.TOY else data.full(ds)
    if pool is not None and device is not None and torch.device(device).type == "cuda":
        pool = pool.to(device)
    while True:
        if pool is None:
            yield data.TOY[ds["name"]](batch_size, gen)
        else:
            yield pool[torch.randint(0, pool.shape[0], (batch_size,), generator=gen)]


class PairBatches:
    """Endless minibatches of teacher pairs (z, x0), reshuffled each epoch (full batches only).

    Epoch e is shuffled by a permutation seeded by (seed, e), so where the stream stands is one integer,
    `position` (batches drawn so far), which a resume checkpoint saves and restores.
    """

    def __init__(self, pairs: dict[str, torch.Tensor], batch_size: int, seed: int, position: int = 0):
        self.pairs, self.batch_size, self.seed, self.position = pairs, batch_size, seed, position
        self.per_epoch = pairs["z"].shape[0] // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"student.batch_size ({batch_size}) exceeds the number of teacher pairs "
                             f"({pairs['z'].shape[0]}, pairs.num)")
        self._epoch, self._perm = -1, None

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        epoch, i = divmod(self.position, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.pairs["z"].shape[0], generator=gen)
        idx = self._perm[i * self.batch_size:(i + 1) * self.batch_size]  # (B,)
        self.position += 1
        extra = {"traj": self.pairs["xt"][idx]} if "xt" in self.pairs else {}  # (B, M, *shape) DDIM states
        return Batch(self.pairs["z"][idx], self.pairs["x0"][idx], extra=extra)


def train_teacher(cfg: dict, device: str, log: Logger, progress: bool = True,
                  resume: Resume | None = None) -> tuple[nn.Module, dict]:
    """The DDPM teacher (methods/ddpm.py: epsilon MSE on data) by the students' loop; EMA weights returned."""
    tc = cfg["teacher"]
    torch.manual_seed(tc["seed"])
    shape = data.shape(cfg["dataset"])
    ctx = Context(teacher=None, schedule=Schedule.from_config(cfg["diffusion"]), shape=shape)
    method = TEACHERS["ddpm"]({"steps": tc["steps"], "diffusion": cfg["diffusion"]}, ctx, tc["seed"]).to(device)
    net = build_net(tc["net"], shape).to(device)
    section = {"lr_schedule": "cosine", **tc}  # the teacher's default schedule
    return fit(cfg, section, method, ctx, net, tc["seed"], device, log, progress=progress, resume=resume,
               desc="teacher")


def train_student(cfg: dict, teacher: Teacher, pairs: dict[str, torch.Tensor], device: str, log: Logger,
                  progress: bool = True, on_phase_end: Callable[[int, int, nn.Module], None] | None = None,
                  features: nn.Module | None = None, resume: Resume | None = None) -> tuple[nn.Module, dict]:
    """Builds the run's method (methods.build_method) and its student, and trains them (fit) for the method's total steps.

    `features` (images): the dataset's frozen feature network, offered to methods as `ctx.features`.
    `on_phase_end`, `resume`: see fit.
    """
    sc, mc, seed = cfg["student"], cfg["method"], cfg["seed"]
    torch.manual_seed(seed)
    shape = tuple(pairs["z"].shape[1:])
    ctx = Context(teacher=teacher, schedule=teacher.schedule, shape=shape,
                  features=None if features is None else features.to(device).features,
                  trajectory_t=tuple(pairs["trajectory_t"].tolist()) if "trajectory_t" in pairs else None,
                  data_std=lambda: data.std(cfg["dataset"]))
    method = build_method(cfg, ctx, seed, device)
    student = build_net(student_net(cfg), shape).to(device)
    if sc.get("init_from_teacher"):  # a two-time student keeps its fresh second-time embedding
        missing, unexpected = student.load_state_dict(teacher.net.state_dict(), strict=False)
        if unexpected or any("temb_s" not in k and "class_embedding" not in k for k in missing):
            raise CheckpointError("student.init_from_teacher: the student's net config does not match the teacher's "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return fit(cfg, sc, method, ctx, student, seed, device, log, pairs=pairs, progress=progress,
               on_phase_end=on_phase_end, resume=resume, desc=mc["name"])


def _map(batch: Batch, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    """`fn` applied to every tensor of the batch (`extra` included; None stays None)."""
    f = lambda x: None if x is None else fn(x)  # noqa: E731
    return Batch(f(batch.z), f(batch.x0), f(batch.data), {k: f(v) for k, v in batch.extra.items()})


def _streams(ds: dict, pairs: dict[str, torch.Tensor] | None, needs_data: bool, batch_size: int, seed: int,
             device: str):
    """(the step's generator, every generator a resume checkpoint saves, teacher pair batches or None,
    real data batches or None). Real data (needs_data) come from their own generator when there are
    pairs, so the pair draws stay the same; with no pairs (the teacher) from the step's generator."""
    gen = torch.Generator().manual_seed(seed)
    on_gpu = torch.device(device).type == "cuda"  # pairs and data held on the GPU: no loader in between
    batches = None if pairs is None else PairBatches(
        {k: v.to(device) for k, v in pairs.items()} if on_gpu else pairs, batch_size, seed)
    reals_gen = gen if pairs is None else torch.Generator().manual_seed(seed + 1)
    reals = data_batches(ds, batch_size, reals_gen, device) if needs_data else None
    gens = {"gen": gen} if reals_gen is gen else {"gen": gen, "reals": reals_gen}
    return gen, gens, batches, reals


def _optimiser_step(method, model: nn.Module, opt: torch.optim.Optimizer, batch: Batch, step: int,
                    gen: torch.Generator, micro: list[slice], device: str, prec: str) -> dict:
    """One step: the method's own networks on the whole batch (aux_step), then the student's on the
    mean loss, accumulated over the micro-batches `micro`; returns the step's logs (tensors, no sync)."""
    with accel.precision_context(device, prec):
        aux = method.aux_step(model, batch, step, gen)  # the method's own networks, if any (whole batch)
    opt.zero_grad(set_to_none=True)
    logs = {}
    for sl in micro:  # gradient accumulation: micro-batches of the global batch
        with accel.precision_context(device, prec):
            loss, mlogs = method.loss(model, _map(batch, lambda x, sl=sl: x[sl]), step, gen)
        (loss.float().mean() / len(micro)).backward()
        mlogs["loss"] = loss.float().mean().detach()
        for k, v in mlogs.items():
            logs[k] = logs.get(k, 0.0) + v / len(micro)
    opt.step()
    return {**aux, **logs}


def fit(cfg: dict, section: dict, method, ctx: Context, net: nn.Module, seed: int, device: str, log: Logger,
        pairs: dict[str, torch.Tensor] | None = None, progress: bool = True,
        on_phase_end: Callable[[int, int, nn.Module], None] | None = None, resume: Resume | None = None,
        desc: str = "train") -> tuple[nn.Module, dict]:
    """The one training loop, method-blind: `method.total_steps` optimiser steps of `net` on the mean of
    `method.loss` (methods/base.py), with `section`'s (teacher or student) LR schedule, micro-batches,
    EMA, precision and logging; returns (the EMA copy, a summary).

    Batches: teacher pairs (z, x0) when `pairs` is given, real data (Batch.data) when
    `method.needs_data` (_streams). The EMA copy is offered to the method as `ctx.ema`.
    `on_phase_end(phase, step, ema_model)` runs when the method's phase (curriculum stage) ends, e.g.
    an Optuna trial reporting a validation score. A non-finite loss raises DivergenceError. With
    `resume`, training continues from `resume.state` and saves a resume checkpoint every
    `resume.every` steps (and on SIGTERM, then raises Preempted); on CPU the result is bit-for-bit
    that of an uninterrupted run.
    """
    B, teacher = section["batch_size"], ctx.teacher
    cl = accel.use_channels_last(device, section.get("channels_last", False))
    net = accel.prepare_net(net, ctx.shape, cl)
    ema = EMA(net, section["ema"])
    ctx.ema = ema.shadow
    opt = accel.adam(net.parameters(), section["lr"], device)  # fused on CUDA
    # GPU options (accel.py); the defaults change nothing. A method may insist on fp32 (fp32_only, e.g. JVP).
    prec = accel.resolve_precision(device, section.get("precision", "fp32"), getattr(method, "fp32_only", False))
    model = accel.maybe_compile(net, section.get("compile", False))
    micro = accel.micro_slices(B, section.get("grad_accum", 1))
    accel.reset_memory(device)
    gen, gens, batches, reals = _streams(cfg["dataset"], pairs, method.needs_data, B, seed, device)
    total, every = method.total_steps, section["log_every"]
    acc: dict[str, float] = {}
    phase_acc: dict[str, float] = {}
    phase, phase_start, start, before = None, 0, 0, 0.0  # before: wall seconds of earlier attempts
    modules = {"student": net, "ema": ema.shadow, "opt": opt, "method": method}
    if teacher is not None:
        teacher.evals = 0
    passes = Passes(net, ema.shadow)
    if resume is not None and resume.state is not None:
        loop = restore_resume(resume.state, resume.path, modules, gens, device)
        start, acc, phase_acc = resume.state["step"], loop["acc"], loop["phase_acc"]
        phase, phase_start, before = loop["phase"], loop["phase_start"], loop.get("wall_s", 0.0)
        if batches is not None:
            batches.position = loop["batches"]
        if teacher is not None:
            teacher.evals = loop["teacher_evals"]
        passes.backward, passes.forward_only = loop.get("passes", (0, 0))
        print(f"resuming from {resume.path} at step {start} of {total}", flush=True)

    def close_phase(end: int) -> None:
        """Per-phase (curriculum stage) means, logged at step = phase index; then the phase hook."""
        n = end - phase_start
        log({f"phase_{k}": float(v) / n for k, v in phase_acc.items()} | {"phase_end_step": end}, int(phase),
            series="phase")
        if on_phase_end is not None:
            on_phase_end(int(phase), end, ema.shadow)

    t0 = tick = time.time()
    for step in tqdm(range(start, total), desc=desc, disable=not progress, mininterval=2.0, initial=start,
                     total=total):
        info = method.schedule(step)  # once per step: what is trained now
        if phase is not None and info.get("phase") != phase:
            close_phase(step)
            phase_acc, phase_start = {}, step
        phase = info.get("phase")
        b = Batch(None, None) if batches is None else next(batches)
        batch = Batch(*(None if x is None else x.to(device) for x in (b.z, b.x0, None if reals is None else next(reals))),
                      {k: v.to(device) for k, v in b.extra.items()})
        batch = _map(method.prepare(batch, step, gen), lambda x: accel.memory_format(x, cl))  # (B, ...) each
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, section["lr"], section.get("warmup", 0), section.get("lr_schedule", "constant"))
        logs = _optimiser_step(method, model, opt, batch, step, gen, micro, device, prec)
        ema.update(net)
        for k, v in logs.items():  # accumulate on device; one sync per log tick, not per step
            acc[k] = acc.get(k, 0.0) + v
            phase_acc[k] = phase_acc.get(k, 0.0) + v
        if (step + 1) % every == 0 or step + 1 == total:
            n = every if (step + 1) % every == 0 else (step + 1) % every
            values = {k: float(v) / n for k, v in acc.items()}
            if not math.isfinite(values["loss"]):
                raise DivergenceError(f"non-finite loss ({values['loss']}) at step {step + 1} of {total}")
            log({**values, **info, "lr": opt.param_groups[0]["lr"], "samples_per_s": n * B / (time.time() - tick),
                 **accel.memory_stats(device)}, step + 1)
            acc, tick = {}, time.time()
        if resume is not None and resume.due(step + 1, total):
            if resume.on_save is not None:
                resume.on_save()
            loop = {"acc": acc, "phase_acc": phase_acc, "phase": phase, "phase_start": phase_start,
                    "batches": None if batches is None else batches.position,
                    "teacher_evals": None if teacher is None else teacher.evals, "extra": resume.extra,
                    "wall_s": before + time.time() - t0,
                    "passes": (passes.backward, passes.forward_only)}
            save_resume(resume.path, cfg, step + 1, modules, gens, loop)
            if resume.preempted:
                raise Preempted(f"stopped at step {step + 1} of {total}; resume checkpoint saved to {resume.path}",
                                resume.signal)
    if phase is not None:
        close_phase(total)
    accel.synchronize(device)
    passes.close()
    wall = time.time() - t0
    # wall_time_s: every attempt's seconds up to its last resume checkpoint, plus this one's (a resumed run's cost)
    summary = {"wall_time_s": before + wall, "attempt_wall_s": wall, "samples_per_s": (total - start) * B / wall,
               "steps": total,
               "params": count_params(net), "resumed_from_step": start, "precision": prec, **passes.summary(),
               **({} if teacher is None else {"teacher_evals": teacher.evals}), **accel.memory_stats(device)}
    return ema.shadow, summary
