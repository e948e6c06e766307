"""Preemption: a training run interrupted at step k and resumed ends bit-for-bit like an uninterrupted one
(in process, and through the `onestep train` CLI killed with SIGTERM, then SIGKILL)."""

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from onestep.checkpoint import CheckpointError, save_checkpoint
from onestep.diffusion import Schedule, Teacher
from onestep.nets import build_net
from onestep.training.batches import PairBatches
from onestep.training.resume import Resume, load_resume, save_resume
from onestep.training.state import LoopState
from onestep.training.train import train_student, train_teacher

BIN = Path(sys.executable).parent
NET = {"name": "mlp", "width": 32, "depth": 2, "temb_dim": 16}


@pytest.fixture
def cfg(default_config):
    c = copy.deepcopy(default_config)
    c["teacher"].update(net=NET, steps=40, batch_size=64, log_every=10, checkpoint_every=10, warmup=5)
    c["student"].update(net=NET, batch_size=32, log_every=10, checkpoint_every=10, warmup=5)
    c["method"].update(K=3, steps_per_stage=20)  # replay > 0: the method draws from the generator too
    c["seed"] = 0
    c["run"] = {"ablation": "ablate_order", "name": "ordering-forward_seed-0", "point": {"method.ordering": "forward"}}
    return c


def make_teacher(cfg) -> Teacher:
    torch.manual_seed(0)
    return Teacher(build_net(NET, (2,)), Schedule.from_config(cfg["diffusion"]))


def make_pairs(n: int = 200) -> dict:
    g = torch.Generator().manual_seed(3)
    return {"z": torch.randn(n, 2, generator=g), "x0": torch.randn(n, 2, generator=g)}  # (N, 2)


class Stop(Exception):
    pass


def logger(rows: list, stop_at: int | None = None):
    def log(values, step, series="step"):  # wall-clock figures (samples/s, memory) are not part of the state
        rows.append((series, step, {k: float(v) for k, v in values.items() if k not in TIMING}))
        if series == "step" and step == stop_at:
            raise Stop

    return log


TIMING = ("samples_per_s", "gpu_max_mem_gib", "gpu_max_reserved_gib")


def without_timing(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_pair_batches_position_is_the_whole_state():
    pairs = make_pairs(100)
    full = PairBatches(pairs, 32, seed=5)
    ref = [next(full).z for _ in range(10)]  # 3 batches per epoch: crosses three epochs
    late = PairBatches(pairs, 32, seed=5, position=7)
    assert all(torch.equal(next(late).z, ref[i]) for i in range(7, 10))
    assert not torch.equal(ref[0], ref[3])  # each epoch is reshuffled
    with pytest.raises(ValueError, match="batch_size"):
        PairBatches(pairs, 101, seed=0)


def test_loop_state_round_trips_through_a_resume_checkpoint(cfg, tmp_path):
    """LoopState.pack and .unpack are inverse, also through the file (save_resume, Resume.open); the RNGs
    are taken at the save and put back by restore; a checkpoint holding other loop fields is refused."""
    state = LoopState(step=7, acc={"loss": torch.tensor(1.5)}, phase_acc={"loss": torch.tensor(3.0)}, phase=1,
                      phase_start=4, batches=7, teacher_evals=896, passes=(224, 32), wall_s=2.5,
                      extra={"rows": {"step": [{"step": 5}]}}, rng={"torch": torch.get_rng_state()})
    back = LoopState.unpack(state.pack())
    assert back.pack().keys() == state.pack().keys() and back.pack()["loop"].keys() == state.pack()["loop"].keys()
    assert back.step == 7 and back.phase == 1 and back.passes == (224, 32) and back.extra == state.extra
    assert torch.equal(back.acc["loss"], state.acc["loss"]) and torch.equal(back.rng["torch"], state.rng["torch"])

    net, gen = torch.nn.Linear(2, 2), torch.Generator().manual_seed(9)
    path = tmp_path / "resume.pt"
    save_resume(path, cfg, {"student": net}, {"gen": gen}, state)
    saved = load_resume(path, cfg)
    assert saved["step"] == 7 and saved["loop"]["wall_s"] == 2.5  # the file's layout: step, rng, loop
    expected = torch.randn(3, generator=gen)
    resume = Resume.open(path, 10, cfg)
    other = torch.nn.Linear(2, 2)
    restored = resume.restore({"student": other}, {"gen": gen}, "cpu")
    assert torch.equal(torch.randn(3, generator=gen), expected) and same_weights(other, net)
    assert {k: v for k, v in vars(restored).items() if k not in ("acc", "phase_acc", "rng")} == \
        {k: v for k, v in vars(state).items() if k not in ("acc", "phase_acc", "rng")}
    assert torch.equal(restored.phase_acc["loss"], state.phase_acc["loss"])

    saved["loop"]["running"] = 0.0  # a field this version does not know
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match=f"{path} was written by another version"):
        Resume.open(path, 10, cfg)


