"""Typed config sections: teacher, student, pairs, evaluation and tracking as frozen dataclasses.

Each section is a `Section` (the `Knobs` pattern of methods/base.py): its fields are the section's keys, with
their types, bounds, descriptions and defaults, written once here. The config schema's entries for these
sections are generated from them (`schema.config_schema`), and a job reads a section with every key filled:
`Pairs.of(cfg).batch_size`, never `cfg["pairs"].get("batch_size", 4096)`. A field without a default
(`knob(REQUIRED, ...)`) is a key every config sets (config/config.yaml does). Defaults are filled when a
section is read, not written into the config files of jobs and runs, so their hashes stay as they were.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from typing import Any, ClassVar, Literal

from onestep.errors import ConfigError
from onestep.methods.base import Knobs, knob, plain

REQUIRED: Any = MISSING  # a knob with no default: the config must set it
NET = {"$ref": "#/$defs/net"}  # the config schema's network keys (nets.NETS)
NULLABLE_STR = {"type": ["string", "null"]}
POINT_METRICS, EXACT_METRICS, IMAGE_METRICS = ("swd", "fd", "mmd"), ("tv", "off_support", "chi2", "mode_dev"), \
    ("fid", "kid")
HEADLINES = (*EXACT_METRICS, *POINT_METRICS, *IMAGE_METRICS)


class Section(Knobs):
    """A top-level config section (`key`) as a frozen dataclass; fields without a default are required."""

    key: ClassVar[str]

    @classmethod
    def required_keys(cls) -> list[str]:
        return [k for k, f, _ in cls.knobs() if f.default is MISSING and f.default_factory is MISSING]

    @classmethod
    def parse(cls, section: dict):
        """The section from its config dict, every key filled; ConfigError naming `<section>.<key>`."""
        known = [k for k, _, _ in cls.knobs()]
        extra = sorted(set(section) - set(known))
        if extra:
            raise ConfigError(f"{cls.key}.{extra[0]}: unknown key; allowed keys: {', '.join(sorted(known))}")
        missing = [k for k in cls.required_keys() if k not in section]
        if missing:
            raise ConfigError(f"{cls.key}.{missing[0]}: missing; every config sets it (config/config.yaml)")
        return cls.from_dict(section, top=False)

    @classmethod
    def of(cls, cfg: dict):
        """The section of a whole config `cfg`, every key filled."""
        return cls.parse(cfg[cls.key])

    @classmethod
    def filled(cls, section: dict) -> dict:
        """`section` with the defaults of the keys it lacks (no check: for a part of a section, e.g. a metric's
        own keys read from a partial dict in a test)."""
        return {**cls.defaults(), **section}

    @classmethod
    def defaults(cls) -> dict:
        """{key: default} of the keys that have one (a required key has none)."""
        return {k: plain(f.default if f.default is not MISSING else f.default_factory())
                for k, f, _ in cls.knobs() if k not in cls.required_keys()}

    @classmethod
    def object_schema(cls) -> dict:
        out = super().object_schema()
        return {**out, "required": cls.required_keys()} if cls.required_keys() else out


@dataclass(frozen=True, kw_only=True)
class Training(Section):
    """The keys a training loop reads, the teacher's and the student's."""

    net: dict = knob(REQUIRED, "the network: nets.NETS name and constructor keys", schema=NET)
    batch_size: int = knob(REQUIRED, "global batch (over every micro-batch of grad_accum)", minimum=1)
    lr: float = knob(REQUIRED, "peak learning rate", exclusiveMinimum=0)
    warmup: int = knob(0, "linear warm-up steps of the learning rate", minimum=0)
    lr_schedule: Literal["constant", "cosine"] = knob("constant", "after the warm-up")
    ema: float = knob(REQUIRED, "decay of the EMA copy", minimum=0, exclusiveMaximum=1)
    log_every: int = knob(REQUIRED, "log the loss every N optimiser steps", minimum=1)
    checkpoint_every: int = knob(0, "resume checkpoint every N optimiser steps (0: none)", minimum=0)
    pretrained: str | None = knob(None, "teacher only: a local diffusers UNet2DModel + DDPMScheduler folder",
                                  schema=NULLABLE_STR)
    precision: Literal["fp32", "bf16", "auto"] = knob("fp32", "autocast precision (auto: bf16 where the GPU has it)")
    compile: bool = knob(False, "torch.compile the network")
    channels_last: bool = knob(False, "channels-last memory format (images on a GPU)")
    grad_accum: int = knob(1, "micro-batches per optimiser step (divides batch_size)", minimum=1)


@dataclass(frozen=True, kw_only=True)
class Teacher(Training):
    """The DDPM teacher's training."""

    key: ClassVar[str] = "teacher"
    kind: Literal["network", "analytic"] = knob(
        "network", "network: a DDPM trained on the data (or teacher.pretrained); analytic: the exact epsilon of the "
        "dataset's closed-form density (dataset gmm; nothing trained, teacher.net sizes the fake score's correction)")
    lr_schedule: Literal["constant", "cosine"] = knob("cosine", "after the warm-up")
    steps: int = knob(REQUIRED, "optimiser steps", minimum=1)
    seed: int = knob(REQUIRED, "training seed", minimum=0)


