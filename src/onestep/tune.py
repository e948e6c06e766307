"""Optuna studies: the curriculum's lambda (target tune_lambda; other knobs from config), pruned at curriculum
checkpoints, and one study per baseline method over its declared search_space (target tune_baselines: the
study's config written by onestep.tuned.study_configs; the same machinery, a different `tune` section).

- Space: `tune.lambda` (log-uniform, parameter `lambda`; null: none) and `tune.space`, dotted config keys with
  {low, high, log} or {choices}. A trial's knobs are set by onestep.tuned.apply_keys, which keeps the method's
  total optimiser steps (a knob such as progressive's start_steps does not change the trial's budget).
  `tune.defaults_first`: the config's own values are enqueued as the first trial (the default is one of the
  study's trials, so a tuned value is never one that did worse on validation than the default).

- Objective: the dataset's one-step metric (SWD for 2-D, FID for images) of G(z, 0) on a
  validation sample: noise and data drawn with `tune.validation` seeds, separate from the
  evaluation noise the tables use.
- Sampler: TPE seeded with `tune.seed` + the worker index (workers must not propose in lockstep).
- Pruner: MedianPruner (or HyperbandPruner; `none` for the baselines' studies: every trial trains its whole
  budget); a trial reports every `tune.report_every` stages
  before the last (whose value is the objective), and is not pruned before `tune.warmup_stages`:
  under the forward order G(z, 0) is only trained near the end, so early reports are noise.
- Storage: Optuna's JournalFileBackend under results/optuna/<study>/ by default (safe for several
  processes on a shared file system), or `tune.storage` as an RDB URL.
- Faults: a diverging trial (NaN/Inf loss) is FAIL with its reason in user attr `fail_reason`;
  each running trial writes a heartbeat (user attr) every `tune.heartbeat_s` and its owner
  (host:pid). A RUNNING trial is dead when its owner is a process of this host that no longer
  exists, or when its heartbeat is older than `tune.grace_s` (another host); a worker marks dead
  trials FAIL and re-queues their parameters (at most `tune.max_retry` times), so a worker killed
  mid-trial costs one retry. A worker does not leave while another worker's trial is RUNNING: it
  waits (checking every heartbeat) until that trial finishes or is found dead, then runs the retry;
  so a study recovers a killed worker's trial within the same invocation, however soon the worker
  is restarted. The dead trial's MLflow run is closed as KILLED (`on_dead`, the CLI's side channel).
  The summary refuses a study with a trial still RUNNING or WAITING: a best value comes only from a
  study whose every trial finished.
- Every trial is an MLflow run nested under the study's parent run (side channel only); its counted budget
  (optimiser steps, student forward/backward passes, teacher evaluations, wall time) is also a user attr of the
  trial (trials.csv).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from onestep import data
from onestep.config import dataset_id, get_dotted, set_dotted
from onestep.errors import OnestepError
from onestep.evaluate import eval_noise, kind, one_step, score
from onestep.metrics import PRIMARY
from onestep.train import DivergenceError, train_student

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# a trial's counted training budget (train.fit's summary), kept as its user attr `budget`
BUDGET = ("steps", "student_forwards", "student_backwards", "teacher_evals", "wall_time_s")


class TuneError(OnestepError, RuntimeError):
    """The study cannot give a best value (an unfinished trial, no completed trial)."""


def study_name(cfg: dict) -> str:
    return f"{cfg['tune']['study']}-{dataset_id(cfg)}"


def storage(cfg: dict, folder: str | Path):
    """The journal file under `folder` unless `tune.storage` names an RDB URL."""
    url = cfg["tune"].get("storage")
    if url:
        return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend

    Path(folder).mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(Path(folder) / "journal.log")))


def phases(cfg: dict) -> int:
    """The phases a run of `cfg` trains (its method's `phases`): the pruning resource, a report at each end."""
    from onestep.methods import METHODS

    return METHODS[cfg["method"]["name"]].phases(cfg["method"])


def pruner(cfg: dict) -> optuna.pruners.BasePruner:
    tc = cfg["tune"]
    if tc["pruner"] == "none":
        return optuna.pruners.NopPruner()
    if tc["pruner"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=phases(cfg))
    return optuna.pruners.MedianPruner(n_startup_trials=tc["startup_trials"], n_warmup_steps=tc["warmup_stages"])


def load_study(cfg: dict, folder: str | Path, worker: int = 0) -> optuna.Study:
    sampler = optuna.samplers.TPESampler(seed=cfg["tune"]["seed"] + worker, n_startup_trials=cfg["tune"]["startup_trials"])
    return optuna.create_study(study_name=study_name(cfg), storage=storage(cfg, folder), direction="minimize",
                               sampler=sampler, pruner=pruner(cfg), load_if_exists=True)


def budget_used(study: optuna.Study) -> int:
    """Trials that count toward `tune.n_trials`: finished or running, but not failures re-queued as retries."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
               or (t.state == TrialState.FAIL and not t.user_attrs.get("requeued")))


def waiting(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def owner() -> str:
    """This process, as a trial's `owner` user attr: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _gone(who: str | None) -> bool:
    """The owner is a process of this host that no longer exists (killed, crashed)."""
    host, _, pid = (who or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def dead_reason(t: optuna.trial.FrozenTrial, grace_s: float, now: float) -> str | None:
    """Why a RUNNING trial is dead (its worker is gone), or None while it may still be alive."""
    beat = t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now)
    if _gone(t.user_attrs.get("owner")):
        return f"worker {t.user_attrs['owner']} is gone (last heartbeat {now - beat:.0f} s ago)"
    if now - beat > grace_s:
        return f"no heartbeat for {now - beat:.0f} s (worker lost)"
    return None


def reap_stale(study: optuna.Study, grace_s: float, max_retry: int, on_dead=None) -> list[int]:
    """Fail dead RUNNING trials (dead_reason) and re-queue their parameters; returns their numbers.
    `on_dead(trial, reason)` runs for each (the CLI closes the trial's MLflow run as KILLED)."""
    now, reaped = time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = dead_reason(t, grace_s, now)
        if reason is None:
            continue
        retries = int(t.user_attrs.get("retries", 0))
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
        study._storage.set_trial_user_attr(t._trial_id, "requeued", retries < max_retry)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if retries < max_retry:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retries": retries + 1},
                                skip_if_exists=False)
        if on_dead is not None:
            on_dead(t, reason)
        reaped.append(t.number)
    return reaped


