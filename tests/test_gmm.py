"""The Gaussian-mixture tier: its config checks, its exact epsilon against autograd, the analytic teacher, the
exact ODE solve and the mixture metrics."""

from __future__ import annotations

import pytest
import torch

from onestep import data, gmm
from onestep.errors import ConfigError

DIFF = {"T": 1000, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}


def ds(**g):
    return {"name": "gmm", "gmm": g}


@pytest.mark.parametrize("cov, aniso", [("isotropic", 1.0), ("isotropic", 3.0), ("diagonal", 3.0)])
@pytest.mark.parametrize("weights", ["equal", "unequal"])
@pytest.mark.parametrize("block", [None, 64 * 7])  # 7 rows a block: 32 rows in 5 blocks, the last one short
def test_eps_is_minus_sigma_times_autograd_score(cov, aniso, weights, block, monkeypatch):
    """Every path of gmm.eps (one shared variance, one per component, diagonal), whole and in row blocks, against
    autograd."""
    if block:
        monkeypatch.setattr(gmm, "CHUNK_ELEMENTS", block)
        monkeypatch.setattr(gmm, "_MIN_ROWS", 1)
    mix = gmm.mixture(ds(dim=8, modes=64, covariance=cov, weights=weights, seed=3, anisotropy=aniso))
    assert mix.tied == (cov == "isotropic" and aniso == 1.0)  # the one-variance path, decided once at build
    gen = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.0, 0.01, 0.05, 0.2, 1.0, 5.0, 80.0, 0.2], dtype=torch.float64).repeat(4)
    y = (mix.sample(32, gen).double() + sigma[:, None] * torch.randn(32, 8, generator=gen, dtype=torch.float64))
    y = y.requires_grad_(True)
    (score,) = torch.autograd.grad(mix.log_prob(y, sigma * sigma).sum(), y)
    want = -sigma[:, None] * score
    got = gmm.eps(mix, y.detach(), sigma)
    assert torch.allclose(got, want, atol=1e-9, rtol=1e-7)
    # float32 (the training path) within float32 precision, far-off points included (no overflow in the softmax)
    far = y.detach() * 50
    got32 = gmm.eps(mix, far.float(), sigma.float())
    ref = gmm.eps(mix, far, sigma)
    assert torch.isfinite(got32).all() and torch.allclose(got32.double(), ref, atol=2e-3 * (1 + ref.abs().max()))


def test_unequal_weights_have_rare_modes_and_sum_to_one():
    w = gmm.mixture(ds(modes=64, weights="unequal", rare_modes=3, rare_weight=0.005)).weights
    assert abs(float(w.sum()) - 1) < 1e-12 and (w > 0).all()
    assert int((w <= 0.005 + 1e-12).sum()) >= 3 and float(w.max()) > 0.01


def test_samples_seeded_and_shaped():
    cfg = ds(dim=16, modes=8, covariance="diagonal")
    a, b = data.sample(cfg, 100, 1), data.sample(cfg, 100, 1)
    assert a.shape == (100, 16) and torch.equal(a, b) and data.shape(cfg) == (16,)
    assert not torch.equal(data.sample(ds(dim=16, modes=8, seed=1), 100, 1), a)


@pytest.mark.parametrize("g, key", [
    ({"dim": 3}, "dataset.gmm.dim"), ({"modes": 10}, "dataset.gmm.modes"),
    ({"modes": 8, "weights": [0.5] * 8}, "dataset.gmm.weights"),
    ({"modes": 8, "weights": [-0.1, 0.3] + [0.8 / 6] * 6}, "dataset.gmm.weights"),
    ({"modes": 8, "variances": [0.1] * 7 + [0.0]}, "dataset.gmm.variances"),
    ({"modes": 8, "covariance": "diagonal", "variances": [[0.1, -0.1]] * 8}, "dataset.gmm.variances"),
    ({"covariance": "full"}, "dataset.gmm.covariance"), ({"colour": 1}, "dataset.gmm.colour")])
