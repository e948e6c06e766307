"""Which device a job trains on, and how many GPU jobs a local run may start at once.

`device: auto` resolves per job:

- no visible GPU: `cpu`;
- inside a SLURM allocation (SLURM_JOB_ID set): `cuda:0`, the first GPU SLURM gave the job (it sets
  CUDA_VISIBLE_DEVICES to the job's GPUs, so other jobs on the node see other devices);
- otherwise (a local run; Snakemake sets no CUDA_VISIBLE_DEVICES): the first GPU whose slot lock is
  free. A slot is an exclusive `flock` on `<lock dir>/onestep-gpu-<id>.lock`, held until the process
  exits (the kernel releases it even after SIGKILL), so concurrent jobs spread over the GPUs instead of
  all landing on cuda:0. <id> is the physical id (the CUDA_VISIBLE_DEVICES entry where a user set it).
  If every slot is taken the job shares the least recently tried one and says so.

The Snakefile caps the global `gpu` resource at `visible_gpus()` for local runs, so Snakemake never
starts more `gpu=1` jobs than there are GPUs; with 0 GPUs a `gpu=1` job is scaled down to `gpu=0`
and runs on CPU.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

_HELD: list = []  # open lock files of this process (kept open = slot claimed)


def visible_ids(count: int, env: Mapping[str, str]) -> list[str]:
    """Physical ids of the `count` devices torch sees: CUDA_VISIBLE_DEVICES entries, else 0..count-1."""
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip():
        ids = [s.strip() for s in cvd.split(",") if s.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def claim_slot(ids: list[str], lock_dir: str | Path) -> int | None:
    """Index of the first id whose lock file this process could lock exclusively (kept held), else None."""
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    for i, dev in enumerate(ids):
        f = open(Path(lock_dir) / f"onestep-gpu-{dev.replace('/', '_')}.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        _HELD.append(f)
        return i
    return None


def release_all() -> None:
    """Release every slot this process holds (tests; a process exit does the same)."""
    while _HELD:
        _HELD.pop().close()


def lock_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("ONESTEP_GPU_LOCK_DIR") or tempfile.gettempdir())


def device_problem(want: str, count: int, mps: bool = False) -> str | None:
    """Why `device: want` cannot run here with `count` CUDA devices (None: it can). cuda:N needs N < count."""
    if want.startswith("cuda"):
        idx = int(want.split(":", 1)[1]) if ":" in want else 0
        if count == 0:
            return f"device: {want!r} but no CUDA device was found here; allowed here: auto, cpu"
        if idx >= count:
            return (f"device: {want!r} but only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1}); "
                    "allowed here: auto, cpu, " + ", ".join(f"cuda:{i}" for i in range(count)))
    if want == "mps" and not mps:
        return "device: 'mps' but Apple's MPS backend is not available here; allowed here: auto, cpu"
    return None


def torch_devices() -> tuple[int, bool]:
    """(CUDA devices torch sees, whether MPS is available): what a job on this machine could use."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return count, bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(want: str, count: int, env: Mapping[str, str] | None = None) -> str:
    """The torch device for `device: want` with `count` visible CUDA devices (see the module docstring)."""
    env = os.environ if env is None else env
    if want != "auto":
        return want
    if count <= 0:
        return "cpu"
    if env.get("SLURM_JOB_ID"):
        return "cuda:0"
    ids = visible_ids(count, env)
    slot = claim_slot(ids, lock_dir(env))
    if slot is None:
        slot = os.getpid() % len(ids)
        print(f"onestep: every GPU slot is taken ({', '.join(ids)}); sharing cuda:{slot}", file=sys.stderr)
    return f"cuda:{slot}"


def visible_gpus(env: Mapping[str, str] | None = None) -> int:
    """GPUs a local run can use, without importing torch: CUDA_VISIBLE_DEVICES where set, else `nvidia-smi -L`."""
    env = os.environ if env is None else env
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return len([s for s in cvd.split(",") if s.strip() and s.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines()) if out.returncode == 0 else 0
