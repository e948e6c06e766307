"""Paper tables from stored metrics.json files alone (polars): Markdown, LaTeX booktabs, CSV, plots.

Per ablation: one row per point, mean ± std over seeds of every metric, a 95% interval of the
headline metric (Student t over seeds), and a paired t-test of the headline metric against the
ablation's baseline point on the same seeds (its p-value in a column); the best mean of each metric
in bold; reference rows (data floor, teacher DDIM at each step count); the seeds and sample count in
the caption. The CSV holds the same rows (kind = run | reference) and feeds the main table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from onestep import plots
from onestep.config import plain_ddim

METRIC_MD = {"swd": "SWD", "fd": "FD", "mmd": "MMD²", "fid": "FID", "kid": "KID"}
COST = ("wall_time_s", "teacher_evals", "steps")
STAGES = ("traj_err", "mean_err")  # per-stage evaluation (curriculum runs): mean over stages of the RMS errors
STAGE_STEPS = "evaluated_stage_steps"  # curriculum: optimiser steps that trained the evaluated stage (method_report)
SUPPORT = "out_of_support"  # 2-D: samples outside the data's bounding box plus a margin (evaluate.out_of_support)



def pairs_row(t: dict) -> bool:
    """A teacher row of the pairs' own solver (teacher-eval --solver / --clip-x0), not a plain DDIM row."""
    return not plain_ddim(t.get("solver"), t.get("clip_x0"))


def teacher_label(t: dict) -> str:
    """A teacher reference row's label: 'teacher DDIM 50 steps', or the pairs' solver row's own label."""
    return t["label"] if pairs_row(t) else f"teacher DDIM {t['steps']} step{'s' * (t['steps'] > 1)}"

def read_json(paths) -> list[dict]:
    out = []
    for p in paths:
        with open(p) as f:
            out.append(json.load(f))
    return out


def setting(point: dict, axes: list[str]) -> str:
    return ", ".join(f"{a.split('.')[-1]}={point[a]}" for a in axes)


def collect(records: list[dict], axes: list[str]) -> pl.DataFrame:
    """One row per run (its metrics.json): point values, seed, metrics, training cost."""
    rows = [{**{a: str(r["point"][a]) for a in axes}, "seed": r["seed"], **r["metrics"],
             **{c: float(r["train"].get(c, float("nan"))) for c in COST},
             **{c: float((r.get("stages") or {}).get(c, float("nan"))) for c in STAGES},
             SUPPORT: float(r.get(SUPPORT, float("nan"))),
             STAGE_STEPS: float((r.get("method_report") or {}).get(STAGE_STEPS, float("nan")))} for r in records]
    return pl.DataFrame(rows)


def ci95(values: list[float]) -> tuple[float, float]:
    """Two-sided 95% interval of the mean, Student t with n-1 degrees of freedom (nan for n < 2)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return math.nan, math.nan
    m, se = float(np.mean(values)), float(np.std(values, ddof=1)) / math.sqrt(n)
    h = float(stats.t.ppf(0.975, n - 1)) * se
    return m - h, m + h


def paired_p(values: dict[int, float], base: dict[int, float]) -> float:
    """Paired t-test p-value over the seeds both have (nan for fewer than 2 or no variation)."""
    from scipy import stats

    seeds = sorted(set(values) & set(base))
    if len(seeds) < 2:
        return math.nan
    a, b = np.array([values[s] for s in seeds]), np.array([base[s] for s in seeds])
    d = a - b
    if np.allclose(d, d.mean(), rtol=0, atol=1e-12):  # no spread in the differences: the t statistic is 0/0 or inf
        return math.nan if abs(d.mean()) <= 1e-12 else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment over the m non-nan p-values of one family (the points of an ablation
    against its baseline): sorted p_(1) <= .. <= p_(m), adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j));
    nan stays nan, the order of the input is kept."""
    idx = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    m, out, running = len(idx), [math.nan] * len(pvalues), 0.0
    for j, i in enumerate(idx):
        running = max(running, min(1.0, (m - j) * pvalues[i]))
        out[i] = running
    return out


