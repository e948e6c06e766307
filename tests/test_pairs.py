"""The pairs' solver (pairs.solver: ddim, dpm++, heun from diffusers) and x0 clipping (pairs.clip_x0),
against the exact probability-flow ODE of Gaussian data, where every solve has a closed form."""

import math

import pytest
import torch
from conftest import DIFF
from torch import nn

from onestep.config import ConfigError, validate
from onestep.diffusion import SOLVERS, ddim_sample, ddpm_scheduler, pairs_label, teacher_sample

MU, S = torch.tensor([1.0, -0.5]), 0.3


class ExactEps(nn.Module):
    """eps of N(MU, S^2 I) data at the (fractional) diffusers index t, sigma_t interpolated linearly in t as
    diffusers' Heun does: eps = sqrt(1 - a) (x - sqrt(a) MU) / (a S^2 + 1 - a)."""

    def __init__(self):
        super().__init__()
        abar = ddpm_scheduler(DIFF).alphas_cumprod.double()
        self.sigma = ((1 - abar) / abar).sqrt()

    def forward(self, x, t):
        tt = t.double().clamp(0, len(self.sigma) - 1)
        lo = tt.floor().long().clamp(max=len(self.sigma) - 2)
        sig = self.sigma[lo] + (tt - lo) * (self.sigma[lo + 1] - self.sigma[lo])
        a = (1 / (1 + sig**2)).float().view(-1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S**2 + 1 - a)


def exact(z):
    """The PF-ODE's solution from x_T = z: in the EDM state y = x / sqrt(abar), y - MU scales as sqrt(S^2 + sigma^2)."""
    abar_T = float(ddpm_scheduler(DIFF).alphas_cumprod[-1])
    sig_T = math.sqrt((1 - abar_T) / abar_T)
    return MU + (z / math.sqrt(abar_T) - MU) * S / math.sqrt(S**2 + sig_T**2)


def test_ddim_without_clipping_is_ddim_sample():
    net, z = ExactEps(), torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(teacher_sample(net, z, 10, DIFF, "ddim"), ddim_sample(net, z, 10, DIFF))


def test_higher_order_solvers_beat_ddim_at_equal_steps():
    """At the pairs' 50 steps DPM-Solver++ 2M and Heun land far closer to the exact ODE solution than DDIM
    (measured: mean error 0.033 DDIM, 0.006 dpm++, 0.009 heun)."""
    net, z = ExactEps(), torch.randn(2048, 2, generator=torch.Generator().manual_seed(0))
    want = exact(z)
    err = {s: float((teacher_sample(net, z, 50, DIFF, s) - want).norm(dim=1).mean()) for s in SOLVERS}
    assert float((teacher_sample(net, z, 500, DIFF, "ddim") - want).norm(dim=1).mean()) < 0.02  # the closed form
    assert err["dpm++"] < 0.3 * err["ddim"] and err["heun"] < 0.5 * err["ddim"], err


class Underestimates(nn.Module):
    """An eps network that saturates at |eps| = 3.5, as an MLP that never saw |x_T| > 4 may: it leaves signal
    in x_t that the x0 prediction then amplifies by 1 / sqrt(abar_T) ~ 156."""

    def forward(self, x, t):
        return (ExactEps()(x, t)).clamp(-3.5, 3.5)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_clip_x0_keeps_tail_noise_in_the_data_bounds(solver):
    z = torch.tensor([[4.5, -4.2], [0.3, 0.1], [-5.0, 0.0]])
    far = teacher_sample(Underestimates(), z, 50, DIFF, solver)
    assert far.abs().max() > 5  # the tail is sent far off without clipping ...
    near = teacher_sample(Underestimates(), z, 50, DIFF, solver, clip_x0=2.0)
    assert near.abs().max() <= 2.0 + 1e-4  # ... and stays within the bounds with it
    assert torch.allclose(near[1], teacher_sample(ExactEps(), z, 50, DIFF, solver, clip_x0=2.0)[1], atol=1e-3)


def test_pairs_solver_is_checked_at_parse_time(default_config):
    cfg = {**default_config, "seed": 0}
    for solver, clip in (("dpm++", 2.0), ("heun", None), ("ddim", 1.5), ("dpm++", "auto")):
        validate({**cfg, "pairs": {**cfg["pairs"], "solver": solver, "clip_x0": clip}})
    with pytest.raises(ConfigError, match="pairs.solver"):
        validate({**cfg, "pairs": {**cfg["pairs"], "solver": "rk45"}})
    with pytest.raises(ConfigError, match="pairs.clip_x0"):
        validate({**cfg, "pairs": {**cfg["pairs"], "clip_x0": -1}})
    assert pairs_label({"solver": "dpm++", "ddim_steps": 50, "clip_x0": 2.0}) == "pairs: dpm++ 50 steps, x0 clipped to +-2"


def test_the_pairs_solver_row_keeps_its_own_label():
    from onestep.report.records import pairs_row, teacher_label

    ddim = {"steps": 50, "metrics": {}}
    row = {"steps": 50, "solver": "dpm++", "clip_x0": 2.0, "label": "teacher pairs: dpm++ 50 steps, x0 clipped to +-2"}
    assert not pairs_row(ddim) and pairs_row(row) and pairs_row({"steps": 50, "solver": "ddim", "clip_x0": 2.0})
    assert teacher_label(ddim) == "teacher DDIM 50 steps" and teacher_label(row) == row["label"]


def test_clip_x0_auto_is_the_data_bound():
    from onestep import data

    assert data.clip_x0(None, {"name": "checkerboard"}) is None and data.clip_x0(1.5, {"name": "moons"}) == 1.5
    assert 1.99 < data.clip_x0("auto", {"name": "checkerboard"}) <= 2.0  # the checkerboard lies in +-2
    assert data.clip_x0("auto", {"name": "moons"}) > 2.5  # another toy keeps its own, wider bound
