"""Where a training run stands between two optimiser steps (LoopState): what a resume checkpoint saves
besides the weights, packed into the checkpoint and unpacked from it here and nowhere else.

A leaf module (torch only): checkpoint.py writes and reads it, loop.py fills and applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

# the fields packed under the checkpoint's "loop" key; `step` and `rng` are top-level keys of the checkpoint
_TOP = ("step", "rng")


@dataclass
class LoopState:
    """The training loop's state after `step` optimiser steps: with the modules' weights and optimiser states,
    everything a resumed run needs to continue bit for bit like an uninterrupted one."""

    step: int = 0  # optimiser steps done
    acc: dict[str, Any] = field(default_factory=dict)  # sums of the step logs since the last log tick
    phase_acc: dict[str, Any] = field(default_factory=dict)  # sums of the step logs since the phase began
    phase: Any = None  # the method's phase (schedule()["phase"]) at the last step; None: no phases (yet)
    phase_start: int = 0  # the step the phase began at
    batches: int | None = None  # pair batches drawn (PairBatches.position); None: no pairs (the teacher)
    teacher_evals: int | None = None  # the teacher's evaluations so far; None: no teacher (its own training)
    passes: tuple[int, int] = (0, 0)  # the student's samples through passes with and without autograd (Passes)
    aux_steps: int = 0  # optimiser steps of the method's own networks so far (AuxSteps)
    wall_s: float = 0.0  # wall seconds of every attempt, up to this state
    extra: dict = field(default_factory=dict)  # the caller's own state (Resume.extra: log rows, MLflow run id)
    rng: dict[str, Any] = field(default_factory=dict)  # RNG states: "torch", "cuda" (if any), each generator's

    def pack(self) -> dict:
        """The checkpoint's part for this state: {"step", "rng", "loop": {every other field}}."""
        loop = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _TOP}
        return {"step": self.step, "rng": self.rng, "loop": loop}

    @classmethod
    def unpack(cls, saved: dict) -> LoopState:
        """The state `pack` wrote into the checkpoint `saved`; KeyError or TypeError when it holds other
        fields (a checkpoint of another version)."""
        return cls(step=saved["step"], rng=saved["rng"], **saved["loop"])

    def to(self, device: str | torch.device) -> LoopState:
        """The state with its accumulated tensors on `device` (where the run's logs are summed)."""
        to = lambda d: {k: v.to(device) if torch.is_tensor(v) else v for k, v in d.items()}  # noqa: E731
        return LoopState(**{**{f.name: getattr(self, f.name) for f in fields(self)},
                            "acc": to(self.acc), "phase_acc": to(self.phase_acc)})
