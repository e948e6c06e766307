"""On the real single-node SLURM of test_slurm (no accounting database): `make slurm` finds that sacct does not
answer and adds `--slurm-status-command squeue`, saying so in one line, before Snakemake starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_slurm import cluster  # noqa: F401 (the fixture: munged, slurmctld, slurmd started and stopped here)

from onestep.stages import preflight

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_make_slurm_adds_squeue_where_sacct_does_not_answer(cluster, monkeypatch):  # noqa: F811
    for k, v in cluster.items():
        if os.environ.get(k) != v:
            monkeypatch.setenv(k, v)
    assert subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, env=cluster).returncode != 0
    extra, line = preflight.status_args([])
    assert extra == ["--slurm-status-command", "squeue"] and "adding --slurm-status-command squeue" in line
    env = {**cluster, "PATH": f"{Path(sys.executable).parent}:{cluster['PATH']}"}
    p = subprocess.run(["make", "-s", "slurm", "ARGS=-n --config seeds=[0]"], cwd=REPO, capture_output=True,
                       text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "onestep: sacct does not answer here (no SLURM accounting): adding --slurm-status-command squeue" \
        in p.stderr, p.stderr[-2000:]
    assert "--slurm-status-command squeue" in p.stderr  # set -x: the command Snakemake ran with
