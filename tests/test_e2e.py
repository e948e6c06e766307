"""End to end: a tiny ablate_order (2-D, two orderings, one seed, few steps) through Snakemake."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import TINY, Finished, planned_jobs, snakemake

GRID = {"name": "ablate_order", "title": "Stage ordering (tiny)", "baseline": {"method.ordering": "forward"},
        "grid": {"method.ordering": ["forward", "reversed"]}}
FINISHED = Finished("ablate_order", TINY, {"order": GRID})


@pytest.mark.e2e
def test_outputs_exist(finished):
    r = finished / "results"
    for ext in ("md", "tex", "csv"):
        assert (r / "tables" / "checkerboard" / f"ablate_order.{ext}").stat().st_size > 0
    for fig in ("ablate_order", "ablate_order_curves", "ablate_order_samples"):
        assert (r / "plots" / "checkerboard" / f"{fig}.png").stat().st_size > 0
    for order in ("forward", "reversed"):
        run = r / "checkerboard" / "ablate_order" / f"ordering-{order}_seed-0"
        m = json.loads((run / "metrics.json").read_text())
        assert m["point"] == {"method.ordering": order} and m["primary"] == "tv"
        assert m["metrics"]["swd"] > 0 and 0 <= m["metrics"]["off_support"] <= m["metrics"]["tv"] and m["train"]["samples_per_s"] > 0
        assert (run / "samples.png").exists() and (run / "student.pt").exists()
        assert yaml.safe_load((run / "config.yaml").read_text())["method"]["ordering"] == order
    # one log per job
    assert (r / "logs" / "train" / "ablate_order" / "ordering-forward_seed-0.log").exists()


@pytest.mark.e2e
def test_table_has_its_rows(finished):
    md = (finished / "results" / "tables" / "checkerboard" / "ablate_order.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    labels = [row.split("|")[1].strip().strip("*") for row in rows[1:]]
    assert labels == ["forward", "reversed", "data vs data (floor)", "teacher DDIM 1 step", "teacher DDIM 10 steps",
                      "teacher pairs: dpm++ 10 steps, x0 clipped to +-2"]  # the pairs' own solver
    assert md.count("**") >= 2  # a best value in bold
    import polars as pl

    csv = pl.read_csv(finished / "results" / "tables" / "checkerboard" / "ablate_order.csv").filter(pl.col("kind") == "run")
    assert csv["method.ordering"].to_list() == ["forward", "reversed"]
    assert (csv["seeds"] == 1).all() and "tv_ratio_to_teacher_10" in csv.columns


@pytest.mark.e2e
def test_mlflow_holds_the_runs(finished):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{finished / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("onestep")
    runs = client.search_runs([exp.experiment_id])
    by_kind = {}
    for run in runs:
        by_kind.setdefault(run.data.tags.get("kind"), []).append(run)
    assert len(by_kind["teacher"]) == 1 and len(by_kind["reference"]) == 3  # DDIM 1, 10 and the pairs' solver
    parent = by_kind["ablation"][0]
    children = by_kind["run"]
    assert len(children) == 2
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert {"L_k", "R_k", "loss", "t_k", "stage_k", "eval_swd", "wall_time_s", "samples_per_s"} <= set(run.data.metrics)
        assert run.data.params["method.K"] == "3" and run.data.tags["ablation"] == "ablate_order"
        history = client.get_metric_history(run.info.run_id, "t_k")
        assert sorted({int(m.value) for m in history}) == [0, 333, 667]  # every stage logged (the rounded linspace)
        assert len(run.data.tags["mlflow.source.git.commit"]) == 40 and run.data.tags["mlflow.user"]
    # a job's log is attached once complete: the attached copy is the file on disk, to its last line
    teacher = by_kind["teacher"][0]
    attached = client.download_artifacts(teacher.info.run_id, "logs/teacher/checkerboard.log", str(finished / "dl"))
    log = (finished / "results" / "logs" / "teacher" / "checkerboard.log").read_text()
    assert Path(attached).read_text() == log and '"wall_time_s"' in log.splitlines()[-1]
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "tables")}
    assert "tables/ablate_order.md" in arts
    assert "plots/ablate_order_curves.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}


@pytest.mark.e2e
def test_evaluation_and_table_against_an_empty_store(finished, tmp_path, monkeypatch):
    """The runs were recorded in results/mlflow.db; another store (a new MLFLOW_TRACKING_URI, a cleaned
    store) lacks them: evaluation and the table record into runs of their own and write their files."""
    import mlflow

    from onestep.cli import main

    monkeypatch.chdir(finished)
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    root, run = "results/checkerboard", "results/checkerboard/ablate_order/ordering-forward_seed-0"
    main(["evaluate", "--run", run, "--teacher", f"{root}/teacher/teacher.pt", "--reference", f"{root}/reference.npz",
          "--out", str(tmp_path / "metrics.json"), "--plot", str(tmp_path / "samples.png")])
    m, stored = (json.loads(Path(f).read_text()) for f in (tmp_path / "metrics.json", f"{run}/metrics.json"))
    assert m["metrics"]["swd"] == pytest.approx(stored["metrics"]["swd"])
    runs = [f"{root}/ablate_order/ordering-{o}_seed-0/metrics.json" for o in ("forward", "reversed")]
    main(["tables", "--config", "results/config/tracking.yaml", "--ablation", "ablate_order", "--runs", *runs,
          "--teachers", f"{root}/teacher/ddim-1/metrics.json", f"{root}/teacher/ddim-10/metrics.json",
          "--reference", f"{root}/reference.json", "--spec", "ablations/order.yaml", "--out-prefix", str(tmp_path / "t"),
          "--plot", str(tmp_path / "t.png"), "--parent", "results/mlflow/ablate_order.parent.json"])
    assert (tmp_path / "t.md").stat().st_size > 0
    client = mlflow.MlflowClient(uri)
    made = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("onestep").experiment_id])}
    assert set(made) == {"ordering=forward, seed 0", "ablate_order"}
    assert all(r.info.status == "FINISHED" for r in made.values())
    assert made["ordering=forward, seed 0"].data.tags["onestep.missing_run_id"] == stored["train"]["mlflow_run_id"]
    assert made["ordering=forward, seed 0"].data.metrics["eval_swd"] == pytest.approx(m["metrics"]["swd"])


@pytest.mark.e2e
def test_a_copied_project_folder_plans_nothing(finished, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy, symlinks=True)  # keeps the files' times, like cp -a or mv
    tiny = (copy / "tiny.yaml").read_text()
    (copy / "tiny.yaml").write_text(tiny.replace(str(finished), str(copy)))  # its own ablations folder
    p = snakemake(copy, "ablate_order", "-n")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-3000:]


@pytest.mark.e2e
def test_tables_rerun_nothing_and_a_deleted_run_reruns_alone(finished):
    r = finished / "results"
    p = snakemake(finished, "ablate_order", "-n")
    assert "Nothing to be done" in p.stdout + p.stderr
    (r / "tables" / "checkerboard" / "ablate_order.md").unlink()
    p = snakemake(finished, "ablate_order", "-n")
    assert planned_jobs(p.stdout) == {"ablate_order": 1, "table": 1}
    shutil.rmtree(r / "checkerboard" / "ablate_order" / "ordering-reversed_seed-0")
    p = snakemake(finished, "ablate_order", "-n")
    # the run's folder held its config file too: its local writer re-runs with it
    assert planned_jobs(p.stdout) == {"ablate_order": 1, "evaluate": 1, "run_config": 1, "table": 1, "train": 1}