def test_student_resumed_at_step_k_matches_uninterrupted(cfg, tmp_path):
    pairs = make_pairs()
    rows_full: list = []
    full, summary = train_student(cfg, make_teacher(cfg), pairs, "cpu", logger(rows_full), progress=False)

    path = tmp_path / "resume.pt"
    rows_a: list = []
    with pytest.raises(Stop):  # killed at step 35: the last checkpoint is step 30
        train_student(cfg, make_teacher(cfg), pairs, "cpu", logger(rows_a, stop_at=40), progress=False,
                      resume=Resume.open(path, 10, cfg))
    state = load_resume(path, cfg)
    assert state["step"] == 30
    torch.manual_seed(1234)  # the global RNG is part of the checkpoint: disturbing it changes nothing
    rows_b: list = []
    resumed, summary_b = train_student(cfg, make_teacher(cfg), pairs, "cpu", logger(rows_b), progress=False,
                                       resume=Resume.open(path, 10, cfg))
    assert summary_b["resumed_from_step"] == 30 and summary_b["teacher_evals"] == summary["teacher_evals"]
    # train s of a resumed run: the first attempt's seconds (to its checkpoint) plus the second's
    assert state["loop"]["wall_s"] > 0 and summary_b["attempt_wall_s"] > 0
    assert summary_b["wall_time_s"] == pytest.approx(state["loop"]["wall_s"] + summary_b["attempt_wall_s"])
    assert same_weights(resumed, full)
    # the resumed run logs exactly what the uninterrupted one logged after step 30 (stage means included)
    after = [r for r in rows_full if r[1] > 30 or r[0] == "phase" and r[1] >= 1]
    assert rows_b == after


def test_student_without_resume_checkpoint_is_unchanged(cfg, tmp_path):
    """Saving checkpoints draws no random numbers: the same run with and without them is identical."""
    pairs = make_pairs()
    a, _ = train_student(cfg, make_teacher(cfg), pairs, "cpu", logger([]), progress=False)
    b, _ = train_student(cfg, make_teacher(cfg), pairs, "cpu", logger([]), progress=False,
                         resume=Resume.open(tmp_path / "r.pt", 7, cfg))
    assert same_weights(a, b)


def test_teacher_resumes_bit_for_bit(cfg, tmp_path):
    full, _ = train_teacher(cfg, "cpu", logger([]), progress=False)
    path = tmp_path / "teacher.resume.pt"
    with pytest.raises(Stop):
        train_teacher(cfg, "cpu", logger([], stop_at=30), progress=False, resume=Resume.open(path, 10, cfg))
    assert load_resume(path, cfg)["step"] == 20  # the stop at the log tick of step 30 precedes its save
    resumed, summary = train_teacher(cfg, "cpu", logger([]), progress=False, resume=Resume.open(path, 10, cfg))
    assert summary["resumed_from_step"] == 20 and same_weights(resumed, full)


