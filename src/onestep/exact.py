"""Exact-density metrics of the 2-D datasets: samples counted against the data's closed-form density.

Each 2-D dataset of data.TOY has its density written here as the probabilities `pi` of a grid of square bins
(`Bins`): the checkerboard exactly (1/8 on the 8 filled unit squares, 0 elsewhere; m x m bins per square, so
every bin is wholly in or out of the support); the eight Gaussians exactly (products of normal CDF
differences); the swiss roll and the moons by exact numerical integration of their Gaussian noise along the
curve (midpoint rule on the curve parameter, 20000 nodes). From the counts c_b of n samples:

- off_support: the share of samples in bins of no data mass (pi_b < SUPPORT_TOL; the checkerboard's empty
  squares and everything off the board) and off the grid. Its floor (`_floor`) is the density's own mass there:
  0 on the checkerboard; its null spread sqrt(p (1 - p) / n).
- tv: total variation 1/2 sum_b |c_b / n - pi_b| (the off-grid mass one bin). Its floor is its exact mean for n
  samples of the density, (1 / 2n) sum_b E|c_b - n pi_b| (de Moivre's closed form of the binomial mean
  absolute deviation, `binomial_mad`); its null spread treats the bins as independent.
- chi2: the unbiased chi-square of the samples in the support against pi restricted to it,
  sum_b c_b (c_b - 1) / (n_s (n_s - 1) pi_b) - 1 (n_s samples in the support), null mean 0 and spread
  sqrt(2 (M - 1)) / n_s over M support bins. It sees the shape inside the support (blur), off_support the rest.
- eight Gaussians: mode_dev, the largest |mass - 1/8| of the 8 modes (each sample to its nearest centre, an
  angular sector), and mode_p, the p-value of the multinomial (Pearson, 7 degrees of freedom) test of 1/8 each.

`exact_metrics(name, samples)` is the one entry point; `null(name, n)` gives the floors and spreads alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SUPPORT_TOL = 1e-9  # a bin with less data mass than this is off the support
BINS_PER_CELL = 8  # m: bins per cell side (the checkerboard's cell: a unit square; the others: 0.4)
CURVE_NODES = 20000
EIGHT_SIGMA, CURVE_NOISE = 0.1, 0.05  # data.eight_gaussians' std, data.swiss_roll / moons' noise


@dataclass(frozen=True)
class Bins:
    """A square grid of side `side` bins from `lo` (both coordinates), bin width `width`, data mass `pi`
    (side * side, row-major in (x, y)); the mass off the grid is 1 - pi.sum()."""

    lo: float
    width: float
    side: int
    pi: np.ndarray

    @property
    def support(self) -> np.ndarray:
        return self.pi >= SUPPORT_TOL

    @property
    def off_grid(self) -> float:
        return max(0.0, 1.0 - float(self.pi.sum()))

    def counts(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Counts per bin of samples x (n, 2) and the count off the grid (NaN and inf included)."""
        idx = np.floor((np.asarray(x, dtype=np.float64) - self.lo) / self.width)  # (n, 2)
        inside = np.isfinite(idx).all(1) & (idx >= 0).all(1) & (idx < self.side).all(1)
        flat = (idx[inside, 0] * self.side + idx[inside, 1]).astype(np.int64)
        return np.bincount(flat, minlength=self.side * self.side), int(len(x) - inside.sum())


def _edges(lo: float, width: float, side: int) -> np.ndarray:
    return lo + width * np.arange(side + 1)


def checkerboard(m: int) -> Bins:
    """data.checkerboard: column c = floor(x + 2), row r = floor(y + 2) filled iff r + c is even."""
    side = 4 * m
    cell = np.arange(side) // m  # (side,) the cell index of each bin
    filled = (cell[:, None] + cell[None, :]) % 2 == 0
    return Bins(-2.0, 1.0 / m, side, np.where(filled, 1.0 / (8 * m * m), 0.0).ravel())


def _gauss_bins(cx: np.ndarray, cy: np.ndarray, std: float, lo: float, width: float, side: int) -> np.ndarray:
    """Mean over centres (cx_j, cy_j) of the bin masses of N((cx_j, cy_j), std^2 I): (side * side,)."""
    from scipy.special import ndtr  # here, not at import: the workflow's parse reads this module's names (1.5 s)

    e = _edges(lo, width, side)
    px = np.diff(ndtr((e[None, :] - cx[:, None]) / std), axis=1)  # (J, side)
    py = np.diff(ndtr((e[None, :] - cy[:, None]) / std), axis=1)
    return (px.T @ py / len(cx)).ravel()


def _grid(m: int) -> tuple[float, float, int]:
    """The grid of the smooth densities: [-2.8, 2.8]^2 in cells of 0.4, m bins per cell side."""
    return -2.8, 0.4 / m, 14 * m


def eight_gaussians(m: int) -> Bins:
    a = np.arange(8) * (2 * math.pi / 8)
    lo, width, side = _grid(m)
    return Bins(lo, width, side, _gauss_bins(2 * np.cos(a), 2 * np.sin(a), EIGHT_SIGMA, lo, width, side))


def _midpoints(k: int) -> np.ndarray:
    return (np.arange(k) + 0.5) / k  # (k,) in (0, 1)


def swiss_roll(m: int) -> Bins:
    u = 1.5 * math.pi * (1 + 2 * _midpoints(CURVE_NODES))  # data.swiss_roll's uniform u
    lo, width, side = _grid(m)
    return Bins(lo, width, side, _gauss_bins(u * np.cos(u) / 7.5, u * np.sin(u) / 7.5, CURVE_NOISE, lo, width, side))


