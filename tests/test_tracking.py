"""The local MLflow store: no empty "Default" experiment beside ours, and the runs-table address `onestep ui` prints."""

import mlflow
import pytest

from onestep import tracking
from onestep.cli import main


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return {"tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifacts": str(tmp_path / "mlartifacts"),
                         "experiment": "onestep"}}


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
        f"http://0.0.0.0:5001/#/experiments/{exp_id}/runs?workflowType=machine_learning")
    assert tracking.ui_url(uri, "other") == "http://127.0.0.1:5000/#/experiments"
    assert tracking.ui_url("http://127.0.0.1:9") == "http://127.0.0.1:5000/#/experiments"  # a server: no lookup, no wait


def test_onestep_ui_prints_the_runs_table_before_starting_the_server(cfg, monkeypatch, capsys):
    exp_id = tracking.init_store(cfg)
    started = []
    monkeypatch.setattr("os.execv", lambda path, argv: started.append(argv))
    main(["ui", "--uri", cfg["tracking"]["uri"], "--port", "5002"])
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:5002/#/experiments/{exp_id}/runs?workflowType=machine_learning" in out
    assert started and started[0][1:3] == ["ui", "--backend-store-uri"]
