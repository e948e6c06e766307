"""The contract every one-step method follows; the trainer knows nothing else.

A method is built once per run as `METHODS[name](cfg, ctx, seed)` with its config section, a
`Context` (frozen teacher, schedule, sample shape) and the run seed. The trainer then calls, for
step = 0..total_steps-1:

    info = method.schedule(step)                          # pure function of the step: what is trained now
    batch = method.prepare(batch, step, gen)              # per-sample draws for the whole batch (Batch.extra);
                                                          # the batch as it is for most
    aux = method.aux_step(student, batch, step, gen)      # the method's own networks (discriminator,
                                                          # fake score), own optimisers; {} for most
    loss, logs = method.loss(student, micro, step, gen)   # loss: (B,) per-sample (or (B, ...) per element),
                                                          # for the student; once per micro-batch `micro`

and samples with `method.sample(student, z, steps)` for each `steps` in `method.sample_steps`.
`info`, `aux` and `logs` are flat dicts of numbers that the trainer logs as they are;
`info["phase"]` (when present) marks phase boundaries (curriculum stages, distillation rounds).
The trainer minimises the mean of `loss`; with `grad_accum` > 1 it calls `loss` on equal
slices `micro` of the prepared batch (every tensor of it, `extra` included), so randomness drawn in
`prepare` is the same whatever the accumulation, randomness drawn in `loss` is not.

The trainer owns the student's EMA copy and offers it as `ctx.ema` (set before step 0, updated
after every optimiser step, frozen: no gradients) for methods whose papers form targets from it
(shortcut, CTM, consistency models); `None` outside the trainer.

Methods that train from data rather than from teacher pairs set `needs_data = True`: the trainer
then fills `Batch.data` with real data samples of the same batch size. The DDPM teacher is such a
method too (methods/ddpm.py, in `TEACHERS`, not `METHODS`), trained with no pairs at all.
`state_dict` / `load_state_dict` carry whatever the method owns (auxiliary networks, their
optimisers, frozen copies of the student) through a training checkpoint.

A method whose student jumps between two times, f(x, t, s) (CTM, MeanFlow, shortcut), sets
`times = 2`: the trainer builds the student with `student.net.times` raised to it
(`train.student_net`), so one grid over `method.name` needs no per-method net keys.

`MethodBase` gives the defaults of every optional part; a method subclasses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from onestep.diffusion import Schedule, Teacher


@dataclass
class Context:
    teacher: Teacher | None  # None while the teacher itself is trained (methods/ddpm.py)
    schedule: Schedule
    shape: tuple[int, ...]
    features: Callable[[torch.Tensor], torch.Tensor] | None = None  # frozen image features phi(x), x in [-1, 1]
    ema: nn.Module | None = None  # the trainer's EMA copy of the student (frozen), set before step 0


@dataclass
class Batch:
    z: torch.Tensor  # (B, *shape) fixed noise of a teacher pair
    x0: torch.Tensor  # (B, *shape) teacher DDIM solve from z: x0 ~ p_teacher(. | z)
    data: torch.Tensor | None = None  # (B, *shape) real data, only for methods with needs_data
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, ...) each: what `prepare` drew


class Method(Protocol):
    total_steps: int
    needs_data: bool
    times: int
    sample_steps: tuple[int, ...]

    def schedule(self, step: int) -> dict[str, float]: ...

    def prepare(self, batch: Batch, step: int, gen: torch.Generator) -> Batch: ...

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]: ...

    def loss(
        self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def sample(self, student: nn.Module, z: torch.Tensor, steps: int = 1) -> torch.Tensor: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class MethodBase:
    """Defaults for the optional parts of the contract."""

    total_steps: int
    needs_data = False
    times = 1  # time inputs of the student network: 2 for f(x, t, s)
    sample_steps: tuple[int, ...] = (1,)
    times = 1  # 2: the student is a two-time network f(x, t, s)

    def schedule(self, step: int) -> dict[str, float]:
        return {}

    def prepare(self, batch: Batch, step: int, gen: torch.Generator) -> Batch:
        return batch

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None

    def to(self, device: str | torch.device) -> MethodBase:
        """Move the method's own networks (none by default) to `device`."""
        return self