def summarise(runs: pl.DataFrame, axes: list[str], metrics: list[str], primary: str, baseline: dict) -> pl.DataFrame:
    """Per point: seeds, mean/std of each metric and cost, 95% interval and paired p of the primary metric."""
    aggs = [pl.len().alias("seeds"), pl.col("seed").alias("_seeds"), pl.col(primary).alias("_primary")]
    for m in [*metrics, *COST, *[c for c in (*STAGES, SUPPORT, STAGE_STEPS) if c in runs.columns]]:
        aggs += [pl.col(m).mean().alias(f"{m}_mean"), pl.col(m).std().alias(f"{m}_std")]
    s = runs.group_by(axes, maintain_order=True).agg(aggs)
    base_row = [r for r in s.iter_rows(named=True) if all(r[a] == str(v) for a, v in baseline.items())]
    base = dict(zip(base_row[0]["_seeds"], base_row[0]["_primary"], strict=True)) if base_row else {}
    lo, hi, p, is_base = [], [], [], []
    for r in s.iter_rows(named=True):
        ci = ci95(r["_primary"])
        lo.append(ci[0])
        hi.append(ci[1])
        is_base.append(bool(base_row) and r is not None and all(r[a] == str(v) for a, v in baseline.items()))
        p.append(math.nan if is_base[-1] or not base else paired_p(dict(zip(r["_seeds"], r["_primary"], strict=True)), base))
    return s.drop("_seeds", "_primary").with_columns(
        pl.Series(f"{primary}_ci_lo", lo), pl.Series(f"{primary}_ci_hi", hi),
        pl.Series(f"{primary}_p_vs_baseline", p, dtype=pl.Float64),
        pl.Series(f"{primary}_p_holm", holm(p), dtype=pl.Float64), pl.Series("baseline", is_base))


def _present(runs: pl.DataFrame, col: str) -> bool:
    """Some run has the column (a NaN where a run lacks it: per-stage errors, support counts, stage steps)."""
    return not all(math.isnan(v) for v in runs[col].to_list())


def support_header(n) -> str:
    return f"outside support (of {n})"


def support_caption(margin) -> str:
    return (f" outside support: samples outside the data's bounding box widened by {margin} of its extent on each "
            "side, mean over seeds (a few such samples decide a W2 metric at large N).")


def support_refs(teachers: list[dict]) -> list[str]:
    """The reference rows' outside-support cells: none for the floor (its draws are data), each teacher's count."""
    return [""] + [_num(t.get(SUPPORT, math.nan), 6) for t in teachers]


def _num(v: float, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}g}"


def _fmt(mean: float, std: float | None, digits: int = 4) -> str:
    s = _num(mean, digits)
    return s if s == "-" or std is None or math.isnan(std) else f"{s} ± {std:.2g}"


def _p(p: float, baseline: bool) -> str:
    return "baseline" if baseline else ("-" if math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001"))


def render(header: list[str], body: list[list[tuple[str, bool]]], refs: list[list[str]], caption: str, n_left: int,
           label: str) -> tuple[str, str]:
    """(Markdown, LaTeX booktabs table for \\input{}); body cells are (text, bold)."""
    md = [f"**{caption}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(f"**{c}**" if b else c for c, b in r) + " |" for r in body]
    md += ["| " + " | ".join(f"*{c}*" if c else "" for c in r) + " |" for r in refs]

    def esc(s) -> str:
        s = str(s).replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$").replace("²", "$^2$")
        return s.replace("<", r"$<$").replace("λ", r"$\lambda$")

    tex = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{esc(caption)}}}", f"\\label{{tab:{label}}}",
           r"\begin{tabular}{" + "l" * n_left + "r" * (len(header) - n_left) + "}", r"\toprule",
           " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
    tex += [" & ".join(f"\\textbf{{{esc(c)}}}" if b else esc(c) for c, b in r) + r" \\" for r in body]
    if refs:
        tex += [r"\midrule"] + [" & ".join(esc(c) for c in r) + r" \\" for r in refs]
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(md) + "\n", "\n".join(tex) + "\n"


def load_spec(path: str | Path) -> dict:
    with open(path) as f:
        spec = yaml.safe_load(f)
    from onestep.config import grid_points

    spec["points"] = grid_points(spec, str(path))
    spec["axes"] = list(spec["points"][0])
    return spec


