"""The configs of tune_baselines' studies: one per method of the `tune_baselines.grid` ablation, equal effort.

Each is that ablation's run config of the method (its first seed), its total optimiser steps set to
`tune_baselines.budget` times its own, and a `tune` section searching exactly the method's space
(onestep.tuning.space.method_space) with `tune_baselines.trials` trials, the defaults first, no pruning; the
worker is onestep.tuning.worker's, the same as the lambda study's (target tune_baselines, workflow/rules/tune.smk).
"""

from __future__ import annotations

from onestep.config import validate
from onestep.errors import ConfigError
from onestep.methods import METHODS
from onestep.tuning.keys import key, with_steps
from onestep.tuning.space import method_space

STUDY_SECTIONS = ("dataset", "diffusion", "student", "method", "evaluation", "tune", "device")


def study_config(run_cfg: dict, cfg: dict) -> dict:
    """The config of one method's study: the grid's run config `run_cfg` with its total optimiser steps scaled by
    tune_baselines.budget (the same share for every method), the tune seed, and a `tune` section over exactly the
    method's space (tune_baselines.trials, .workers; defaults first; no pruning). Only the sections a study reads
    (STUDY_SECTIONS, and seed): the grid's seeds or the paper switch do not re-run a study."""
    tb, name = cfg["tune_baselines"], run_cfg["method"]["name"]
    method = METHODS[name]
    steps = max(1, round(tb["budget"] * method.total_steps_of(run_cfg["method"])))
    out = with_steps({k: v for k, v in run_cfg.items() if k != "run"}, steps)
    trial_steps = method.total_steps_of(out["method"])
    out["tune"] = {**cfg["tune"], "study": f"tune_baselines-{name}", "n_trials": tb["trials"],
                   "workers": tb["workers"], "lambda": None, "pruner": "none", "defaults_first": True,
                   "space": {key(k): dict(spec) for k, spec in method_space(name).items()},
                   "budget": {"share": tb["budget"], "steps": trial_steps}}
    out["seed"] = cfg["tune"]["seed"]
    validate(out, "$run", f"tune_baselines: the study of {name} (run config of {run_cfg['run']['ablation']})")
    return {k: out[k] for k in (*STUDY_SECTIONS, "seed") if k in out}


def study_configs(cfg: dict, ablations: dict) -> dict[str, dict]:
    """{method: its study's config}, one per method of the tune_baselines.grid ablation, in grid order; none
    when the grid is not among the ablations (another ablations_dir) or does not apply to the dataset."""
    tb = cfg["tune_baselines"]
    grid = ablations.get(tb["grid"])
    if grid is None or grid.skipped:
        return {}
    if "method.name" not in grid.axes:
        raise ConfigError(f"config: tune_baselines.grid: {tb['grid']} ({grid.file}) has no method.name axis; allowed: "
                          "an ablation over methods (baselines)")
    out = {}
    for run in grid.runs:  # the method's first run (its first seed); the study sets its own seed
        if run.config["method"]["name"] not in out:
            out[run.config["method"]["name"]] = study_config(run.config, cfg)
    return out
