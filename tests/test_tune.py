"""Optuna search over lambda: parallel workers on one journal, pruning, divergence, resume, retry."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from onestep.cli import main
from onestep.config import deep_merge, validate
from onestep.tuning.study import load_study
from onestep.tuning.values import resolve_lambda

BIN = Path(sys.executable).parent
TINY = {
    "teacher": {"steps": 150, "batch_size": 256, "log_every": 50, "warmup": 10},
    "pairs": {"num": 512, "ddim_steps": 5, "seed": 1},
    "student": {"net": {"name": "mlp", "width": 32, "depth": 1, "temb_dim": 16}, "batch_size": 64, "log_every": 5},
    "method": {"K": 3, "steps_per_stage": 10},
    "evaluation": {"num_samples": 256, "swd_projections": 32, "floor_repeats": 1},
    "tune": {"n_trials": 4, "startup_trials": 1, "report_every": 1, "warmup_stages": 0, "heartbeat_s": 0.5,
             "lambda": {"low": 0.001, "high": 1000.0}, "validation": {"num_samples": 256}},
}


def config_file(cfg: dict, path) -> str:
    """The job's config file, as the rules' job_config writes it (jobs take --config PATH)."""
    Path(path).write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny teacher, its pairs and the reference, in a fresh folder with its own MLflow store."""
    work = tmp_path_factory.mktemp("tune")
    old = os.getcwd()
    os.chdir(work)
    with open(Path(__file__).resolve().parents[1] / "config" / "config.yaml") as f:
        cfg = deep_merge(yaml.safe_load(f), TINY)
    validate(cfg)
    js = config_file(cfg, work / "config.yaml")
    main(["init-tracking", "--config", js, "--out", "store.json"])
    main(["teacher", "--config", js, "--out", "teacher.pt"])
    main(["pairs", "--config", js, "--teacher", "teacher.pt", "--out", "pairs.npz"])
    main(["reference", "--config", js, "--out", "ref.npz", "--summary", "ref.json"])
    os.chdir(old)
    return work, cfg


def worker_argv(work: Path, cfg: dict, folder: str, worker: int = 0, parent: bool = False) -> list[str]:
    argv = ["tune-worker", "--config", config_file(cfg, work / f"{folder}-{worker}.yaml"),
            "--teacher", str(work / "teacher.pt"), "--pairs", str(work / "pairs.npz"), "--reference", str(work / "ref.npz"),
            "--folder", str(work / folder), "--worker", str(worker), "--out", str(work / folder / f"worker-{worker}.json"),
            "--threads", "1"]
    return argv + (["--parent", str(work / f"{folder}.parent.json")] if parent else [])


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials()]