def test_corrupt_or_foreign_checkpoints_name_the_file(cfg, tmp_path):
    bad = tmp_path / "resume.pt"
    bad.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{bad}.*corrupt"):
        Resume.open(bad, 10, cfg)
    save_checkpoint(bad, "student", NET, (2,), cfg, build_net(NET, (2,)))
    with pytest.raises(CheckpointError, match=f"{bad} is not a resume checkpoint"):
        Resume.open(bad, 10, cfg)
    # a checkpoint of another config: named file and key
    path = tmp_path / "r.pt"
    with pytest.raises(Stop):
        train_student(cfg, make_teacher(cfg), make_pairs(), "cpu", logger([], stop_at=20), progress=False,
                      resume=Resume.open(path, 10, cfg))
    other = copy.deepcopy(cfg)
    other["method"]["lambda"] = 0.5
    with pytest.raises(CheckpointError, match=f"{path} was written for another config.*method.lambda"):
        Resume.open(path, 10, other)
    # device, tracking, threads and checkpoint_every may change between attempts
    other = copy.deepcopy(cfg)
    other.update(device="cpu", tracking={**cfg["tracking"], "uri": "http://elsewhere"})
    other["student"]["checkpoint_every"] = 3
    assert Resume.open(path, 3, other).state.step == 10
    # a network that does not fit the checkpoint's weights
    state = load_resume(path, cfg)
    state["modules"]["student"] = {"nope": torch.zeros(1)}
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"{path} does not match"):
        train_student(cfg, make_teacher(cfg), make_pairs(), "cpu", logger([]), progress=False,
                      resume=Resume.open(path, 10, cfg))


# ---------------------------------------------------------------- the CLI, killed for real


def _inputs(cfg, tmp_path):
    teacher = tmp_path / "teacher.pt"
    torch.manual_seed(0)
    save_checkpoint(teacher, "teacher", NET, (2,), cfg, build_net(NET, (2,)))
    pairs = make_pairs(512)
    np.savez(tmp_path / "pairs.npz", z=pairs["z"].numpy(), x0=pairs["x0"].numpy())
    return teacher, tmp_path / "pairs.npz"


def _train(cfg, tmp_path, out: Path, store: str) -> subprocess.Popen:
    teacher, pairs = _inputs(cfg, tmp_path) if not (tmp_path / "pairs.npz").exists() else (
        tmp_path / "teacher.pt", tmp_path / "pairs.npz")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / store}"}
    log = open(out.with_suffix(".log"), "a")
    config = out.with_suffix(".yaml")
    config.write_text(yaml.safe_dump(cfg))  # the run's config file
    return subprocess.Popen([str(BIN / "onestep"), "train", "--threads", "1", "--config", str(config),
                             "--teacher", str(teacher), "--pairs", str(pairs), "--out", str(out)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, text=True)


def _wait_for_new_checkpoint(path: Path, proc: subprocess.Popen, after: float = 0.0) -> None:
    deadline = time.time() + 240
    while not (path.exists() and path.stat().st_mtime > after):
        assert proc.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.02)


