"""Exact metrics of samples against a Gaussian mixture's own density (dataset gmm): mode masses, missed modes,
within-mode covariance, mass off every mode, and the negative log-likelihood.

Every sample is assigned to its most probable component (argmax of the posterior r_i(x) at sigma = 0):

- `mode_chi2`: Pearson's chi-square of the assigned counts n_i against N w_i; under exact multinomial sampling
  it has mean K - 1 and std sqrt(2 (K - 1)) (`null`), and the data's own draws (the tables' floor) add the
  assignment errors of overlapping components;
- `modes_missed`: components holding under MISSED (a tenth) of their weight's share of the samples;
- `trace_ratio`: sum_i w_i tr(S_i) / tr(Sigma_i) over components with at least MIN_ASSIGNED samples, S_i their
  samples' covariance (1: exact; below: collapse; above: inflation); `mode_kl`: the same components' weighted mean
  KL(N(m_i, diag S_i) || N(mu_i, Sigma_i)) (diagonal: a few samples per component in 64-D);
- `off_modes`: the share of samples whose squared Mahalanobis radius to every component exceeds the chi-square
  (d degrees) 99.9% quantile (at most 0.001 for the data);
- `nll`: mean -log p(x) under the data density (the data's own: its entropy, the floor; lower than it is
  possible, for samples piled at the modes, so the column reads with trace_ratio).
"""

from __future__ import annotations

import math

import torch

from onestep.gmm import Mixture, mixture

MISSED = 0.1  # a mode is missed below this share of its weight's expected count
MIN_ASSIGNED = 8  # components with fewer assigned samples are left out of trace_ratio and mode_kl
QUANTILE = 0.999  # off_modes: beyond this chi-square quantile of every component
CHUNK = 2048  # samples per (chunk, K) block


def _blocks(mix: Mixture, x: torch.Tensor):
    """(log w_i N(x; mu_i, Sigma_i) (n, K), squared Mahalanobis radius (n, K)) per chunk of x, float64."""
    w = 1.0 / mix.variances  # (K, d)
    mw = mix.means * w
    const = mix.weights.log() - 0.5 * (mix.variances.log().sum(1) + mix.dim * math.log(2 * math.pi))  # (K,)
    for xb in x.double().split(CHUNK):
        quad = ((xb * xb) @ w.T - 2 * xb @ mw.T + (mix.means * mw).sum(1)[None]).clamp(min=0)  # (n, K)
        yield const[None] - 0.5 * quad, quad


def scores(x: torch.Tensor, ds: dict) -> dict[str, float]:
    """The mixture metrics of samples x (N, d) against the dataset section `ds`'s mixture."""
    from scipy.stats import chi2

    mix = mixture(ds)
    x = x.flatten(1).double()
    n, k = x.shape[0], mix.weights.shape[0]
    assign, logp, far = [], [], []
    radius = float(chi2.ppf(QUANTILE, mix.dim))
    for lj, quad in _blocks(mix, x):
        assign.append(lj.argmax(1))
        logp.append(torch.logsumexp(lj, 1))
        far.append((quad > radius).all(1))
    a, logp, far = torch.cat(assign), torch.cat(logp), torch.cat(far)
    counts = torch.bincount(a, minlength=k).double()  # (K,)
    expected = n * mix.weights
    chi = float(((counts - expected) ** 2 / expected).sum())
    trace, kl = _within(mix, x, a, counts)
    return {"mode_chi2": chi, "modes_missed": float((counts < MISSED * expected).sum()), "trace_ratio": trace,
            "mode_kl": kl, "off_modes": float(far.double().mean()), "nll": float(-logp.mean())}


def _within(mix: Mixture, x: torch.Tensor, a: torch.Tensor, counts: torch.Tensor) -> tuple[float, float]:
    """Weighted means over well-populated components of tr(S_i) / tr(Sigma_i) and the diagonal Gaussian KL."""
    k = counts.shape[0]
    s1 = torch.zeros(k, mix.dim, dtype=torch.float64).index_add_(0, a, x)
    s2 = torch.zeros(k, mix.dim, dtype=torch.float64).index_add_(0, a, x * x)
    ok = counts >= MIN_ASSIGNED
    if not ok.any():
        return float("nan"), float("nan")
    c = counts[ok][:, None]
    m = s1[ok] / c
    var = ((s2[ok] - c * m * m) / (c - 1)).clamp(min=1e-12)  # (k', d) unbiased
    v, mu, w = mix.variances[ok], mix.means[ok], mix.weights[ok] / mix.weights[ok].sum()
    trace = var.sum(1) / v.sum(1)
    kl = 0.5 * (var / v + (m - mu) ** 2 / v - 1 + v.log() - var.log()).sum(1)
    return float((w * trace).sum()), float((w * kl).sum())


def null(ds: dict, n: int) -> dict[str, float]:
    """The formulas' null of an exact sampler of n points: mode_chi2 mean and std (chi-square, K - 1 degrees),
    off_modes' bound (1 - QUANTILE) and the data's exact expected nll is the mixture's entropy (not closed-form:
    the tables' floor, over data draws, gives it with its spread)."""
    k = mixture(ds).weights.shape[0]
    return {"mode_chi2_mean": float(k - 1), "mode_chi2_std": math.sqrt(2 * (k - 1)), "off_modes_max": 1 - QUANTILE,
            "samples": n}
