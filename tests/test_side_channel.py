"""MLflow is a side channel: a run id the store does not hold gets a run of its own, an unreachable
server with tracking.required: false costs one warning, and no run is left RUNNING by its job."""

import mlflow
import pytest

from onestep import tracking


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ONESTEP_TRACKING_TIMEOUT", raising=False)
    return {"tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifacts": str(tmp_path / "mlartifacts"),
                         "experiment": "onestep"}, "dataset": {"name": "checkerboard"}}


def runs(cfg) -> list:
    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri(cfg))
    return client.search_runs([tracking.init_store(cfg)])


def test_a_run_missing_from_the_store_gets_one_of_its_own(cfg):
    with tracking.record(cfg, "r0", run_id="0" * 32, parent_id="1" * 32) as rec:  # another store's ids
        rec.metrics({"eval_swd": 0.5})
    (run,) = runs(cfg)
    assert run.info.status == "FINISHED" and run.data.metrics["eval_swd"] == 0.5
    assert run.data.tags["onestep.missing_run_id"] == "0" * 32 and run.data.tags["mlflow.parentRunId"] == "1" * 32
    with tracking.record(cfg, "r0", run_id=run.info.run_id) as rec:  # a run the store holds: attached to
        rec.metrics({"eval_kid": 0.1})
    (again,) = runs(cfg)
    assert again.info.run_id == run.info.run_id and again.data.metrics["eval_kid"] == 0.1


@pytest.mark.parametrize("error, status", [(KeyboardInterrupt(), "KILLED"), (SystemExit(143), "KILLED"),
                                           (ValueError("bug"), "FAILED")])
def test_an_interrupted_job_closes_its_run(cfg, error, status):
    with pytest.raises(type(error)):
        with tracking.record(cfg, "r0"):
            raise error
    assert [r.info.status for r in runs(cfg)] == [status]


def test_a_run_left_running_by_a_killed_attempt_is_closed_by_the_next(cfg, tmp_path):
    marker = tmp_path / "resume.pt.mlflow-run"
    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri(cfg))
    killed = client.create_run(tracking.init_store(cfg), run_name="r0").info.run_id  # SIGKILL: no exit code ran
    marker.write_text(killed)
    with tracking.record(cfg, "r0", marker=marker):
        assert marker.read_text() != killed
    assert client.get_run(killed).info.status == "KILLED" and not marker.exists()
    assert sorted(r.info.status for r in runs(cfg)) == ["FINISHED", "KILLED"]


def test_an_unreachable_server_fails_fast_or_warns_once(cfg, capsys):
    cfg["tracking"] |= {"uri": "http://127.0.0.1:9", "timeout_s": 2}  # port 9 (discard): nothing listens
    with pytest.raises(tracking.TrackingError, match=r"127\.0\.0\.1:9 is unreachable.*tracking\.required: false"):
        tracking.check_server(cfg)
    cfg["tracking"]["required"] = False
    tracking.check_server(cfg)
    assert capsys.readouterr().err.count("warning: MLflow tracking server http://127.0.0.1:9") == 1
    with tracking.record(cfg, "r0", run_id="0" * 32) as rec:  # no connection attempted
        rec.metrics({"loss": 1.0})
        rec.artifact(__file__)
    assert rec.run_id is None and tracking.start_parent(cfg, "ablate_order") is None
    tracking._OFF.clear()


@pytest.mark.parametrize("enabled", [True, False])  # False: the jobs ran with tracking.enabled: false
def test_sync_uploads_a_finished_runs_files_later(cfg, tmp_path, capsys, enabled):
    from onestep import outputs
    from onestep.cli import main

    run = tmp_path / "ablate_order" / "ordering-forward_seed-0"
    cfg["tracking"]["enabled"] = enabled
    outputs.write_yaml(run / "config.yaml", {**cfg, "seed": 0, "method": {"name": "curriculum"},
                                             "run": {"ablation": "ablate_order", "name": run.name}})
    outputs.write_json(run / "train.json", {"wall_time_s": 12.5, "steps": 30, "mlflow_run_id": "0" * 32})
    outputs.write_json(run / "metrics.json", {"metrics": {"swd": 0.25}, "multistep": {"swd@2": 0.2}})
    outputs.write_csv(run / "train_log.csv", [{"step": 10, "loss": 1.0}, {"step": 20, "loss": 0.5}], "step")
    main(["sync", "--run", str(run)])
    assert run.name in capsys.readouterr().out
    cfg["tracking"]["enabled"] = True  # to read the store back
    (synced,) = runs(cfg)
    assert synced.info.status == "FINISHED" and synced.data.tags["ablation"] == "ablate_order"
    assert synced.data.metrics["wall_time_s"] == 12.5 and synced.data.metrics["eval_swd"] == 0.25
    assert synced.data.metrics["eval_swd_at2"] == 0.2 and synced.data.params["seed"] == "0"
    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri(cfg))
    assert [m.value for m in client.get_metric_history(synced.info.run_id, "loss")] == [1.0, 0.5]
    assert {"train.json", "metrics.json", "config.yaml"} <= {a.path for a in client.list_artifacts(synced.info.run_id)}