def test_two_workers_in_parallel_processes(prepared):
    work, cfg = prepared
    cfg = deep_merge(cfg, {"tune": {"study": "parallel"}})
    main(["parent", "--config", config_file(cfg, work / "parallel.yaml"), "--ablation", "parallel", "--kind", "study",
          "--out", str(work / "parallel.parent.json")])
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    procs = [subprocess.Popen([str(BIN / "onestep"), *worker_argv(work, cfg, "parallel", w, parent=True)], cwd=work,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    study = load_study(cfg, work / "parallel")
    finished = [s for s in states(study) if s in ("COMPLETE", "PRUNED")]
    assert 4 <= len(study.get_trials()) <= 5 and len(finished) == len(study.get_trials())  # overshoot <= W - 1
    ran = [json.loads((work / "parallel" / f"worker-{w}.json").read_text())["trials_run"] for w in (0, 1)]
    assert all(r >= 1 for r in ran)  # both workers took trials
    # every trial is a nested MLflow run under the study's parent
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work / 'results' / 'mlflow.db'}")
    parent = json.loads((work / "parallel.parent.json").read_text())["run_id"]
    runs = client.search_runs([client.get_experiment_by_name("onestep").experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(runs) == len(study.get_trials())
    assert {r.data.tags["state"] for r in runs} <= {"COMPLETE", "PRUNED"}
    assert all("method.lambda" in r.data.params for r in runs)

    # the summary: best.yaml, trials table, plots
    main(["tune-summary", "--config", config_file(cfg, work / "parallel.yaml"), "--folder", str(work / "parallel"),
          "--parent", str(work / "parallel.parent.json")])
    best = yaml.safe_load((work / "parallel" / "best.yaml").read_text())
    assert 0.001 <= best["lambda"] <= 1000 and best["value"] == min(
        t.value for t in study.get_trials(states=(TrialState.COMPLETE,)))
    for f in ("trials.md", "trials.tex", "trials.csv", "history.png", "intermediate.png", "slice.png"):
        assert (work / "parallel" / f).stat().st_size > 0
    # lambda: tuned picks it up
    run_cfg = deep_merge(cfg, {"method": {"lambda": "tuned"}, "run": {"name": "x"}})
    assert resolve_lambda(run_cfg, work / "parallel" / "best.yaml")["method"]["lambda"] == best["lambda"]


def test_a_poor_trial_is_pruned(prepared):
    work, cfg = prepared
    # SWD: at this tiny validation sample the checkerboard's TV (the headline) sits at its saturated floor for every trial
    cfg = deep_merge(cfg, {"tune": {"study": "prune", "n_trials": 6}, "evaluation": {"headline": "swd"}})
    main(worker_argv(work, cfg, "prune"))
    study = load_study(cfg, work / "prune")
    assert "PRUNED" in states(study) and "COMPLETE" in states(study)
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert any(len(t.intermediate_values) < cfg["method"]["K"] for t in pruned)  # stopped before the last stage


def test_a_diverging_trial_fails_and_the_study_goes_on(prepared):
    work, cfg = prepared
    # no clip of 1/(2(1 - abar_t)): infinite at t = 0, so the last stage's loss is Inf
    cfg = deep_merge(cfg, {"tune": {"study": "diverge", "n_trials": 2}, "method": {"max_weight": float("inf")}})
    main(worker_argv(work, cfg, "diverge"))
    study = load_study(cfg, work / "diverge")
    assert states(study) == ["FAIL", "FAIL"]
    assert all("non-finite loss" in t.user_attrs["fail_reason"] for t in study.get_trials())


def test_rerun_resumes_the_study(prepared):
    work, cfg = prepared
    cfg = deep_merge(cfg, {"tune": {"study": "resume", "n_trials": 2}})
    main(worker_argv(work, cfg, "resume"))
    first = load_study(cfg, work / "resume")
    before = [t.params for t in first.get_trials()]
    assert len(before) == 2
    main(worker_argv(work, deep_merge(cfg, {"tune": {"n_trials": 3}}), "resume"))
    again = load_study(cfg, work / "resume")
    assert again._study_id == first._study_id and len(again.get_trials()) == 3
    assert [t.params for t in again.get_trials()[:2]] == before


def test_a_worker_killed_mid_trial_costs_one_retry(prepared):
    """SIGKILL a real worker while its trial runs; the next worker fails that trial and re-runs its lambda."""
    import signal

    work, cfg = prepared
    cfg = deep_merge(cfg, {"tune": {"study": "kill", "n_trials": 1, "grace_s": 2},
                           "method": {"steps_per_stage": 400}})  # a trial long enough to be caught running
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "onestep"), *worker_argv(work, cfg, "kill")], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    running = []
    while time.time() < deadline and not running:
        time.sleep(0.2)
        if (work / "kill" / "journal.log").exists():
            running = [t for t in load_study(cfg, work / "kill").get_trials(states=(TrialState.RUNNING,))
                       if "owner" in t.user_attrs]
    assert running, "the worker never started a trial"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(2.5)  # past the grace period
    main(worker_argv(work, cfg, "kill"))
    trials = load_study(cfg, work / "kill").get_trials()
    assert trials[0].state == TrialState.FAIL and "is gone" in trials[0].user_attrs["fail_reason"]
    assert trials[1].params == trials[0].params and trials[1].user_attrs["retry_of"] == 0
    assert trials[1].state in (TrialState.COMPLETE, TrialState.PRUNED) and len(trials) == 2


def _start_and_kill_a_worker(work: Path, cfg: dict, folder: str) -> int:
    """A real worker, SIGKILLed while its first trial runs; the killed trial's number."""
    import signal

    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "onestep"), *worker_argv(work, cfg, folder, parent=True)], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, running = time.time() + 120, []
    while time.time() < deadline and not running:
        time.sleep(0.2)
        if (work / folder / "journal.log").exists():
            running = [t for t in load_study(cfg, work / folder).get_trials(states=(TrialState.RUNNING,))
                       if "mlflow_run_id" in t.user_attrs and "owner" in t.user_attrs]
    assert running, "the worker never started a trial"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return running[0].number


