"""A finished study's outputs (tune-summary) and the tuned-values file of every method's study (tune-gather):
the tuning's results (tuning.best, tuning.values) written with the report's tables and figures (report.study)."""

from __future__ import annotations

from pathlib import Path

import yaml

from onestep.evaluate import kind
from onestep.metrics import PRIMARY
from onestep.report.study import study_figures, trials_table, tuned_table
from onestep.tuning import values as values_file
from onestep.tuning.best import write_best
from onestep.tuning.space import study_space


def summarize(cfg: dict, folder: str | Path) -> dict:
    """best.yaml (tuning.best.write_best), trials.{md,tex,csv} and the study plots (report.study.PLOTS) under
    `folder`; returns the best dict."""
    best, study = write_best(cfg, folder)
    trials_table(study, best, PRIMARY[kind(cfg)], folder)
    study_figures(study, list(study_space(cfg)), folder)
    return best


def gather(best_files, teacher: str | Path, out: str | Path, out_prefix: str | Path, plot: str | Path) -> dict:
    """The tuned-values file `out` from the studies' best.yaml files (tuning.values.gather), and the studies'
    table <out_prefix>.{md,tex,csv} and figure `plot` (report.study.tuned_table)."""
    docs = [yaml.safe_load(Path(f).read_text()) for f in best_files]
    values = values_file.gather(docs, teacher, out)
    tuned_table(docs, values, docs[0]["n_trials"], out_prefix, plot)
    return values