@pytest.mark.slow
def test_cli_killed_twice_resumes_to_the_same_result(cfg, tmp_path):
    import mlflow

    cfg["method"].update(K=3, steps_per_stage=100)
    cfg["student"].update(checkpoint_every=25, batch_size=64)
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _train(cfg, tmp_path, full, "mlflow.db").wait(timeout=600) == 0

    # 1. SIGTERM (SLURM preemption): the trainer saves at the end of the step and exits 143
    p = _train(cfg, tmp_path, cut, "mlflow.db")
    _wait_for_new_checkpoint(cut / "resume.pt", p)
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:  # the "then SIGKILL" of a scheduler whose grace period ran out
        p.kill()
        rc = p.wait()
    log = cut.with_suffix(".log").read_text()
    assert rc == 143 and "preempted: stopped at step" in log, log[-2000:]
    step_term = torch.load(cut / "resume.pt", weights_only=False)["step"]

    # 2. resumed, then SIGKILL (no chance to save): the next attempt starts from the last periodic checkpoint
    p = _train(cfg, tmp_path, cut, "mlflow.db")
    _wait_for_new_checkpoint(cut / "resume.pt", p, after=(cut / "resume.pt").stat().st_mtime)
    p.kill()
    assert p.wait() == -9
    step_kill = torch.load(cut / "resume.pt", weights_only=False)["step"]
    assert step_kill > step_term and step_kill % 25 == 0

    # 3. runs to the end
    assert _train(cfg, tmp_path, cut, "mlflow.db").wait(timeout=600) == 0
    log = cut.with_suffix(".log").read_text()
    assert f"at step {step_term} of 300" in log and f"resuming from {cut / 'resume.pt'} at step {step_kill}" in log
    assert not (cut / "resume.pt").exists()  # done: the next attempt would start afresh

    a = torch.load(full / "student.pt", weights_only=False)["state_dict"]
    b = torch.load(cut / "student.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("train_log.csv", "stages.csv"):
        assert without_timing(full / name) == without_timing(cut / name)
    ta, tb = (json.loads((d / "train.json").read_text()) for d in (full, cut))
    assert tb["resumed_from_step"] == step_kill and ta["teacher_evals"] == tb["teacher_evals"]

    # MLflow: one run per training (all three attempts in one), FINISHED, each logged step exactly once
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("onestep").experiment_id])
    assert {r.info.run_id for r in runs} == {ta["mlflow_run_id"], tb["mlflow_run_id"]}
    runs = [r for r in runs if r.info.run_id == tb["mlflow_run_id"]]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["resumed_from_step"] == str(step_kill)
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")]
    assert sorted(steps) == list(range(10, 301, 10))
    with open(full / "train_log.csv") as f:
        logged = {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}
    history = {m.step: m.value for m in client.get_metric_history(runs[0].info.run_id, "loss")}
    assert history == pytest.approx(logged, rel=1e-6)


@pytest.mark.slow
@pytest.mark.e2e
def test_snakemake_retry_resumes_a_killed_train_job(tmp_path):
    """Snakemake deletes a failed job's declared outputs; the resume checkpoint is none of them, so the
    retry (--retries 1) picks up where the killed job stopped."""
    import psutil

    run = tmp_path / "results" / "checkerboard" / "ablate_order" / "ordering-forward_seed-0"
    cmd = _train_job_inputs(tmp_path, {"K": 3, "steps_per_stage": 100}, {"checkpoint_every": 25})
    cmd[1:1] = ["--retries", "1"]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(tmp_path / "snakemake.out", "w") as out:
        p = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=env)
        _wait_for_new_checkpoint(run / "resume.pt", p)
        trainers = [c for c in psutil.Process(p.pid).children(recursive=True)
                    if "train" in c.cmdline() and any("onestep" in part for part in c.cmdline())]
        assert len(trainers) == 1
        trainers[0].kill()  # SIGKILL: a lost node; nothing saved after the last periodic checkpoint
        assert p.wait(timeout=600) == 0, (tmp_path / "snakemake.out").read_text()[-3000:]
    log = (tmp_path / "results" / "logs" / "train" / "ablate_order" / "ordering-forward_seed-0.log").read_text()
    assert f"resuming from {Path('results/checkerboard/ablate_order/ordering-forward_seed-0/resume.pt')} at step" in log
    summary = json.loads((run / "train.json").read_text())
    assert summary["resumed_from_step"] > 0 and summary["resumed_from_step"] % 25 == 0
    assert (run / "student.pt").exists() and not (run / "resume.pt").exists()
    assert "Trying to restart job" in (tmp_path / "snakemake.out").read_text()