def test_a_killed_worker_is_recovered_within_the_run_with_the_default_grace(prepared):
    """The SLURM retry case: the worker is re-run at once (well within the default grace_s). Before, it
    ran 0 trials and reaped none, the trial stayed RUNNING and the best value came from the others.
    Now the dead owner (a process of this host that is gone) is seen at once: the trial is FAIL, its
    lambda re-run, its MLflow run KILLED, and the summary's best comes from finished trials only."""
    import mlflow

    work, cfg = prepared
    defaults = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())["tune"]
    cfg = deep_merge(cfg, {"tune": {"study": "heal", "n_trials": 2, "heartbeat_s": defaults["heartbeat_s"],
                                    "grace_s": defaults["grace_s"]},
                           "method": {"steps_per_stage": 400}})  # a trial long enough to be caught running
    main(["parent", "--config", config_file(cfg, work / "heal.yaml"), "--ablation", "heal", "--kind", "study",
          "--out", str(work / "heal.parent.json")])
    killed = _start_and_kill_a_worker(work, cfg, "heal")
    t0 = time.time()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}  # at once: the predecessor died a moment ago
    p = subprocess.run([str(BIN / "onestep"), *worker_argv(work, cfg, "heal", parent=True)], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads((work / "heal" / "worker-0.json").read_text())
    assert result["reaped"] == [killed] and result["trials_run"] >= 1
    trials = load_study(cfg, work / "heal").get_trials()
    assert trials[killed].state == TrialState.FAIL and "is gone" in trials[killed].user_attrs["fail_reason"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].params == trials[killed].params
    assert all(t.state != TrialState.RUNNING and t.state != TrialState.WAITING for t in trials)
    assert time.time() - t0 < defaults["grace_s"] + 120
    client = mlflow.MlflowClient(f"sqlite:///{work / 'results' / 'mlflow.db'}")
    assert client.get_run(trials[killed].user_attrs["mlflow_run_id"]).info.status == "KILLED"
    main(["tune-summary", "--config", config_file(cfg, work / "heal.yaml"), "--folder", str(work / "heal")])
    best = yaml.safe_load((work / "heal" / "best.yaml").read_text())
    assert best["trial"] != killed and best["value"] == min(
        t.value for t in trials if t.state == TrialState.COMPLETE)


def test_a_worker_waits_for_a_silent_trial_of_another_host_and_retries_it(prepared):
    """A trial RUNNING on another host (no pid to check) with a fresh heartbeat, then silent: a worker
    with nothing else to do waits within its run until grace_s has passed, then re-runs its lambda,
    instead of leaving it RUNNING; the summary refuses a study with an unfinished trial."""
    from onestep.tuning.best import write_best
    from onestep.tuning.study import TuneError

    work, cfg = prepared
    cfg = deep_merge(cfg, {"tune": {"study": "silent", "n_trials": 1, "grace_s": 3, "heartbeat_s": 0.5}})
    study = load_study(cfg, work / "silent")
    trial = study.ask()  # RUNNING, as a worker on node B left it
    trial.suggest_float("lambda", 0.001, 1000.0, log=True)
    trial.set_user_attr("owner", "node-b.cluster:4242")
    trial.set_user_attr("heartbeat", time.time())
    with pytest.raises(TuneError, match=r"trial\(s\) 0 did not finish \(RUNNING\)"):
        write_best(cfg, work / "silent")
    t0 = time.time()
    main(worker_argv(work, cfg, "silent"))
    result = json.loads((work / "silent" / "worker-0.json").read_text())
    assert result["reaped"] == [0] and result["trials_run"] == 1 and result["waited_s"] >= 2
    assert time.time() - t0 >= 3
    trials = load_study(cfg, work / "silent").get_trials()
    assert trials[0].state == TrialState.FAIL and "no heartbeat" in trials[0].user_attrs["fail_reason"]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].state in (TrialState.COMPLETE, TrialState.PRUNED)
