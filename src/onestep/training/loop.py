"""The one training loop (`fit`), method-blind: LR schedule, micro-batching, precision, EMA, logging, resume
and preemption exist once, here, for the DDPM teacher and every one-step student (methods/base.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn
from tqdm import tqdm

from onestep import accel
from onestep.errors import OnestepError
from onestep.methods.base import Batch, Context
from onestep.nets import count_params
from onestep.training.batches import Streams, map_batch
from onestep.training.ema import EMA
from onestep.training.passes import AuxSteps, Passes
from onestep.training.resume import Resume
from onestep.training.schedule import lr_at
from onestep.training.state import LoopState

Logger = Callable[..., None]  # log(values: dict[str, float], step: int, series: str = "step")
PhaseHook = Callable[[int, int, nn.Module], None]  # on_phase_end(phase, step, ema_model)


class DivergenceError(OnestepError, RuntimeError):
    """A non-finite training loss (NaN or Inf)."""


def fit(cfg: dict, section: dict, method, ctx: Context, net: nn.Module, seed: int, device: str, log: Logger,
        pairs: dict[str, torch.Tensor] | None = None, progress: bool = True, on_phase_end: PhaseHook | None = None,
        resume: Resume | None = None, desc: str = "train") -> tuple[nn.Module, dict]:
    """The one training loop, method-blind: `method.total_steps` optimiser steps of `net` on the mean of
    `method.loss` (methods/base.py), with `section`'s (teacher or student) LR schedule, micro-batches,
    EMA, precision and logging; returns (the EMA copy, a summary).

    Batches: teacher pairs (z, x0) when `pairs` is given, real data (Batch.data) when
    `method.needs_data` (batches.Streams). The EMA copy is offered to the method as `ctx.ema`.
    `on_phase_end(phase, step, ema_model)` runs when the method's phase (a stage, a round) ends, e.g.
    an Optuna trial reporting a validation score. A non-finite loss raises DivergenceError. With
    `resume`, training continues from `resume.state` (a LoopState) and saves a resume checkpoint every
    `resume.every` steps (and on SIGTERM, then raises Preempted); on CPU the result is bit-for-bit
    that of an uninterrupted run.
    """
    B, teacher, total, every = section["batch_size"], ctx.teacher, method.total_steps, section["log_every"]
    cl = accel.use_channels_last(device, section["channels_last"])
    net = accel.prepare_net(net, ctx.shape, cl)
    ema = EMA(net, section["ema"])
    ctx.ema = ema.shadow
    opt = accel.adam(net.parameters(), section["lr"], device)  # fused on CUDA
    # GPU options (accel.py); the defaults change nothing. A method may insist on fp32 (fp32_only, e.g. JVP).
    prec = accel.resolve_precision(device, section["precision"], getattr(method, "fp32_only", False))
    model = accel.maybe_compile(net, section["compile"])
    micro = accel.micro_slices(B, section["grad_accum"])
    accel.reset_memory(device)
    streams = Streams.open(cfg["dataset"], pairs, method.needs_data, B, seed, device)
    modules = {"student": net, "ema": ema.shadow, "opt": opt, "method": method}
    passes = Passes(net, ema.shadow)
    state = _start(resume, modules, streams, teacher, passes, device, total)
    aux_steps = AuxSteps(opt, state.aux_steps)  # the method's own optimisers' steps (a fake score's updates)
    start, before = state.step, state.wall_s  # before: wall seconds of earlier attempts
    close_phase = lambda end: _close_phase(state, end, log, on_phase_end, ema.shadow)  # noqa: E731
    t0 = tick = time.time()
    for step in tqdm(range(start, total), desc=desc, disable=not progress, mininterval=2.0, initial=start,
                     total=total):
        info = method.schedule(step)  # once per step: what is trained now
        if state.phase is not None and info.get("phase") != state.phase:
            close_phase(step)
        state.phase = info.get("phase")
        batch = map_batch(method.prepare(streams.next(device), step, streams.gen),
                          lambda x: accel.memory_format(x, cl))  # (B, ...) each
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, section["lr"], section["warmup"], section["lr_schedule"])
        logs = _optimiser_step(method, model, opt, batch, step, streams.gen, micro, device, prec)
        ema.update(net)
        _accumulate(state, logs)
        state.step = done = step + 1
        if done % every == 0 or done == total:
            n = every if done % every == 0 else done % every
            _log_tick(state, n, total, info | {"lr": opt.param_groups[0]["lr"],
                                               "samples_per_s": n * B / (time.time() - tick)}, device, log)
            tick = time.time()
        if resume is not None and resume.due(done, total):
            wall = before + time.time() - t0
            state.aux_steps = aux_steps.steps
            resume.save(cfg, modules, streams.gens, _snapshot(state, streams, teacher, passes, wall), total)
    if state.phase is not None:
        close_phase(total)
    accel.synchronize(device)
    passes.close()
    aux_steps.close()
    wall = time.time() - t0
    # wall_time_s: every attempt's seconds up to its last resume checkpoint, plus this one's (a resumed run's cost)
    return ema.shadow, {"wall_time_s": before + wall, "attempt_wall_s": wall,
                        "samples_per_s": (total - start) * B / wall, "steps": total, "params": count_params(net),
                        "aux_steps": aux_steps.steps,
                        "resumed_from_step": start, "precision": prec, **passes.summary(),
                        **({} if teacher is None else {"teacher_evals": teacher.evals}), **accel.memory_stats(device)}


def _start(resume: Resume | None, modules: dict, streams: Streams, teacher, passes: Passes, device: str,
           total: int) -> LoopState:
    """The state the loop starts from: a fresh one, or the resume checkpoint's, its weights, RNGs and
    counters (pair stream, teacher evaluations, student passes) put back in place."""
    if teacher is not None:
        teacher.evals = 0
    if resume is None or resume.state is None:
        return LoopState()
    state = resume.restore(modules, streams.gens, device)
    if streams.pairs is not None:
        streams.pairs.position = state.batches
    if teacher is not None:
        teacher.evals = state.teacher_evals
    passes.backward, passes.forward_only = state.passes
    print(f"resuming from {resume.path} at step {state.step} of {total}", flush=True)
    return state


def _snapshot(state: LoopState, streams: Streams, teacher, passes: Passes, wall_s: float) -> LoopState:
    """`state` with the counters kept elsewhere during the loop (pair stream, teacher evaluations, student
    passes) and the wall seconds so far: what a resume checkpoint saves now."""
    return replace(state, batches=streams.position, teacher_evals=None if teacher is None else teacher.evals,
                   passes=(passes.backward, passes.forward_only), wall_s=wall_s)


def _accumulate(state: LoopState, logs: dict) -> None:
    """The step's logs added to the sums since the last log tick and since the phase began (on device: one
    sync per log tick, not per step)."""
    for k, v in logs.items():
        state.acc[k] = state.acc.get(k, 0.0) + v
        state.phase_acc[k] = state.phase_acc.get(k, 0.0) + v


def _log_tick(state: LoopState, n: int, total: int, info: dict, device: str, log: Logger) -> None:
    """The means of the last `n` steps' logs, with `info` (schedule, lr, throughput) and memory, logged at
    step `state.step`; the sums start afresh. DivergenceError on a non-finite loss."""
    values = {k: float(v) / n for k, v in state.acc.items()}
    if not math.isfinite(values["loss"]):
        raise DivergenceError(f"non-finite loss ({values['loss']}) at step {state.step} of {total}")
    log({**values, **info, **accel.memory_stats(device)}, state.step)
    state.acc = {}


def _close_phase(state: LoopState, end: int, log: Logger, on_phase_end: PhaseHook | None, ema: nn.Module) -> None:
    """Per-phase (a stage, a round) means, logged at step = phase index; then the phase hook; the phase's
    sums start afresh at `end`."""
    n = end - state.phase_start
    log({f"phase_{k}": float(v) / n for k, v in state.phase_acc.items()} | {"phase_end_step": end}, int(state.phase),
        series="phase")
    if on_phase_end is not None:
        on_phase_end(int(state.phase), end, ema)
    state.phase_acc, state.phase_start = {}, end


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
            loss, mlogs = method.loss(model, map_batch(batch, lambda x, sl=sl: x[sl]), step, gen)
        (loss.float().mean() / len(micro)).backward()
        mlogs["loss"] = loss.float().mean().detach()
        for k, v in mlogs.items():
            logs[k] = logs.get(k, 0.0) + v / len(micro)
    opt.step()
    return {**aux, **logs}
