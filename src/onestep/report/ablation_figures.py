"""An ablation's figures: the metric against its first axis, the points' training curves and samples, and
the per-stage errors where runs record them."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from onestep.report import figures  # first: it selects matplotlib's Agg backend
from onestep.report.columns import label
from onestep.report.figures import plt
from onestep.report.records import setting

# Reference rows: each its own colour and dash; one far above the runs is named in the legend, off the axis.
REF_STYLES = [("C1", "--"), ("C2", "-."), ("C3", ":"), ("C4", (0, (5, 1, 1, 1))), ("C5", (0, (1, 1))),
              ("C6", (0, (3, 1, 1, 1, 1, 1))), ("C7", "-")]
FAR = 3.0  # a reference beyond FAR x the runs' range above their top is off the axis (named, not drawn)
TERM_LABELS = {"L_k": "L_k: stage loss", "R_k": "R_k: consistency term", "term_L": "L_k as weighted",
               "term_R": "term_R: lambda x R_k (its weight in the loss)", "term_adv": "term_adv: adversarial term",
               "loss": "loss"}


def figure(spec: dict, summary: pl.DataFrame, runs: pl.DataFrame, refs, primary: str, path) -> None:
    """The headline metric per grid point on a linear axis: the mean with the table's 95% interval (Student t
    over seeds), every seed a dot; a single numeric axis as a line over its values (a log x axis when they span
    a decade and none is 0), else one point per setting. Reference rows are labelled lines (value in the
    legend). Drawn once as PNG and as a vector PDF."""
    axes, plot = spec["axes"], spec.get("plot") or {}
    rows = []
    for r in summary.iter_rows(named=True):
        vals = runs.filter(pl.all_horizontal([pl.col(a) == r[a] for a in axes]))[primary].to_list()
        lo, hi = r.get(f"{primary}_ci_lo"), r.get(f"{primary}_ci_hi")
        ok = lo is not None and hi is not None and lo == lo and hi == hi  # NaN: one seed, no interval
        rows.append({"label": ", ".join(r[a] for a in axes), "x": r[axes[0]], "mean": r[f"{primary}_mean"],
                     "lo": lo if ok else r[f"{primary}_mean"], "hi": hi if ok else r[f"{primary}_mean"], "values": vals})
    numeric = len(axes) == 1 and all(_is_number(r["x"]) for r in rows) and plot.get("kind", "line") == "line"
    xs = [float(r["x"]) for r in rows] if numeric else list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(7.2, 3.6), layout="constrained")
    means = [r["mean"] for r in rows]
    ax.errorbar(xs, means, yerr=[[m - r["lo"] for m, r in zip(means, rows, strict=True)],
                                 [r["hi"] - m for m, r in zip(means, rows, strict=True)]],
                fmt="o-" if numeric else "o", c="C0", capsize=4, lw=1.2, label="mean, 95% CI (t over seeds)")
    for x, r in zip(xs, rows, strict=True):
        ax.scatter([x] * len(r["values"]), r["values"], s=12, c="k", alpha=0.6, zorder=3, lw=0)
    ax.scatter([], [], s=12, c="k", alpha=0.6, label="one seed")
    top = max([r["hi"] for r in rows] + [v for r in rows for v in r["values"]])
    bottom = min([r["lo"] for r in rows] + [v for r in rows for v in r["values"]])
    reach = top + FAR * max(top - bottom, 0.1 * abs(top))
    for (lab, vals), (c, ls) in zip(refs, REF_STYLES * 3, strict=False):
        v = vals[primary]
        if v <= reach:
            ax.axhline(v, c=c, ls=ls, lw=1.2, label=f"{lab}: {v:.3g}")
        else:
            ax.plot([], [], c=c, ls=ls, lw=1.2, label=f"{lab}: {v:.3g} (above the axis)")
    if numeric and min(xs) > 0 and plot.get("log_x", min(xs) * 10 <= max(xs)):
        ax.set_xscale("log")
    ax.set_xticks(xs, [r["x"] if numeric else r["label"] for r in rows])
    if not numeric:
        ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.minorticks_off()
    ax.set_xlabel(", ".join(a.split(".")[-1] for a in axes))
    ax.set_ylabel(f"{label(primary)} (lower is better)")
    ax.set_title(spec.get("title", spec["name"]), fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    save(fig, path)


def save(fig, path) -> None:
    """The figure as PNG at `path` and as a vector PDF beside it, each drawn from the figure itself."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    fig.savefig(str(path)[: -len(".png")] + ".pdf")
    plt.close(fig)


def curves_figure(runs: list[tuple[str, Path]], path, title: str) -> None:
    """Each point's training curves (train_log.csv: its loss terms against the step, log y), stage boundaries
    as thin lines, one legend naming the terms; titles placed by matplotlib's constrained layout."""
    import csv

    runs = [(lab, Path(f)) for lab, f in runs if Path(f).is_file()]
    cols = min(3, max(1, len(runs)))
    n_rows = max(1, (len(runs) + cols - 1) // cols)
    fig, axs = plt.subplots(n_rows, cols, figsize=(4 * cols, 2.6 * n_rows + 0.6), squeeze=False, sharey=True,
                            layout="constrained")
    handles = {}
    for ax, (lab, f) in zip(axs.flat, runs, strict=False):
        with open(f) as fh:
            log = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]
        steps = [r["step"] for r in log]
        keys = [k for k in figures.TERMS if log and k in log[0]] or (["loss"] if log and "loss" in log[0] else [])
        for i, key in enumerate(keys):
            (h,) = ax.plot(steps, [r.get(key, float("nan")) for r in log], lw=1, c=f"C{i}")
            handles.setdefault(TERM_LABELS.get(key, key), h)
        for i in range(1, len(log)):
            if log[i].get("phase") != log[i - 1].get("phase"):
                ax.axvline(steps[i - 1], c="0.8", lw=0.5)
        ax.set_yscale("log")
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("optimiser step", fontsize=8)
    for ax in axs[:, 0]:
        ax.set_ylabel("term value (log)", fontsize=8)
    for ax in list(axs.flat)[len(runs):]:
        ax.axis("off")
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(4, len(handles)), fontsize=7,
                   frameon=False)
    fig.suptitle(f"{title} (grey lines: stage boundaries)", fontsize=10)
    save(fig, path)


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
    curves_figure([(lab, d / "train_log.csv") for lab, d in labelled], f"{stem}_curves.png", f"{title}: training")
    figures.samples_side_by_side([(lab, d / "samples.png") for lab, d in labelled], f"{stem}_samples.png",
                                 f"{title}: one-step samples (seed {seed})")