def build(spec_path: str | Path, run_files, teacher_files, reference_file, out_prefix: str | Path,
          plot_path: str | Path) -> pl.DataFrame:
    """Write <out_prefix>.{md,tex,csv} and the ablation's figures next to `plot_path`; return the summary."""
    spec = load_spec(spec_path)
    name, axes, title = spec["name"], spec["axes"], spec.get("title", spec["name"])
    records = read_json(run_files)
    runs = collect(records, axes)
    ref = read_json([reference_file])[0]
    teachers = sorted(read_json(teacher_files), key=lambda r: r["steps"])
    primary = records[0]["primary"]
    metrics = sorted(ref["floor"], key=lambda m: (m != primary, m))  # headline metric first
    order = [tuple(str(p[a]) for a in axes) for p in spec["points"]]
    summary = summarise(runs, axes, metrics, primary, spec.get("baseline") or {})
    position = [order.index(tuple(r[a] for a in axes)) for r in summary.iter_rows(named=True)]
    summary = summary.with_columns(pl.Series("_o", position)).sort("_o").drop("_o")  # the spec's point order
    plain = [t for t in teachers if not pairs_row(t)]  # the DDIM rows: the ratio's reference
    t50 = next((t for t in plain if t["steps"] == 50), plain[-1] if plain else None)
    ratio = f"{primary}_ratio_to_teacher_{t50['steps']}" if t50 else None
    if t50:
        summary = summary.with_columns((pl.col(f"{primary}_mean") / t50["metrics"][primary]).alias(ratio))

    refs = [("data vs data (floor)", ref["floor"])]
    refs += [(teacher_label(t), t["metrics"]) for t in teachers]
    csv = summary.with_columns(pl.lit("run").alias("kind"), pl.lit(name).alias("ablation"),
                               pl.lit(title).alias("title"), pl.lit(primary).alias("primary"),
                               pl.Series("setting", [setting(r, axes) for r in summary.iter_rows(named=True)]),
                               pl.lit(records[0].get("num_samples", ref.get("num_samples"))).alias("samples"))
    ref_df = pl.DataFrame([{"kind": "reference", "setting": label, "ablation": name, "title": title, "primary": primary,
                            **{f"{m}_mean": float(v[m]) for m in metrics}} for label, v in refs])
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    pl.concat([csv, ref_df], how="diagonal_relaxed").write_csv(out_prefix.with_suffix(".csv"))

    best = {m: summary[f"{m}_mean"].min() for m in metrics}
    pm = METRIC_MD[primary]
    staged = _present(runs, "traj_err")  # curriculum runs with per-stage errors
    header = [a.split(".")[-1] for a in axes] + [pm, f"{pm} 95% CI", "p vs baseline", "p (Holm)"]
    header += ["traj. err (mean over t_k)"] if staged else []
    header += [METRIC_MD[m] for m in metrics[1:]] + ([f"{pm} / teacher-{t50['steps']}"] if t50 else [])
    far = _present(runs, SUPPORT)  # 2-D: samples outside the data's support
    recency = _present(runs, STAGE_STEPS)  # curriculum: steps on the evaluated stage
    header += [support_header(records[0].get("num_samples"))] * far
    header += ["optimiser steps that trained the evaluated stage"] * recency + ["train s", "teacher evals", "seeds"]
    body = []
    for r in summary.iter_rows(named=True):
        cells = [(r[a], False) for a in axes]
        cells.append((_fmt(r[f"{primary}_mean"], r[f"{primary}_std"]), r[f"{primary}_mean"] == best[primary]))
        cells.append((f"[{_num(r[f'{primary}_ci_lo'])}, {_num(r[f'{primary}_ci_hi'])}]", False))
        cells.append((_p(r[f"{primary}_p_vs_baseline"], r["baseline"]), False))
        cells.append((_p(r[f"{primary}_p_holm"], r["baseline"]), False))
        cells += [(_fmt(r["traj_err_mean"], r["traj_err_std"]), False)] if staged else []
        cells += [(_fmt(r[f"{m}_mean"], r[f"{m}_std"]), r[f"{m}_mean"] == best[m]) for m in metrics[1:]]
        cells += [(f"{r[ratio]:.3g}", False)] if t50 else []
        cells += [(_fmt(r[f"{SUPPORT}_mean"], r[f"{SUPPORT}_std"], 3), False)] * far
        cells += [(_num(r[f"{STAGE_STEPS}_mean"]), False)] * recency
        cells += [(f"{r['wall_time_s_mean']:.0f}", False), (_num(r["teacher_evals_mean"], 3), False), (str(r["seeds"]), False)]
        body.append(cells)
    ref_rows = []
    for (label, vals), n_far in zip(refs, support_refs(teachers), strict=True):
        cells = [label] + [""] * (len(axes) - 1) + [_num(vals[primary]), "", "", ""] + [""] * staged
        cells += [_num(vals[m]) for m in metrics[1:]]
        cells += [f"{vals[primary] / t50['metrics'][primary]:.3g}"] if t50 else []
        ref_rows.append(cells + [n_far] * far + [""] * recency + ["", "", ""])
    n_seeds = sorted(set(summary["seeds"].to_list()))
    n = records[0].get("num_samples", ref.get("num_samples"))
    caption = (f"{title}. Mean ± std over {'/'.join(map(str, n_seeds))} seeds of metrics on {n} "
               f"one-step samples from the same held-out noise; lower is better, best in bold. "
               f"{pm} 95% CI: Student t over seeds; p: paired t-test of {pm} against the baseline "
               f"({setting(spec.get('baseline') or {}, list(spec.get('baseline') or {}))}) on the same seeds, "
               f"uncorrected and Holm-corrected across the {summary.height - 1} non-baseline points of this ablation. "
               f"Reference rows: {floor_caption(ref, primary)}, and the teacher's DDIM sampler. Intervals and "
               f"p-values are over training seeds only: they are conditional on one held-out noise set and one "
               f"reference sample (the floor's spread shows what another evaluation draw would move)."
               + (support_caption(records[0].get("support_margin")) if far else "")
               + (" Optimiser steps that trained the evaluated stage: each step counted by the share of its "
                  "batch on stage K (t = 0), from the schedule (method.consolidation adds N/K)." if recency else "")
               + (" traj. err: RMS per coordinate of G(z, t_k) against the teacher's DDIM state x_{t_k}(z), "
                  "mean over the K stages, on the held-out stage noise (figure _stages)." if staged else "")
               + (f" {spec['caption']}" if spec.get("caption") else ""))
    if "features" in ref:  # images: the feature network (and clean-fid mode) behind FID / KID
        caption += (f" FID and KID of {n} samples per row against the statistics of the {ref.get('num_samples')} "
                    f"training images; features: {ref.get('feature_label', ref['features'])}"
                    + (f", clean-fid mode {ref['fid_mode']}" if "fid_mode" in ref else "") + ".")
    md, tex = render(header, body, ref_rows, caption, len(axes), name)
    out_prefix.with_suffix(".md").write_text(md)
    out_prefix.with_suffix(".tex").write_text(tex)

    figure(spec, summary, runs, refs, primary, plot_path)
    run_figures(spec, records, run_files, plot_path)
    stage_figure(spec, records, plot_path)
    return summary


