"""The baselines table (`table: baselines`): per method, one-step and few-step quality, ratios to the
teacher's 1- and 50-step DDIM, the training cost, and the quality-vs-cost figure; with `tuned:`, each method's
default and tuned runs side by side."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from onestep.report import cells, columns, figures, writer
from onestep.report.ablation_figures import run_figures
from onestep.report.records import load_spec, pairs_row, present, read_json, references, support_caption, support_header, support_refs
from onestep.report.stats import EQUIV_MARGIN, mean_std, summarise

KNOBS = "knobs"  # the column of a tuned table: "default", or "tuned (knob value, ...)"


def knobs_label(tuned: dict | None, reused: bool = False) -> str:
    """A run's knobs as a tuned table shows them: 'default', or 'tuned (lambda 0.31, student.lr 0.0007)', with
    ' = defaults, reused' when its study kept the defaults and the run reused the default run's training."""
    if not tuned:
        return "default"
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ("tuned (" + ", ".join(f"{k} {fmt(v)}" for k, v in tuned["values"].items()) + ")"
            + (" = defaults, reused" if reused else ""))


def few_steps(records: list[dict], primary: str) -> list[str]:
    """The primary metric's few-step keys the runs were scored at (metrics.json `multistep`: '<metric>@<n>'),
    by step count."""
    keys = {k for r in records for k in (r.get("multistep") or {}) if k.split("@")[0] == primary}
    return sorted(keys, key=lambda k: int(k.split("@")[1]))


@dataclass
class Baselines:
    records: list[dict]
    axes: list[str]
    title: str
    ref: dict
    teachers: list[dict]
    primary: str
    metrics: list[str]  # headline metric first
    few: list[str]  # '<primary>@<n>'
    tuned: bool  # a `tuned:` ablation's table: default and tuned runs
    runs: pl.DataFrame | None = None
    baseline: dict | None = None  # the point every method is tested against (the spec's `baseline`)

    @property
    def bars(self) -> dict[int, float]:
        """The teacher's plain DDIM rows at 1 and 50 steps: {steps: primary metric}."""
        return {t["steps"]: t["metrics"][self.primary] for t in self.teachers
                if t["steps"] in (1, 50) and not pairs_row(t)}

    @property
    def far(self) -> bool:
        return present(self.runs, columns.SUPPORT.key)


def collect_costs(records: list[dict], axes: list[str], few: list[str]) -> pl.DataFrame:
    """One row per run: grid values, seed, one-step metrics, few-step metrics (null where the method has
    no such sampler) and the training costs of train.json."""
    rows = [{**{a: str(r["point"][a]) for a in axes}, "seed": r["seed"], **r["metrics"],
             **{f"{m}_eval_var": v ** 2 for m, v in (r.get("eval_sd") or {}).items()},
             **{k: (r.get("multistep") or {}).get(k) for k in few},
             **{c.key: c.value(r) for c in (*columns.TRAIN_COST, columns.SUPPORT)}} for r in records]
    schema = {k: (pl.Float64 if k not in axes and k != "seed" else None) for k in rows[0]}
    return pl.DataFrame(rows, schema_overrides={k: v for k, v in schema.items() if v is not None})


def gather(run_files, teacher_files, reference_file, axes: list[str], title: str) -> Baselines:
    records = read_json(run_files)
    ref = read_json([reference_file])[0]
    primary = records[0]["primary"]
    tuned = any(r.get("tuned") for r in records)
    if tuned:  # a `tuned:` ablation's table: its runs next to the default runs they repeat, a row each per method
        records = [{**r, "point": {**r["point"], KNOBS: knobs_label(r.get("tuned"), bool(r["train"].get("reused_from")))}}
                   for r in records]
        axes = [*axes, KNOBS]
    b = Baselines(records, axes, title, ref, sorted(read_json(teacher_files), key=lambda r: r["steps"]), primary,
                  columns.metric_order(ref["floor"], primary), few_steps(records, primary), tuned)
    b.runs = collect_costs(records, axes, b.few)
    return b


