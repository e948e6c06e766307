"""What a job's or a run's config file holds: the sections results depend on, and the dataset's id."""

from __future__ import annotations

import json
from pathlib import Path

from onestep.config.policy import job_device

# Config sections no result depends on: validated with the config, then left out of every run's and job's
# config file (and so of the config hash the results record). A job reads them from the one tracking file
# (results/config/tracking.yaml, `--tracking`): changing tracking.required, timeout_s or the experiment
# re-runs no training or evaluation; only the MLflow set-up rules look at them.
NOT_IN_RESULTS = ("tracking",)

# keys a grid run never reads: the Optuna studies' settings (a tuned run records its applied values under
# run.tuned), the tuned-values file's path, torch threads (the rule's --threads), the output folder, and the list of
# seeds (a run reads its own `seed`: adding seeds 3 and 4 trains those two, it does not re-train 0 to 2)
NOT_IN_RUNS = ("tune", "tuned_baselines", "threads", "out", "seeds")

# How the images' data floor is drawn (evaluate.image_floor, recorded in reference.json). The reference rule
# takes it as a param, so changing how the floor is computed re-runs that rule (a code change alone would not).
IMAGE_FLOOR = "with-replacement, held-out half"


def result_config(cfg: dict) -> dict:
    """`cfg` without the sections no result depends on (NOT_IN_RESULTS): what a run's config file holds."""
    return {k: v for k, v in cfg.items() if k not in NOT_IN_RESULTS}


def run_result_config(cfg: dict) -> dict:
    """What a grid run's config file holds (and its hash covers): result_config without NOT_IN_RUNS, so a
    change to the lambda study, to thread counts or to the tuned-values path re-runs no training."""
    return {k: v for k, v in result_config(cfg).items() if k not in NOT_IN_RUNS}


def base_config(cfg: dict) -> dict:
    """The config shared by every run (no per-run keys; not the folder of the grids, nor the settings of the
    equal-effort tuning, which no run reads: tuning more or adding it to the paper re-runs no ablation)."""
    return {k: v for k, v in cfg.items() if k not in ("run", "seed", "ablations_dir", "tune_baselines")}


def without_run(cfg: dict) -> dict:
    """A run's config without its bookkeeping (`run`: ablation, name, grid point, tuned record): what its
    training depends on, so two runs that agree here train the same thing."""
    return {k: v for k, v in cfg.items() if k != "run"}


def sections_json(cfg: dict, *keys: str) -> str:
    """JSON of the named config sections: what a rule's job depends on (params -> rerun on change).
    Never the sections no result depends on (NOT_IN_RESULTS): jobs read those from the tracking file."""
    out = {k: cfg[k] for k in keys if k in cfg and k not in NOT_IN_RESULTS}
    if "device" in keys:
        out["device"] = job_device(cfg)
    return json.dumps(out, sort_keys=True)


def dataset_id(cfg: dict) -> str:
    """The dataset's name in output paths: its name, the file / folder stem of an npz / folder dataset, or a
    parametrised family's own id (data.FAMILIES: gmm2d-8 ...)."""
    from onestep.data import FAMILIES  # torch: not at the CLI's start

    ds = cfg["dataset"]
    if ds["name"] in FAMILIES:
        return FAMILIES[ds["name"]].id(ds)
    return ds["name"] if ds["name"] not in ("npz", "folder") else Path(ds["path"]).stem