def floor_caption(ref: dict, primary: str) -> str:
    """What the floor row is, from reference.json: draws, their size, the reference, the spread."""
    pm = METRIC_MD[primary]
    n, reps = ref.get("floor_samples", ref.get("num_samples")), ref.get("floor_repeats", 1)
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
    plots.stage_errors(lines, f"{stem}_stages.png", f"{spec.get('title', spec['name'])}: per-stage error")


def run_figures(spec: dict, records: list[dict], run_files, plot_path: str | Path) -> None:
    """<stem>_curves.png (training curves of each point) and <stem>_samples.png (its samples), lowest seed."""
    axes, title = spec["axes"], spec.get("title", spec["name"])
    seed = min(r["seed"] for r in records)
    run_dirs = {tuple(str(r["point"][a]) for a in axes): Path(f).parent for r, f in zip(records, run_files, strict=True)
                if r["seed"] == seed}
    order = [tuple(str(p[a]) for a in axes) for p in spec["points"]]
    labelled = [(setting(dict(zip(axes, k, strict=True)), axes), run_dirs[k]) for k in order if k in run_dirs]
    stem = str(plot_path)[: -len(".png")]
    plots.curves_grid([(lab, d / "train_log.csv") for lab, d in labelled], f"{stem}_curves.png", f"{title}: training")
    plots.samples_side_by_side([(lab, d / "samples.png") for lab, d in labelled], f"{stem}_samples.png",
                               f"{title}: one-step samples (seed {seed})")


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
    ref_rows = [{"label": label, "mean": vals[primary]} for label, vals in refs]
    title = spec.get("title", spec["name"])
    if kind == "line" and numeric:
        xs = [float(r["x"]) for r in rows]
        log_x = plot.get("log_x", min(x for x in xs if x > 0) * 10 <= max(xs))
        plots.line(rows, ref_rows, METRIC_MD[primary], axes[0].split(".")[-1], path, title, log_x)
    else:
        plots.ablation(rows, ref_rows, METRIC_MD[primary], path, title)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def build_main(csv_files, out_prefix: str | Path, plot_path: str | Path) -> pl.DataFrame:
    """The main table: per ablation, its baseline and its best point (headline metric), with intervals and p."""
    frames = [pl.read_csv(f, infer_schema_length=None) for f in csv_files]
    rows, refs, primary = [], None, frames[0]["primary"][0]
    for df in frames:
        run = df.filter(pl.col("kind") == "run")
        best = run.sort(f"{primary}_mean").head(1)
        base = run.filter(pl.col("baseline"))
        for label, r in (("baseline", base), ("best", best)):
            if r.height:
                rows.append({**r.row(0, named=True), "which": label})
        refs = refs if refs is not None else df.filter(pl.col("kind") == "reference")
    main = pl.DataFrame(rows, infer_schema_length=None)
    out_prefix = Path(out_prefix)
    main.write_csv(out_prefix.with_suffix(".csv"))
    pm = METRIC_MD[primary]
    best_val = main[f"{primary}_mean"].min()
    staged = "traj_err_mean" in main.columns
    holm_col = f"{primary}_p_holm" in main.columns
    header = ["ablation", "setting", "", pm, f"{pm} 95% CI", "p vs baseline", *["p (Holm)"] * holm_col,
              *["traj. err"] * staged, "train s", "seeds"]
    entries = _dedup(main)  # when the baseline is the best point: one row
    body = [[(r["ablation"], False), (r["setting"], False), ("baseline" if r["baseline"] else "best", False),
             (_fmt(r[f"{primary}_mean"], r[f"{primary}_std"]), r[f"{primary}_mean"] == best_val),
             (f"[{_num(r[f'{primary}_ci_lo'])}, {_num(r[f'{primary}_ci_hi'])}]", False),
             (_p(r[f"{primary}_p_vs_baseline"], r["baseline"]), False),
             *[(_p(r.get(f"{primary}_p_holm"), r["baseline"]), False)] * holm_col,
             *[(_fmt(r.get("traj_err_mean"), r.get("traj_err_std")), False)] * staged,
             (f"{r['wall_time_s_mean']:.0f}", False), (str(r["seeds"]), False)] for r in entries]
    ref_rows = [[r["setting"], "", "", _num(r[f"{primary}_mean"]), "", "", *[""] * (holm_col + staged), "", ""]
                for r in refs.iter_rows(named=True)]
    caption = (f"Curriculum Trajectory Matching: the baseline and the best point of each ablation. Mean ± std over "
               f"seeds of {pm} on {main['samples'][0]} one-step samples; 95% CI (Student t) and paired t-test p-value "
               f"against each ablation's baseline on the same seeds, uncorrected and Holm-corrected across the "
               f"points of that ablation; best in bold. The 'best' rows were selected post hoc, after seeing the "
               f"results (the lowest mean of each ablation), a selection no p-value here corrects for.")
    md, tex = render(header, body, ref_rows, caption, 3, "main")
    out_prefix.with_suffix(".md").write_text(md)
    out_prefix.with_suffix(".tex").write_text(tex)
    plots.main([{"label": f"{r['ablation']}\n{r['setting']}", "mean": r[f"{primary}_mean"], "std": r[f"{primary}_std"],
                 "lo": r[f"{primary}_ci_lo"], "hi": r[f"{primary}_ci_hi"], "baseline": r["baseline"]} for r in entries],
               [{"label": r["setting"], "mean": r[f"{primary}_mean"]} for r in refs.iter_rows(named=True)], pm, plot_path)
    return main


