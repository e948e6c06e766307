"""method.target: the seed's conditional mean vs the teacher's DDIM trajectory,
on the exact teacher of a single data point mu, where every DDIM step is exact and
x_t(z) = sqrt(abar_t) mu + sqrt(1 - abar_t) e(z), e(z) = (z - sqrt(abar_T) mu) / sqrt(1 - abar_T) (x_T = z),
and E[x_t | x0 = mu] = sqrt(abar_t) mu, in closed form."""

import pytest
import torch
from conftest import DIFF, GaussEps, context, method_of
from torch import nn

from onestep.config import ConfigError, deep_merge, validate
from onestep.diffusion import ddim_sample, ddim_trajectory, grid_times
from onestep.methods.base import Batch
from onestep.methods.curriculum_stages import TrajectoryError, timesteps
from onestep.training.batches import PairBatches

MU = torch.tensor([1.5, -0.5])


def closed(schedule, z, t):
    """x_t(z) = sqrt(abar_t) mu + sqrt(1 - abar_t) e(z) for per-sample t (B,) or one int."""
    aT, a = schedule.abar[-1], schedule.abar[t].reshape(-1, 1)
    return a.sqrt() * MU + (1 - a).sqrt() * (z - aT.sqrt() * MU) / (1 - aT).sqrt()


class Closed(nn.Module):
    """The exact trajectory as a 'student': G(z, t) = x_t(z)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def forward(self, z, t):
        return closed(self.schedule, z, t.long())


def test_trajectory_states_are_the_closed_form(schedule):
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    times = (37, 250, 500, 520, 750, 999)  # on the 10-step solver grid (500, 520 are not both) and between
    x0, xt = ddim_trajectory(GaussEps(schedule, MU, 0.0), z, 10, DIFF, times)
    assert xt.shape == (64, len(times), 2)
    torch.testing.assert_close(x0, ddim_sample(GaussEps(schedule, MU, 0.0), z, 10, DIFF))  # the same solve
    for m, t in enumerate(times):
        torch.testing.assert_close(xt[:, m], closed(schedule, z, t), atol=1e-4, rtol=1e-4)
    # the seed's target is the conditional mean, which no trajectory point equals for z != 0
    assert (xt[:, 2] - schedule.abar[500].sqrt() * MU).norm(dim=1).min() > 1e-3


def test_grid_times_cover_every_k():
    assert grid_times(1000, [4]) == (250, 500, 750)
    assert grid_times(1000, [4, 5]) == (200, 250, 400, 500, 600, 750, 800)
    assert grid_times(1000, [1]) == ()


def _method(schedule, target, stored, K=4):
    cfg = {"K": K, "steps_per_stage": 10, "lambda": 1.0, "replay": 0.0, "target": target, "max_weight": 1e9}
    return method_of("curriculum", ctx=context(GaussEps(schedule, MU, 0.0), schedule=schedule, trajectory_t=stored), **cfg)


def test_trajectory_target_agrees_with_r_k_mean_does_not(schedule):
    """On the exact trajectory L_k = 0 and R_k = 0 under `trajectory`; under `mean` L_k > 0 at every stage
    but the last (t_K = 0, where both targets are x0)."""
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(1))
    times = grid_times(1000, [4])
    x0, xt = ddim_trajectory(GaussEps(schedule, MU, 0.0), z, 20, DIFF, times)
    batch = Batch(z, x0, extra={"traj": xt})
    student = Closed(schedule)
    traj, mean = _method(schedule, "trajectory", times), _method(schedule, "mean", None)
    for stage in range(4):  # forward order: t_k = 750, 500, 250, 0
        step = stage * 10
        _, lt = traj.loss(student, batch, step, torch.Generator().manual_seed(0))
        _, lm = mean.loss(student, batch, step, torch.Generator().manual_seed(0))
        assert float(lt["L_k"]) < 1e-6 and float(lt["R_k"]) < 1e-6
        assert float(lm["R_k"]) < 1e-6  # the student is on the trajectory: the teacher's bridge agrees
        if stage < 3:
            assert float(lm["L_k"]) > 1e-2  # ... but the seed's target is the shrunk mean, off it
        else:
            assert float(lm["L_k"]) < 1e-6


def test_pairs_carry_the_states_to_the_method():
    pairs = {"z": torch.randn(8, 2), "x0": torch.randn(8, 2), "xt": torch.randn(8, 3, 2)}
    b = next(PairBatches(pairs, 4, seed=0))
    assert b.extra["traj"].shape == (4, 3, 2)
    row = int((pairs["z"] == b.z[0]).all(1).nonzero())
    torch.testing.assert_close(b.extra["traj"][0], pairs["xt"][row])


@pytest.mark.parametrize("stored, message", [
    (None, r"method.target: 'trajectory' needs .* K = 4, .*hold no DDIM states .*missing t = \[250, 500, 750\]"),
    ((200, 400, 600, 800), r"hold states at 4 other times \(missing t = \[250, 500, 750\]\).*--trajectory .*pairs-K4.npz"),
])
def test_missing_states_name_the_input(schedule, stored, message):
    m = _method(schedule, "trajectory", stored)  # sampling (evaluation) needs no states
    with pytest.raises(TrajectoryError, match=message):
        m.loss(Closed(schedule), Batch(torch.zeros(4, 2), torch.zeros(4, 2)), 0, torch.Generator())
    assert _method(schedule, "trajectory", grid_times(1000, [4, 5])).column.tolist() == [7, 5, 3, 1, 7]
    assert timesteps(1000, 4) == (1000, 750, 500, 250, 0)


def test_target_outside_its_values_stops_at_parse(default_config):
    cfg = deep_merge({**default_config, "seed": 0}, {})
    with pytest.raises(ConfigError, match=r"method.target: 'marginal' is not allowed; allowed values: mean, trajectory"):
        validate({**cfg, "method": {"name": "curriculum", "target": "marginal"}})


def test_states_of_other_pairs_are_refused(tmp_path):
    from onestep import outputs
    from onestep.errors import OnestepError

    z = torch.randn(8, 2)
    outputs.save_npz(tmp_path / "s.npz", z=z.numpy(), x0=torch.randn(8, 2).numpy(), xt=torch.randn(8, 3, 2).numpy(),
                     trajectory_t=torch.tensor([250, 500, 750]).numpy())
    assert outputs.load_states(tmp_path / "s.npz", z)["trajectory_t"].tolist() == [250, 500, 750]
    with pytest.raises(OnestepError, match=r"s.npz: its DDIM states are not those of the teacher pairs"):
        outputs.load_states(tmp_path / "s.npz", z + 1)
