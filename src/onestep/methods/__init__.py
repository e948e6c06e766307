"""Registry of one-step methods: `METHODS[name](cfg, ctx, seed)`, all with the contract in base.py; the one
builder of a run's Context (`context`) and of its method (`build_method`).

A method is one file: its class (the contract) and its knobs (`Method.Config`, a frozen dataclass:
keys, types, defaults, bounds, descriptions and cross-key rules). Adding one is that file plus its
line here. Shared maths lives in common.py; method files never import each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from onestep import data
from onestep.diffusion import Schedule, Teacher
from onestep.methods.base import Context, Method
from onestep.methods.cd import CD
from onestep.methods.ct import CT
from onestep.methods.ctm import CTM
from onestep.methods.curriculum import Curriculum
from onestep.methods.ddpm import DDPM
from onestep.methods.dmd2 import DMD2
from onestep.methods.drifting import Drifting
from onestep.methods.kd import KD
from onestep.methods.meanflow import MeanFlow
from onestep.methods.progressive import Progressive
from onestep.methods.reflow import Reflow
from onestep.methods.shortcut import Shortcut
from onestep.methods.tdm import TDM

METHODS = {
    "curriculum": Curriculum,
    # distillations of the teacher
    "kd": KD,
    "progressive": Progressive,
    "cd": CD,
    "ctm": CTM,
    "reflow": Reflow,
    "dmd2": DMD2,
    "tdm": TDM,
    # trained from data
    "ct": CT,
    "meanflow": MeanFlow,
    "shortcut": Shortcut,
    "drifting": Drifting,
}


def defaults(name: str) -> dict:
    """The full method section of `name`: {name, every knob at its dataclass default}."""
    return {"name": name, **METHODS[name].Config.defaults()}


def context(cfg: dict, teacher: Teacher | None, shape: Sequence[int], features: nn.Module | None = None,
            trajectory_t: tuple[int, ...] | None = None) -> Context:
    """The Context a run's method is built with, the same in training, evaluation and tuning: the frozen
    teacher and its schedule (teacher None: the teacher's own training, on `cfg.diffusion`'s schedule), the
    sample shape, the feature network's `features` (images; the caller puts it on the device), the seed
    times of the pairs' stored DDIM states, and the data's std from the dataset config (on first call)."""
    schedule = Schedule.from_config(cfg["diffusion"]) if teacher is None else teacher.schedule
    return Context(teacher, schedule, tuple(shape), None if features is None else features.features,
                   trajectory_t=trajectory_t, data_std=lambda: data.std(cfg["dataset"]),
                   data_bound=lambda: data.bound(cfg["dataset"]))


def build_method(cfg: dict, ctx: Context, seed: int | None = None, device: str | None = None) -> Method:
    """The run's method, METHODS[cfg.method.name], built from its section with the run seed
    (`cfg["seed"]` unless given), its own networks moved to `device` when given: what training,
    evaluation and tuning all use, around the run's `context(...)`."""
    mc = cfg["method"]
    method = METHODS[mc["name"]](mc, ctx, cfg["seed"] if seed is None else seed)
    return method if device is None else method.to(device)


def student_net(cfg: dict) -> dict:
    """`student.net`, with `times` raised to what the method's student needs (METHODS[name].times); for a student
    started from the teacher (student.init_from_teacher) whose method reads an epsilon network (`teacher_head`),
    that net inside nets.EpsHead, read in the method's own parameterisation so the teacher's weights start it as
    the teacher."""
    net = dict(cfg["student"]["net"])
    method = METHODS[cfg["method"]["name"]]
    times = max(net.get("times", 1), method.times)
    head = method.teacher_head(cfg["method"], lambda: data.std(cfg["dataset"])) if cfg["student"].get(
        "init_from_teacher") else None
    if head is not None:
        return {"name": "eps_head", "net": net, "diffusion": dict(cfg["diffusion"]), "times": times, **head}
    return {**net, "times": times} if times != 1 else net


TEACHER = DDPM  # the teacher's training, by the same loop; never a one-step student (not in METHODS)

__all__ = ["METHODS", "TEACHER", "build_method", "context", "defaults", "student_net"]
