"""The contract every one-step method follows; the trainer knows nothing else.

A method is built once per run as `METHODS[name](cfg, ctx)` with its config section and a
`Context` (frozen teacher, schedule, sample shape). The trainer then calls, for step = 0..total_steps-1:

    info = method.schedule(step)                 # pure function of the step: what is trained now
    loss, logs = method.loss(student, batch, step, gen)   # loss: (B,) per-sample

and samples with `method.sample(student, z)`. `info` and `logs` are flat dicts of numbers that
the trainer logs as they are; `info["phase"]` (when present) marks curriculum boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from onestep.diffusion import Schedule, Teacher


@dataclass
class Context:
    teacher: Teacher
    schedule: Schedule
    shape: tuple[int, ...]


@dataclass
class Batch:
    z: torch.Tensor  # (B, *shape) fixed noise of a teacher pair
    x0: torch.Tensor  # (B, *shape) teacher DDIM solve from z: x0 ~ p_teacher(. | z)


class Method(Protocol):
    total_steps: int

    def schedule(self, step: int) -> dict[str, float]: ...

    def loss(
        self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def sample(self, student: nn.Module, z: torch.Tensor) -> torch.Tensor: ...