def _dedup(main: pl.DataFrame) -> list[dict]:
    out, seen = [], set()
    for r in main.iter_rows(named=True):
        if (r["ablation"], r["setting"]) not in seen:
            seen.add((r["ablation"], r["setting"]))
            out.append(r)
    return out
# ---------------------------------------------------------------- baselines: quality and training cost per method

BASELINE_COST = {"wall_time_s": "train s", "steps": "optimiser steps", "teacher_evals": "teacher evals",
                 "student_forwards": "student fwd", "student_backwards": "student bwd", "params": "params"}


KNOBS = "knobs"  # the column of a tuned table: "default", or "tuned (knob value, ...)"


def knobs_label(tuned: dict | None, reused: bool = False) -> str:
    """A run's knobs as a tuned table shows them: 'default', or 'tuned (lambda 0.31, student.lr 0.0007)', with
    ' = defaults, reused' when its study kept the defaults and the run reused the default run's training."""
    if not tuned:
        return "default"
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ("tuned (" + ", ".join(f"{k} {fmt(v)}" for k, v in tuned["values"].items()) + ")"
            + (" = defaults, reused" if reused else ""))


def collect_costs(records: list[dict], axes: list[str], few: list[str]) -> pl.DataFrame:
    """One row per run: grid values, seed, one-step metrics, few-step metrics (null where the method has
    no such sampler) and the training costs of train.json."""
    rows = []
    for r in records:
        ms = r.get("multistep") or {}
        rows.append({**{a: str(r["point"][a]) for a in axes}, "seed": r["seed"], **r["metrics"],
                     **{k: ms.get(k) for k in few}, **{c: float(r["train"].get(c, float("nan"))) for c in BASELINE_COST},
                     SUPPORT: float(r.get(SUPPORT, float("nan")))})
    schema = {k: (pl.Float64 if k not in axes and k != "seed" else None) for k in rows[0]}
    return pl.DataFrame(rows, schema_overrides={k: v for k, v in schema.items() if v is not None})


