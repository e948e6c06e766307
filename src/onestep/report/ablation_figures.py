"""An ablation's figures: the metric against its first axis, the points' training curves and samples, and
the per-stage errors where runs record them."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from onestep.report import figures
from onestep.report.columns import label
from onestep.report.records import setting


def figure(spec: dict, summary: pl.DataFrame, runs: pl.DataFrame, refs, primary: str, path) -> None:
    """Metric against the first axis: a line (log axis for K or lambda, 0 marked) or bars, error bars = std."""
    axes = spec["axes"]
    rows = []
    for r in summary.iter_rows(named=True):
        vals = runs.filter(pl.all_horizontal([pl.col(a) == r[a] for a in axes]))[primary].to_list()
        rows.append({"label": ", ".join(r[a] for a in axes), "x": r[axes[0]], "mean": r[f"{primary}_mean"],
                     "std": r[f"{primary}_std"], "values": vals})
    numeric = len(axes) == 1 and all(_is_number(r["x"]) for r in rows)
    plot = spec.get("plot") or {}
    kind = plot.get("kind", "line" if numeric else "bar")
    ref_rows = [{"label": lb, "mean": vals[primary]} for lb, vals in refs]
    title = spec.get("title", spec["name"])
    if kind == "line" and numeric:
        xs = [float(r["x"]) for r in rows]
        log_x = plot.get("log_x", min(x for x in xs if x > 0) * 10 <= max(xs))
        figures.line(rows, ref_rows, label(primary), axes[0].split(".")[-1], path, title, log_x)
    else:
        figures.ablation(rows, ref_rows, label(primary), path, title)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def stage_figure(spec: dict, records: list[dict], plot_path: str | Path) -> None:
    """<stem>_stages.png: the per-stage errors against t_k, one line per point (mean over seeds) with a
    band (min..max over seeds), against the seed's mean target and against the teacher's trajectory."""
    staged = [r for r in records if r.get("stages")]
    if not staged:
        return
    axes = spec["axes"]
    order = [tuple(str(p[a]) for a in axes) for p in spec["points"]]
    lines = []
    for key in order:
        rs = [r for r in staged if tuple(str(r["point"][a]) for a in axes) == key]
        if rs:
            lines.append({"label": setting(dict(zip(axes, key, strict=True)), axes),
                          "runs": [r["stages"] for r in sorted(rs, key=lambda r: r["seed"])]})
    stem = str(plot_path)[: -len(".png")]
    figures.stage_errors(lines, f"{stem}_stages.png", f"{spec.get('title', spec['name'])}: per-stage error")


def run_figures(spec: dict, records: list[dict], run_files, plot_path: str | Path) -> None:
    """<stem>_curves.png (training curves of each point) and <stem>_samples.png (its samples), lowest seed."""
    axes, title = spec["axes"], spec.get("title", spec["name"])
    seed = min(r["seed"] for r in records)
    run_dirs = {tuple(str(r["point"][a]) for a in axes): Path(f).parent for r, f in zip(records, run_files, strict=True)
                if r["seed"] == seed}
    order = [tuple(str(p[a]) for a in axes) for p in spec["points"]]
    labelled = [(setting(dict(zip(axes, k, strict=True)), axes), run_dirs[k]) for k in order if k in run_dirs]
    stem = str(plot_path)[: -len(".png")]
    figures.curves_grid([(lab, d / "train_log.csv") for lab, d in labelled], f"{stem}_curves.png", f"{title}: training")
    figures.samples_side_by_side([(lab, d / "samples.png") for lab, d in labelled], f"{stem}_samples.png",
                                 f"{title}: one-step samples (seed {seed})")