def moons(m: int) -> Bins:
    t = math.pi * _midpoints(CURVE_NODES // 2)  # data.moons: each half circle with probability 1/2
    x = np.concatenate([np.cos(t), 1 - np.cos(t)])
    y = np.concatenate([np.sin(t), 0.5 - np.sin(t)])
    lo, width, side = _grid(m)
    return Bins(lo, width, side, _gauss_bins((x - 0.5) * 1.6, (y - 0.25) * 1.6, CURVE_NOISE, lo, width, side))


DENSITIES = {"checkerboard": checkerboard, "eight_gaussians": eight_gaussians, "swiss_roll": swiss_roll,
             "moons": moons}


def has_exact(name: str) -> bool:
    return name in DENSITIES


@lru_cache(maxsize=16)
def bins(name: str, m: int = BINS_PER_CELL) -> Bins:
    return DENSITIES[name](m)


def binomial_mad(n: int, p: np.ndarray) -> np.ndarray:
    """E|X - n p| for X ~ Binomial(n, p), de Moivre: 2 v C(n, v) p^v (1 - p)^(n - v + 1), v = floor(n p) + 1."""
    from scipy.special import gammaln

    p = np.asarray(p, dtype=np.float64)
    v = np.floor(n * p) + 1
    ok = (p > 0) & (p < 1) & (v <= n)
    pv, vv = np.where(ok, p, 0.5), np.where(ok, v, 1.0)
    log = (math.log(2) + np.log(vv) + gammaln(n + 1) - gammaln(vv + 1) - gammaln(n - vv + 1)
           + vv * np.log(pv) + (n - vv + 1) * np.log1p(-pv))
    return np.where(ok, np.exp(log), 0.0)


def _cells(b: Bins) -> np.ndarray:
    """The probabilities of the TV's cells: every bin, then the off-grid mass."""
    return np.append(b.pi, b.off_grid)


def null(name: str, n: int, m: int = BINS_PER_CELL) -> dict[str, float]:
    """Floors (the metrics' exact means for n samples of the density) and null spreads."""
    b = bins(name, m)
    p_off = float(b.pi[~b.support].sum()) + b.off_grid
    p = _cells(b)
    mad = binomial_mad(n, p)
    var = np.maximum(n * p * (1 - p) - mad ** 2, 0.0)
    m_support = int(b.support.sum())
    n_s = max(n * (1 - p_off), 2.0)
    out = {"off_support_floor": p_off, "off_support_null_sd": math.sqrt(p_off * (1 - p_off) / n),
           "tv_floor": float(mad.sum() / (2 * n)), "tv_null_sd": float(math.sqrt(var.sum()) / (2 * n)),
           "chi2_floor": 0.0, "chi2_null_sd": math.sqrt(2 * (m_support - 1)) / n_s}
    if name == "eight_gaussians":  # max |mass - 1/8| of Multinomial(n, 1/8 each): 4000 seeded draws
        dev = np.abs(np.random.default_rng(0).multinomial(n, [1 / 8] * 8, 4000) / n - 1 / 8).max(1)
        out |= {"mode_dev_floor": float(dev.mean()), "mode_dev_null_sd": float(dev.std())}
    return out


METRICS = ("tv", "off_support", "chi2", "mode_dev")  # lower is better; each has <m>_floor and <m>_null_sd in null()


def eval_sd(result: dict[str, float]) -> dict[str, float]:
    """Each exact metric's evaluation spread for one run: the null spread, and for off_support the binomial
    spread sqrt(p (1 - p) / n) at the measured share p when it is larger."""
    out = {m: result[f"{m}_null_sd"] for m in METRICS if m in result}
    p, n = result["off_support"], result["exact_n"]
    out["off_support"] = max(out["off_support"], math.sqrt(p * (1 - p) / n))
    return out


def _modes(x: np.ndarray) -> dict[str, float]:
    """Per-mode masses of the eight Gaussians: nearest centre = the angular sector of width 2 pi / 8."""
    from scipy.stats import chi2 as chi2_dist

    k = np.round(np.arctan2(x[:, 1], x[:, 0]) / (2 * math.pi / 8)).astype(np.int64) % 8
    c = np.bincount(k, minlength=8).astype(np.float64)
    n = c.sum()
    stat = float(((c - n / 8) ** 2 / (n / 8)).sum())
    return {"mode_dev": float(np.abs(c / n - 1 / 8).max()), "mode_p": float(chi2_dist.sf(stat, 7)),
            "mode_min": float(c.min() / n)}


def exact_metrics(name: str, samples, m: int = BINS_PER_CELL) -> dict[str, float]:
    """off_support, tv, chi2 (and the eight Gaussians' mode_*) of samples (n, 2) against the density of
    dataset `name`, with each metric's floor and null spread (`<metric>_floor`, `<metric>_null_sd`) for this n."""
    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    b = bins(name, m)
    counts, off_grid = b.counts(x)
    n = len(x)
    sup = b.support
    c_s = counts[sup].astype(np.float64)
    n_s = c_s.sum()
    pi_s = b.pi[sup] / b.pi[sup].sum()
    chi2 = float((c_s * (c_s - 1) / pi_s).sum() / (n_s * (n_s - 1)) - 1) if n_s > 1 else float("nan")
    tv = 0.5 * float(np.abs(np.append(counts, off_grid) / n - _cells(b)).sum())
    out = {"off_support": float((counts[~sup].sum() + off_grid) / n), "tv": tv, "chi2": chi2,
           **null(name, n, m), "exact_n": float(n), "exact_bins": float(m)}
    if name == "eight_gaussians":
        out |= _modes(x[np.isfinite(x).all(1)])
    return out
