"""The ablation table (`table: default`): per point, mean ± std over seeds, interval and paired p, references.

One row per point: mean ± std over seeds of every metric, a 95% interval of the headline metric (Student t
over seeds), and a paired t-test of the headline metric against the ablation's baseline point on the same
seeds (raw and Holm-corrected); the best mean of each metric in bold; the methods' own columns (their
`columns()` hooks) where runs carry them; reference rows (data floor, teacher DDIM at each step count); the
seeds and sample count in the caption. The CSV holds the same rows (kind = run | reference) and feeds the
main table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from onestep.config.sections import EXACT_METRICS
from onestep.report import cells, columns, writer
from onestep.report.ablation_figures import figure, run_figures, stage_figure
from onestep.report.compact import FD_NOTE, compact_table, fd_below_floor
from onestep.report.records import (
    load_spec,
    pairs_row,
    present,
    read_json,
    references,
    setting,
    support_caption,
    support_header,
    support_refs,
)
from onestep.report.stats import EQUIV_MARGIN, summarise


@dataclass
class Ablation:
    """What an ablation's table is made of: its spec, runs and references, and what its columns show."""

    spec: dict
    records: list[dict]
    runs: pl.DataFrame
    ref: dict
    teachers: list[dict]
    primary: str
    metrics: list[str]  # headline metric first
    t50: dict | None  # the teacher DDIM row the ratio divides by
    measured: tuple  # the methods' measured columns the runs carry (shown)
    scheduled: tuple  # the methods' schedule columns the runs carry (shown)
    far: bool  # some run counts samples outside the data's support

    @property
    def axes(self) -> list[str]:
        return self.spec["axes"]

    @property
    def ratio(self) -> str | None:
        return columns.ratio_key(self.primary, self.t50["steps"]) if self.t50 else None


def collect(records: list[dict], axes: list[str]) -> pl.DataFrame:
    """One row per run (its metrics.json): point values, seed, metrics, training cost, every diagnostic."""
    return pl.DataFrame([{**{a: str(r["point"][a]) for a in axes}, "seed": r["seed"], **r["metrics"],
                          **{f"{m}_eval_var": v ** 2 for m, v in (r.get("eval_sd") or {}).items()},
                          **{c.key: c.value(r) for c in (*columns.COST, *columns.diagnostics())}} for r in records])


def gather(spec_path, run_files, teacher_files, reference_file) -> Ablation:
    spec = load_spec(spec_path)
    records = read_json(run_files)
    runs = collect(records, spec["axes"])
    ref = read_json([reference_file])[0]
    teachers = sorted(read_json(teacher_files), key=lambda r: r["steps"])
    primary = records[0]["primary"]
    plain = [t for t in teachers if not pairs_row(t)]  # the DDIM rows: the ratio's reference
    t50 = next((t for t in plain if t["steps"] == 50), plain[-1] if plain else None)
    has = lambda cs: tuple(c for c in cs if columns.shown(c) and present(runs, c.key))  # noqa: E731
    return Ablation(spec, records, runs, ref, teachers, primary, columns.metric_order(ref["floor"], primary),
                    t50, has(columns.measured_columns()), has(columns.scheduled_columns()),
                    present(runs, columns.SUPPORT.key))


def summary_of(ab: Ablation) -> pl.DataFrame:
    """The per-point summary in the spec's point order, with the ratio to the teacher's 50-step DDIM."""
    axes, primary = ab.axes, ab.primary
    keys = [*ab.metrics, *(c.key for c in (*columns.COST, *columns.diagnostics()))]
    summary = summarise(ab.runs, axes, keys, primary, ab.spec.get("baseline") or {})
    order = [tuple(str(p[a]) for a in axes) for p in ab.spec["points"]]
    position = [order.index(tuple(r[a] for a in axes)) for r in summary.iter_rows(named=True)]
    summary = summary.with_columns(pl.Series("_o", position)).sort("_o").drop("_o")
    if ab.t50:
        summary = summary.with_columns((pl.col(f"{primary}_mean") / ab.t50["metrics"][primary]).alias(ab.ratio))
    return summary


def frame(ab: Ablation, summary: pl.DataFrame) -> pl.DataFrame:
    """The CSV: the run rows (kind = run) and the reference rows (kind = reference)."""
    name, title = ab.spec["name"], ab.spec.get("title", ab.spec["name"])
    run = summary.with_columns(pl.lit("run").alias("kind"), pl.lit(name).alias("ablation"), pl.lit(title).alias("title"),
                               pl.lit(ab.primary).alias("primary"),
                               pl.Series("setting", [setting(r, ab.axes) for r in summary.iter_rows(named=True)]),
                               pl.lit(ab.records[0].get("num_samples", ab.ref.get("num_samples"))).alias("samples"),
                               pl.Series("code", [code_of(ab, r) for r in summary.iter_rows(named=True)]))
    refs = pl.DataFrame([{"kind": "reference", "setting": label, "ablation": name, "title": title, "primary": ab.primary,
                          **{f"{m}_mean": float(v[m]) for m in ab.metrics}} for label, v in references(ab.ref, ab.teachers)])
    return pl.concat([run, refs], how="diagonal_relaxed")


