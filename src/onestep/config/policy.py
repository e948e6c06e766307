"""Device policy: which device and how many GPUs a job gets, and the paper (GPU) tier's config checks."""

from __future__ import annotations

import os
from pathlib import Path

from onestep import devices
from onestep.config.sections import Evaluation, Student, Teacher
from onestep.data import is_image
from onestep.errors import ConfigError


def check_gpu_tier(cfg: dict, where: str) -> None:
    """The paper tier's keys: a pretrained teacher folder, accumulation, the Inception test double."""
    teacher, student = Teacher.of(cfg), Student.of(cfg)
    pre = teacher.pretrained
    if pre and not Path(pre).is_dir():
        raise ConfigError(f"{where}: teacher.pretrained: folder not found: {pre} (a local diffusers UNet2DModel + "
                          "DDPMScheduler directory, e.g. google/ddpm-cifar10-32)")
    if student.pretrained:
        raise ConfigError(f"{where}: student.pretrained: only the teacher can be loaded from a diffusers folder; "
                          "the student starts from the teacher (student.init_from_teacher)")
    for sec in (teacher, student):
        b, k = sec.batch_size, sec.grad_accum
        if b % k:
            raise ConfigError(f"{where}: {sec.key}.grad_accum: {k} must divide {sec.key}.batch_size ({b}), the global "
                              "batch")
    if Evaluation.of(cfg).feature_net == "test_double" and os.environ.get("ONESTEP_ALLOW_TEST_DOUBLE") != "1":
        raise ConfigError(f"{where}: evaluation.feature_net: 'test_double' is the test suite's random stand-in for "
                          "Inception (meaningless FID), refused unless ONESTEP_ALLOW_TEST_DOUBLE=1; use 'inception'")


def wanted_device(cfg: dict) -> str:
    """The config's `device` (auto | cpu | cuda[:N] | mps), `auto` when it names none."""
    return cfg.get("device", "auto")


def check_device(cfg: dict, where: str = "config") -> None:
    """`device: cuda[:N]` / `mps` on a machine that lacks it stops at parse time (local runs; a cluster's
    login node may have no GPU, its jobs check again where they run)."""
    want = wanted_device(cfg)
    if want in ("auto", "cpu"):
        return  # always possible; no CUDA initialisation at parse time
    problem = devices.device_problem(want, *devices.torch_devices())  # (looked up here: tests replace it)
    if problem:
        raise ConfigError(f"{where}: {problem}")


def gpu_per_job(cfg: dict) -> int:
    """GPUs a training / sampling job requests: `gpu_per_job`, where `auto` is 1 on images, 0 on 2-D points."""
    want = cfg.get("gpu_per_job", "auto")
    return int(is_image(cfg["dataset"])) if want == "auto" else int(want)


def job_device(cfg: dict) -> str:
    """The `device` a job is given: `auto` becomes `cpu` where the job requests no GPU (gpu_per_job 0), so a
    local 2-D job does not take a GPU slot that Snakemake never counted for it."""
    want = wanted_device(cfg)
    return "cpu" if want == "auto" and gpu_per_job(cfg) == 0 else want