def baselines(run_files, teacher_files, reference_file, axes: list[str], title: str, out_prefix: str | Path,
              plot_path: str | Path) -> pl.DataFrame:
    """The baselines table (ablation `table: baselines`): per method, one-step quality, the primary metric
    at 2 and 4 steps where the method samples so, ratios to the teacher's 1- and 50-step DDIM, and the
    training cost (wall time, optimiser steps, teacher evaluations in training, parameters); teacher rows.
    Writes <out_prefix>.{md,tex,csv} and the quality-vs-cost plot; returns the summary frame."""
    records = read_json(run_files)
    ref = read_json([reference_file])[0]
    teachers = sorted(read_json(teacher_files), key=lambda r: r["steps"])
    primary = records[0]["primary"]
    metrics = sorted(ref["floor"], key=lambda m: (m != primary, m))
    few = [f"{primary}@{n}" for n in (2, 4)]
    tuned = any(r.get("tuned") for r in records)
    if tuned:  # a `tuned:` ablation's table: its runs next to the default runs they repeat, a row each per method
        records = [{**r, "point": {**r["point"], KNOBS: knobs_label(r.get("tuned"), bool(r["train"].get("reused_from")))}}
                   for r in records]
        axes = [*axes, KNOBS]
    runs = collect_costs(records, axes, few)
    aggs = [pl.len().alias("seeds")]
    for m in [*metrics, *few, *BASELINE_COST, SUPPORT]:
        aggs += [pl.col(m).mean().alias(f"{m}_mean"), pl.col(m).std().alias(f"{m}_std")]
    summary = runs.group_by(axes, maintain_order=True).agg(aggs)
    far = _present(runs, SUPPORT)  # 2-D: samples outside the data's support
    if tuned:  # per method in the grid's order: defaults, then tuned
        first = {}
        for r in records:
            first.setdefault(str(r["point"][axes[0]]), len(first))
        summary = summary.with_columns(
            pl.col(axes[0]).replace_strict(first, return_dtype=pl.Int64).alias("_o"),
            (pl.col(KNOBS) != "default").alias("_t")).sort(["_o", "_t"]).drop(["_o", "_t"])
    bars = {t["steps"]: t["metrics"][primary] for t in teachers if t["steps"] in (1, 50) and not pairs_row(t)}
    for n, v in bars.items():
        summary = summary.with_columns((pl.col(f"{primary}_mean") / v).alias(f"{primary}_ratio_to_teacher_{n}"))
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    summary.write_csv(out_prefix.with_suffix(".csv"))

    best = {m: summary[f"{m}_mean"].min() for m in [*metrics, *few]}
    name = METRIC_MD[primary]
    header = [*[a.split(".")[-2 if a == "method.name" else -1] for a in axes], *[METRIC_MD[m] for m in metrics],
              f"{name} 2 steps", f"{name} 4 steps"]
    header += [f"{name} / DDIM-{n}" for n in bars] + [support_header(ref.get("num_samples"))] * far
    header += [*BASELINE_COST.values(), "seeds"]
    body = []
    for row in summary.iter_rows(named=True):
        cells = [(row[a], row[a]) for a in axes]
        for m in [*metrics, *few]:
            c = _fmt(row[f"{m}_mean"], row[f"{m}_std"])
            top = row[f"{m}_mean"] is not None and row[f"{m}_mean"] == best[m]
            cells.append((f"**{c}**", f"\\textbf{{{c}}}") if top else (c, c))
        extra = [f"{row[f'{primary}_ratio_to_teacher_{n}']:.3g}" for n in bars]
        extra += [f"{row[f'{SUPPORT}_mean']:.3g}"] * far
        extra += [f"{row['wall_time_s_mean']:.0f}", f"{row['steps_mean']:.0f}", f"{row['teacher_evals_mean']:.3g}",
                  *("-" if row[f"{c}_mean"] is None or math.isnan(row[f"{c}_mean"]) else f"{row[f'{c}_mean']:.3g}"
                    for c in ("student_forwards", "student_backwards")),  # '-': a run from before the counters
                  f"{row['params_mean']:.0f}", str(row["seeds"])]  # BASELINE_COST's order, then seeds
        body.append(cells + [(c, c) for c in extra])
    refs = [("data vs data (floor)", ref["floor"])] + [
        (teacher_label(t), t["metrics"]) for t in teachers]
    for (label, vals), out in zip(refs, support_refs(teachers), strict=True):
        cells = [label] + [""] * (len(axes) - 1) + [_fmt(vals[m], None) for m in metrics] + ["", ""]
        cells += [f"{vals[primary] / v:.3g}" for v in bars.values()] + [out] * far + [""] * (len(BASELINE_COST) + 1)
        body.append([(f"*{c}*" if c else "", c) for c in cells])

    caption = (f"{title}. Mean ± std over seeds of metrics on {ref.get('num_samples')} samples from the same "
               f"held-out noise (one step unless the column says 2 or 4; '-' where the method has no such "
               f"sampler); lower is better, best in bold. Training cost per run: wall time, optimiser steps, "
               f"teacher network evaluations (per sample) spent in training; the one-off teacher pairs that "
               f"pair-trained methods share are not counted. Reference rows: data against data, the teacher's DDIM."
               + (support_caption(records[0].get("support_margin")) if far else "")
               + (f" {KNOBS}: each method with its defaults and with the values its Optuna study found (tune_baselines:"
                  " the same trials and training budget per trial for every method, objective the validation "
                  "noise's metric, not this table's noise); a tuned run trains the same optimiser steps as its "
                  "default run; '= defaults, reused': the study kept the defaults, so the tuned run is the default "
                  "run's training (reused, not repeated; its cost columns are that training's)." if tuned else ""))
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

    points = [{"label": ", ".join(row[a] if a != KNOBS else row[a].split(" ")[0] for a in axes),
               "mean": row[f"{primary}_mean"], "std": row[f"{primary}_std"],
               "wall_time_s": row["wall_time_s_mean"], "teacher_evals": row["teacher_evals_mean"],
               "compute": counted_compute(row)}
              for row in summary.iter_rows(named=True)]
    plots.quality_vs_cost(points, [{"label": lb, "mean": v[primary]} for lb, v in refs], name, plot_path, title)
    return summary


def counted_compute(row: dict) -> float | None:
    """Teacher evaluations + student forward + backward passes per sample (the quality-vs-cost plot's x);
    None for a run from before the pass counters."""
    vals = [row[f"{c}_mean"] for c in ("teacher_evals", "student_forwards", "student_backwards")]
    return None if any(v is None or math.isnan(v) for v in vals) else float(sum(vals))


def build_baselines(spec_path: str | Path, run_files, teacher_files, reference_file, out_prefix: str | Path,
                    plot_path: str | Path) -> pl.DataFrame:
    """The `table: baselines` kind, with the same interface and figures as `build`."""
    spec = load_spec(spec_path)
    summary = baselines(run_files, teacher_files, reference_file, spec["axes"], spec.get("title", spec["name"]),
                        out_prefix, plot_path)
    records = read_json(run_files)  # a tuned table's figures: its own runs (the default runs have theirs)
    own = [(r, f) for r, f in zip(records, run_files, strict=True) if r.get("ablation") == spec["name"]]
    own = own or list(zip(records, run_files, strict=True))
    run_figures(spec, [r for r, _ in own], [f for _, f in own], plot_path)
    return summary


TABLES = {"default": build, "baselines": build_baselines}  # picked by the ablation's optional `table:` key
