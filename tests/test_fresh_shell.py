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
