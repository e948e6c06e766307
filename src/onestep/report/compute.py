"""The equal-compute table and figure (`table: compute`, baselines_compute): each method's one-step metric at the
counted compute the baseline point (the curriculum at the baselines' budget) spends, read off the method's measured
quality-against-compute curve (the runs of a budget grid, `reads:`), mean and 95% interval over seeds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from onestep.report import cells, columns, writer
from onestep.report.ablation_figures import run_figures
from onestep.report.budget import budget_axes, collect, figure, summarise
from onestep.report.records import load_spec, read_json, references
from onestep.report.stats import ci95

COMPUTE = ("counted compute: teacher network evaluations + student network forward + backward passes, per sample, "
           "spent in training (train.json)")


def at_compute(points: list[tuple[float, float, float]], c: float) -> tuple[float, float] | None:
    """(metric, optimiser steps) at compute `c` on one seed's curve `points` [(compute, metric, steps)]: linear in
    log-log between the two budgets around `c`; None when `c` lies outside the measured budgets' compute."""
    pts = sorted(p for p in points if p[0] > 0 and p[1] > 0 and not math.isnan(p[0]))
    if not pts or not pts[0][0] <= c <= pts[-1][0]:
        return None
    lc = [math.log(p[0]) for p in pts]
    value = math.exp(float(np.interp(math.log(c), lc, [math.log(p[1]) for p in pts])))
    return value, math.exp(float(np.interp(math.log(c), lc, [math.log(p[2]) for p in pts])))


def target(runs: pl.DataFrame, baseline: dict[str, str]) -> float:
    """The baseline point's counted compute (mean over its seeds): the compute every method is compared at."""
    m, b = baseline["method"], int(baseline["budget"])
    rows = runs.filter((pl.col("method") == m) & (pl.col("budget") == b))["compute"]
    if rows.is_empty():
        raise ValueError(f"table: compute: no run of the baseline point {m}, {b} steps")
    return float(rows.mean())


def equal_compute(runs: pl.DataFrame, c: float) -> list[dict]:
    """Per method (first-seen order): the metric and steps at compute `c` per seed, mean, std and 95% interval
    over the seeds whose curve reaches `c`; the compute range its budgets span."""
    out = []
    for m in dict.fromkeys(runs["method"].to_list()):
        mine = runs.filter(pl.col("method") == m)
        per_seed = [at_compute(list(zip(s["compute"], s["value"], s["steps"], strict=True)), c)
                    for _, s in mine.group_by("seed", maintain_order=True)]
        hit = [p for p in per_seed if p is not None]
        vals = [v for v, _ in hit]
        lo, hi = ci95(vals)
        out.append({"method": m, "seeds": len(hit), "mean": float(np.mean(vals)) if vals else math.nan,
                    "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan, "ci_lo": lo, "ci_hi": hi,
                    "steps": float(np.mean([s for _, s in hit])) if hit else math.nan,
                    "compute_min": float(mine["compute"].min()), "compute_max": float(mine["compute"].max()),
                    "compute_per_step": float((mine["compute"] / mine["steps"]).mean())})
    return out


def table(rows: list[dict], primary: str, title: str, c: float, base: str) -> writer.Table:
    label = columns.label(primary)
    best = min((r["mean"] for r in rows if not math.isnan(r["mean"])), default=math.nan)
    body = []
    for r in rows:
        half = (r["ci_hi"] - r["ci_lo"]) / 2 if not math.isnan(r["ci_lo"]) else r["std"]
        body.append([(r["method"], False), (cells.mean_std(r["mean"], half), r["mean"] == best),
                     (cells.num(r["steps"], 4), False), (cells.num(r["compute_per_step"], 4), False),
                     (f"{r['compute_min']:.3g}..{r['compute_max']:.3g}", False), (str(r["seeds"]), False)])
    cap = (f"{title}. {label} (one step, lower is better) of each method at the counted compute of {base} "
           f"({c:.3g}; {COMPUTE}), read off the method's measured curve over the budget grid's optimiser steps "
           f"(linear in log-log between the two budgets around it; '-' where the budgets' compute does not reach "
           f"it), mean ± half-width of the 95% interval over the seeds; the optimiser steps that compute buys; "
           f"counted compute per optimiser step; the range the budgets span.")
    return writer.Table(["method", f"{label} at equal compute", "optimiser steps", "compute / step",
                         "budgets' compute", "seeds"], body, cap, "baselines_compute", 1)


def build_compute(spec_path: str | Path, run_files, teacher_files, reference_file, out_prefix: str | Path,
                  plot_path: str | Path) -> pl.DataFrame:
    """The `table: compute` kind (the ablation table's interface): <out_prefix>.{md,tex,csv} and the figure (the
    metric against counted compute, the compared compute marked); returns the per-method frame."""
    spec = load_spec(spec_path)
    method_axis, budget_axis = budget_axes(spec["axes"])
    records = read_json(run_files)
    primary = records[0]["primary"]
    runs = collect(records, method_axis)
    base = spec["baseline"]
    c = target(runs, {"method": str(base[method_axis]), "budget": base[budget_axis]})
    frame = pl.DataFrame(equal_compute(runs, c))
    title = spec.get("title", spec["name"])
    writer.write(out_prefix, table(frame.to_dicts(), primary, title, c,
                                   f"{base[method_axis]} at {base[budget_axis]} steps"), frame)
    ref = read_json([reference_file])[0]
    figure(summarise(runs), references(ref, sorted(read_json(teacher_files), key=lambda r: r["steps"])), primary,
           plot_path, title, "compute", "counted compute (teacher evals + student fwd + bwd per sample)", c)
    run_figures(spec, records, run_files, plot_path)  # the read grid's curves and samples (the same points)
    return frame
