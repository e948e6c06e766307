"""The local MLflow store: no empty "Default" experiment beside ours, the runs-table address `onestep ui` prints
and the view it opens, MLflow's own source tags, logs attached under their stage, an evaluation that leaves its
training's Duration alone, shared runs under one parent, a results folder that moves, and tracking turned off."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from onestep import tracking
from onestep.cli import main
from onestep.tracking_view import VIEW_TAG


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return {"tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifacts": str(tmp_path / "mlartifacts"),
                         "experiment": "onestep"}, "dataset": {"name": "checkerboard"}}


def active(uri: str) -> list[str]:
    return [e.name for e in mlflow.MlflowClient(tracking_uri=uri).search_experiments()]  # active only


def test_fresh_store_has_only_our_experiment(cfg):
    uri = cfg["tracking"]["uri"]
    exp_id = tracking.init_store(cfg)
    assert active(uri) == ["onestep"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    default = client.get_experiment("0")  # MLflow's Default still exists, deleted, so no store recreates it
    assert default.name == "Default" and default.lifecycle_stage == "deleted"
    assert tracking.init_store(cfg) == exp_id and active(uri) == ["onestep"]
    run = client.create_run(exp_id)  # a fresh process opening the store (as every job does) brings nothing back
    assert active(uri) == ["onestep"] and run.info.experiment_id == exp_id


def test_a_default_experiment_with_runs_is_kept(cfg):
    uri = cfg["tracking"]["uri"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_run("0")  # someone logged into Default before the pipeline's first job
    tracking.init_store(cfg)
    assert sorted(active(uri)) == ["Default", "onestep"]
    assert tracking.retire_default(client) is False


def test_ui_url_opens_the_runs_table_of_the_experiment(cfg, tmp_path):
    uri = cfg["tracking"]["uri"]
    assert tracking.ui_url(uri) == "http://127.0.0.1:5000/#/experiments"  # no store yet: the list,
    assert not (tmp_path / "mlflow.db").exists()  # and looking did not create one
    exp_id = tracking.init_store(cfg)
    assert exp_id != "0"
    assert tracking.ui_url(uri, "onestep", "0.0.0.0", 5001) == (
        f"http://0.0.0.0:5001/#/experiments/{exp_id}/runs?workflowType=machine_learning&viewStateShareKey=onestep")
    assert tracking.ui_url(uri, "other") == "http://127.0.0.1:5000/#/experiments"
    assert tracking.ui_url("http://127.0.0.1:9") == "http://127.0.0.1:5000/#/experiments"  # a server: no lookup, no wait


def test_onestep_ui_prints_the_runs_table_before_starting_the_server(cfg, monkeypatch, capsys):
    exp_id = tracking.init_store(cfg)
    started = []
    monkeypatch.setattr("os.execv", lambda path, argv: started.append(argv))
    main(["ui", "--uri", cfg["tracking"]["uri"], "--port", "5002"])
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:5002/#/experiments/{exp_id}/runs?workflowType=machine_learning&viewStateShareKey=onestep" in out
    assert started and started[0][1:3] == ["ui", "--backend-store-uri"]


def client_of(cfg) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=tracking.tracking_uri(cfg))


def test_the_view_shows_the_headline_metrics_and_each_grids_keys_first(cfg):
    exp_id = tracking.init_store(cfg)
    tracking.show_grid(cfg, ["method.ordering"])
    tracking.show_grid(cfg, ["method.K", "method.ordering"])  # a second ablation adds only its new key
    view = json.loads(client_of(cfg).get_experiment(exp_id).tags[VIEW_TAG])
    assert view["selectedColumns"] == ["attributes.`Source`", "metrics.`eval_tv`", "metrics.`eval_off_support`",
                                       "metrics.`eval_swd`", "metrics.`eval_fid`",
                                       "params.`seed`", "params.`method.ordering`", "params.`method.K`"]
    assert view["orderByKey"] == "tags.`onestep.order`" and view["orderByAsc"] is True


def test_runs_carry_mlflows_source_tags(cfg):
    with tracking.record(cfg, "ordering=forward, seed 0") as rec:
        pass
    tags = client_of(cfg).get_run(rec.run_id).data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
    assert len(tags["mlflow.source.git.commit"]) == 40 and "git_commit" not in tags
    assert tags["mlflow.runName"] == "ordering=forward, seed 0"


def test_an_evaluation_leaves_the_trainings_duration(cfg):
    with tracking.record(cfg, "r") as rec:
        rec.metrics({"loss": 1.0})
    before = client_of(cfg).get_run(rec.run_id).info
    time.sleep(0.05)
    with tracking.log_into(cfg, rec.run_id, "r") as ev:
        ev.metrics({"eval_swd": 0.25})
    after = client_of(cfg).get_run(rec.run_id)
    assert ev.run_id == rec.run_id and after.data.metrics["eval_swd"] == 0.25
    assert (after.info.status, after.info.start_time, after.info.end_time) == ("FINISHED", before.start_time,
                                                                                before.end_time)


def test_each_stages_logs_are_attached_under_their_own_names(cfg, tmp_path):
    logs = tmp_path / "logs"
    files = {"train": logs / "train" / "ablate_order" / "ordering-forward_seed-1.log",
             "evaluate": logs / "evaluate" / "ablate_order" / "ordering-forward_seed-1.log"}
    for stage, f in files.items():
        f.parent.mkdir(parents=True)
        f.write_text(f"{stage} log\n")
    earlier = files["train"].with_name("ordering-forward_seed-1.1.log")  # a retried job's first attempt
    earlier.write_text("attempt 1\n")
    files["train"].with_name("ordering-forward_seed-10.log").write_text("another run\n")  # not this run's
    with tracking.record(cfg, "r") as rec:
        pass
    for stage, f in files.items():
        tracking.attach_logs(cfg, rec.run_id, f, stage)
    client = client_of(cfg)
    attached = {a.path for s in files for a in client.list_artifacts(rec.run_id, f"logs/{s}")}
    assert attached == {"logs/train/ordering-forward_seed-1.log", "logs/train/ordering-forward_seed-1.1.log",
                        "logs/evaluate/ordering-forward_seed-1.log"}
    for path, f in [(f"logs/{s}/{f.name}", f) for s, f in files.items()] + [(f"logs/train/{earlier.name}", earlier)]:
        got = client.download_artifacts(rec.run_id, path, str(tmp_path / "dl" / path.replace("/", "_")))
        assert Path(got).read_bytes() == f.read_bytes()


def test_teacher_and_reference_runs_share_one_parent(cfg):
    first, again = tracking.shared_parent(cfg), tracking.shared_parent(cfg)
    parent = client_of(cfg).get_run(first)
    assert first == again and parent.info.run_name == "shared checkerboard" and parent.info.status == "FINISHED"
    assert tracking.shared_parent({**cfg, "dataset": {"name": "digits"}}) != first  # one per dataset


def test_a_moved_results_folder_opens_its_artifacts(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    def cfg_in(root: Path) -> dict:
        return {"tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "artifacts": str(root / "mlartifacts"),
                             "experiment": "onestep"}, "dataset": {"name": "checkerboard"}}

    old, new = tmp_path / "a" / "results", tmp_path / "b" / "results"
    old.mkdir(parents=True)
    (old / "metrics.json").write_text('{"swd": 0.1}')
    with tracking.record(cfg_in(old), "r") as rec:
        rec.artifact(old / "metrics.json")
    new.parent.mkdir()
    shutil.move(old, new)  # the original is gone
    started = []
    monkeypatch.setattr("os.execv", lambda path, argv: started.append(argv))
    main(["ui", "--uri", cfg_in(new)["tracking"]["uri"], "--artifacts", str(new / "mlartifacts")])
    client = client_of(cfg_in(new))
    assert client.get_run(rec.run_id).info.artifact_uri.startswith((new / "mlartifacts").resolve().as_uri())
    got = client.download_artifacts(rec.run_id, "metrics.json", str(tmp_path / "dl"))
    assert Path(got).read_text() == '{"swd": 0.1}'


def test_tracking_disabled_opens_no_store_and_never_imports_mlflow(cfg, tmp_path):
    """`tracking.enabled: false`: a job's records go nowhere, no store file is made, and mlflow is never imported
    (a fresh interpreter: this test process has imported it already)."""
    cfg["tracking"]["enabled"] = False
    script = f"""
import json, sys
from onestep import tracking
cfg = json.loads({json.dumps(cfg)!r})
assert not tracking.enabled(cfg)
tracking.check_server(cfg)
with tracking.record(cfg, "run", {{"kind": "run"}}) as rec:
    rec.params(cfg); rec.metrics({{"loss": 1.0, "precision": "fp32"}}, 3); rec.flush(); rec.tag("a", 1)
with tracking.log_into(cfg, "0123", "run") as rec:
    rec.metrics({{"fid": 2.0}}); rec.artifact("tracking.py")
print(rec.run_id, "mlflow" in sys.modules)
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["None", "False"]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