def summary_of(b: Baselines) -> pl.DataFrame:
    """Per method (and knobs): mean/std over seeds; a tuned table per method in the grid's order, defaults first;
    the ratios to the teacher's DDIM rows."""
    keys = [*b.metrics, *b.few, *(c.key for c in columns.TRAIN_COST), columns.SUPPORT.key]
    summary = mean_std(b.runs, b.axes, keys)
    if b.tuned:
        first = {}
        for r in b.records:
            first.setdefault(str(r["point"][b.axes[0]]), len(first))
        summary = summary.with_columns(
            pl.col(b.axes[0]).replace_strict(first, return_dtype=pl.Int64).alias("_o"),
            (pl.col(KNOBS) != "default").alias("_t")).sort(["_o", "_t"]).drop(["_o", "_t"])
    for n, v in b.bars.items():
        summary = summary.with_columns((pl.col(f"{b.primary}_mean") / v).alias(columns.ratio_key(b.primary, n)))
    return summary


def header(b: Baselines) -> list[str]:
    name = columns.label(b.primary)
    out = [*[a.split(".")[-2 if a == "method.name" else -1] for a in b.axes], *[columns.label(m) for m in b.metrics],
           *[f"{name} {k.split('@')[1]} steps" for k in b.few]]
    out += [f"{name} / DDIM-{n}" for n in b.bars] + [support_header(b.ref.get("num_samples"))] * b.far
    return out + [c.label for c in columns.TRAIN_COST] + tests_header(b) + [columns.SEEDS.label]


def tests(b: Baselines, summary: pl.DataFrame) -> pl.DataFrame:
    """The summary with each method's paired tests of the headline against the baseline point on the same seeds
    (ablation tables' statistics: raw, Holm across the table's methods, TOST; seed and evaluation variance)."""
    if not b.baseline:
        return summary
    p = b.primary
    t = summarise(b.runs, b.axes, [], p, b.baseline).select(
        *b.axes, *(f"{p}_{k}" for k in ("ci_lo", "ci_hi", "p_vs_baseline", "p_holm", "tost", "eval_sd")), "baseline")
    return summary.join(t, on=b.axes, how="left")


def tests_header(b: Baselines) -> list[str]:
    return [f"{columns.label(b.primary)} 95% CI", "p vs baseline", "p (Holm)", f"TOST p (±{EQUIV_MARGIN:.0%})"] \
        if b.baseline else []


def tests_cells(b: Baselines, r: dict) -> list[str]:
    if not b.baseline:
        return []
    p, base = b.primary, bool(r["baseline"])
    return [cells.interval(r[f"{p}_ci_lo"], r[f"{p}_ci_hi"]), cells.p_value(r[f"{p}_p_vs_baseline"], base),
            cells.p_value(r[f"{p}_p_holm"], base), cells.p_value(r[f"{p}_tost"], base)]


def row(b: Baselines, r: dict, best: dict) -> list[tuple[str, bool]]:
    out = [(r[a], False) for a in b.axes]
    for m in [*b.metrics, *b.few]:
        out.append((cells.mean_std(r[f"{m}_mean"], r[f"{m}_std"]), r[f"{m}_mean"] is not None and r[f"{m}_mean"] == best[m]))
    extra = [f"{r[columns.ratio_key(b.primary, n)]:.3g}" for n in b.bars]
    extra += [f"{r[f'{columns.SUPPORT.key}_mean']:.3g}"] * b.far
    for c in columns.TRAIN_COST:  # '-': a run from before the pass counters
        v = r[f"{c.key}_mean"]
        extra.append("-" if v is None or math.isnan(v) else (f"{v:.0f}" if c.digits == 0 else f"{v:.{c.digits}g}"))
    return out + [(c, False) for c in [*extra, *tests_cells(b, r), str(r["seeds"])]]


def reference_rows(b: Baselines) -> list[list[str]]:
    out = []
    for (lb, vals), n_far in zip(references(b.ref, b.teachers), support_refs(b.teachers), strict=True):
        cs = [lb] + [""] * (len(b.axes) - 1) + [cells.mean_std(vals[m], None) for m in b.metrics] + [""] * len(b.few)
        cs += [f"{vals[b.primary] / v:.3g}" for v in b.bars.values()] + [n_far] * b.far
        out.append(cs + [""] * (len(columns.TRAIN_COST) + len(tests_header(b)) + 1))
    return out