def code_of(ab: Ablation, row: dict) -> str:
    """The code that trained a row's runs (train.json's `code`): its version label and the training's code hash,
    each distinct one once ("" for runs recorded before it was kept)."""
    point = tuple(row[a] for a in ab.axes)
    codes = {f"{c['label']} train {c['code_hash']}" for r in ab.records
             if tuple(str(r["point"][a]) for a in ab.axes) == point and (c := (r.get("train") or {}).get("code"))}
    return "; ".join(sorted(codes))


def header(ab: Ablation) -> list[str]:
    pm = columns.label(ab.primary)
    out = [a.split(".")[-1] for a in ab.axes] + [pm, f"{pm} 95% CI", "p vs baseline", "p (Holm)",
                                                  f"TOST p (±{EQUIV_MARGIN:.0%})"]
    out += [columns.label(m) for m in ab.metrics[1:]] + [c.label for c in ab.measured]
    out += [f"{pm} / teacher-{ab.t50['steps']}"] if ab.t50 else []
    out += [support_header(ab.records[0].get("num_samples"))] * ab.far + [c.label for c in ab.scheduled]
    return out + [columns.WALL.label, columns.EVALS.label, columns.SEEDS.label]


def row(ab: Ablation, r: dict, best: dict) -> list[tuple[str, bool]]:
    p, ms = ab.primary, lambda k, d=4: cells.mean_std(r[f"{k}_mean"], r[f"{k}_std"], d)  # noqa: E731
    out = [(r[a], False) for a in ab.axes] + [(ms(p), r[f"{p}_mean"] == best[p]),
                                              (cells.interval(r[f"{p}_ci_lo"], r[f"{p}_ci_hi"]), False),
                                              (cells.p_value(r[f"{p}_p_vs_baseline"], r["baseline"]), False),
                                              (cells.p_value(r[f"{p}_p_holm"], r["baseline"]), False),
                                              (cells.p_value(r[f"{p}_tost"], r["baseline"]), False)]
    out += [(ms(m), r[f"{m}_mean"] == best[m]) for m in ab.metrics[1:]]
    out += [(ms(c.key, c.digits), False) for c in ab.measured]
    out += [(f"{r[ab.ratio]:.3g}", False)] if ab.t50 else []
    out += [(ms(columns.SUPPORT.key, columns.SUPPORT.digits), False)] * ab.far
    out += [(cells.num(r[f"{c.key}_mean"], c.digits), False) for c in ab.scheduled]
    return out + [(f"{r['wall_time_s_mean']:.0f}", False), (cells.num(r["teacher_evals_mean"], 3), False),
                  (str(r["seeds"]), False)]


def reference_rows(ab: Ablation) -> list[list[str]]:
    p, out = ab.primary, []
    for (label, vals), n_far in zip(references(ab.ref, ab.teachers), support_refs(ab.teachers), strict=True):
        cs = [label] + [""] * (len(ab.axes) - 1) + [cells.num(vals[p]), "", "", "", ""]
        cs += [cells.num(vals[m]) for m in ab.metrics[1:]] + [""] * len(ab.measured)
        cs += [f"{vals[p] / ab.t50['metrics'][p]:.3g}"] if ab.t50 else []
        out.append(cs + [n_far] * ab.far + [""] * len(ab.scheduled) + ["", "", ""])
    return out


