"""What every `onestep` job shares: its config file (with the tracking section), its device and threads, its
log file (written by the job itself and attached to its MLflow run once closed), and for training jobs the
resumable MLflow run and SIGTERM handling (preemption). The CLI and the stages call these; nothing here
parses arguments."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from onestep import tracking
from onestep.errors import OnestepError
from onestep.training.resume import Preempted, Resume

_DEVICES: dict[str, str] = {}
STORE: dict[str, str] = {}  # the job's tracking URI ("uri"), to name the MLflow store when it is full
RESERVE: list[Path] = []  # a few kilobytes beside the open log, given up for its last line on a full disk


def job_config(config: Path, tracking_file: Path | None = None, tracked: bool = True, threads: int | None = None) -> dict:
    """The job's config (`config`: the file its rule wrote), with the tracking section of `tracking_file` where
    given (the rules' results/config/tracking.yaml: run and job config files hold no tracking keys, so a
    tracking change re-runs no job). A job that writes to MLflow (`tracked`) checks the tracking server
    first, before any work; torch threads = `threads`."""
    from onestep.config import read_file

    cfg = with_tracking(read_file(config, "job config file"), tracking_file, config, tracked)
    if tracked:
        STORE["uri"] = tracking.tracking_uri(cfg)
        tracking.check_server(cfg)
    set_threads(threads)
    return cfg


def with_tracking(cfg: dict, tracking_file: Path | None, where, needed: bool = True) -> dict:
    """`cfg` with the tracking section of `tracking_file` (a file holding `tracking:`), else as is; a job
    that writes to MLflow (`needed`) and finds the section in neither stops naming both."""
    if tracking_file is not None:
        from onestep.config import read_file

        section = read_file(tracking_file, "tracking file").get("tracking")
        if not isinstance(section, dict):
            raise OnestepError(f"--tracking {tracking_file}: no `tracking:` section (the rules write it to "
                               "results/config/tracking.yaml)")
        return {**cfg, "tracking": section}
    if needed and "tracking" not in cfg:
        raise OnestepError(f"{where} has no tracking section: pass --tracking results/config/tracking.yaml "
                           "(Snakemake writes it when it starts its jobs)")
    return cfg


def config_or_none(config: Path | None) -> dict | None:
    """The job's config file as a dict, for an error message (None when there is none or it is unreadable)."""
    import yaml

    try:
        return yaml.safe_load(Path(config).read_text()) if config else None
    except (OSError, yaml.YAMLError):
        return None


def set_threads(threads: int | None) -> None:
    """torch threads = `threads` (the job's Snakemake threads), where given."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def device(cfg: dict) -> str:
    """The job's device, picked once per process (devices.pick_device: a free GPU slot, or CPU)."""
    import torch

    from onestep.config import wanted_device
    from onestep.devices import device_problem, pick_device, torch_devices

    want = wanted_device(cfg)
    if want not in _DEVICES:
        count, mps = torch_devices()
        problem = device_problem(want, count, mps)
        if problem:  # parse time catches this for local runs; a cluster job lands here
            import socket

            raise DeviceError(f"{problem} (host {socket.gethostname()}, torch {torch.__version__})")
        _DEVICES[want] = pick_device(want, count)
    return _DEVICES[want]


class DeviceError(OnestepError):
    """The config asks for a device this machine does not have."""


def exit_on_sigterm() -> None:
    """Any job: SIGTERM (scancel, a time limit) ends it as SystemExit(143), so its MLflow run is closed as
    KILLED rather than left RUNNING; training jobs replace this with `on_sigterm` (checkpoint first)."""

    def handler(signum, frame):
        raise SystemExit(143)

    if threading.current_thread() is threading.main_thread():  # signal handlers belong to the main thread
        signal.signal(signal.SIGTERM, handler)


