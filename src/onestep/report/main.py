"""The main table: per ablation (its CSV), the baseline and the best point of the headline metric."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from onestep.report import cells, columns, figures, writer

SIDE = ("off_support", "swd", "fid")  # the main table's metrics beside its headline, where the CSVs have them


def collect(csv_files) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """(one row per ablation's baseline and best point, the first ablation's reference rows, the primary metric)."""
    frames = [pl.read_csv(f, infer_schema_length=None) for f in csv_files]
    rows, refs, primary = [], None, frames[0]["primary"][0]
    for df in frames:
        run = df.filter(pl.col("kind") == "run")
        best = run.sort(f"{primary}_mean").head(1)
        base = run.filter(pl.col("baseline"))
        for which, r in (("baseline", base), ("best", best)):
            if r.height:
                rows.append({**r.row(0, named=True), "which": which})
        refs = refs if refs is not None else df.filter(pl.col("kind") == "reference")
    return pl.DataFrame(rows, infer_schema_length=None), refs, primary


def _dedup(main: pl.DataFrame) -> list[dict]:
    """One entry per (ablation, setting): when the baseline is the best point, one row."""
    out, seen = [], set()
    for r in main.iter_rows(named=True):
        if (r["ablation"], r["setting"]) not in seen:
            seen.add((r["ablation"], r["setting"]))
            out.append(r)
    return out


def table(main: pl.DataFrame, refs: pl.DataFrame, primary: str) -> writer.Table:
    pm, p = columns.label(primary), primary
    best = main[f"{p}_mean"].min()
    measured = [c for c in columns.measured_columns() if columns.shown(c) and f"{c.key}_mean" in main.columns]
    holm = f"{p}_p_holm" in main.columns
    beside = [m for m in columns.metric_order(SIDE, p) if m != p and f"{m}_mean" in main.columns]  # e.g. SWD
    header = ["ablation", "setting", "", pm, f"{pm} 95% CI", "p vs baseline", *["p (Holm)"] * holm,
              *[columns.label(m) for m in beside],
              *[columns.short(c) for c in measured], columns.WALL.label, columns.SEEDS.label]
    body = [[(r["ablation"], False), (r["setting"], False), ("baseline" if r["baseline"] else "best", False),
             (cells.mean_std(r[f"{p}_mean"], r[f"{p}_std"]), r[f"{p}_mean"] == best),
             (cells.interval(r[f"{p}_ci_lo"], r[f"{p}_ci_hi"]), False),
             (cells.p_value(r[f"{p}_p_vs_baseline"], r["baseline"]), False),
             *[(cells.p_value(r.get(f"{p}_p_holm"), r["baseline"]), False)] * holm,
             *[(cells.mean_std(r[f"{m}_mean"], r.get(f"{m}_std")), False) for m in beside],
             *[(cells.mean_std(r.get(f"{c.key}_mean"), r.get(f"{c.key}_std"), c.digits), False) for c in measured],
             (f"{r['wall_time_s_mean']:.0f}", False), (str(r["seeds"]), False)] for r in _dedup(main)]
    ref_rows = [[r["setting"], "", "", cells.num(r[f"{p}_mean"]), "", "", *[""] * holm,
                 *[cells.num(r.get(f"{m}_mean")) for m in beside], *[""] * len(measured), "", ""]
                for r in refs.iter_rows(named=True)]
    caption = (f"Main table: the baseline and the best point of each ablation. Mean ± std over "
               f"seeds of {pm} on {main['samples'][0]} one-step samples; 95% CI (Student t) and paired t-test p-value "
               f"against each ablation's baseline on the same seeds, uncorrected and Holm-corrected across the "
               f"points of that ablation; best in bold. The 'best' rows were selected post hoc, after seeing the "
               f"results (the lowest mean of each ablation), a selection no p-value here corrects for."
               + (f" Beside the headline: {', '.join(columns.label(m) for m in beside)} (mean ± std over seeds)."
                  if beside else ""))
    return writer.Table(header, body, caption, "main", 3, ref_rows)


def build_main(csv_files, out_prefix: str | Path, plot_path: str | Path) -> pl.DataFrame:
    """The main table <out_prefix>.{md,tex,csv} and its figure: per ablation, its baseline and its best point
    (headline metric), with intervals and p."""
    main, refs, p = collect(csv_files)
    writer.write(out_prefix, table(main, refs, p), main)
    figures.main([{"label": f"{r['ablation']}\n{r['setting']}", "mean": r[f"{p}_mean"], "std": r[f"{p}_std"],
                   "lo": r[f"{p}_ci_lo"], "hi": r[f"{p}_ci_hi"], "baseline": r["baseline"]} for r in _dedup(main)],
                 [{"label": r["setting"], "mean": r[f"{p}_mean"]} for r in refs.iter_rows(named=True)],
                 columns.label(p), plot_path)
    return main
