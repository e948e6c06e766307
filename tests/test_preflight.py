"""`onestep preflight` (make demo, make slurm): a config file that does not parse is named with its line and
column before Snakemake starts, a killed Snakemake's stale lock is removed in one line (a live one's is kept),
and on SLURM a sacct that does not answer (no accounting) gets `--slurm-status-command squeue` added."""

import os
import subprocess

import pytest

from onestep import cli
from onestep.errors import OnestepError
from onestep.stages import preflight


def test_config_files_of_snakemake_arguments():
    args = ["--cores", "2", "--configfile", "a.yaml", "b.yaml", "--config", "seeds=[0]", "--configfiles=c.yaml"]
    assert preflight.config_files(args) == ["a.yaml", "b.yaml", "c.yaml"]


def test_a_yaml_error_is_named_with_line_and_column_before_snakemake(tmp_path, capfd):
    bad = tmp_path / "my.yaml"
    bad.write_text("dataset:\n  name: [moons\nseeds: [0]\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["preflight", "demo", "--", "--cores", "2", "--configfile", str(bad)])
    assert e.value.code == 2
    assert f"{bad}, line 3, column 6: not valid YAML" in capfd.readouterr().err


def _locked(work):
    locks = work / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text(str(work / "results/a.txt"))
    (locks / "0.output.lock").write_text(str(work / "results/b.txt"))
    return locks


def test_a_stale_lock_is_removed_and_a_live_one_kept(tmp_path):
    """Before: after kill -9 of Snakemake the next `make demo` stopped on LockException."""
    locks = _locked(tmp_path)
    live = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 60"], cwd=tmp_path)
    try:
        for _ in range(50):  # until its argv shows the name
            if preflight.snakemake_pids(tmp_path):
                break
            __import__("time").sleep(0.1)
        line = preflight.unlock_stale(tmp_path)
        assert line.startswith(f"{locks}: held by a running Snakemake (pid {live.pid})"), line
        assert len(list(locks.iterdir())) == 2
    finally:
        live.kill()
        live.wait()
    line = preflight.unlock_stale(tmp_path)
    assert line.startswith(f"unlocked {tmp_path.resolve()}: a stale Snakemake lock"), line
    assert list(locks.iterdir()) == []
    assert preflight.unlock_stale(tmp_path) is None  # no lock: nothing said


def _fake(bin_dir, name, code):
    f = bin_dir / name
    f.write_text(f"#!/bin/sh\nexit {code}\n")
    f.chmod(0o755)


@pytest.mark.parametrize("sacct, squeue, args, added", [
    (1, 0, [], ["--slurm-status-command", "squeue"]),  # no accounting: squeue added
    (0, 0, [], []),  # accounting: the plugin's default (sacct)
    (1, 0, ["--slurm-status-command", "squeue"], []),  # given: kept
    (1, 0, ["--slurm-status-command=sacct"], "--slurm-status-command sacct: sacct does not answer"),
    (1, 1, [], "neither sacct nor squeue answers"),
])
def test_slurm_without_accounting_gets_squeue_or_a_line_naming_the_flag(tmp_path, monkeypatch, sacct, squeue, args,
                                                                          added):
    _fake(tmp_path, "sacct", sacct)
    _fake(tmp_path, "squeue", squeue)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    if isinstance(added, str):
        with pytest.raises(OnestepError, match=added):
            preflight.status_args(args)
    else:
        extra, line = preflight.status_args(args)
        assert extra == added and (line is not None) == bool(added)