def test_bad_mixture_names_the_key(g, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        gmm.settings(ds(**g))
    with pytest.raises(data.DataError, match=key.replace(".", r"\.")):
        data.check(ds(**g))


def test_analytic_net_matches_the_mixture_at_the_schedules_sigma():
    from onestep.diffusion import Schedule
    from onestep.nets import build_net

    cfg = ds(dim=2, modes=8)
    net = build_net({"name": "gmm_exact", "dataset": cfg, "diffusion": DIFF,
                     "correction": {"name": "mlp", "width": 16, "depth": 1, "temb_dim": 8}}, (2,))
    assert sum(p.requires_grad for p in net.parameters()) > 0 and not net._last().weight.any()
    net = net.eval().requires_grad_(False)
    abar = Schedule.from_config(DIFF).abar.double()
    t = torch.tensor([0, 10, 500, 999])  # diffusers index: seed t + 1
    x = torch.randn(4, 2, dtype=torch.float64)
    a = abar[t + 1][:, None]
    y = x / a.sqrt()
    sigma = ((1 - a) / a).sqrt().squeeze(1)
    assert torch.allclose(net(x, t), gmm.eps(gmm.mixture(cfg), y, sigma), atol=1e-7)
    assert torch.allclose(net(x, torch.full((4,), -1.0)), torch.zeros(4, 2, dtype=torch.float64))  # abar = 1


def test_rk4_solve_of_the_exact_teacher_lands_on_the_mixture_and_converges():
    """One Gaussian N(mu, v I): the PF-ODE maps z to mu + sqrt(v) z exactly (the flow of a Gaussian is affine)."""
    from onestep.diffusion import rk4_sample, rk4_trajectory, seed_sigmas
    from onestep.nets import build_net

    cfg = ds(dim=2, modes=8, means=[[0.5, -0.3]] * 8, variances=[0.04] * 8)
    net = build_net({"name": "gmm_exact", "dataset": cfg, "diffusion": DIFF,
                     "correction": {"name": "mlp", "width": 8, "depth": 1, "temb_dim": 8}}, (2,)).eval().requires_grad_(False)
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    sT = float(seed_sigmas(DIFF)[-1])
    mu = torch.tensor([0.5, -0.3])
    u = (z * (1 + sT**2) ** 0.5 - mu) / (0.04 + sT**2) ** 0.5  # (y - mu) / sqrt(v + sigma^2): constant on the flow
    want = mu + u * 0.2
    x0 = rk4_sample(net, z, 128, DIFF)
    assert (x0 - want).abs().max() < 1e-5  # 4th order: 2.7e-5 at 64 steps, 1.7e-6 at 128
    assert (rk4_sample(net, z, 8, DIFF) - want).abs().max() > (x0 - want).abs().max()  # fewer steps: a larger error
    _, xt = rk4_trajectory(net, z, 128, DIFF, (500,))
    s = float(seed_sigmas(DIFF)[500])
    y500 = mu + u * (0.04 + s * s) ** 0.5
    assert (xt[:, 0] - y500 / (1 + s * s) ** 0.5).abs().max() < 1e-5


def test_mixture_metrics_sit_at_their_null_on_data_and_move_on_broken_samples():
    from onestep import gmm_metrics

    cfg = ds(dim=8, modes=64, covariance="diagonal", weights="unequal", seed=2)
    mix = gmm.mixture(cfg)
    x = mix.sample(8192, torch.Generator().manual_seed(5))
    m = gmm_metrics.scores(x, cfg)
    null = gmm_metrics.null(cfg, 8192)
    assert abs(m["mode_chi2"] - null["mode_chi2_mean"]) < 4 * null["mode_chi2_std"]
    assert m["modes_missed"] == 0 and abs(m["trace_ratio"] - 1) < 0.1 and m["off_modes"] < 0.003
    assert abs(m["nll"] - float(-mix.log_prob(x).mean())) < 1e-9
    # collapse onto the means: trace ratio near 0, big KL; the rare modes dropped: missed, chi-square up
    k = torch.multinomial(mix.weights, 8192, replacement=True, generator=torch.Generator().manual_seed(1))
    collapsed = gmm_metrics.scores(mix.means[k].float() + 0.01 * torch.randn(8192, 8), cfg)
    assert collapsed["trace_ratio"] < 0.1 and collapsed["mode_kl"] > 10 * max(m["mode_kl"], 0.01)
    keep = x[(mix.posterior(x).argmax(1) >= 2)]  # unequal: components 0 and 1 are the rare ones
    dropped = gmm_metrics.scores(keep, cfg)
    assert dropped["modes_missed"] == 2 and dropped["mode_chi2"] > m["mode_chi2"]
    assert gmm_metrics.scores(x * 3, cfg)["off_modes"] > 0.5


def test_every_method_trains_a_step_around_the_analytic_teacher():
    """Each method's prepare, aux step (a fake score: the exact score plus its trainable correction) and loss
    around the analytic teacher, the gradient reaching the student."""
    from conftest import context

    from onestep.diffusion import Schedule, Teacher
    from onestep.methods import METHODS, student_net
    from onestep.methods.base import Batch
    from onestep.nets import build_net

    cfg = ds(dim=2, modes=8)
    exact = build_net({"name": "gmm_exact", "dataset": cfg, "diffusion": DIFF,
                       "correction": {"name": "mlp", "width": 16, "depth": 1, "temb_dim": 8}}, (2,))
    teacher = Teacher(exact, Schedule.from_config(DIFF))
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(16, 2, generator=gen)
    for name, cls in METHODS.items():
        ctx = context(teacher, (2,), data_std=lambda: 0.8, data_bound=lambda: 2.0)
        method = cls({"name": name}, ctx, 0)
        torch.manual_seed(0)
        student = build_net(student_net({"student": {"net": {"name": "mlp", "width": 16, "depth": 1, "temb_dim": 8}},
                                         "method": {"name": name}}), (2,))
        batch = method.prepare(Batch(z, gmm.mixture(cfg).sample(16, gen), gmm.mixture(cfg).sample(16, gen)), 0, gen)
        method.aux_step(student, batch, 0, gen)
        loss, _ = method.loss(student, batch, 0, gen)
        loss.float().mean().backward()
        assert torch.isfinite(loss).all(), name
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters()), name


def test_ablate_init_is_left_out_on_the_analytic_tier_not_a_parse_error():
    """On a gmm tier every grid is parsed (the default target, file targets, --unlock): ablate_init, whose students
    start from the teacher's weights, is skipped there with its reason instead of stopping the parse."""
    from onestep.config.files import REPO, merged_files
    from onestep.config.grids import load_workflow

    abl = load_workflow(merged_files([REPO / "config" / "gmm2d.yaml"]))
    init = abl["ablate_init"]
    assert init.runs == [] and "teacher.kind: analytic" in init.skipped and "snakemake --cores 2 ablate_init" in init.skipped
    assert not abl["ablate_order"].skipped
    assert not load_workflow(merged_files([]))["ablate_init"].skipped  # the default (network) teacher runs it
