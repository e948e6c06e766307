"""The tests' shared harness: the tiny configs, the Snakemake runner and the `finished` run, the toy teachers
and the method built around one, the dry-run parser.

Test files import the plain helpers with `from conftest import ...`; `default_config`, `schedule` and
`finished` are fixtures."""

import copy
import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from onestep.diffusion import Schedule, Teacher
from onestep.methods import METHODS
from onestep.methods.base import Context

# One torch thread in the test processes and in their jobs: the tensors are tiny, and two threads per process on
# a busy 2-core machine (two pytest workers, Snakemake's jobs) spin against each other: 1.6 s -> 15 s for a test.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DIFF = {"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}  # config/config.yaml's

# The one tiny 2-D config of the end-to-end tests (over config/config.yaml): a test adds only what its
# assertions need (more seeds, a method's budget, other teacher rows), e.g. deep_merge(TINY, {...}).
TINY = {
    "out": "results",
    "seeds": [0],
    "threads": {"run": 1, "prep": 1},
    "teacher": {"steps": 200, "batch_size": 256, "log_every": 50, "warmup": 10},
    "pairs": {"num": 1024, "ddim_steps": 10, "seed": 1},
    "student": {"batch_size": 64, "log_every": 10},
    "method": {"K": 3, "steps_per_stage": 10},
    "evaluation": {"num_samples": 256, "teacher_steps": [1, 10], "swd_projections": 32, "exact_samples": 4096},
}
# Merged into a tiny config by the end-to-end tests that read no MLflow record: their jobs skip MLflow (about 2-3 s of
# each job's start); the tracked path is the default and is run by the tracking, side-channel, e2e and SLURM tests.
UNTRACKED = {"tracking": {"enabled": False}}
# The same for images: scikit-learn's 8x8 digits with small convnets.
TINY_DIGITS = {
    "out": "results",
    "seeds": [0],
    "threads": {"run": 1, "prep": 1},
    "dataset": {"name": "digits"},
    "teacher": {"net": {"name": "convnet", "width": 16, "depth": 1, "temb_dim": 16}, "steps": 40, "batch_size": 32,
                "log_every": 10},
    "student": {"net": {"name": "convnet", "width": 16, "depth": 1, "temb_dim": 16}, "batch_size": 16, "log_every": 5},
    "pairs": {"num": 128, "ddim_steps": 2, "seed": 1},
    "method": {"K": 2, "steps_per_stage": 4, "late_t": 1000,
               "adversarial": {"net": {"name": "convnet", "width": 8, "depth": 1, "temb_dim": 8}}},
    "evaluation": {"num_samples": 64, "feature_steps": 60, "teacher_steps": [1]},
}


@pytest.fixture
def default_config() -> dict:
    with open(REPO / "config" / "config.yaml") as f:
        return copy.deepcopy(yaml.safe_load(f))


@pytest.fixture(scope="session")
def schedule() -> Schedule:
    return Schedule.from_config(DIFF)


# ---------------------------------------------------------------- Snakemake


def write_tiny(work: Path, tiny: dict, grids: dict[str, dict]) -> Path:
    """`work/ablations/<file>.yaml` for each grid and `work/tiny.yaml` (the tiny config pointing at them)."""
    (work / "ablations").mkdir(exist_ok=True)
    for name, spec in grids.items():
        (work / "ablations" / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    path = work / "tiny.yaml"
    path.write_text(yaml.safe_dump({**tiny, "ablations_dir": str(work / "ablations")}))
    return path


def snakemake(workdir: Path, *args: str, configs=("tiny.yaml",), env: dict | None = None,
              timeout: int = 900) -> subprocess.CompletedProcess:
    """The repository's Snakefile run in `workdir` with config/config.yaml, then `configs` (relative to
    `workdir` or absolute), the venv's bin first on PATH and no MLFLOW_TRACKING_URI from the caller
    (`env` may set one)."""
    cmd = [str(BIN / "snakemake"), *args, "-s", str(REPO / "Snakefile"), "--cores", "2",
           "--configfile", str(REPO / "config" / "config.yaml"), *[str(workdir / c) for c in configs]]
    full = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    full.pop("MLFLOW_TRACKING_URI", None)
    full.update(env or {})  # a test may set one
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=full, timeout=timeout)


