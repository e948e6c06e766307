"""The Optuna studies' tables and figures: one study's trials (trials.{md,tex,csv}, PLOTS) and the
equal-effort studies' tuned-vs-default table and figure (tune-gather)."""

from __future__ import annotations

import warnings
from pathlib import Path

from onestep.report import cells, writer
from onestep.tuning.study import BUDGET

PLOTS = ("history", "intermediate", "slice")  # a study's figures (<name>.png): tune_summary's outputs
# a trial's counted training budget (train.fit's summary; the trial's user attr `budget`), in the tables' order


def param_value(v):
    """A parameter's value as a table and YAML hold it: a choice as it is (int, str), a number as a float."""
    return v if isinstance(v, bool | int | str) else float(v)


def trials_frame(study):
    """One row per trial: number, state, parameters, value, last reported stage, counted budget (BUDGET of its
    user attr `budget`, wall time aside: duration_s says it), fault notes."""
    import polars as pl

    rows = []
    for t in study.get_trials(deepcopy=False):
        spent = t.user_attrs.get("budget") or {}
        rows.append({
            "trial": t.number, "state": t.state.name, **{k: param_value(v) for k, v in t.params.items()},
            "value": t.value, "last_report": max(t.intermediate_values) if t.intermediate_values else None,
            "duration_s": t.duration.total_seconds() if t.duration else None,
            **{k: spent.get(k) for k in BUDGET if k != "wall_time_s"},
            "default": bool(t.user_attrs.get("default")),
            "retry_of": t.user_attrs.get("retry_of"), "fail_reason": t.user_attrs.get("fail_reason"),
        })
    return pl.DataFrame(rows, infer_schema_length=None)


def trials_table(study, best: dict, metric: str, folder: str | Path) -> None:
    """trials.{md,tex,csv} under `folder`: every trial, the best one in bold (`best`: the summary's dict)."""
    df = trials_frame(study)
    at = ", ".join(f"{k} = {cells.plain(v)}" for k, v in best["params"].items())
    caption = (f"Optuna study {study.study_name}: validation {metric.upper()} of G(z, 0) per trial "
               f"(best: trial {best['trial']}, {at}, {best['value']:.4g}).")
    body = [[(cells.plain(v), row[0] == best["trial"]) for v in row] for row in df.iter_rows()]
    table = writer.Table(list(df.columns), body, caption, study.study_name, len(df.columns))
    writer.write(Path(folder) / "trials", table, df)


def study_figures(study, params: list[str], folder: str | Path) -> None:
    """<folder>/<name>.png for each of PLOTS: optimisation history, intermediate values, slice over `params`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    for name, plot in zip(PLOTS, (ovm.plot_optimization_history, ovm.plot_intermediate_values,
                                  lambda s: ovm.plot_slice(s, params=params)), strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # a study without pruning has no intermediate values
            ax = plot(study)
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
        fig.savefig(Path(folder) / f"{name}.png", dpi=120, bbox_inches="tight")
        plt.close(fig)


def tuned_rows(docs: list[dict], values: dict[str, dict]) -> list[dict]:
    """Per study (its best.yaml): method, tuned values, the validation metric of defaults and best, trials, budget."""
    rows = []
    for d in docs:
        b = d.get("budget") or {}
        rows.append({"method": d["method"],
                     "tuned": ", ".join(f"{k} {cells.dash(v)}" for k, v in values[d["method"]].items()),
                     "default_value": (d.get("default") or {}).get("value"), "tuned_value": d["value"],
                     "best_trial": d["trial"], "complete": d["trials"].get("complete", 0),
                     "failed": d["trials"].get("fail", 0), **{k: b.get(k) for k in BUDGET}})
    return rows


def tuned_table(docs: list[dict], values: dict[str, dict], trials: int, out_prefix: str | Path,
                plot: str | Path) -> None:
    """The studies' table <out_prefix>.{md,tex,csv} and figure `plot`: per method the tuned values, the
    validation metric of its defaults (the first trial) and of the best trial, the counted budget of a trial."""
    import polars as pl

    rows = tuned_rows(docs, values)
    metric = docs[0]["metric"] if docs else "validation metric"
    header = ["method", "tuned values", f"{metric}: defaults", f"{metric}: tuned", "best trial", "complete", "failed",
              "optimiser steps", "student fwd", "student bwd", "teacher evals", "train s"]
    caption = (f"Equal-effort tuning: one Optuna study per method over its declared knobs (search_space), "
               f"{trials} trials each (its defaults first, then TPE), every trial with the same share of its "
               f"method's baselines budget; the {metric} of G(z, 0) on the validation noise (not the evaluation "
               f"noise); budget columns: one trial's counted training cost.")
    body = [[(c, False) for c in (r["method"], r["tuned"], cells.dash(r["default_value"]), cells.dash(r["tuned_value"]),
                                  str(r["best_trial"]), str(r["complete"]), str(r["failed"]),
                                  *[cells.dash(r[k]) for k in BUDGET])] for r in rows]
    writer.write(out_prefix, writer.Table(header, body, caption, "tune_baselines", 2),
                 pl.DataFrame(rows, infer_schema_length=None))
    from onestep.report import figures  # here: the workflow's parse imports this module for PLOTS (matplotlib, 0.5 s)

    figures.tuned(rows, metric, plot)
