"""Statistics over training seeds: 95% intervals, paired t-tests, Holm's adjustment, per-point summaries."""

from __future__ import annotations

import math

import numpy as np
import polars as pl


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


def mean_std(runs: pl.DataFrame, axes: list[str], keys: list[str], first: list | None = None) -> pl.DataFrame:
    """Per point (the `axes` values, in first-seen order): `seeds` (the run count), then `<key>_mean` and
    `<key>_std` over seeds of every key; `first`: aggregations put before them."""
    aggs = [pl.len().alias("seeds"), *(first or [])]
    for k in keys:
        aggs += [pl.col(k).mean().alias(f"{k}_mean"), pl.col(k).std().alias(f"{k}_std")]
    return runs.group_by(axes, maintain_order=True).agg(aggs)


def summarise(runs: pl.DataFrame, axes: list[str], keys: list[str], primary: str, baseline: dict) -> pl.DataFrame:
    """Per point: seeds, mean/std of each key, 95% interval and paired p (raw and Holm) of the primary metric
    against the `baseline` point on the same seeds, and the `baseline` flag."""
    s = mean_std(runs, axes, keys, [pl.col("seed").alias("_seeds"), pl.col(primary).alias("_primary")])
    match = [all(r[a] == str(v) for a, v in baseline.items()) for r in s.iter_rows(named=True)]
    base_row = [r for r, m in zip(s.iter_rows(named=True), match, strict=True) if m]
    is_base = [bool(base_row) and m for m in match]
    base = dict(zip(base_row[0]["_seeds"], base_row[0]["_primary"], strict=True)) if base_row else {}
    lo, hi, p = [], [], []
    for r, b in zip(s.iter_rows(named=True), is_base, strict=True):
        ci = ci95(r["_primary"])
        lo.append(ci[0])
        hi.append(ci[1])
        p.append(math.nan if b or not base else paired_p(dict(zip(r["_seeds"], r["_primary"], strict=True)), base))
    return s.drop("_seeds", "_primary").with_columns(
        pl.Series(f"{primary}_ci_lo", lo), pl.Series(f"{primary}_ci_hi", hi),
        pl.Series(f"{primary}_p_vs_baseline", p, dtype=pl.Float64),
        pl.Series(f"{primary}_p_holm", holm(p), dtype=pl.Float64), pl.Series("baseline", is_base))
