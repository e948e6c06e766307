"""Statistics over training seeds and evaluation draws: 95% intervals, paired t-tests, TOST equivalence tests,
Holm's adjustment, per-point summaries.

A run's score carries an evaluation variance (metrics.json `eval_sd`: the spread over (noise, reference) draws,
or the exact metrics' analytic null spread). Intervals and tests add it to the seeds' variance: the standard
error of a point's mean over k seeds is sqrt(s^2 / k + mean(eval_var) / k), s the std over seeds; of a paired
difference, sqrt(s_d^2 / k + (mean(eval_var_a) + mean(eval_var_b)) / k), Student t with k - 1 degrees of
freedom. This treats each run's evaluation error as independent of the others' (conservative where runs share
their noise and the errors partly cancel in a difference).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl


def _mean_var(ev) -> float:
    """The mean evaluation variance of some runs (0 where none is known)."""
    ev = [v for v in (ev or []) if v is not None and not math.isnan(v)]
    return float(np.mean(ev)) if ev else 0.0


def ci95(values: list[float], eval_var: list[float] | None = None) -> tuple[float, float]:
    """Two-sided 95% interval of the mean, Student t with n-1 degrees of freedom (nan for n < 2); `eval_var`:
    each run's evaluation variance, added to the seeds' (module docstring)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return math.nan, math.nan
    m = float(np.mean(values))
    se = math.sqrt((float(np.var(values, ddof=1)) + _mean_var(eval_var)) / n)
    h = float(stats.t.ppf(0.975, n - 1)) * se
    return m - h, m + h


def _paired(values: dict, base: dict, eval_var: dict | None, base_var: dict | None):
    """(mean difference, its standard error, seeds) over the seeds both have, or None for fewer than 2."""
    seeds = sorted(set(values) & set(base))
    if len(seeds) < 2:
        return None
    d = np.array([values[s] - base[s] for s in seeds])
    ev = _mean_var([(eval_var or {}).get(s) for s in seeds]) + _mean_var([(base_var or {}).get(s) for s in seeds])
    return float(d.mean()), math.sqrt((float(np.var(d, ddof=1)) + ev) / len(seeds)), len(seeds)


def paired_p(values: dict[int, float], base: dict[int, float], eval_var: dict | None = None,
             base_var: dict | None = None) -> float:
    """Paired t-test p-value over the seeds both have (nan for fewer than 2 or no variation); `eval_var` /
    `base_var`: {seed: evaluation variance} of each side's runs, added to the differences' variance."""
    from scipy import stats

    got = _paired(values, base, eval_var, base_var)
    if got is None:
        return math.nan
    mean, se, k = got
    if se <= 1e-12:  # no spread in the differences: the t statistic is 0/0 or inf
        return math.nan if abs(mean) <= 1e-12 else 0.0
    return float(2 * stats.t.sf(abs(mean) / se, k - 1))


def tost_p(values: dict[int, float], base: dict[int, float], margin: float, eval_var: dict | None = None,
           base_var: dict | None = None) -> float:
    """Two one-sided tests (paired, over the seeds both have) of equivalence within +-margin: the larger of
    the p-values of H0: d <= -margin and H0: d >= +margin. Below 0.05: the two settings differ by less than
    the margin (at 95%); above: equivalence is not shown (nan for fewer than 2 seeds)."""
    from scipy import stats

    got = _paired(values, base, eval_var, base_var)
    if got is None:
        return math.nan
    mean, se, k = got
    if se <= 1e-12:
        return 0.0 if abs(mean) < margin else 1.0
    return float(max(stats.t.sf((mean + margin) / se, k - 1), stats.t.cdf((mean - margin) / se, k - 1)))


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


def mean_std(runs: pl.DataFrame, axes: list[str], keys: list[str], first: list | None = None) -> pl.DataFrame:
    """Per point (the `axes` values, in first-seen order): `seeds` (the run count), then `<key>_mean` and
    `<key>_std` over seeds of every key; `first`: aggregations put before them."""
    aggs = [pl.len().alias("seeds"), *(first or [])]
    for k in keys:
        aggs += [pl.col(k).mean().alias(f"{k}_mean"), pl.col(k).std().alias(f"{k}_std")]
    return runs.group_by(axes, maintain_order=True).agg(aggs)


EQUIV_MARGIN = 0.10  # TOST margin: +-10% of the baseline point's mean of the headline metric


def summarise(runs: pl.DataFrame, axes: list[str], keys: list[str], primary: str, baseline: dict) -> pl.DataFrame:
    """Per point: seeds, mean/std of each key, 95% interval, paired p (raw and Holm) and TOST p (equivalence
    within EQUIV_MARGIN of the baseline's mean) of the primary metric against the `baseline` point on the same
    seeds, and the `baseline` flag. A `<primary>_eval_var` column of `runs` (each run's evaluation variance)
    enters the intervals and tests (module docstring)."""
    ev = f"{primary}_eval_var"
    if ev not in runs.columns:
        runs = runs.with_columns(pl.lit(None, dtype=pl.Float64).alias(ev))
    s = mean_std(runs, axes, keys, [pl.col("seed").alias("_seeds"), pl.col(primary).alias("_primary"),
                                    pl.col(ev).alias("_ev")])
    match = [all(r[a] == str(v) for a, v in baseline.items()) for r in s.iter_rows(named=True)]
    base_row = [r for r, m in zip(s.iter_rows(named=True), match, strict=True) if m]
    is_base = [bool(base_row) and m for m in match]
    per = lambda r, k: dict(zip(r["_seeds"], r[k], strict=True))  # noqa: E731
    base, base_ev = (per(base_row[0], "_primary"), per(base_row[0], "_ev")) if base_row else ({}, {})
    margin = EQUIV_MARGIN * abs(float(np.mean(list(base.values())))) if base else math.nan
    lo, hi, p, tost = [], [], [], []
    for r, b in zip(s.iter_rows(named=True), is_base, strict=True):
        ci = ci95(r["_primary"], r["_ev"])
        lo.append(ci[0])
        hi.append(ci[1])
        skip = b or not base
        p.append(math.nan if skip else paired_p(per(r, "_primary"), base, per(r, "_ev"), base_ev))
        tost.append(math.nan if skip else tost_p(per(r, "_primary"), base, margin, per(r, "_ev"), base_ev))
    eval_sd = [math.sqrt(_mean_var(r["_ev"])) if _mean_var(r["_ev"]) else math.nan for r in s.iter_rows(named=True)]
    return s.drop("_seeds", "_primary", "_ev").with_columns(
        pl.Series(f"{primary}_ci_lo", lo), pl.Series(f"{primary}_ci_hi", hi),
        pl.Series(f"{primary}_p_vs_baseline", p, dtype=pl.Float64),
        pl.Series(f"{primary}_p_holm", holm(p), dtype=pl.Float64),
        pl.Series(f"{primary}_tost", tost, dtype=pl.Float64), pl.Series(f"{primary}_eval_sd", eval_sd, dtype=pl.Float64),
        pl.lit(margin).alias(f"{primary}_tost_margin"), pl.Series("baseline", is_base))
