"""A finished study's best trial as best.yaml: refused while a trial is unfinished or none completed."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from onestep.metrics import headline
from onestep.tuning.space import study_space
from onestep.tuning.study import FINISHED, TuneError, load_study, unfinished


def plain(v):
    """A parameter's value as a table and YAML hold it: a choice as it is (int, str), a number as a float."""
    return v if isinstance(v, bool | int | str) else float(v)


def write_best(cfg: dict, folder: str | Path) -> tuple[dict, optuna.Study]:
    """best.yaml under `folder`, and the study: the best trial's parameters (`params`, by parameter name;
    `lambda` too in a lambda study), its value and counted budget, the study's method, and the first trial's
    (`default`) when the study began with the defaults."""
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
    metric = headline(cfg)
    sp = study_space(cfg)
    out = {"study": study.study_name, "method": cfg["method"]["name"], "metric": f"validation {metric}",
           "value": float(best.value), "trial": best.number,
           **({"lambda": float(best.params["lambda"])} if "lambda" in best.params else {}),
           "params": {k: plain(v) for k, v in best.params.items()},
           "keys": {k: spec["key"] for k, spec in sp.items()},  # parameter name -> the config key it sets
           "budget": best.user_attrs.get("budget") or {},
           "n_trials": cfg["tune"]["n_trials"],
           "trials": {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in FINISHED}}
    first = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("default") and t.state == TrialState.COMPLETE]
    if first:
        out["default"] = {"trial": first[0].number, "value": float(first[0].value),
                          "params": {k: plain(v) for k, v in first[0].params.items()}}
    (folder / "best.yaml").write_text(yaml.safe_dump(out, sort_keys=False))
    return out, study