def caption(ab: Ablation, summary: pl.DataFrame) -> str:
    spec, ref, pm = ab.spec, ab.ref, columns.label(ab.primary)
    baseline = spec.get("baseline") or {}
    n_seeds = sorted(set(summary["seeds"].to_list()))
    n = ab.records[0].get("num_samples", ref.get("num_samples"))
    n_exact = ab.records[0].get("exact", {}).get("exact_n")
    out = (f"{spec.get('title', spec['name'])}. Mean ± std over {'/'.join(map(str, n_seeds))} seeds of metrics on {n} "
           f"one-step samples from the same held-out noise"
           + (f" (the exact-density metrics TV, off-support mass, χ²: on {n_exact:.0f} samples from their own noise)"
              if n_exact else "") + "; lower is better, best in bold. "
           f"{pm} 95% CI: Student t over seeds; p: paired t-test of {pm} against the baseline "
           f"({setting(baseline, list(baseline))}) on the same seeds, "
           f"uncorrected and Holm-corrected across the {summary.height - 1} non-baseline points of this ablation; "
           f"TOST p: two one-sided paired tests of equivalence with the baseline within ±{EQUIV_MARGIN:.0%} of its "
           f"mean {pm} (below 0.05: equivalent at that margin; above: no difference is shown, not resolved). "
           f"Reference rows: {floor_caption(ref, ab.primary)}, and the teacher's DDIM sampler. "
           + spread_caption(summary, ab.primary)
           + (support_caption(ab.records[0].get("support_margin")) if ab.far else "")
           + "".join(f" {c.caption}" for c in (*ab.scheduled, *ab.measured))
           + (f" {spec['caption']}" if spec.get("caption") else "")
           + (FD_NOTE if fd_below_floor(summary, ref["floor"]) else ""))
    if "features" in ref:  # images: the feature network (and clean-fid mode) behind FID / KID
        out += (f" FID and KID of {n} samples per row against the statistics of the {ref.get('num_samples')} "
                f"training images; features: {ref.get('feature_label', ref['features'])}"
                + (f", clean-fid mode {ref['fid_mode']}" if "fid_mode" in ref else "") + ".")
    return out


def spread_caption(summary: pl.DataFrame, primary: str) -> str:
    """What the intervals and tests are over: seeds alone, or seeds and each run's evaluation spread."""
    pm, sd = columns.label(primary), summary[f"{primary}_eval_sd"].drop_nans().drop_nulls()
    if not sd.len():
        return ("Intervals and p-values are over training seeds only: they are conditional on one held-out noise "
                "set and one reference sample (the floor's spread shows what another evaluation draw would move).")
    exact = primary in EXACT_METRICS
    what = ("its analytic null spread for the run's sample size" if exact else
            "the std over its (noise, reference) draws")
    return (f"Intervals and p-values combine seed and evaluation variance: each run's {pm} carries {what}, "
            f"{sd.mean():.2g} on average, added to the variance over seeds.")


def floor_caption(ref: dict, primary: str) -> str:
    """What the floor row is, from reference.json: draws, their size, the reference, the spread."""
    pm = columns.label(primary)
    n, reps = ref.get("floor_samples", ref.get("num_samples")), ref.get("floor_repeats", 1)
    if primary in EXACT_METRICS:
        spread = (ref.get("floor_std") or {}).get(primary)
        return ("floor: the exact metrics' analytic floors, their means for the runs' exact-metric sample size of "
                "the density itself (0 for the off-support mass and the chi-square, de Moivre's "
                "mean absolute deviation for TV" + (f"; {pm} null spread {spread:.2g}" if spread is not None else "")
                + f"); SWD / FD / MMD: the mean over {reps} draws of {n} data samples against the runs' reference")
    against = ("every training image's features, the runs' reference" if ref.get("kind") == "images"
               else "the same reference sample as the runs")
    spread = (ref.get("floor_std") or {}).get(primary)
    out = (f"data vs data (floor): the mean over {reps} draw{'s' * (reps > 1)} of {n} data samples, the runs' "
           f"sample size, against {against}" + (f" ({pm} std over the draws {spread:.2g})" if spread is not None else ""))
    held = (ref.get("floor_heldout") or {}).get(primary)
    if held is not None:  # images: the floor's draws come from the reference itself
        out += (f" (training images drawn with replacement: what a generator that reproduces the training set "
                f"scores; an independent sample of the data scores {pm} {held:.3g}, std "
                f"{ref['floor_heldout_std'][primary]:.2g}: {n} draws from one half of the images against the other "
                "half, the bound for a generator that generalises)")
    return out


def build(spec_path: str | Path, run_files, teacher_files, reference_file, out_prefix: str | Path,
          plot_path: str | Path) -> pl.DataFrame:
    """Write <out_prefix>.{md,tex,csv} and the ablation's figures next to `plot_path`; return the summary."""
    ab = gather(spec_path, run_files, teacher_files, reference_file)
    summary = summary_of(ab)
    best = {m: summary[f"{m}_mean"].min() for m in ab.metrics}
    table = writer.Table(header(ab), [row(ab, r, best) for r in summary.iter_rows(named=True)],
                         caption(ab, summary), ab.spec["name"], len(ab.axes), reference_rows(ab))
    writer.write(out_prefix, table, frame(ab, summary))
    writer.write(f"{out_prefix}_paper", compact_table(ab.spec, summary, ab.primary, ab.ref["floor"], ab.axes))
    refs = references(ab.ref, ab.teachers)
    figure(ab.spec, summary, ab.runs, refs, ab.primary, plot_path)
    run_figures(ab.spec, ab.records, run_files, plot_path)
    stage_figure(ab.spec, ab.records, plot_path)
    return summary
