"""A full disk or a read-only folder, for every writer (torch files, .npz, JSON/YAML/CSV, the MLflow store, the
job's log): the job exits 2 with one line naming the path and the space it needs, its log ends with that line,
no temporary file is left, and the MLflow run is marked FAILED when the store can take it, else kept for the
next attempt (its marker)."""

import errno
import json
import sqlite3

import numpy as np
import pytest
import torch
import yaml

from onestep import cli, jobs, outputs, tracking
from onestep.checkpoint import save_checkpoint
from onestep.config import sections_json
from onestep.nets import build_net
from onestep.training.resume import save_resume
from onestep.training.state import LoopState

NET = {"name": "mlp", "width": 64, "depth": 2, "temb_dim": 32}
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 4800 vs 4736"  # what torch.save raises


def torch_full(obj, f, *a, **k):
    open(f, "wb").write(b"partial")
    raise RuntimeError(TORCH_FULL)


def enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _checkpoint(path):
    save_checkpoint(path, "student", NET, (2,), {}, build_net(NET, (2,)))


def _resume(path):
    net = build_net(NET, (2,))
    save_resume(path, {}, {"student": net}, {}, LoopState(step=3))


WRITERS = {  # writer -> (what to break, the call)
    "checkpoint": ("torch.save", torch_full, _checkpoint, "student.pt"),
    "resume": ("torch.save", torch_full, _resume, "resume.pt"),
    "npz": ("numpy.savez", lambda f, **a: (open(f, "wb").write(b"PK"), enospc()), lambda p: outputs.save_npz(
        p, x=np.zeros((1000, 2))), "pairs.npz"),
    "json": ("pathlib.Path.write_text", enospc, lambda p: outputs.write_json(p, {"a": 1}), "metrics.json"),
    "yaml": ("pathlib.Path.write_text", enospc, lambda p: outputs.write_yaml(p, {"a": 1}), "config.yaml"),
    "csv": ("csv.DictWriter.writerows", enospc, lambda p: outputs.write_csv(p, [{"a": 1}], "a"), "train_log.csv"),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_on_a_full_disk_names_the_path_and_the_space(tmp_path, monkeypatch, writer):
    """Before: torch.save's RuntimeError on a full disk passed the atomic writer unconverted (a traceback)."""
    target, broken, call, name = WRITERS[writer]
    monkeypatch.setattr(target, broken)
    path = tmp_path / "run" / name
    with pytest.raises(outputs.WriteError, match=rf"cannot write {path}: No space left on device; it needs "
                                                 r".*there \([\d.]+ [KM]B free now\)"):
        call(path)
    assert list((tmp_path / "run").iterdir()) == []  # no temporary file
    if writer in ("checkpoint", "resume", "npz"):  # the bytes it was writing are named
        with pytest.raises(outputs.WriteError, match=r"it needs about [\d.]+ [KM]B free there"):
            call(path)


def test_a_read_only_folder_is_named(tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("os.replace", read_only)
    with pytest.raises(outputs.WriteError, match=rf"cannot write {tmp_path / 'm.json'}: Read-only file system; "
                                                 "it needs a writable file system"):
        outputs.write_json(tmp_path / "m.json", {})


def test_the_mlflow_store_full_leaves_the_run_for_the_next_attempt(tmp_path, monkeypatch):
    """Before: marking the run FAILED raised sqlite3.OperationalError over the job's own error, and the run was
    left RUNNING with nothing to close it. Now the job's error (one line) comes out, the run's marker is kept
    and the next attempt closes the run."""
    cfg = {"tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifacts": str(tmp_path / "art"),
                        "experiment": "t", "required": True, "timeout_s": 5}}
    marker = tmp_path / "resume.pt.mlflow-run"
    monkeypatch.setattr(torch, "save", torch_full)
    from mlflow import MlflowClient

    real = MlflowClient.set_terminated

    def full(self, run_id, status=None, *a, **k):
        if status != "KILLED":
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, run_id, status, *a, **k)

    monkeypatch.setattr(MlflowClient, "set_terminated", full)
    with pytest.raises(outputs.WriteError, match="student.pt"):
        with tracking.record(cfg, "run", marker=marker) as rec:
            run_id = rec.run_id
            _checkpoint(tmp_path / "student.pt")
    assert marker.read_text() == run_id  # kept: the next attempt closes it
    assert MlflowClient(cfg["tracking"]["uri"]).get_run(run_id).info.status == "RUNNING"
    monkeypatch.setattr(MlflowClient, "set_terminated", real)  # space freed: the next attempt
    with tracking.record(cfg, "run", marker=marker):
        pass
    assert MlflowClient(cfg["tracking"]["uri"]).get_run(run_id).info.status == "KILLED"
    # the store itself full while the job logs: named as the store, one line
    assert outputs.write_failure(RuntimeError("a bug"), cfg["tracking"]["uri"]) is None
    e = Exception("(sqlite3.OperationalError) database or disk is full")
    assert "cannot write the MLflow store sqlite:///" in str(outputs.write_failure(e, cfg["tracking"]["uri"]))


