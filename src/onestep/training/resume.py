"""The resume checkpoint of a training run (preemption): written atomically every `checkpoint_every` steps and
on SIGTERM / SIGINT, read back by the next attempt. It is {"kind", "config", "modules", "step", "rng", "loop"}:
the config it must match, the module and optimiser states, and the loop's state as LoopState packs it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from onestep.checkpoint import CheckpointError, load_file, save_atomic
from onestep.training.state import LoopState


class Preempted(RuntimeError):
    """SIGTERM (SLURM preemption, scancel, a timeout) or SIGINT (Ctrl-C) during training; the resume
    checkpoint is saved. `signal`: which one."""

    def __init__(self, msg: str, signal: str = "SIGTERM"):
        super().__init__(msg)
        self.signal = signal


RESUME_IGNORED = ("device", "threads", "tracking")  # config keys that may change between attempts


def _resume_key(cfg: dict) -> dict:
    """The part of the config a resume checkpoint must match (checkpoint_every may change)."""
    key = {k: v for k, v in cfg.items() if k not in RESUME_IGNORED}
    for section in ("student", "teacher"):
        if section in key:
            key[section] = {k: v for k, v in key[section].items() if k != "checkpoint_every"}
    return json.loads(json.dumps(key, sort_keys=True))


def _diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


@dataclass
class Resume:
    """The resume checkpoint of one training run: where, how often, and what the caller adds.

    `state` is where the checkpoint found at start stands (a LoopState; None: a fresh run) and `modules` its
    saved module and optimiser states; `extra` is the caller's own state (the CLI's log rows, its MLflow run
    id), saved as is; `on_save()` runs just before each save (the CLI flushes its MLflow buffer there).
    `preempted` is set by a SIGTERM handler: the trainer then saves at the end of the current step and
    raises Preempted.
    """

    path: Path
    every: int
    state: LoopState | None = None
    modules: dict | None = None
    extra: dict = field(default_factory=dict)
    on_save: Callable[[], None] | None = None
    preempted: bool = False
    signal: str = "SIGTERM"  # what set `preempted` (jobs.on_sigterm): SIGTERM, or SIGINT (Ctrl-C)

    @classmethod
    def open(cls, path: str | Path, every: int, cfg: dict) -> Resume:
        saved = load_resume(path, cfg)
        if saved is None:
            return cls(Path(path), every)
        try:
            state = LoopState.unpack(saved)
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"resume checkpoint {path} was written by another version of the trainer "
                                  f"({type(e).__name__}: {e}); delete it to train from scratch") from e
        return cls(Path(path), every, state, saved["modules"])

    def due(self, done: int, total: int) -> bool:
        return done < total and (self.preempted or (self.every > 0 and done % self.every == 0))

    def save(self, cfg: dict, modules: dict, gens: dict[str, torch.Generator], state: LoopState, total: int) -> None:
        """The checkpoint of `state` (with `extra`), after `on_save()`; then Preempted if a signal asked to stop."""
        if self.on_save is not None:
            self.on_save()
        save_resume(self.path, cfg, modules, gens, replace(state, extra=self.extra))
        if self.preempted:
            raise Preempted(f"stopped at step {state.step} of {total}; resume checkpoint saved to {self.path}",
                            self.signal)

    def restore(self, modules: dict, gens: dict[str, torch.Generator], device: str | torch.device) -> LoopState:
        """Loads the saved module/optimiser states and every RNG; returns the state (accumulators on `device`)."""
        state = self.state
        try:
            for k, m in modules.items():
                m.load_state_dict(self.modules[k])
            for k, g in gens.items():
                g.set_state(state.rng[k])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"resume checkpoint {self.path} does not match this run ({type(e).__name__}: "
                                  f"{e}); delete it to train from scratch") from e
        torch.set_rng_state(state.rng["torch"])
        if "cuda" in state.rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state.rng["cuda"])
        return state.to(device)


def save_resume(path: str | Path, cfg: dict, modules: dict, gens: dict[str, torch.Generator],
                state: LoopState) -> None:
    """Everything to continue bit-for-bit at `state.step`: module/optimiser states, every RNG (taken now),
    the loop's state (LoopState.pack)."""
    rng = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in gens.items()}}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    save_atomic({"kind": "resume", "config": _resume_key(cfg), **replace(state, rng=rng).pack(),
                  "modules": {k: m.state_dict() for k, m in modules.items()}}, path)


def load_resume(path: str | Path, cfg: dict) -> dict | None:
    """The resume checkpoint at `path` as saved (None if there is none); CheckpointError naming the file when
    it is unreadable or was written for another config."""
    path = Path(path)
    if not path.is_file():
        return None
    state = load_file(path, "resume checkpoint", "delete it to train from scratch")
    if not isinstance(state, dict) or state.get("kind") != "resume":
        raise CheckpointError(f"{path} is not a resume checkpoint; delete it to train from scratch")
    diff = _diff(state["config"], _resume_key(cfg))
    if diff:
        raise CheckpointError(f"resume checkpoint {path} was written for another config (differs at "
                              f"{', '.join(diff[:5])}); delete it to train from scratch")
    return state