def unfinished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))


class Heartbeat:
    """Writes `heartbeat = time.time()` into the trial's user attrs every `every` seconds."""

    def __init__(self, trial: optuna.Trial, every: float):
        self.trial, self.every, self.stop = trial, every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.trial.set_user_attr("heartbeat", time.time())

    def __enter__(self):
        self.trial.set_user_attr("owner", owner())
        self.trial.set_user_attr("heartbeat", time.time())
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def space(cfg: dict) -> dict[str, dict]:
    """The study's knobs: {parameter name: {key: dotted config key, low, high, log} | {key, choices}}; `lambda`
    from `tune.lambda` (log-uniform) unless null, then every entry of `tune.space` (named by its key)."""
    tc = cfg["tune"]
    out = {}
    if tc.get("lambda") is not None:
        out["lambda"] = {"key": "method.lambda", "low": tc["lambda"]["low"], "high": tc["lambda"]["high"], "log": True}
    for key, spec in (tc.get("space") or {}).items():
        out[key] = {"key": key, **spec}
    return out


def _suggest_one(trial: optuna.Trial, name: str, spec: dict):
    if "choices" in spec:
        return trial.suggest_categorical(name, list(spec["choices"]))
    if all(isinstance(spec[b], int) and not isinstance(spec[b], bool) for b in ("low", "high")):
        return trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
    return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))