@pytest.mark.parametrize("broken", ["numpy.savez", "pathlib.Path.write_text"])
def test_a_job_on_a_full_disk_exits_2_and_its_log_ends_with_the_line(tmp_path, monkeypatch, broken,
                                                                        default_config):
    default_config["evaluation"]["num_samples"] = 64
    config = tmp_path / "reference.yaml"
    config.write_text(yaml.safe_dump(json.loads(sections_json(default_config, "dataset", "evaluation"))))
    monkeypatch.setattr(broken, enospc)
    log = tmp_path / "logs" / "reference.log"
    out = tmp_path / "ref" / "reference.npz"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["reference", "--config", str(config), "--out", str(out), "--summary",
                  str(tmp_path / "ref" / "reference.json"), "--log", str(log)])
    assert exit_.value.code == 2
    text = log.read_text()
    last = text.rstrip("\n").splitlines()[-1]
    assert last.startswith("onestep reference: error: cannot write ") and "No space left on device" in last, text
    assert "Traceback" not in text


def test_the_last_line_gets_into_a_log_the_disk_refuses(tmp_path, monkeypatch):
    """A log on the full disk itself: its last kilobytes are given up for the job's last line."""
    import os

    log = tmp_path / "job.log"
    log.write_text("x" * 20000)
    fd, saved = os.open(log, os.O_WRONLY), os.dup(2)
    os.lseek(fd, 0, os.SEEK_END)
    real, calls = os.write, []

    def write(f, data):
        calls.append(data)
        if len(calls) <= 2:  # refused, even once the reserve beside the log is given up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, data)

    os.dup2(fd, 2)
    try:
        monkeypatch.setattr(os, "write", write)
        jobs.last_line("onestep train: error: cannot write student.pt")
    finally:
        monkeypatch.undo()
        os.dup2(saved, 2)
        os.close(fd)
    text = log.read_text()
    assert text.endswith("onestep train: error: cannot write student.pt\n") and "the disk is full" in text
    assert 20000 - 4096 <= len(text) < 20000  # one page of the log given up, no more


def test_the_space_kept_beside_the_log_is_given_up_for_its_last_line(tmp_path, monkeypatch):
    import os

    log = tmp_path / "job.log"
    real, calls = os.write, []

    def write(f, data):
        calls.append(data)
        if f == 2 and (log.with_name("job.log.reserve")).exists():  # full until the reserve is given up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, data)

    with jobs.logged(log):
        assert log.with_name("job.log.reserve").stat().st_size > 4096
        os.write(1, b"some output\n")
        monkeypatch.setattr(os, "write", write)
        jobs.last_line("onestep teacher: error: cannot write teacher.pt")
        monkeypatch.undo()
    assert log.read_text() == "some output\nonestep teacher: error: cannot write teacher.pt\n"
    assert not log.with_name("job.log.reserve").exists()


@pytest.mark.parametrize("snakemake_removes", [True, False])
def test_every_attempt_s_log_is_kept(tmp_path, snakemake_removes):
    """Before: a retried job's log replaced the first attempt's (Snakemake removes a job's log before it runs,
    and the job truncated it). Now each attempt's log is also <stem>.attempt-<n>.log (a hard link), which
    outlives that removal; the rule's log is the latest attempt's, with a header from the second on."""
    import os

    log = tmp_path / "logs" / "train" / "run.log"
    for n in (1, 2, 3):
        if snakemake_removes and log.exists():
            log.unlink()  # what Snakemake does before each job
        with jobs.logged(log):
            os.write(1, f"attempt {n} output\n".encode())
    attempts = [log.parent / f"run.attempt-{n}.log" for n in (1, 2, 3)]
    assert jobs.attempt_logs(log) == attempts
    assert attempts[0].read_text() == "attempt 1 output\n"
    assert attempts[1].read_text() == "attempt 2 (every attempt's log: run.attempt-<n>.log)\nattempt 2 output\n"
    assert log.read_text() == attempts[2].read_text() and log.read_text().endswith("attempt 3 output\n")
    assert os.path.samefile(log, attempts[2])  # the latest attempt's: one file, two names
