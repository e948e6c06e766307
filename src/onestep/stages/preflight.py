"""`onestep preflight`: what `make demo` and `make slurm` check before Snakemake starts, each in one line: the
config files of its arguments (file, line and column of a YAML error), a stale lock left by a killed Snakemake
(removed), and on SLURM a job status command that answers (`sacct` without accounting hangs Snakemake)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from onestep.stages.people import option_values

STATUS_FLAG = "--slurm-status-command"


def config_files(args: list[str]) -> list[str]:
    """The files of `--configfile`/`--configfiles` (each followed by one or more files) in Snakemake arguments."""
    return option_values(args, "--configfile", "--configfiles")


def snakemake_pids(workdir: Path) -> list[int]:
    """Snakemake processes of this machine running in `workdir` (read from /proc; none where there is no /proc)."""
    here, pids = workdir.resolve(), []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")[:3]
            if int(proc.name) != os.getpid() and any(b"snakemake" in Path(a.decode()).name.encode() for a in argv) \
                    and Path(os.readlink(proc / "cwd")) == here:
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


def unlock_stale(workdir: Path) -> str | None:
    """Remove the lock of a killed Snakemake (lock files present, no Snakemake process alive in `workdir`); the
    line that says what was done (None: no lock)."""
    locks = workdir / ".snakemake" / "locks"
    held = sorted(locks.glob("*.lock")) if locks.is_dir() else []
    if not held:
        return None
    alive = snakemake_pids(workdir)
    if alive:
        return (f"{locks}: held by a running Snakemake (pid {', '.join(map(str, alive))}); left as it is: wait for "
                "it, or stop it, then run again")
    for f in held:
        f.unlink(missing_ok=True)
    return (f"unlocked {workdir.resolve()}: a stale Snakemake lock (no Snakemake runs here: the last one was killed); "
            "its incomplete jobs are re-run (docs/cluster.md, \"A killed Snakemake\")")


def _answers(cmd: list[str], timeout: float) -> bool:
    if shutil.which(cmd[0]) is None:
        return False
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def status_args(args: list[str], timeout: float = 20) -> tuple[list[str], str | None]:
    """The SLURM status command to add to Snakemake's arguments, and the line that says so: squeue where sacct
    does not answer (no accounting: Snakemake would wait forever on it) unless the arguments name one."""
    from onestep.errors import OnestepError

    given = next((a.partition("=")[2] or args[i + 1] for i, a in enumerate(args)
                  if a.partition("=")[0] == STATUS_FLAG and (a.partition("=")[2] or i + 1 < len(args))), None)
    sacct = given in (None, "sacct") and _answers(["sacct", "-n", "-X", "-S", "now", "-o", "JobID"], timeout)
    if given == "sacct" and not sacct:
        raise OnestepError(f"{STATUS_FLAG} sacct: sacct does not answer here (no SLURM accounting?); use "
                           f"{STATUS_FLAG} squeue")
    if given is not None or sacct:
        return [], None
    if not _answers(["squeue", "-h", "-u", os.environ.get("USER", "root")], timeout):
        raise OnestepError(f"neither sacct nor squeue answers here: no SLURM controller reachable, so Snakemake "
                           f"could not follow its jobs (a cluster without accounting needs {STATUS_FLAG} squeue)")
    return [STATUS_FLAG, "squeue"], (f"sacct does not answer here (no SLURM accounting): adding {STATUS_FLAG} "
                                     "squeue (docs/cluster.md)")


def preflight(target: str, args: list[str], workdir: Path = Path(".")) -> None:
    """Check the config files of Snakemake's `args`, unlock a stale lock, and for `target` slurm print (stdout)
    the status command's arguments to add; every message is one line on stderr."""
    from onestep.stages.people import check_config

    args = args[1:] if args[:1] == ["--"] else args
    files = config_files(args)
    if files:
        stdout, sys.stdout = sys.stdout, sys.stderr  # its `config ok` line is a message, not an argument
        try:
            check_config([Path(f) for f in files])
        finally:
            sys.stdout = stdout
    if (line := unlock_stale(workdir)) is not None:
        print(f"onestep: {line}", file=sys.stderr)
    if target == "slurm":
        extra, line = status_args(args)
        if line:
            print(f"onestep: {line}", file=sys.stderr)
        print(" ".join(extra))