@dataclass(frozen=True, kw_only=True)
class Student(Training):
    """The one-step student's training (its steps are the method's: method section)."""

    key: ClassVar[str] = "student"
    init_from_teacher: bool = knob(
        False, "start from the teacher's weights, read in the method's own parameterisation (its teacher_read: "
        "nets.EpsHead), as the official distillation codes start their students; false on an analytic teacher")


@dataclass(frozen=True, kw_only=True)
class Pairs(Section):
    """p_teacher(x0 | z): ODE solves from fixed noise z, once per teacher."""

    key: ClassVar[str] = "pairs"
    num: int = knob(REQUIRED, "pairs (z, x0)", minimum=1)
    ddim_steps: int = knob(REQUIRED, "steps of pairs.solver (the key keeps its DDIM-era name)", minimum=1)
    seed: int = knob(REQUIRED, "seed of the noise z", minimum=0)
    batch_size: int = knob(4096, "noise solved per chunk (lower it if the GPU runs out of memory)", minimum=1)
    solver: Literal["ddim", "dpm++", "heun", "rk4"] = knob(
        "ddim", "the teacher's ODE solver for the pairs (diffusers): ddim, dpm++ (DPM-Solver++ 2M), heun "
        "(2 evaluations per step); rk4: classical RK4 on the PF-ODE in sigma to sigma = 0, float64 for an analytic "
        "teacher (4 evaluations per step; the pairs' residual against a 2x finer solve is written beside them)")
    clip_x0: float | str | None = knob(
        None, "clip the teacher's x0 prediction to [-c, c] at every solver step (diffusers' DDIM clip_sample, for "
        "any solver); auto: the data's largest |coordinate| (1 for images); null: off",
        schema={"oneOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0}, {"const": "auto"}]})


def plain_ddim(solver: str | None, clip_x0) -> bool:
    """pairs.solver / clip_x0 (or a teacher row's) naming a plain DDIM solve, the reference rows' sampler:
    solver ddim and no clipping; else the pairs' own solver row (tables, teacher-eval, the workflow's rows).
    A missing solver (None) is the section's default."""
    return (solver or Pairs.solver) == "ddim" and clip_x0 is None


@dataclass(frozen=True, kw_only=True)
class Evaluation(Section):
    """How every run, teacher row and reference is scored."""

    key: ClassVar[str] = "evaluation"
    num_samples: int = knob(REQUIRED, "one-step samples per run; reference and floor at the same N", minimum=16)
    noise_seed: int = knob(REQUIRED, "the fixed held-out noise, the same for every run", minimum=0)
    reference_seed: int = knob(REQUIRED, "the reference draw of the data", minimum=0)
    floor_repeats: int = knob(REQUIRED, "data-vs-data floor: mean over this many data draws", minimum=1)
    support_margin: float = knob(0.25, "2-D: a sample is outside the data's support beyond its bounding box widened "
                                       "by this share of its extent on each side", minimum=0)
    stage_samples: int = knob(4096, "held-out noises of the per-stage evaluation G(z, t_k) (curriculum runs)",
                              minimum=1)
    teacher_steps: tuple[int, ...] = knob(REQUIRED, "reference rows: teacher DDIM at these step counts",
                                          schema={"type": "array", "items": {"type": "integer", "minimum": 1}})
    swd_projections: int = knob(512, "random projections of the sliced Wasserstein distance", minimum=1)
    mmd_bandwidths: tuple[float, ...] = knob(
        (0.1, 0.3, 1.0), "bandwidths of the MMD's Gaussian kernels",
        schema={"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}})
    feature_net: Literal["classifier", "inception", "test_double"] = knob(REQUIRED, "images: the feature network")
    feature_steps: int = knob(REQUIRED, "training steps of the feature classifier", minimum=1)
    fid_mode: Literal["clean", "legacy_tensorflow"] = knob("clean", "clean-fid's mode for Inception features")
    inception_dir: str | None = knob(None, "folder holding inception-2015-12-05.pt (null: /tmp)",
                                     schema=NULLABLE_STR)
    noise_chunk: int | None = knob(None, "held-out noise drawn in chunks of this size",
                                   schema={"type": ["integer", "null"], "minimum": 1})
    exact_samples: int = knob(1_000_000, "2-D data with a closed-form density: one-step samples of a run scored on "
                                         "the exact-density metrics (onestep.exact; own noise); 0: off", minimum=0)
    exact_bins: int = knob(8, "exact-density metrics: bins per cell side (checkerboard cell: a unit square)",
                           minimum=1)
    eval_draws: int = knob(3, "2-D: extra (noise, reference) draws of the SWD per run, their spread enters the "
                              "tables' intervals (slices of the exact-metric samples; 0: none)", minimum=0)
    headline: Literal["auto", *HEADLINES] = knob(
        "auto", "the tables' headline metric (interval, tests, best point) and the tuning objective; auto: tv on 2-D "
                "data with a closed-form density, swd on other 2-D data, fid on images")


@dataclass(frozen=True, kw_only=True)
class Tracking(Section):
    """MLflow: no result depends on it (results.NOT_IN_RESULTS); jobs read it from the tracking file."""

    key: ClassVar[str] = "tracking"
    uri: str = knob(REQUIRED, "tracking server or sqlite:/// file (MLFLOW_TRACKING_URI overrides)")
    artifacts: str = knob(REQUIRED, "artifact folder")
    experiment: str = knob(REQUIRED, "MLflow experiment", schema={"type": "string", "minLength": 1})
    system_metrics_s: float | None = knob(None, "MLflow system metrics every N s (0/null: off)",
                                          schema={"type": ["number", "null"], "minimum": 0})
    enabled: bool = knob(True, "false: no job opens MLflow; the files are the whole record (`onestep sync` uploads "
                                   "finished run folders later)")
    required: bool = knob(True, "false: an unreachable server costs one warning, the job runs untracked")
    timeout_s: float = knob(10.0, "seconds a job waits for the tracking server", exclusiveMinimum=0)


def headline_metrics(dataset: str) -> tuple[str, ...]:
    """The metrics that may head the tables of `dataset`, its `auto` first (metrics.headline): FID / KID on images;
    SWD / FD / MMD on points, and on the 2-D datasets with a binned closed-form density (onestep.exact) its metrics
    before them (TV first; mode_dev: the eight Gaussians only)."""
    from onestep import data, exact

    if data.is_image({"name": dataset}):
        return IMAGE_METRICS
    if not exact.has_exact(dataset):
        return POINT_METRICS
    return tuple(m for m in EXACT_METRICS if m != "mode_dev" or dataset == "eight_gaussians") + POINT_METRICS


def check_headline(cfg: dict, where: str) -> None:
    """evaluation.headline names a metric the dataset is scored on (parse time)."""
    h, ds = cfg["evaluation"].get("headline", "auto"), cfg["dataset"]["name"]
    allowed = headline_metrics(ds)
    if h != "auto" and h not in allowed:
        raise ConfigError(f"{where}: evaluation.headline: {h!r} is not a metric of dataset {ds!r}; allowed: auto, "
                          f"{', '.join(allowed)}")
    if h in EXACT_METRICS and not cfg["evaluation"].get("exact_samples", Evaluation.exact_samples):
        raise ConfigError(f"{where}: evaluation.headline: {h!r} needs evaluation.exact_samples > 0")


SECTIONS: dict[str, type[Section]] = {s.key: s for s in (Teacher, Student, Pairs, Evaluation, Tracking)}
