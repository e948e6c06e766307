"""The compact paper table of an ablation (<table>_paper.md/.tex beside the full one): per point the headline
metric with its 95% interval, its ratio to the data-vs-data floor, p and Holm p against the baseline, and the
seeds, under a short caption in words."""

from __future__ import annotations

import polars as pl

from onestep.report import cells, columns, writer


def fd_below_floor(summary: pl.DataFrame, floor: dict) -> bool:
    """Whether some point's mean FD lies below the data-vs-data floor's."""
    return "fd_mean" in summary.columns and "fd" in floor and bool((summary["fd_mean"] < floor["fd"]).any())


# Why an FD below the floor is no error: the floor's FD is that of two independent finite samples of the data.
FD_NOTE = (" FD compares only the means and covariances: between two independent samples of the data (the floor) "
           "it measures their sampling noise, so runs whose samples match the reference's first two moments more "
           "closely than a fresh data sample does score below it; the floor bounds SWD and MMD, not FD.")


def compact_table(spec: dict, summary: pl.DataFrame, primary: str, floor: dict, axes: list[str]) -> writer.Table:
    """The paper table: one row per grid point (summary: ablation.summary_of's), best mean in bold."""
    pm, base = columns.label(primary), spec.get("baseline") or {}
    best = summary[f"{primary}_mean"].min()
    header = [a.split(".")[-1] for a in axes] + [pm, "95% CI", "/ floor", "p", "p (Holm)", "seeds"]
    body = []
    for r in summary.iter_rows(named=True):
        m = r[f"{primary}_mean"]
        body.append([(r[a], False) for a in axes] + [
            (cells.num(m), m == best), (cells.interval(r[f"{primary}_ci_lo"], r[f"{primary}_ci_hi"]), False),
            (f"{m / floor[primary]:.2f}" if floor.get(primary) else "", False),
            (cells.p_value(r[f"{primary}_p_vs_baseline"], r["baseline"]), False),
            (cells.p_value(r[f"{primary}_p_holm"], r["baseline"]), False), (str(r["seeds"]), False)])
    where = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in base.items()) or "the first point"
    caption = (f"{spec.get('title', spec['name'])}: {pm} of one-step samples (lower is better; best in bold), the "
               f"mean over training seeds with its 95% interval, and its ratio to the floor (two samples of the data "
               f"compared with each other). p: paired t-test against the baseline ({where}), then Holm-corrected "
               "across the other points.")
    return writer.Table(header, body, caption, f"{spec['name']}-paper", len(axes))
