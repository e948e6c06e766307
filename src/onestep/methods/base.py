"""The contract every one-step method follows; the trainer knows nothing else.

A method is built once per run (`methods.build_method`: `METHODS[name](cfg, ctx, seed)`) with its config section, a
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
(shortcut, CTM, consistency models); `None` outside the trainer. `ctx.data_std()` gives the data's
standard deviation (over every element) to methods whose maths needs it (EDM's sigma_data); training
and evaluation both offer it, computed from the dataset config, so a student samples as it was trained.

Methods that train from data rather than from teacher pairs set `needs_data = True`: the trainer
then fills `Batch.data` with real data samples of the same batch size. The DDPM teacher is such a
method too (methods/ddpm.py, `TEACHER`, not in `METHODS`), trained with no pairs at all.
`state_dict` / `load_state_dict` carry whatever the method owns (auxiliary networks, their
optimisers, frozen copies of the student) through a training checkpoint.

A method whose student jumps between two times, f(x, t, s) (CTM, MeanFlow, shortcut), sets
`times = 2`: the trainer builds the student with `student.net.times` raised to it
(`methods.student_net`), so one grid over `method.name` needs no per-method net keys.

`MethodBase` gives the defaults of every optional part; a method subclasses it.

Knobs. A method's config section is its frozen dataclass `Method.Config` (a `Knobs`), the one
source of truth for its keys, types, defaults, bounds and descriptions: the JSON schema that checks
a config (`Knobs.schema`), the defaults a run config is filled from (`Knobs.defaults`) and the
method's own cross-key rules (`Knobs.check`) all come from it. Field types say what a key takes
(`int`, `float`, `Literal[...]` for a choice, `X | None`, `tuple[X, ...]`, a nested `Knobs` for a
nested section); `knob(default, doc, minimum=...)` adds the description and JSON-schema bounds.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Literal, Protocol, Union, get_args, get_origin, get_type_hints

import torch
from torch import nn

from onestep.columns import Column
from onestep.diffusion import Schedule, Teacher
from onestep.errors import ConfigError

# tune_baselines: the student's knobs every method's study searches too, after the method's own `search_space`
STUDENT_SPACE: dict[str, dict] = {"student.lr": {"low": 1e-4, "high": 3e-3, "log": True}}


@dataclass
class Context:
    """What a method is built with besides its config section; a run's is built by `methods.context`."""

    teacher: Teacher | None  # None while the teacher itself is trained (methods/ddpm.py)
    schedule: Schedule
    shape: tuple[int, ...]
    features: Callable[[torch.Tensor], torch.Tensor] | None = None  # frozen image features phi(x), x in [-1, 1]
    ema: nn.Module | None = None  # the trainer's EMA copy of the student (frozen), set before step 0
    trajectory_t: tuple[int, ...] | None = None  # seed times of the pairs' teacher DDIM states (Batch.extra["xt"])
    data_std: Callable[[], float] | None = None  # () -> the data's std over every element (data.std), computed
                                                  # on first call; what `sigma_data: auto` resolves to
    data_bound: Callable[[], float] | None = None  # () -> the data's largest |coordinate| (data.bound): `clip_x0: auto`


