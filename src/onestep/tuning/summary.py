"""The tables and figures of the tuning: a study's trials table and plots, the studies' table and figure.

Writers only, kept apart for report/'s one md/tex/csv writer to take over: `trials_frame`, the md/tex/csv and
plot part of `summarize`, `PLOTS`, and the table and figure part of `gather` (`_fmt`, `_figure`). What they
write about comes from onestep.tuning.best (best.yaml) and onestep.tuning.values (the tuned-values file).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from onestep.evaluate import kind
from onestep.metrics import PRIMARY
from onestep.tuning import values as values_file
from onestep.tuning.best import plain, write_best
from onestep.tuning.space import study_space
from onestep.tuning.study import BUDGET

PLOTS = ("history", "intermediate", "slice")  # the study's figures (<name>.png): tune_summary's outputs


def trials_frame(study: optuna.Study):
    """One row per trial: number, state, parameters, value, last reported stage, counted budget, fault notes."""
    import polars as pl

    rows = []
    for t in study.get_trials(deepcopy=False):
        budget = t.user_attrs.get("budget") or {}
        rows.append({
            "trial": t.number, "state": t.state.name, **{k: plain(v) for k, v in t.params.items()},
            "value": t.value, "last_report": max(t.intermediate_values) if t.intermediate_values else None,
            "duration_s": t.duration.total_seconds() if t.duration else None,
            **{k: budget.get(k) for k in BUDGET if k != "wall_time_s"},
            "default": bool(t.user_attrs.get("default")),
            "retry_of": t.user_attrs.get("retry_of"), "fail_reason": t.user_attrs.get("fail_reason"),
        })
    return pl.DataFrame(rows, infer_schema_length=None)


def summarize(cfg: dict, folder: str | Path) -> dict:
    """best.yaml (onestep.tuning.best.write_best), trials.{md,tex,csv} and the study plots (PLOTS) under
    `folder`; returns the best dict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    folder = Path(folder)
    out, study = write_best(cfg, folder)
    best, metric, sp = study.best_trial, PRIMARY[kind(cfg)], study_space(cfg)

    df = trials_frame(study)
    df.write_csv(folder / "trials.csv")
    cols = df.columns
    fmt = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    at = ", ".join(f"{k} = {fmt(v)}" for k, v in out["params"].items())
    md = [f"**Optuna study {study.study_name}: validation {metric.upper()} of G(z, 0) per trial "
          f"(best: trial {best.number}, {at}, {best.value:.4g}).**", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.iter_rows():
        cells = [fmt(v) for v in row]
        md.append("| " + " | ".join(f"**{c}**" if row[0] == best.number and c else c for c in cells) + " |")
    (folder / "trials.md").write_text("\n".join(md) + "\n")
    esc = lambda s: str(s).replace("_", r"\_")  # noqa: E731
    tex = [r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule", " & ".join(esc(c) for c in cols) + r" \\",
           r"\midrule"] + [" & ".join(esc(fmt(v)) for v in row) + r" \\" for row in df.iter_rows()] + [
           r"\bottomrule", r"\end{tabular}"]
    (folder / "trials.tex").write_text("\n".join(tex) + "\n")

    for name, plot in zip(PLOTS, (ovm.plot_optimization_history, ovm.plot_intermediate_values,
                                  lambda s: ovm.plot_slice(s, params=list(sp))), strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # a study without pruning has no intermediate values
            ax = plot(study)
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
        fig.savefig(folder / f"{name}.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    return out


def gather(best_files, teacher: str | Path, out: str | Path, out_prefix: str | Path, plot: str | Path) -> dict:
    """The tuned-values file `out` from the studies' best.yaml files (onestep.tuning.values.gather), and the
    studies' table <out_prefix>.{md,tex,csv} and figure `plot`: per method the tuned values, the validation
    metric of its defaults (the first trial) and of the best trial, and the counted budget of a trial."""
    import polars as pl
    import yaml

    from onestep.tables import render

    docs = [yaml.safe_load(Path(f).read_text()) for f in best_files]
    values = values_file.gather(docs, teacher, out)
    trials = [docs[0]["n_trials"]]  # one number: values.gather refuses studies of unequal effort
    rows = []
    for d in docs:
        b = d.get("budget") or {}
        rows.append({"method": d["method"], "tuned": ", ".join(f"{k} {_fmt(v)}" for k, v in values[d["method"]].items()),
                     "default_value": (d.get("default") or {}).get("value"), "tuned_value": d["value"],
                     "best_trial": d["trial"], "complete": d["trials"].get("complete", 0),
                     "failed": d["trials"].get("fail", 0), **{k: b.get(k) for k in
                     ("steps", "student_forwards", "student_backwards", "teacher_evals", "wall_time_s")}})
    df = pl.DataFrame(rows, infer_schema_length=None)
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(prefix.with_suffix(".csv"))
    metric = docs[0]["metric"] if docs else "validation metric"
    header = ["method", "tuned values", f"{metric}: defaults", f"{metric}: tuned", "best trial", "complete", "failed",
              "optimiser steps", "student fwd", "student bwd", "teacher evals", "train s"]
    caption = (f"Equal-effort tuning: one Optuna study per method over its declared knobs (search_space), "
               f"{trials[0]} trials each (its defaults first, then TPE), every trial with the same share of its "
               f"method's baselines budget; the {metric} of G(z, 0) on the validation noise (not the evaluation "
               f"noise); budget columns: one trial's counted training cost.")
    body = [[(c, False) for c in (r["method"], r["tuned"], _fmt(r["default_value"]), _fmt(r["tuned_value"]),
                                  str(r["best_trial"]), str(r["complete"]), str(r["failed"]),
                                  *[_fmt(r[k]) for k in ("steps", "student_forwards", "student_backwards",
                                                         "teacher_evals", "wall_time_s")])] for r in rows]
    md, tex = render(header, body, [], caption, 2, "tune_baselines")  # the ablation tables' renderer
    prefix.with_suffix(".md").write_text(md)
    prefix.with_suffix(".tex").write_text(tex)
    _figure(rows, metric, plot)
    return values


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _figure(rows: list[dict], metric: str, path: str | Path) -> None:
    """Bars per method: the validation metric of its defaults and of its tuned values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(rows) + 1), 3.2))
    xs = range(len(rows))
    nan = float("nan")
    ax.bar([x - 0.2 for x in xs], [nan if r["default_value"] is None else r["default_value"] for r in rows], 0.4,
           label="defaults")
    ax.bar([x + 0.2 for x in xs], [r["tuned_value"] for r in rows], 0.4, label="tuned")
    ax.set_xticks(list(xs), [r["method"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel(metric)
    ax.set_title("Equal-effort tuning: validation metric per method")
    ax.legend()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