def suggest(trial: optuna.Trial, cfg: dict) -> dict:
    """The trial's config: every knob of the study's space (`space`), with the method's total optimiser steps
    kept as the config has them (onestep.tuned.apply_keys), and the study's training seed."""
    from onestep.tuned import apply_keys

    out = set_dotted(cfg, "seed", cfg["tune"]["seed"])  # every trial trains with the same seed: only the knobs differ
    return apply_keys(out, {spec["key"]: _suggest_one(trial, name, spec) for name, spec in space(cfg).items()})


def default_params(cfg: dict) -> dict:
    """The config's own value of every parameter of the study (its defaults: the first trial with defaults_first)."""
    return {name: get_dotted(cfg, spec["key"]) for name, spec in space(cfg).items()}


def validation_set(cfg: dict, ref: dict, shape: tuple[int, ...]) -> tuple[torch.Tensor, dict, dict]:
    """Validation noise and reference, drawn with their own seeds (never the evaluation noise)."""
    val = cfg["tune"]["validation"]
    vcfg = {**cfg, "evaluation": {**cfg["evaluation"], "num_samples": val["num_samples"],
                                  "noise_seed": val["noise_seed"]}}
    z = eval_noise(vcfg, shape)
    if kind(cfg) == "points":
        ref = {"x": data.sample(cfg["dataset"], val["num_samples"], val["reference_seed"]).numpy()}
    return z, ref, vcfg


class Objective:
    """One trial: train the curriculum with the suggested knobs, report at checkpoints, score."""

    def __init__(self, cfg, teacher, pairs, ref, features, recorder_factory, device="cpu"):
        self.cfg, self.teacher, self.pairs, self.features = cfg, teacher, pairs, features
        self.record, self.device = recorder_factory, device
        self.z, self.ref, self.vcfg = validation_set(cfg, ref, tuple(pairs["z"].shape[1:]))

    def value(self, cfg: dict, model: torch.nn.Module) -> float:
        x = one_step(cfg, self.teacher, model, self.z.to(self.device))
        res = score(x, self.ref, self.vcfg, self.features)
        return float(res["metrics"][res["primary"]])

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = suggest(trial, self.cfg)
        every = self.cfg["tune"]["report_every"]
        pruned = self.cfg["tune"]["pruner"] != "none"  # reports at phase ends (curriculum stages) only when pruning
        with self.record(trial, cfg) as rec, Heartbeat(trial, self.cfg["tune"]["heartbeat_s"]):

            def checkpoint(phase: int, step: int, model: torch.nn.Module) -> None:
                if (phase + 1) % every or phase + 1 >= phases(cfg):  # the last stage is the objective itself
                    return
                v = self.value(cfg, model)
                trial.report(v, phase + 1)
                rec.metrics({"val_metric": v}, phase + 1)
                if trial.should_prune():
                    rec.tag("state", "PRUNED")
                    raise optuna.TrialPruned(f"pruned after stage {phase + 1}: {v:.4g}")

            try:
                model, summary = train_student(cfg, self.teacher, self.pairs, self.device, rec.metrics,
                                               progress=False, on_phase_end=checkpoint if pruned else None)
            except DivergenceError as e:
                trial.set_user_attr("fail_reason", str(e))
                rec.tag("state", "FAIL")
                rec.tag("fail_reason", str(e))
                raise
            v = self.value(cfg, model)
            trial.set_user_attr("budget", {k: summary[k] for k in BUDGET if k in summary})  # counted, per trial
            rec.metrics({"val_metric": v, **summary})
            rec.tag("state", "COMPLETE")
            return v