@dataclass
class Batch:
    z: torch.Tensor  # (B, *shape) fixed noise of a teacher pair
    x0: torch.Tensor  # (B, *shape) teacher DDIM solve from z: x0 ~ p_teacher(. | z)
    data: torch.Tensor | None = None  # (B, *shape) real data, only for methods with needs_data
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, ...) each: what `prepare` drew, and
    # "traj" (B, M, *shape): the teacher's DDIM states x_t(z) at ctx.trajectory_t when the pairs store them


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

    Config: ClassVar[type[Knobs]]  # the method's knobs (its config section)
    total_steps: int
    needs_data = False
    times = 1  # time inputs of the student network: 2 for f(x, t, s)
    sample_steps: tuple[int, ...] = (1,)
    # tune_baselines: the method's most sensitive knobs and their ranges, {knob: {low, high, log} | {choices}};
    # a method knob, or a dotted key outside the method section. The study searches these, then STUDENT_SPACE
    # (onestep.tuning.space.method_space); a method may narrow a student knob by declaring it here.
    search_space: ClassVar[dict[str, dict]] = {}
    # How the student reads an epsilon network when it starts from the teacher (student.init_from_teacher), so the
    # teacher's weights are a meaningful start (nets.EpsHead, its READS): "x0_at_T", a generator G(z, t) of noise
    # read as the teacher's x0 prediction at T (the curriculum, kd, dmd2); "x0", an x0 prediction at its time (tdm);
    # "v", a v-prediction (progressive); "edm", EDM's raw network F (cd, ctm: c_skip x + c_out F is the teacher's
    # denoiser); "flow", a rectified-flow velocity (reflow). None: the weights are copied as they are.
    teacher_read: ClassVar[str | None] = None

    @classmethod
    def teacher_head(cls, section: dict, data_std: Callable[[], float]) -> dict | None:
        """nets.EpsHead's arguments for a student started from the teacher ({"read": ...}; an EDM read adds its
        sigma_data), or None: the student is the plain network, the teacher's weights copied as they are."""
        return None if cls.teacher_read is None else {"read": cls.teacher_read}

    # The training budget in optimiser steps, method-blind for tune_baselines (every trial of every study trains
    # the same share of its method's budget, whatever knobs the trial sets): most methods hold it in `steps`;
    # a method whose total follows from several knobs (stages, rounds, phases) overrides both.
    @classmethod
    def total_steps_of(cls, section: dict) -> int:
        """The optimiser steps a run with this method section trains (the built method's `total_steps`)."""
        return int(cls.Config.from_dict(section).steps)

    @classmethod
    def with_total_steps(cls, section: dict, steps: int) -> dict:
        """`section` set to train `steps` optimiser steps (floored to the method's unit: whole stages, rounds),
        its other knobs as they are."""
        return {**section, "steps": int(steps)}

    def schedule(self, step: int) -> dict[str, float]:
        return {}

    def prepare(self, batch: Batch, step: int, gen: torch.Generator) -> Batch:
        return batch

    def aux_step(self, student: nn.Module, batch: Batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return {}

    def report(self) -> dict[str, float]:
        """Numbers of the method's schedule the evaluation records (metrics.json `method_report`); {} by default."""
        return {}

    # ---- a method's own extras: what its jobs read, what its evaluation reports, what its tables add.
    # Nothing outside methods/ names a method: rules, evaluation, tables and tuning ask these hooks.

    @classmethod
    def state_grid(cls, section: dict, T: int) -> tuple[str, tuple[int, ...]] | None:
        """The teacher's DDIM states x_t(z) this method's runs read: (label, interior times 0 < t < T, ascending),
        the label naming the states file teacher/trajectory/<noise>-<label>.npz (one file per label and noise);
        None (the default): the method reads no states."""
        return None

    @classmethod
    def train_states(cls, section: dict) -> bool:
        """Training reads the states of the pairs' z at `state_grid` (Batch.extra["traj"]); False by default."""
        return False

    @classmethod
    def eval_states(cls, section: dict) -> bool:
        """Evaluation reads the states of the held-out stage noise at `state_grid` (`diagnostics`); False by default."""
        return False

    @classmethod
    def phases(cls, section: dict) -> int:
        """How many phases (`schedule(step)["phase"]`) a run of this section trains: the tuning's pruning
        resource (a report at each phase end); 1 by default."""
        return 1

    @classmethod
    def columns(cls) -> tuple[Column, ...]:
        """The table columns of this method's own numbers (keys of `report()` or of `diagnostics()["metrics"]`);
        none by default. A table shows a column when some run of it has the number."""
        return ()

    def diagnostics(self, student: nn.Module, states: dict, z: torch.Tensor) -> dict:
        """The method's own evaluation of a trained student, beside the generic scores: a dict with optional
        `record` (stored in metrics.json under the method's key, e.g. per-stage errors), `metrics` (flat
        numbers: metrics.json, MLflow, `columns()`) and `series` ([(step, {name: number})]: MLflow curves).
        Called when `eval_states` and the stage noise's teacher states (`states`) are given; `z` (n, *shape):
        that noise. {} by default."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None

    def to(self, device: str | torch.device) -> MethodBase:
        """Move the method's own networks (none by default) to `device`."""
        return self


# ---------------------------------------------------------------- knobs: one dataclass per method section


def knob(default: Any, doc: str = "", *, key: str | None = None, items: dict | None = None,
         schema: dict | None = None, **bounds) -> Any:
    """A dataclass field that is a config knob: its default, a description, JSON-schema `bounds`
    (minimum, maximum, exclusiveMinimum, ...) of its number(s), `items` bounds of a tuple's numbers,
    the config `key` when it is not the field name (a Python keyword), or an explicit `schema`."""
    meta = {"doc": doc, "key": key, "items": items or {}, "schema": schema, "bounds": bounds}
    if isinstance(default, dict | list) or is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


NUMBERS = {int: "integer", float: "number"}
TYPES = {**NUMBERS, str: "string", bool: "boolean"}


def type_schema(tp: Any, bounds: dict, items: dict) -> dict:
    """JSON schema of an annotation: int / float (with bounds), str, bool, Literal (enum or const),
    X | Y (oneOf), tuple[X, ...] / tuple[X, X] (array), a nested Knobs dataclass (object), dict."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin in (Union, types.UnionType):
        return {"oneOf": [type_schema(a, bounds, items) for a in args]}
    if tp is type(None):
        return {"type": "null"}
    if tp in TYPES:
        return {"type": TYPES[tp], **(bounds if tp in NUMBERS else {})}
    if origin is tuple:
        fixed = not (len(args) == 2 and args[1] is Ellipsis)
        out = {"type": "array", "items": type_schema(args[0], items, {}), "minItems": len(args) if fixed else 1}
        return {**out, "maxItems": len(args)} if fixed else out
    if is_dataclass(tp):
        return tp.object_schema()
    if tp is dict or origin is dict:
        return {"type": "object"}
    raise TypeError(f"knob type {tp!r} has no JSON schema")


def plain(v: Any) -> Any:
    """A knob value as it stands in a YAML/JSON config: tuples as lists, nested knobs as dicts."""
    if isinstance(v, Knobs):
        return v.as_dict()
    if isinstance(v, tuple | list):
        return [plain(x) for x in v]
    return copy.deepcopy(v)


class Knobs:
    """Mixin of a frozen dataclass whose fields are a config section's keys (see the module docstring)."""

    @classmethod
    def knobs(cls) -> list[tuple[str, Any, Any]]:
        """(config key, dataclass field, resolved annotation) per knob, in field order."""
        hints = get_type_hints(cls)
        return [(f.metadata.get("key") or f.name, f, hints[f.name]) for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict, top: bool = True):
        """From a config section (missing keys take their defaults; `name` is the registry's)."""
        known = {k: (f, tp) for k, f, tp in cls.knobs()}
        extra = sorted(set(d) - set(known) - ({"name"} if top else set()))
        if extra:
            raise TypeError(f"unknown key(s) {', '.join(extra)}; allowed keys: {', '.join(sorted(known))}")
        kw = {}
        for k, v in d.items():
            if k in known:
                f, tp = known[k]
                kw[f.name] = coerce(tp, v)
        return cls(**kw)

    def as_dict(self) -> dict:
        """{config key: value}, every knob, as a config stores it."""
        return {k: plain(getattr(self, f.name)) for k, f, _ in self.knobs()}

    @classmethod
    def defaults(cls) -> dict:
        return cls().as_dict()

    @classmethod
    def object_schema(cls) -> dict:
        props = {}
        for k, f, tp in cls.knobs():
            m = f.metadata
            props[k] = copy.deepcopy(m.get("schema")) or type_schema(tp, m.get("bounds", {}), m.get("items", {}))
            if m.get("doc"):
                props[k]["description"] = m["doc"]
        return {"type": "object", "additionalProperties": False, "properties": props}

    @classmethod
    def schema(cls, name: str) -> dict:
        """The JSON schema of the method section `{name: <name>, **knobs}`."""
        sch = cls.object_schema()
        sch["properties"] = {"name": {"const": name}, **sch["properties"]}
        doc = (cls.__doc__ or "").strip()
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **({"description": doc} if doc else {}),
                **sch, "required": ["name"]}

    @classmethod
    def check(cls, m: dict, cfg: dict) -> None:
        """Rules a JSON schema cannot say (the method section `m` filled with defaults, the whole
        config `cfg`); raise ConfigError("method.<key>: ...; allowed: ..."). None by default."""
        return None


def coerce(tp: Any, v: Any) -> Any:
    """A config value as the field's type: a nested section as its Knobs, a list as a tuple."""
    if is_dataclass(tp) and isinstance(v, dict):
        return tp.from_dict(v, top=False)
    if get_origin(tp) is tuple and isinstance(v, list | tuple):
        return tuple(v)
    return v


__all__ = ["Batch", "ConfigError", "Context", "Knobs", "Method", "MethodBase", "knob"]
