"""Exact-density metrics: the density's own samples sit at the floor, a known blur and leakage are measured at
the size the closed form predicts, a dropped mode is found."""

from math import comb

import numpy as np
import pytest
from scipy.special import ndtr

from onestep import data, exact

N = 10 ** 6


def board(n: int, seed: int) -> np.ndarray:
    return data.sample({"name": "checkerboard"}, n, seed).double().numpy()


def test_de_moivre_mad_is_the_binomial_mean_absolute_deviation():
    for n, p in ((50, 0.13), (7, 0.5), (200, 0.004)):
        direct = sum(comb(n, k) * p ** k * (1 - p) ** (n - k) * abs(k - n * p) for k in range(n + 1))
        assert exact.binomial_mad(n, np.array([p]))[0] == pytest.approx(direct, rel=1e-9)
    assert exact.binomial_mad(10, np.array([0.0, 1.0])).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name", sorted(exact.DENSITIES))
def test_samples_of_the_density_sit_at_the_floor(name):
    r = exact.exact_metrics(name, data.sample({"name": name}, N, 11).numpy())
    assert r["off_support"] <= r["off_support_floor"] + 4 * r["off_support_null_sd"] + 1e-6
    assert abs(r["tv"] - r["tv_floor"]) < 4 * r["tv_null_sd"]
    assert abs(r["chi2"]) < 4 * r["chi2_null_sd"]
    if name == "checkerboard":
        assert r["off_support"] == 0.0 and r["off_support_floor"] == 0.0
    if name == "eight_gaussians":
        assert r["mode_p"] > 1e-3 and r["mode_dev"] < 0.002


def test_tv_floor_and_spread_match_multinomial_draws():
    b, n = exact.bins("checkerboard", 4), 20000
    rng = np.random.default_rng(0)
    p = np.append(b.pi, 0.0)
    tv = [0.5 * np.abs(rng.multinomial(n, p) / n - p).sum() for _ in range(300)]
    nu = exact.null("checkerboard", n, 4)
    assert np.mean(tv) == pytest.approx(nu["tv_floor"], rel=0.01)
    assert np.std(tv) == pytest.approx(nu["tv_null_sd"], rel=0.2)


def blurred_board_bins(sigma: float, m: int) -> np.ndarray:
    """The bin masses of the board convolved with N(0, sigma^2 I), by quadrature per coordinate: (side^2 + 1,)
    with the off-grid mass last."""
    b = exact.bins("checkerboard", m)
    edges = b.lo + b.width * np.arange(b.side + 1)
    u = (np.arange(4000) + 0.5) / 4000  # quadrature nodes in a unit cell
    # a[c, j]: probability that a uniform point of cell c lands in bin j after the blur
    a = np.stack([np.diff(ndtr((edges[None, :] - (c - 2 + u[:, None])) / sigma), axis=1).mean(0) for c in range(4)])
    q = sum(np.outer(a[i], a[j]) for i in range(4) for j in range(4) if (i + j) % 2 == 0) / 8
    return np.append(q.ravel(), 1 - q.sum())


def test_a_known_blur_is_measured_at_its_predicted_size():
    sigma, m = 0.01, exact.BINS_PER_CELL
    rng = np.random.default_rng(1)
    x = board(N, 2) + sigma * rng.standard_normal((N, 2))
    r = exact.exact_metrics("checkerboard", x)
    q, b = blurred_board_bins(sigma, m), exact.bins("checkerboard", m)
    off = q[:-1][~b.support].sum() + q[-1]
    assert off == pytest.approx(0.0158, abs=0.0005)  # 2 x 2 sigma / sqrt(2 pi), less the corners
    assert r["off_support"] == pytest.approx(off, abs=4 * np.sqrt(off / N))
    tv_pop = 0.5 * np.abs(q - np.append(b.pi, 0.0)).sum()
    assert tv_pop - 4 * r["tv_null_sd"] < r["tv"] < tv_pop + r["tv_floor"] + 4 * r["tv_null_sd"]
    qs = q[:-1][b.support] / q[:-1][b.support].sum()
    chi2_pop = (qs ** 2 / (b.pi[b.support] / b.pi[b.support].sum())).sum() - 1
    assert chi2_pop > 10 * r["chi2_null_sd"]  # a blur of 1% of a cell is resolved inside the support too
    assert r["chi2"] == pytest.approx(chi2_pop, abs=4 * r["chi2_null_sd"] + 0.1 * chi2_pop)


def test_a_known_leakage_is_measured_at_its_predicted_size():
    eps = 0.005  # the share of samples uniform on the board [-2, 2]^2, half of it in the empty squares
    rng = np.random.default_rng(3)
    x = board(N, 4)
    leak = rng.random(N) < eps
    x[leak] = rng.uniform(-2, 2, (int(leak.sum()), 2))
    r = exact.exact_metrics("checkerboard", x)
    assert r["off_support"] == pytest.approx(eps / 2, abs=4 * np.sqrt(eps / 2 / N))
    assert abs(r["tv"] - (eps / 2 + r["tv_floor"])) < 4 * r["tv_null_sd"] + 0.1 * eps
    assert abs(r["chi2"]) < 4 * r["chi2_null_sd"]  # inside the support the shape is the density's
    clean = exact.exact_metrics("checkerboard", board(N, 4))
    assert r["off_support"] > 20 * np.sqrt(eps / 2 / N) and clean["off_support"] == 0.0