def on_sigterm(resume: Resume) -> None:
    """SIGTERM (SLURM preemption or time limit, scancel) and SIGINT (Ctrl-C): save a resume checkpoint at
    the end of the step, then stop (training.resume.Preempted). A second Ctrl-C stops at once (KeyboardInterrupt)."""

    def handler(signum, frame):
        if signum == signal.SIGINT and resume.preempted:
            raise KeyboardInterrupt
        resume.preempted, resume.signal = True, signal.Signals(signum).name
        print(f"{resume.signal}: saving a resume checkpoint at the end of this step", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@contextmanager
def resumable_record(cfg: dict, name: str, tags: dict, resume: Resume, extra: dict, parent_id: str | None = None):
    """The job's MLflow run, continued by a resumed attempt. Metrics go to MLflow at each resume
    checkpoint, so the steps a kill loses (after the last checkpoint) are not in MLflow either and are
    logged once, on resume; a preempted run is KILLED, not FAILED; SIGTERM saves a checkpoint first.
    `extra` (the caller's own state) is saved in each resume checkpoint with the run id."""
    prior = resume.state.extra if resume.state else {}
    on_sigterm(resume)
    status = lambda e: "KILLED" if isinstance(e, Preempted | KeyboardInterrupt) else "FAILED"  # noqa: E731
    marker = resume.path.with_name(resume.path.name + ".mlflow-run")  # the open run's id, for a killed attempt's successor
    with tracking.record(cfg, name, tags, parent_id=parent_id, run_id=prior.get("mlflow_run_id"),
                         status_for=status, system_metrics=True, marker=marker) as rec:
        if resume.state:
            rec.tag("resumed_from_step", resume.state.step)
        else:
            rec.params(cfg)
        if resume.every > 0:
            rec.flush_every = 1 << 30
        resume.extra, resume.on_save = {**extra, "mlflow_run_id": rec.run_id}, rec.flush
        yield rec


def attempt_logs(path: Path) -> list[Path]:
    """Every attempt's log of the job whose log is `path` (<stem>.attempt-<n><suffix>), in order; the last is
    the latest attempt's, the same file as `path` (a hard link) while that is there."""
    found = path.parent.glob(f"{path.stem}.attempt-*{path.suffix}")
    number = lambda p: int(p.stem.rpartition("-")[2]) if p.stem.rpartition("-")[2].isdigit() else 0  # noqa: E731
    return sorted((p for p in found if number(p)), key=number)


def this_attempt(path: Path) -> int:
    """The number of the attempt about to write the log `path`: one more than the attempts' logs beside it (which
    outlive Snakemake's removal of `path` before a job runs). A log left at `path` with no attempt file of its own
    (written by hand) is kept as the next number first."""
    n = len(attempt_logs(path))
    if path.is_file():
        if path.stat().st_nlink > 1:  # its attempt file is the same file: that one stays
            path.unlink()
        else:
            os.replace(path, path.with_name(f"{path.stem}.attempt-{n + 1}{path.suffix}"))
            n += 1
    return n + 1


@contextmanager
def logged(path: Path | None):
    """While the job runs, its stdout and stderr (file descriptors 1 and 2: tqdm, warnings and C-level
    output too) go to `path`, this attempt's alone, also named <stem>.attempt-<n><suffix> (a hard link), so
    every attempt's log is kept (`attempt_logs`). On exit both are restored and the file is closed: complete,
    so it can be attached to MLflow (`attach_log`)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    attempt = this_attempt(path)
    reserve = path.with_name(path.name + ".reserve")
    try:
        reserve.write_bytes(bytes(16384))
        RESERVE.append(reserve)
    except OSError:  # already full: last_line cuts the log's tail instead
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "w") as f:
            try:  # this attempt's numbered name: Snakemake removes `path` before the next attempt, not this
                os.link(path, path.with_name(f"{path.stem}.attempt-{attempt}{path.suffix}"))
            except OSError:  # a file system without hard links: the next attempt replaces this log
                pass
            if attempt > 1:
                f.write(f"attempt {attempt} (every attempt's log: {path.stem}.attempt-<n>{path.suffix})\n")
                f.flush()
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                _flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        _give_up_reserve()


def _give_up_reserve() -> None:
    while RESERVE:
        RESERVE.pop().unlink(missing_ok=True)


def _flush() -> None:
    """Flush stdout and stderr; what a full disk refuses is dropped (the job's last line still gets there)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass


def last_line(line: str) -> None:
    """The job's last line on stderr (its log, inside `logged`). A full disk that refuses it gets the space kept
    beside the log (RESERVE), then, if still refused, the log's last page for it, marked: the log ends with that
    line, whatever the disk."""
    data = (line + "\n").encode()
    _flush()
    for _ in range(2):  # then again, the reserve given up
        try:
            os.write(2, data)
            return
        except OSError:
            _give_up_reserve()
    try:
        cut = max(0, ((os.lseek(2, 0, os.SEEK_END) - 1) // 4096 - (len(data) + 80) // 4096) * 4096)
        os.ftruncate(2, cut)
        os.lseek(2, cut, os.SEEK_SET)
        os.write(2, b"\n[the last kilobytes of this log dropped: the disk is full]\n" + data)
    except OSError:
        pass


def failure(cmd: str, e: Exception, config: Path | None, log: Path | None) -> tuple[str, int]:
    """The last line and exit code of a job's unexpected exception `e` (called while it is handled): a full
    disk or a read-only folder (outputs.write_failure: every writer, the MLflow store, the log) or out of GPU
    memory exit 2 with one line; a bug exits 1, its traceback printed into the log (raised without a log)."""
    from onestep.outputs import write_failure

    if (failed := write_failure(e, STORE.get("uri"))) is not None:
        return f"onestep {cmd}: error: {failed}", 2
    if type(e).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
        from onestep.accel import oom_message

        return f"onestep {cmd}: error: {oom_message(e, cmd, config_or_none(config))}", 2
    if log is None:
        raise e
    traceback.print_exc()  # a bug: its traceback belongs in the job's log
    return f"onestep {cmd}: failed ({type(e).__name__}: {e}); the traceback is in the log", 1


@dataclass
class Done:
    """What a job hands back to the CLI: the MLflow run its complete log is attached to."""

    cfg: dict
    run_id: str


def attach_log(done: Done | None, path: Path | None, stage: str = "job") -> None:
    """Attach the job's closed log files (`logged`; a retried job's earlier attempts too) to its MLflow run,
    under logs/<stage>/ (tracking.attach_logs)."""
    if done is not None and path is not None and path.is_file():
        tracking.attach_logs(done.cfg, done.run_id, path, stage)
