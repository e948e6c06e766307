"""What every `onestep` job shares: its config file (with the tracking section), its device and threads, its
log file (written by the job itself and attached to its MLflow run once closed), and for training jobs the
resumable MLflow run and SIGTERM handling (preemption). The CLI and the stages call these; nothing here
parses arguments."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from onestep import tracking
from onestep.errors import OnestepError
from onestep.training.resume import Preempted, Resume

_DEVICES: dict[str, str] = {}


def job_config(config: Path, tracking_file: Path | None = None, tracked: bool = True, threads: int | None = None) -> dict:
    """The job's config (`config`: the file its rule wrote), with the tracking section of `tracking_file` where
    given (the rules' results/config/tracking.yaml: run and job config files hold no tracking keys, so a
    tracking change re-runs no job). A job that writes to MLflow (`tracked`) checks the tracking server
    first, before any work; torch threads = `threads`."""
    from onestep.config import read_file

    cfg = with_tracking(read_file(config, "job config file"), tracking_file, config, tracked)
    if tracked:
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


@contextmanager
def logged(path: Path | None):
    """While the job runs, its stdout and stderr (file descriptors 1 and 2: tqdm, warnings and C-level
    output too) go to `path`, truncated first (a retried job's log is that attempt's). On exit both are
    restored and the file is closed: complete, so it can be attached to MLflow (`attach_log`)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "w") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


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