def test_cli_ctrl_c_saves_a_resume_checkpoint_and_says_one_line(cfg, tmp_path):
    """Ctrl-C (SIGINT) in training: as SIGTERM, a resume checkpoint at the end of the step and the
    MLflow run KILLED; one line, no traceback; exit 130; the next attempt resumes from it."""
    import mlflow

    cfg["method"].update(K=3, steps_per_stage=400)
    cfg["student"].update(checkpoint_every=0, batch_size=64)  # no periodic checkpoint: only Ctrl-C writes one
    out = tmp_path / "run"
    out.mkdir()
    p = _train(cfg, tmp_path, out, "mlflow.db")
    log_path = out.with_suffix(".log")
    deadline = time.time() + 240
    while "it/s" not in log_path.read_text() and "s/it" not in log_path.read_text():  # tqdm: the loop runs
        assert p.poll() is None and time.time() < deadline, log_path.read_text()[-2000:]
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=60)
    log = log_path.read_text()
    assert rc == 130, log[-2000:]
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
    assert "onestep train: interrupted (Ctrl-C): stopped at step" in log
    state = torch.load(out / "resume.pt", weights_only=False)
    assert 0 < state["step"] < 1200
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("onestep").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]
    # the next attempt resumes (the same MLflow run), and finishes
    assert _train(cfg, tmp_path, out, "mlflow.db").wait(timeout=600) == 0
    assert f"resuming from {out / 'resume.pt'} at step {state['step']}" in log_path.read_text()
    runs = client.search_runs([client.get_experiment_by_name("onestep").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]


def _train_job_inputs(tmp_path: Path, method: dict, student: dict | None = None) -> list[str]:
    """A tiny ablation whose `train` job's inputs are made by hand (in DAG order, for their mtimes, so
    only `train` runs); the Snakemake command line of that one job."""
    from conftest import REPO, TINY
    from test_e2e import GRID

    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "order.yaml").write_text(yaml.safe_dump({**GRID, "grid": {"method.ordering": ["forward"]}}))
    over = {**TINY, "ablations_dir": str(tmp_path / "ablations"), "method": method,
            "student": {**TINY["student"], "batch_size": 64, **(student or {})}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(over))
    (tmp_path / "results" / "mlflow").mkdir(parents=True)
    (tmp_path / "results" / "mlflow" / "store.json").write_text("{}")
    (tmp_path / "results" / "mlflow" / "ablate_order.parent.json").write_text(json.dumps({"run_id": "none"}))
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    teacher_dir = tmp_path / "results" / "checkerboard" / "teacher"
    torch.manual_seed(0)
    save_checkpoint(teacher_dir / "teacher.pt", "teacher", NET, (2,), cfg, build_net(NET, (2,)))
    pairs = make_pairs(512)
    np.savez(teacher_dir / "pairs.npz", z=pairs["z"].numpy(), x0=pairs["x0"].numpy())
    return [str(BIN / "snakemake"), "--cores", "1", "-s", str(REPO / "Snakefile"), "--configfile",
            str(REPO / "config" / "config.yaml"), str(tmp_path / "tiny.yaml"),
            "--", "results/checkerboard/ablate_order/ordering-forward_seed-0/train.json"]


@pytest.mark.e2e
def test_snakemake_after_ctrl_c_goes_on_without_rerun_incomplete(tmp_path):
    """Ctrl-C (SIGINT to Snakemake and its job, as a terminal sends it) while a train job writes its
    outputs: Snakemake leaves them marked incomplete; the next run re-runs that job by itself (the
    workflow profile's rerun-incomplete), where it stopped with IncompleteFilesException before."""
    cmd = _train_job_inputs(tmp_path, {"K": 3, "steps_per_stage": 20})
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    student = tmp_path / "results/checkerboard/ablate_order/ordering-forward_seed-0/student.pt"
    with open(tmp_path / "snakemake.out", "w") as out:
        p = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 300
        while not student.exists():  # the job is writing its outputs (student.pt, then train.json)
            assert p.poll() is None and time.time() < deadline, (tmp_path / "snakemake.out").read_text()[-3000:]
            time.sleep(0.005)
        os.killpg(p.pid, signal.SIGINT)
        p.wait(timeout=120)
    assert "Terminating processes on user request" in (tmp_path / "snakemake.out").read_text()
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert "IncompleteFilesException" not in again.stdout + again.stderr
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert student.exists() and student.with_name("train.json").exists()
