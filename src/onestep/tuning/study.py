"""An Optuna study of the workflow: its name, storage, sampler and pruner, and the counts of its trials.

- Sampler: TPE seeded with `tune.seed` + the worker index (workers must not propose in lockstep).
- Pruner: MedianPruner (or HyperbandPruner; `none` for the baselines' studies: every trial trains its whole
  budget); a trial reports every `tune.report_every` phases of its method (`phases`) before the last (whose
  value is the objective), and is not pruned before `tune.warmup_stages`: a method that trains G(z, 0) only
  near the end (a forward order of phases) makes early reports noise.
- Storage: Optuna's JournalFileBackend under results/optuna/<study>/ by default (safe for several
  processes on a shared file system), or `tune.storage` as an RDB URL.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from onestep.config import dataset_id
from onestep.errors import OnestepError
from onestep.methods import METHODS

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


def unfinished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
