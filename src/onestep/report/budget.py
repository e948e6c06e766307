"""The quality-against-budget table and figure (`table: budget`, baselines_budget): per method, the primary metric
at each optimiser-step budget of the grid's `method.total_steps` axis, mean and 95% interval over seeds."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from onestep.report import cells, columns, writer
from onestep.report.ablation_figures import run_figures
from onestep.report.records import load_spec, read_json, references
from onestep.report.stats import ci95

BUDGET = "method.total_steps"  # the grid axis of the budget (config/grids.py TOTAL_STEPS)


def budget_axes(axes: list[str]) -> tuple[str, str]:
    """(the method axis, the budget axis) of a budget grid; ValueError naming the axes when it lacks one."""
    others = [a for a in axes if a != BUDGET]
    if BUDGET not in axes or len(others) != 1:
        raise ValueError(f"table: budget needs a grid of one method axis and {BUDGET}; the grid has {axes}")
    return others[0], BUDGET


def collect(records: list[dict], method_axis: str) -> pl.DataFrame:
    """One row per run: method, budget (the grid value), seed, the primary metric, the optimiser steps it trained
    (train.json: the method's unit may floor the budget) and its counted compute (teacher evaluations + student
    forward + backward passes per sample; NaN for a run from before the pass counters)."""
    primary = records[0]["primary"]
    keys = ("teacher_evals", "student_forwards", "student_backwards")
    rows = [{"method": str(r["point"][method_axis]), "budget": int(r["point"][BUDGET]), "seed": r["seed"],
             "value": float(r["metrics"][primary]), "steps": float(r["train"]["steps"]),
             "compute": float(sum(r["train"].get(k, math.nan) for k in keys))} for r in records]
    return pl.DataFrame(rows)


def summarise(runs: pl.DataFrame) -> pl.DataFrame:
    """Per method and budget (methods in first-seen order, budgets ascending): seeds, mean, std, the 95% interval
    of the mean (Student t), mean optimiser steps and counted compute."""
    order = {m: i for i, m in enumerate(dict.fromkeys(runs["method"].to_list()))}
    s = runs.group_by(["method", "budget"], maintain_order=True).agg(
        pl.len().alias("seeds"), pl.col("value").mean().alias("mean"), pl.col("value").std().alias("std"),
        pl.col("value").alias("_v"), pl.col("steps").mean().alias("steps"), pl.col("compute").mean().alias("compute"))
    ci = [ci95(v) for v in s["_v"].to_list()]
    s = s.drop("_v").with_columns(pl.Series("ci_lo", [c[0] for c in ci]), pl.Series("ci_hi", [c[1] for c in ci]))
    return s.with_columns(pl.col("method").replace_strict(order, return_dtype=pl.Int64).alias("_o")) \
        .sort(["_o", "budget"]).drop("_o")


def cell(r: dict) -> str:
    """mean ± the interval's half-width (std when one seed has no interval)."""
    if r["ci_lo"] is None or math.isnan(r["ci_lo"]):
        return cells.mean_std(r["mean"], r["std"])
    return cells.mean_std(r["mean"], (r["ci_hi"] - r["ci_lo"]) / 2)


def table(summary: pl.DataFrame, primary: str, title: str, ref: dict, teachers: list[dict]) -> writer.Table:
    """Methods as rows, budgets as columns; the best mean of each budget in bold; the reference rows below."""
    budgets = sorted(set(summary["budget"].to_list()))
    best = {b: summary.filter(pl.col("budget") == b)["mean"].min() for b in budgets}
    by = {(r["method"], r["budget"]): r for r in summary.iter_rows(named=True)}
    body = []
    for m in dict.fromkeys(summary["method"].to_list()):
        body.append([(m, False)] + [(cell(by[m, b]), by[m, b]["mean"] == best[b]) if (m, b) in by else ("", False)
                                    for b in budgets])
    seeds = sorted(set(summary["seeds"].to_list()))
    refs = [[lb, *[cells.mean_std(vals[primary], None)] * len(budgets)] for lb, vals in references(ref, teachers)]
    cap = (f"{title}. {columns.label(primary)} (one step, lower is better) of each method trained for the column's "
           f"optimiser steps (the method's own unit: whole stages, rounds, phases; every mode counted), mean ± "
           f"half-width of the 95% interval (Student t) over {'/'.join(map(str, seeds))} seeds; best per budget in "
           f"bold. Reference rows: data against data, the teacher.")
    label = columns.label(primary)
    return writer.Table(["method", *[f"{label} @ {b}" for b in budgets]], body, cap, "baselines_budget", 1, refs)


def figure(summary: pl.DataFrame, ref_rows: list[tuple[str, dict]], primary: str, path, title: str,
           x_key: str = "steps", x_label: str = "optimiser steps", mark: float | None = None) -> None:
    """The metric against optimiser steps (or `x_key`: counted compute), log-log, a line per method with its 95%
    band; the data floor dotted; `mark`: a vertical line (the compute the methods are compared at)."""
    from onestep.report.figures import _save, plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(dict.fromkeys(summary["method"].to_list())):
        s = summary.filter(pl.col("method") == m)
        x, y = s[x_key].to_numpy(), s["mean"].to_numpy()
        ax.plot(x, y, marker="o", ms=3, color=f"C{i % 10}", ls="-" if i < 10 else "--", label=m)
        lo, hi = s["ci_lo"].to_numpy().astype(float), s["ci_hi"].to_numpy().astype(float)  # NaN: one seed
        ax.fill_between(x, lo, hi, color=f"C{i % 10}", alpha=0.15, lw=0)
    for lb, vals in ref_rows[:1]:
        ax.axhline(vals[primary], color="0.3", ls=":", lw=1, label=lb)
    if mark is not None:
        ax.axvline(mark, color="0.5", lw=1)
    ax.set(xscale="log", yscale="log", xlabel=x_label, ylabel=f"{columns.label(primary)} (one step)",
           title=title)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def build_budget(spec_path: str | Path, run_files, teacher_files, reference_file, out_prefix: str | Path,
                 plot_path: str | Path) -> pl.DataFrame:
    """The `table: budget` kind (the ablation table's interface): <out_prefix>.{md,tex,csv}, the figure
    `plot_path` and the runs' training curves and samples (run_figures); returns the summary frame."""
    spec = load_spec(spec_path)
    method_axis, _ = budget_axes(spec["axes"])
    records = read_json(run_files)
    primary = records[0]["primary"]
    ref = read_json([reference_file])[0]
    teachers = sorted(read_json(teacher_files), key=lambda r: r["steps"])
    summary = summarise(collect(records, method_axis))
    title = spec.get("title", spec["name"])
    writer.write(out_prefix, table(summary, primary, title, ref, teachers), summary)
    figure(summary, references(ref, teachers), primary, plot_path, title)
    run_figures(spec, records, run_files, plot_path)
    return summary
