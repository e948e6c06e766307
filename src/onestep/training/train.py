"""A run's training from its config: the DDPM teacher (train_teacher) or the run's one-step student
(train_student), each its method and network built, then trained by the one loop (loop.fit).
The EMA weights are the ones returned (and saved: checkpoint.py)."""

from __future__ import annotations

import torch
from torch import nn

from onestep import data
from onestep.checkpoint import CheckpointError
from onestep.config import sections
from onestep.diffusion import Teacher
from onestep.methods import TEACHER, build_method, context, student_net
from onestep.nets import build_net
from onestep.training.loop import Logger, PhaseHook, fit
from onestep.training.resume import Resume


def train_teacher(cfg: dict, device: str, log: Logger, progress: bool = True,
                  resume: Resume | None = None) -> tuple[nn.Module, dict]:
    """The DDPM teacher (methods/ddpm.py: epsilon MSE on data) by the students' loop; EMA weights returned."""
    tc = cfg["teacher"]
    torch.manual_seed(tc["seed"])
    shape = data.shape(cfg["dataset"])
    ctx = context(cfg, None, shape)
    method = TEACHER({"steps": tc["steps"], "diffusion": cfg["diffusion"]}, ctx, tc["seed"]).to(device)
    net = build_net(tc["net"], shape).to(device)
    section = sections.Teacher.of(cfg).as_dict()  # every key filled (the teacher's lr_schedule: cosine)
    return fit(cfg, section, method, ctx, net, tc["seed"], device, log, progress=progress, resume=resume,
               desc="teacher")


def train_student(cfg: dict, teacher: Teacher, pairs: dict[str, torch.Tensor], device: str, log: Logger,
                  progress: bool = True, on_phase_end: PhaseHook | None = None,
                  features: nn.Module | None = None, resume: Resume | None = None) -> tuple[nn.Module, dict]:
    """Builds the run's method (methods.build_method) and its student, and trains them (fit) for the method's
    total steps.

    `features` (images): the dataset's frozen feature network, offered to methods as `ctx.features`.
    `on_phase_end`, `resume`: see fit.
    """
    sc, mc, seed = sections.Student.of(cfg).as_dict(), cfg["method"], cfg["seed"]
    torch.manual_seed(seed)
    shape = tuple(pairs["z"].shape[1:])
    ctx = context(cfg, teacher, shape, None if features is None else features.to(device),
                  tuple(pairs["trajectory_t"].tolist()) if "trajectory_t" in pairs else None)
    method = build_method(cfg, ctx, seed, device)
    student = build_net(student_net(cfg), shape).to(device)
    if sc["init_from_teacher"]:  # a two-time student keeps its fresh second-time embedding
        head = getattr(student, "start_from", None)  # nets.EpsHead: the teacher's weights, its own read
        missing, unexpected = head(teacher.net) if head else student.load_state_dict(teacher.net.state_dict(),
                                                                                      strict=False)
        if unexpected or any("temb_s" not in k and "class_embedding" not in k for k in missing):
            raise CheckpointError("student.init_from_teacher: the student's net config does not match the teacher's "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return fit(cfg, sc, method, ctx, student, seed, device, log, pairs=pairs, progress=progress,
               on_phase_end=on_phase_end, resume=resume, desc=mc["name"])
