"""Paper tables from stored metrics.json files alone (polars): Markdown, LaTeX booktabs, CSV, plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

from onestep import plots

METRIC_NAMES = {"swd": "SWD", "fd": "FD", "mmd": "MMD$^2$", "fid": "FID", "kid": "KID"}
METRIC_MD = {"swd": "SWD", "fd": "FD", "mmd": "MMD²", "fid": "FID", "kid": "KID"}


def _read(paths) -> list[dict]:
    out = []
    for p in paths:
        with open(p) as f:
            out.append(json.load(f))
    return out


def collect(records: list[dict], axes: list[str]) -> pl.DataFrame:
    """One row per run (its metrics.json): grid values, seed, metrics, training cost."""
    rows = []
    for r in records:
        rows.append({**{a: str(r["point"][a]) for a in axes}, "seed": r["seed"], **r["metrics"],
                     "wall_time_s": r["train"]["wall_time_s"], "samples_per_s": r["train"]["samples_per_s"]})
    return pl.DataFrame(rows)


def summarise(runs: pl.DataFrame, axes: list[str], metrics: list[str]) -> pl.DataFrame:
    """Mean and std over seeds per grid point, grid order kept."""
    aggs = [pl.len().alias("seeds")]
    for m in [*metrics, "wall_time_s", "samples_per_s"]:
        aggs += [pl.col(m).mean().alias(f"{m}_mean"), pl.col(m).std().alias(f"{m}_std")]
    return runs.group_by(axes, maintain_order=True).agg(aggs)


def _fmt(mean: float, std: float | None, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    s = f"{mean:.{digits}g}"
    return s if std is None or math.isnan(std) else f"{s} ± {std:.2g}"


def build(run_files, teacher_files, reference_file, axes: list[str], title: str, out_prefix: str | Path,
          plot_path: str | Path) -> pl.DataFrame:
    """Write <out_prefix>.{md,tex,csv} and the plot; return the summary frame."""
    records = _read(run_files)
    runs = collect(records, axes)
    ref = _read([reference_file])[0]
    teachers = sorted(_read(teacher_files), key=lambda r: r["steps"])
    primary = records[0]["primary"]
    metrics = sorted(ref["floor"], key=lambda m: (m != primary, m))  # headline metric first
    summary = summarise(runs, axes, metrics)
    # ratio column: against the teacher's 50-step DDIM (the reference), else its most-step row
    t50 = next((t for t in teachers if t["steps"] == 50), teachers[-1] if teachers else None)
    if t50 is not None:
        summary = summary.with_columns(
            (pl.col(f"{primary}_mean") / t50["metrics"][primary]).alias(f"{primary}_ratio_to_teacher_{t50['steps']}")
        )
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    summary.write_csv(out_prefix.with_suffix(".csv"))

    best = {m: summary[f"{m}_mean"].min() for m in metrics}
    ratio_col = f"{primary}_ratio_to_teacher_{t50['steps']}" if t50 else None
    header = [*[a.split(".")[-1] for a in axes], *[METRIC_MD[m] for m in metrics]]
    header += [f"{METRIC_MD[primary]} / teacher-{t50['steps']}"] if t50 else []
    header += ["train s", "seeds"]
    body_md, body_tex = [], []
    for row in summary.iter_rows(named=True):
        cells = [row[a] for a in axes]
        for m in metrics:
            c = _fmt(row[f"{m}_mean"], row[f"{m}_std"])
            cells.append((f"**{c}**", f"\\textbf{{{c}}}") if row[f"{m}_mean"] == best[m] else (c, c))
        cells_md = [c if isinstance(c, str) else c[0] for c in cells]
        cells_tex = [c if isinstance(c, str) else c[1] for c in cells]
        extra = ([f"{row[ratio_col]:.3g}"] if t50 else []) + [f"{row['wall_time_s_mean']:.0f}", str(row["seeds"])]
        body_md.append(cells_md + extra)
        body_tex.append(cells_tex + extra)
    refs = [("data vs data (floor)", ref["floor"])] + [(f"teacher DDIM {t['steps']} step{'s' * (t['steps'] > 1)}", t["metrics"])
                                              for t in teachers]
    ref_rows = []
    for label, vals in refs:
        cells = [label] + [""] * (len(axes) - 1) + [_fmt(vals[m], None) for m in metrics]
        cells += ([f"{vals[primary] / t50['metrics'][primary]:.3g}"] if t50 else []) + ["", ""]
        ref_rows.append(cells)

    n = ref.get("num_samples")
    caption = (f"{title}. Mean ± std over seeds (seeds column) of metrics on {n} one-step samples from the "
               f"same held-out noise; lower is better, best in bold. Reference rows: data against data at "
               f"the same sample size, and the teacher's DDIM sampler.")
    md = [f"**{caption}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in body_md]
    md += ["| " + " | ".join(f"*{c}*" if c else "" for c in r) + " |" for r in ref_rows]
    out_prefix.with_suffix(".md").write_text("\n".join(md) + "\n")

    esc = lambda s: str(s).replace("_", r"\_").replace("±", r"$\pm$").replace("²", "$^2$")  # noqa: E731
    tex = [r"\begin{table}[t]", r"\centering", f"\\caption{{{esc(caption)}}}",
           r"\begin{tabular}{" + "l" * len(axes) + "r" * (len(header) - len(axes)) + "}", r"\toprule",
           " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
    tex += [" & ".join(esc(c) for c in r) + r" \\" for r in body_tex]
    tex += [r"\midrule"] + [" & ".join(esc(c) for c in r) + r" \\" for r in ref_rows]
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    out_prefix.with_suffix(".tex").write_text("\n".join(tex) + "\n")

    plot_rows = []
    for row in summary.iter_rows(named=True):
        vals = runs.filter(pl.all_horizontal([pl.col(a) == row[a] for a in axes]))[primary].to_list()
        plot_rows.append({"label": ", ".join(row[a] for a in axes), "mean": row[f"{primary}_mean"],
                          "std": row[f"{primary}_std"], "values": vals})
    plot_refs = [{"label": label, "mean": vals[primary]} for label, vals in refs]
    plots.ablation(plot_rows, plot_refs, METRIC_MD[primary], plot_path, title)
    return summary


# ---------------------------------------------------------------- baselines: quality and training cost per method

COST = {"wall_time_s": "train s", "steps": "optimiser steps", "teacher_evals": "teacher evals", "params": "params"}


def collect_costs(records: list[dict], axes: list[str], few: list[str]) -> pl.DataFrame:
    """One row per run: grid values, seed, one-step metrics, few-step metrics (null where the method has
    no such sampler) and the training costs of train.json."""
    rows = []
    for r in records:
        ms = r.get("multistep") or {}
        rows.append({**{a: str(r["point"][a]) for a in axes}, "seed": r["seed"], **r["metrics"],
                     **{k: ms.get(k) for k in few}, **{c: float(r["train"].get(c, float("nan"))) for c in COST}})
    schema = {k: (pl.Float64 if k not in axes and k != "seed" else None) for k in rows[0]}
    return pl.DataFrame(rows, schema_overrides={k: v for k, v in schema.items() if v is not None})


def baselines(run_files, teacher_files, reference_file, axes: list[str], title: str, out_prefix: str | Path,
              plot_path: str | Path) -> pl.DataFrame:
    """The baselines table (ablation `table: baselines`): per method, one-step quality, the primary metric
    at 2 and 4 steps where the method samples so, ratios to the teacher's 1- and 50-step DDIM, and the
    training cost (wall time, optimiser steps, teacher evaluations in training, parameters); teacher rows.
    Writes <out_prefix>.{md,tex,csv} and the quality-vs-cost plot; returns the summary frame."""
    records = _read(run_files)
    ref = _read([reference_file])[0]
    teachers = sorted(_read(teacher_files), key=lambda r: r["steps"])
    primary = records[0]["primary"]
    metrics = sorted(ref["floor"], key=lambda m: (m != primary, m))
    few = [f"{primary}@{n}" for n in (2, 4)]
    runs = collect_costs(records, axes, few)
    aggs = [pl.len().alias("seeds")]
    for m in [*metrics, *few, *COST]:
        aggs += [pl.col(m).mean().alias(f"{m}_mean"), pl.col(m).std().alias(f"{m}_std")]
    summary = runs.group_by(axes, maintain_order=True).agg(aggs)
    bars = {t["steps"]: t["metrics"][primary] for t in teachers if t["steps"] in (1, 50)}
    for n, v in bars.items():
        summary = summary.with_columns((pl.col(f"{primary}_mean") / v).alias(f"{primary}_ratio_to_teacher_{n}"))
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    summary.write_csv(out_prefix.with_suffix(".csv"))

    best = {m: summary[f"{m}_mean"].min() for m in [*metrics, *few]}
    name = METRIC_MD[primary]
    header = [*[a.split(".")[-2 if a == "method.name" else -1] for a in axes], *[METRIC_MD[m] for m in metrics],
              f"{name} 2 steps", f"{name} 4 steps"]
    header += [f"{name} / DDIM-{n}" for n in bars] + [*COST.values(), "seeds"]
    body = []
    for row in summary.iter_rows(named=True):
        cells = [(row[a], row[a]) for a in axes]
        for m in [*metrics, *few]:
            c = _fmt(row[f"{m}_mean"], row[f"{m}_std"])
            top = row[f"{m}_mean"] is not None and row[f"{m}_mean"] == best[m]
            cells.append((f"**{c}**", f"\\textbf{{{c}}}") if top else (c, c))
        extra = [f"{row[f'{primary}_ratio_to_teacher_{n}']:.3g}" for n in bars]
        extra += [f"{row['wall_time_s_mean']:.0f}", f"{row['steps_mean']:.0f}", f"{row['teacher_evals_mean']:.3g}",
                  f"{row['params_mean']:.0f}", str(row["seeds"])]
        body.append(cells + [(c, c) for c in extra])
    refs = [("data vs data (floor)", ref["floor"])] + [
        (f"teacher DDIM {t['steps']} step{'s' * (t['steps'] > 1)}", t["metrics"]) for t in teachers]
    for label, vals in refs:
        cells = [label] + [""] * (len(axes) - 1) + [_fmt(vals[m], None) for m in metrics] + ["", ""]
        cells += [f"{vals[primary] / v:.3g}" for v in bars.values()] + [""] * (len(COST) + 1)
        body.append([(f"*{c}*" if c else "", c) for c in cells])

    caption = (f"{title}. Mean ± std over seeds of metrics on {ref.get('num_samples')} samples from the same "
               f"held-out noise (one step unless the column says 2 or 4; '-' where the method has no such "
               f"sampler); lower is better, best in bold. Training cost per run: wall time, optimiser steps, "
               f"teacher network evaluations (per sample) spent in training; the one-off teacher pairs that "
               f"pair-trained methods share are not counted. Reference rows: data against data, the teacher's DDIM.")
    md = [f"**{caption}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(c[0] for c in r) + " |" for r in body]
    out_prefix.with_suffix(".md").write_text("\n".join(md) + "\n")
    esc = lambda s: str(s).replace("_", r"\_").replace("±", r"$\pm$").replace("²", "$^2$")  # noqa: E731
    tex = [r"\begin{table}[t]", r"\centering", f"\\caption{{{esc(caption)}}}",
           r"\begin{tabular}{" + "l" * len(axes) + "r" * (len(header) - len(axes)) + "}", r"\toprule",
           " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
    n_runs = summary.height
    tex += [" & ".join(esc(c[1]) for c in r) + r" \\" for r in body[:n_runs]]
    tex += [r"\midrule"] + [" & ".join(esc(c[1]) for c in r) + r" \\" for r in body[n_runs:]]
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    out_prefix.with_suffix(".tex").write_text("\n".join(tex) + "\n")

    points = [{"label": ", ".join(row[a] for a in axes), "mean": row[f"{primary}_mean"], "std": row[f"{primary}_std"],
               "wall_time_s": row["wall_time_s_mean"], "teacher_evals": row["teacher_evals_mean"]}
              for row in summary.iter_rows(named=True)]
    plots.quality_vs_cost(points, [{"label": lb, "mean": v[primary]} for lb, v in refs], name, plot_path, title)
    return summary


TABLES = {"default": build, "baselines": baselines}  # picked by the ablation's optional `table:` key
