"""The Optuna stages: one worker of a study, the study's summary (its best values, with the report's trial
tables and plots), and the tuned-values file gathered from every method's study."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

from onestep import outputs


def tune_worker(cfg: dict, folder: Path, worker: int, teacher: Path, pairs: Path, reference: Path, out: Path,
                features: Path | None = None, parent: Path | None = None) -> None:
    """One Optuna worker of the study in `folder` (its journal); each trial an MLflow run under `parent`."""
    from onestep import jobs, tracking
    from onestep.checkpoint import load_teacher
    from onestep.tuning.objective import Objective
    from onestep.tuning.study import study_name
    from onestep.tuning.worker import run_worker

    device = jobs.device(cfg)
    net = load_teacher(teacher, device)
    data = outputs.load_pairs(pairs)
    trial_run, on_dead = _trial_runs(cfg, study_name(cfg), worker, outputs.parent_id(parent), tracking)
    objective = Objective(cfg, net, data, outputs.load_npz(reference), features, trial_run, device)
    result = run_worker(cfg, folder, worker, objective, on_dead)
    outputs.write_json(out, result)
    print(json.dumps(result))


def _trial_runs(cfg: dict, name: str, worker: int, parent: str | None, tracking):
    """A trial's MLflow run (a context manager of the trial and its config) and the closing of a dead
    trial's run (KILLED, with the reason)."""
    import optuna

    @contextmanager
    def trial_run(trial, tcfg):
        tags = {"kind": "trial", "study": name, "trial": str(trial.number), "worker": str(worker)}
        status = lambda e: "KILLED" if isinstance(e, optuna.TrialPruned) else "FAILED"  # noqa: E731
        with tracking.record(tcfg, f"trial-{trial.number}", tags, parent_id=parent, status_for=status) as rec:
            trial.set_user_attr("mlflow_run_id", rec.run_id)  # closed as KILLED if this worker dies (on_dead)
            rec.params(tcfg)
            yield rec

    def on_dead(trial, reason: str) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        try:
            if run_id:
                tracking.close_run(cfg, run_id, "KILLED", reason)
        except Exception as e:  # a side channel: the study goes on
            print(f"onestep tune-worker: warning: trial {trial.number}'s MLflow run {run_id} not closed ({e})",
                  file=sys.stderr)

    return trial_run, on_dead


def tune_summary(cfg: dict, folder: Path, parent: Path | None = None) -> None:
    """The study's best values (best.yaml), trial tables and plots in `folder`; with `parent`, into its MLflow run."""
    from onestep import tracking
    from onestep.metrics import headline
    from onestep.report.study import PLOTS, study_figures, trials_table
    from onestep.tuning.best import write_best
    from onestep.tuning.space import study_space
    from onestep.tuning.study import study_name

    best, study = write_best(cfg, folder)
    trials_table(study, best, headline(cfg), folder)
    study_figures(study, list(study_space(cfg)), folder)
    print(json.dumps(best))
    if parent:
        with tracking.record(cfg, study_name(cfg), run_id=outputs.parent_id(parent)) as rec:
            numbers = {f"best_{k}": v for k, v in best["params"].items() if isinstance(v, int | float)}
            rec.metrics({"best_value": best["value"], "best_trial": best["trial"], **numbers})
            for f in ("best.yaml", "trials.md", "trials.tex", "trials.csv", *(f"{p}.png" for p in PLOTS)):
                rec.artifact(folder / f, "study")


def tune_gather(best: list[Path], teacher: Path, out: Path, out_prefix: Path, plot: Path) -> None:
    """The tuned-values file (`out`) of every method's study (`best`: their best.yaml), and the studies' table."""
    import yaml

    from onestep.report.study import tuned_table
    from onestep.tuning import values as values_file

    docs = [yaml.safe_load(Path(f).read_text()) for f in best]
    values = values_file.gather(docs, teacher, out)
    tuned_table(docs, values, docs[0]["n_trials"], out_prefix, plot)
    print(json.dumps(values))
    print(f"tuned values of {len(values)} method(s) written to {out}")