def test_a_dropped_mode_of_the_eight_gaussians_is_found():
    x = data.sample({"name": "eight_gaussians"}, 200000, 5).numpy()
    angle = np.arctan2(x[:, 1], x[:, 0])
    kept = x[np.abs(angle) > np.pi / 8]  # mode 0 (angle 0) removed
    r = exact.exact_metrics("eight_gaussians", kept)
    assert r["mode_p"] < 1e-12 and r["mode_min"] == 0.0 and r["mode_dev"] == pytest.approx(1 / 8)
    assert r["tv"] > 0.1 and r["chi2"] > 100 * r["chi2_null_sd"]


def test_scoring_a_million_samples_takes_under_two_seconds():
    import time

    x = board(N, 6)
    t0 = time.perf_counter()
    exact.exact_metrics("checkerboard", x)
    assert time.perf_counter() - t0 < 2.0


def test_headline_is_checked_at_parse_time_and_auto_is_tv_on_2d():
    import yaml

    from onestep.config.schema import validate
    from onestep.errors import ConfigError
    from onestep.metrics import headline

    cfg = yaml.safe_load(open("config/config.yaml"))
    assert headline(cfg) == "tv"
    cfg["evaluation"]["headline"] = "fid"
    with pytest.raises(ConfigError, match="evaluation.headline: 'fid' is not a metric of dataset 'checkerboard'"):
        validate(cfg)
    cfg["evaluation"]["headline"] = "mode_dev"
    with pytest.raises(ConfigError, match="evaluation.headline"):
        validate(cfg)
    cfg["evaluation"]["headline"] = "off_support"
    validate(cfg)
    assert headline(cfg) == "off_support"


def test_a_runs_score_carries_the_exact_metrics_of_its_own_sample_and_their_spread():
    import torch
    import yaml

    from onestep import evaluate

    cfg = yaml.safe_load(open("config/config.yaml"))
    cfg["evaluation"] |= {"num_samples": 2048, "exact_samples": 20000, "eval_draws": 2, "swd_projections": 16}
    ref = {"x": data.sample(cfg["dataset"], 2048, 777).numpy()}
    seen = []

    def sampler(z):  # a "student" that leaks: the density, plus every sample with z_0 > 2 sent to an empty square
        seen.append(z)
        x = data.sample(cfg["dataset"], z.shape[0], int(z[0, 0].abs() * 1e6))
        return torch.where((z[:, :1] > 2), torch.tensor([[0.5, -0.5]]), x)

    x = sampler(evaluate.eval_noise(cfg, (2,)))
    ex = evaluate.exact_sample(cfg, (2,), sampler, "cpu")
    assert ex.shape == (20000, 2) and not torch.equal(seen[1][:2048], seen[0])  # its own noise, not the tables'
    assert torch.equal(evaluate.exact_sample(cfg, (2,), lambda z: z, "cpu"), evaluate.exact_sample(cfg, (2,), lambda z: z, "cpu"))
    r = evaluate.score(x, ref, cfg, None, ex)
    leak = float((seen[1][:, 0] > 2).double().mean())  # P(z > 2) = 2.3%
    assert r["primary"] == "tv" and r["metrics"]["off_support"] == pytest.approx(leak, abs=1e-12)
    assert r["metrics"]["tv"] >= r["metrics"]["off_support"]
    assert r["eval_sd"]["off_support"] == pytest.approx(np.sqrt(leak * (1 - leak) / 20000))
    assert len(r["swd_draws"]) == 3 and r["eval_sd"]["swd"] > 0 and r["exact"]["exact_n"] == 20000


def test_the_mixture_tiers_headline_is_swd_and_image_metrics_are_refused_there():
    """A Gaussian-mixture tier has no binned density (onestep.exact) and no images: auto heads its tables with SWD
    (before, auto read it as images and the tables asked for a `fid` column its runs never had)."""
    import yaml

    from onestep.config import deep_merge
    from onestep.config.schema import validate
    from onestep.errors import ConfigError
    from onestep.metrics import headline

    base = yaml.safe_load(open("config/config.yaml"))
    for tier in ("gmm2d", "gmm16d", "gmm64d"):
        cfg = deep_merge(base, yaml.safe_load(open(f"config/{tier}.yaml")))
        validate(cfg)
        assert headline(cfg) == "swd", tier
    cfg["evaluation"]["headline"] = "fid"
    with pytest.raises(ConfigError, match="evaluation.headline: 'fid' is not a metric of dataset 'gmm'; allowed: auto, "
                                          "swd, fd, mmd"):
        validate(cfg)
    cfg["evaluation"]["headline"] = "mmd"
    validate(cfg)
    assert headline(cfg) == "mmd"