@dataclass(frozen=True)
class Finished:
    """What a test module's `finished` fixture runs once: `target` on the tiny config `tiny` with the ablation
    `grids` (write_tiny's), through `run(work, target)` (the shared runner with `timeout` by default)."""

    target: str
    tiny: dict
    grids: dict[str, dict]
    timeout: int = 900
    run: Callable[[Path, str], subprocess.CompletedProcess] | None = None


@pytest.fixture(scope="module")
def finished(request, tmp_path_factory) -> Path:
    """The work folder of the module's `FINISHED` run, finished once per module (`--dist loadfile` keeps a
    module on one worker); its Snakemake output in `snakemake.out`. `FINISHED` is a Finished, or a function
    of fixtures (by their names) that returns one."""
    spec = request.module.FINISHED
    if not isinstance(spec, Finished):
        spec = spec(**{n: request.getfixturevalue(n) for n in inspect.signature(spec).parameters})
    work = tmp_path_factory.mktemp(Path(request.module.__file__).stem.removeprefix("test_"))
    write_tiny(work, spec.tiny, spec.grids)
    run = spec.run or (lambda w, target: snakemake(w, target, timeout=spec.timeout))
    p = run(work, spec.target)
    (work / "snakemake.out").write_text(p.stdout + p.stderr)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return work


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> count."""
    stats, on = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
            continue
        parts = line.split()
        if on and parts and parts[0] == "total":
            break
        if on and len(parts) == 2 and parts[1].isdigit():
            stats[parts[0]] = int(parts[1])
    return stats


# ---------------------------------------------------------------- toy teachers (called with diffusers' index i = t - 1)


class LinearEps(nn.Module):
    """A hand-checkable 'teacher': eps(x, i) = 0.3 x + 0.001 i."""

    def forward(self, x, i):
        return 0.3 * x + 0.001 * i.float().view(-1, *[1] * (x.ndim - 1))


class GaussEps(nn.Module):
    """The exact eps of N(mu, s^2 I) data, eps(x_t, t) = sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) /
    (abar_t s^2 + 1 - abar_t), plus `residual(x, i)` when given (a network a fake score copied from the
    teacher can train). With s = 0 (the single point mu) every DDIM or Heun step is exact."""

    def __init__(self, schedule: Schedule, mu: torch.Tensor, s: float, residual: nn.Module | None = None):
        super().__init__()
        self.abar, self.mu, self.s = schedule.abar, mu, s
        self.res = residual

    def forward(self, x, i):
        a = self.abar[i.long() + 1].view(-1, *[1] * (x.ndim - 1))
        eps = (1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.s**2 + 1 - a)
        return eps if self.res is None else eps + self.res(x, i)


# ---------------------------------------------------------------- a method around a toy teacher


def context(teacher: nn.Module | None = None, shape: tuple[int, ...] = (2,), schedule: Schedule | None = None,
            **fields) -> Context:
    """The Context of a method around a toy teacher: `teacher` an eps network called with diffusers' index
    (LinearEps by default), or a Teacher already (its evaluation count then shared); on `schedule` (the
    teacher's, else config/config.yaml's); `fields`: Context's optional ones (features, data_std,
    trajectory_t, ema)."""
    if not isinstance(teacher, Teacher):
        teacher = Teacher(teacher if teacher is not None else LinearEps(), schedule or Schedule.from_config(DIFF))
    return Context(teacher, schedule or teacher.schedule, tuple(shape), **fields)


def method_of(name: str, teacher: nn.Module | None = None, shape: tuple[int, ...] = (2,), *,
              ctx: Context | None = None, seed: int = 0, **knobs):
    """The method `name` with `knobs` over its defaults, in `ctx` or else in context(teacher, shape) (build the
    Context first to keep a hand on it: not every method keeps it)."""
    return METHODS[name]({"name": name, **knobs}, ctx if ctx is not None else context(teacher, shape), seed)
