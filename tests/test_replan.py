"""The MLflow set-up (store.json, parent files) depends on the tracking section alone: another dataset's
jobs never re-plan this dataset's, and a changed tracking URI re-plans the tracking files only."""

import pytest
from conftest import TINY, planned_jobs, snakemake, write_tiny

from onestep.config import deep_merge

GRID = {"name": "ablate_order", "title": "Stage ordering (tiny)", "baseline": {"method.ordering": "forward"},
        "grid": {"method.ordering": ["forward", "reversed"]}}
TEACHER = "results/{}/teacher/teacher.pt"
PARENT = "results/mlflow/ablate_order.parent.json"


@pytest.mark.e2e
def test_another_dataset_does_not_replan_this_one(tmp_path):
    tiny = deep_merge(TINY, {"teacher": {"steps": 20}})
    write_tiny(tmp_path, tiny, {"order": GRID})
    (tmp_path / "moons.yaml").write_text("dataset: {name: moons}\n")
    p = snakemake(tmp_path, TEACHER.format("checkerboard"), PARENT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    # a moons job (its teacher, the shared store and parent run) ...
    p = snakemake(tmp_path, TEACHER.format("moons"), PARENT, configs=("tiny.yaml", "moons.yaml"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    # ... leaves the checkerboard's teacher and the shared tracking files as they were
    p = snakemake(tmp_path, TEACHER.format("checkerboard"), PARENT, "-n")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-3000:]
    # a new tracking URI (MLFLOW_TRACKING_URI, as for a server) re-plans the tracking files alone
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'other.db'}"}
    p = snakemake(tmp_path, TEACHER.format("checkerboard"), PARENT, "-n", env=env)
    assert planned_jobs(p.stdout) == {"tracking_config": 1, "init_tracking": 1, "mlflow_parent": 1}, p.stdout[-3000:]
