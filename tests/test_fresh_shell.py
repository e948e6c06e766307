"""The headline commands from a fresh shell: `.venv/bin/snakemake ...` with the venv's bin not on PATH
(nothing activated); the rules call the CLI through Snakemake's interpreter (`python -m onestep`)."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import BIN, REPO, TINY, write_tiny

from onestep.config import deep_merge

GRID = {"name": "ablate_order", "title": "Stage ordering (tiny)", "baseline": {"method.ordering": "forward"},
        "grid": {"method.ordering": ["forward", "reversed"]}}


def test_python_m_onestep_is_the_cli():
    p = subprocess.run([sys.executable, "-m", "onestep", "--help"], capture_output=True, text=True,
                       env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0 and "usage: onestep" in p.stdout, p.stderr


@pytest.mark.e2e
def test_snakemake_by_its_path_without_the_venv_on_path(tmp_path):
    write_tiny(tmp_path, deep_merge(TINY, {"teacher": {"steps": 20}}), {"order": GRID})
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    assert shutil.which("onestep", path=env["PATH"]) is None  # what a job found on PATH before
    targets = ["results/checkerboard/teacher/teacher.pt", "results/checkerboard/reference.json"]
    p = subprocess.run([str(BIN / "snakemake"), *targets, "-s", str(REPO / "Snakefile"), "--cores", "2",
                        "--configfile", str(REPO / "config" / "config.yaml"), str(tmp_path / "tiny.yaml")],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    for t in targets:
        assert (tmp_path / t).stat().st_size > 0


def _spoil(path, text: str) -> None:
    """`path` rewritten with `text`, keeping its times: Snakemake sees the job config it wrote, unchanged."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.e2e
def test_a_job_that_cannot_start_fails_once_naming_its_cause(tmp_path):
    """With the SLURM profile's retries (./slurm, run here with the local executor): before, every job was
    resubmitted twice (`retries: 2`), so a job that cannot start failed three times, and Snakemake's error
    named only the log. Now only the training rules, which resume, are retried; any other job fails once,
    and the job's one-line cause is printed outside its log too, naming the log. (Here the cause is a job
    config file that is not YAML, planted after Snakemake wrote it.)"""
    from conftest import snakemake

    write_tiny(tmp_path, TINY, {"order": GRID})
    config = tmp_path / "results/checkerboard/config/reference.yaml"
    assert snakemake(tmp_path, str(config.relative_to(tmp_path))).returncode == 0
    _spoil(config, "dataset: {name: checkerboard\n")
    slurm = ["--profile", str(REPO / "slurm"), "--executor", "local", "--latency-wait", "1"]
    p = snakemake(tmp_path, *slurm, "results/checkerboard/reference.json")
    out = p.stdout + p.stderr
    assert p.returncode != 0
    starts = [line for line in out.splitlines() if line.strip() in ("rule reference:", "localrule reference:")]
    assert len(starts) == 1 and "Trying to restart job" not in out, out[-3000:]
    log = "results/logs/reference/checkerboard.log"
    cause = f"onestep reference: error: {config.relative_to(tmp_path)}, line 2, column 1: not valid YAML"
    assert f"{cause}" in out and f"(log: {log})" in out, out[-3000:]
    assert f"log: {log} (check log file(s) for error details)" in out
    assert (tmp_path / log).read_text().startswith(cause)
    # a training rule keeps its 2 retries (preemption, time limits: it resumes from its checkpoint)
    teacher = tmp_path / "results/checkerboard/config/teacher.yaml"
    assert snakemake(tmp_path, str(teacher.relative_to(tmp_path))).returncode == 0
    _spoil(teacher, "dataset: {name: checkerboard\n")
    p = snakemake(tmp_path, *slurm, "results/checkerboard/teacher/teacher.pt")
    out = p.stdout + p.stderr
    assert p.returncode != 0 and out.count("Trying to restart job") == 2, out[-3000:]