def caption(b: Baselines) -> str:
    few = " or ".join(k.split("@")[1] for k in b.few)
    return (f"{b.title}. Mean ± std over seeds of metrics on {b.ref.get('num_samples')} samples from the same "
            f"held-out noise (one step unless the column says {few}; '-' where the method has no such "
            f"sampler); lower is better, best in bold. Training cost per run: wall time, the student's optimiser "
            f"steps (every mode and phase of a method counted), aux steps (optimiser steps of the method's own "
            f"networks, e.g. a fake score's updates), teacher network evaluations and the student network's "
            f"forward and backward passes (per sample) spent in training; the one-off teacher pairs that "
            f"pair-trained methods share are not counted. Reference rows: data against data, the teacher's DDIM."
            + (support_caption(b.records[0].get("support_margin")) if b.far else "")
            + (f" {KNOBS}: each method with its defaults and with the values its Optuna study found (tune_baselines:"
               " the same trials and training budget per trial for every method, objective the validation "
               "noise's metric, not this table's noise); a tuned run trains the same optimiser steps as its "
               "default run; '= defaults, reused': the study kept the defaults, so the tuned run is the default "
               "run's training (reused, not repeated; its cost columns are that training's)." if b.tuned else "")
            + tests_caption(b))


def tests_caption(b: Baselines) -> str:
    if not b.baseline:
        return ""
    pm, base = columns.label(b.primary), ", ".join(f"{k.split('.')[-1]} {v}" for k, v in b.baseline.items())
    return (f" {pm} 95% CI (Student t) and paired t-test p of {pm} against the baseline "
            f"({base}) on the same seeds, raw and "
            f"Holm-corrected across the table's methods; TOST p: equivalence with the baseline within "
            f"±{EQUIV_MARGIN:.0%} of its mean; intervals and tests add each run's evaluation variance (eval_sd) "
            f"to the seeds' where the runs carry it.")


def counted_compute(row: dict) -> float | None:
    """Teacher evaluations + student forward + backward passes per sample (the quality-vs-cost plot's x);
    None for a run from before the pass counters."""
    vals = [row[f"{c}_mean"] for c in ("teacher_evals", "student_forwards", "student_backwards")]
    return None if any(v is None or math.isnan(v) for v in vals) else float(sum(vals))


def figure(b: Baselines, summary: pl.DataFrame, plot_path) -> None:
    p = b.primary
    points = [{"label": ", ".join(r[a] if a != KNOBS else r[a].split(" ")[0] for a in b.axes),
               "mean": r[f"{p}_mean"], "std": r[f"{p}_std"], "wall_time_s": r["wall_time_s_mean"],
               "teacher_evals": r["teacher_evals_mean"], "compute": counted_compute(r)} for r in summary.iter_rows(named=True)]
    figures.quality_vs_cost(points, [{"label": lb, "mean": v[p]} for lb, v in references(b.ref, b.teachers)],
                            columns.label(p), plot_path, b.title)


def baselines(run_files, teacher_files, reference_file, axes: list[str], title: str, out_prefix: str | Path,
              plot_path: str | Path, baseline: dict | None = None) -> pl.DataFrame:
    """The baselines table <out_prefix>.{md,tex,csv} (see the module docstring) and the quality-vs-cost plot;
    returns the summary frame."""
    b = gather(run_files, teacher_files, reference_file, axes, title)
    b.baseline = baseline
    summary = tests(b, summary_of(b))
    best = {m: summary[f"{m}_mean"].min() for m in [*b.metrics, *b.few]}
    table = writer.Table(header(b), [row(b, r, best) for r in summary.iter_rows(named=True)], caption(b), "baselines",
                         len(b.axes), reference_rows(b))
    writer.write(out_prefix, table, summary)
    figure(b, summary, plot_path)
    return summary


def build_baselines(spec_path: str | Path, run_files, teacher_files, reference_file, out_prefix: str | Path,
                    plot_path: str | Path) -> pl.DataFrame:
    """The `table: baselines` kind, with the same interface and figures as the ablation table's `build`."""
    spec = load_spec(spec_path)
    summary = baselines(run_files, teacher_files, reference_file, spec["axes"], spec.get("title", spec["name"]),
                        out_prefix, plot_path, spec.get("baseline"))
    records = read_json(run_files)  # a tuned table's figures: its own runs (the default runs have theirs)
    own = [(r, f) for r, f in zip(records, run_files, strict=True) if r.get("ablation") == spec["name"]]
    own = own or list(zip(records, run_files, strict=True))
    run_figures(spec, [r for r, _ in own], [f for _, f in own], plot_path)
    return summary