def run_worker(cfg: dict, folder: str | Path, worker: int, objective: Objective, on_dead=None) -> dict:
    """Run trials against the shared study until `tune.n_trials` have finished (complete, pruned or failed)
    and no trial is left RUNNING or WAITING; dead trials are re-queued and retried (reap_stale)."""
    tc = cfg["tune"]
    study = load_study(cfg, folder, worker)
    reap = lambda: reap_stale(study, tc["grace_s"], tc["max_retry"], on_dead)  # noqa: E731
    reaped, ran, waited = reap(), 0, 0.0
    if tc.get("defaults_first") and worker == 0 and not any(t.user_attrs.get("default")
                                                            for t in study.get_trials(deepcopy=False)):
        study.enqueue_trial(default_params(cfg), user_attrs={"default": True})  # counts as one of n_trials
    # Two workers that check at the same moment can overshoot n_trials by at most (workers - 1).
    while True:
        if budget_used(study) < tc["n_trials"] or waiting(study):
            study.optimize(objective, n_trials=1, catch=(DivergenceError,))
            ran += 1
        elif unfinished(study):  # another worker's trial: wait until it finishes or is found dead
            time.sleep(tc["heartbeat_s"])
            waited += tc["heartbeat_s"]
        else:
            break
        reaped += reap()  # live workers also pick up dead trials
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    return {"study": study.study_name, "worker": worker, "trials_run": ran, "finished_trials": finished,
            "reaped": reaped, "waited_s": waited}


def summarize(cfg: dict, folder: str | Path) -> dict:
    """best.yaml, trials.{md,tex,csv} and the study plots (report.study.PLOTS) under `folder`; returns the best
    dict: the best trial's parameters (`params`, by parameter name; `lambda` too in a lambda study), its value and
    counted budget, the study's method, and the first trial's (`default`) when the study began with the defaults."""
    import yaml

    from onestep.report.study import param_value, study_figures, trials_table

    folder = Path(folder)
    study = load_study(cfg, folder)
    left = unfinished(study)
    if left:
        raise TuneError(f"study {study.study_name} in {folder}: trial(s) {', '.join(str(t.number) for t in left)} "
                        f"did not finish ({', '.join(sorted({t.state.name for t in left}))}); no best value from an "
                        "unfinished study: re-run the target (a worker recovers them)")
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise TuneError(f"study {study.study_name} in {folder} has no completed trial")
    best = study.best_trial
    metric = PRIMARY[kind(cfg)]
    sp = space(cfg)
    out = {"study": study.study_name, "method": cfg["method"]["name"], "metric": f"validation {metric}",
           "value": float(best.value), "trial": best.number,
           **({"lambda": float(best.params["lambda"])} if "lambda" in best.params else {}),
           "params": {k: param_value(v) for k, v in best.params.items()},
           "keys": {k: spec["key"] for k, spec in sp.items()},  # parameter name -> the config key it sets
           "budget": best.user_attrs.get("budget") or {},
           "n_trials": cfg["tune"]["n_trials"],
           "trials": {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in FINISHED}}
    first = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("default") and t.state == TrialState.COMPLETE]
    if first:
        out["default"] = {"trial": first[0].number, "value": float(first[0].value),
                          "params": {k: param_value(v) for k, v in first[0].params.items()}}
    (folder / "best.yaml").write_text(yaml.safe_dump(out, sort_keys=False))

    trials_table(study, out, metric, folder)
    study_figures(study, list(sp), folder)
    return out


def resolve_tuned(cfg: dict, best_file: str | Path | None) -> dict:
    """Replace `method.lambda: tuned` with the study's best lambda (best.yaml from tune_summary)."""
    if cfg["method"].get("lambda") != "tuned":
        return cfg
    if not best_file or not Path(best_file).is_file():
        raise FileNotFoundError(f"method.lambda: 'tuned' needs the study's best.yaml, not found: {best_file}")
    import yaml

    best = yaml.safe_load(Path(best_file).read_text())
    out = set_dotted(cfg, "method.lambda", float(best["lambda"]))
    return set_dotted(out, "run.lambda_source", f"tuned: {best['study']} trial {best['trial']} ({best_file})")
