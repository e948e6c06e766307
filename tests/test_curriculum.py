"""Curriculum Trajectory Matching: schedule, ordering, L_k, R_k against hand computations."""

import math
from functools import partial

import numpy as np
import pytest
import torch
from conftest import LinearEps, method_of
from torch import nn

from onestep.diffusion import Teacher, ddim_jump, ddpm_step
from onestep.methods.base import Batch
from onestep.methods.curriculum import CurriculumConfig
from onestep.methods.curriculum_stages import loss_weight, stage_at, stage_order, timesteps


class Const(nn.Module):
    """A 'student' G(z, t) = z * c(t), with c(t) = 1 + t / 1000 (so different t give different outputs)."""

    def forward(self, z, t):
        return z * (1 + t.float() / 1000).view(-1, *[1] * (z.ndim - 1))


def test_timesteps_follow_the_seed():
    assert timesteps(1000, 10) == (1000, 900, 800, 700, 600, 500, 400, 300, 200, 100, 0)
    assert timesteps(1000, 3) == (1000, 667, 333, 0)  # the rounded linspace
    ts = timesteps(1000, 1000)
    assert ts[1] == 999 and ts[-1] == 0 and len(ts) == 1001
    for K in (600, 999, 7, 400):  # T/2 < K < T: no stop at T - K then a jump to 0; gaps floor(T/K) or + 1
        ts = timesteps(1000, K)
        gaps = np.diff(ts) * -1
        assert ts[0] == 1000 and ts[-1] == 0 and len(ts) == K + 1
        assert gaps.min() >= 1000 // K and gaps.max() <= 1000 // K + 1, K
    assert timesteps(1000, 600)[-2] in (1, 2)  # not 401 -> 0
    from onestep.diffusion import grid_times

    assert grid_times(1000, [600, 7]) == tuple(sorted(set(timesteps(1000, 600)[1:-1]) | set(timesteps(1000, 7)[1:-1])))
    with pytest.raises(ValueError, match="method.K"):
        timesteps(1000, 0)
    with pytest.raises(ValueError, match="method.K"):
        timesteps(1000, 1001)


def test_schedule_matches_diffusers_indexing(schedule):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod
    assert schedule.abar[0] == 1.0
    assert torch.allclose(schedule.abar[1:], ref, rtol=1e-5)  # seed abar_t = diffusers alphas_cumprod[t-1]


def test_orderings():
    assert stage_order(5, "forward", 0) == (1, 2, 3, 4, 5)
    assert stage_order(5, "reversed", 0) == (5, 4, 3, 2, 1)
    r0, r1 = stage_order(10, "random", 0), stage_order(10, "random", 1)
    assert sorted(r0) == list(range(1, 11)) and r0 == stage_order(10, "random", 0)
    assert r0 != r1  # a different seed gives a different permutation
    with pytest.raises(ValueError, match="ordering"):
        stage_order(5, "sideways", 0)


def test_stage_is_a_pure_function_of_the_step():
    cfg = CurriculumConfig(K=4, steps_per_stage=10, ordering="reversed")
    s = [stage_at(step, cfg, 1000, 0) for step in (0, 9, 10, 39, 100)]
    assert [x.k for x in s] == [4, 4, 3, 1, 1]
    assert [x.t for x in s] == [0, 0, 250, 750, 750]
    assert [x.t_anchor for x in s] == [250, 250, 500, 1000, 1000]  # grid anchor: adjacent noisier point
    trained = CurriculumConfig(K=4, steps_per_stage=10, ordering="reversed", anchor="trained")
    assert stage_at(0, trained, 1000, 0).t_anchor == 1000  # first stage anchors at the prior
    assert stage_at(10, trained, 1000, 0).t_anchor == 0  # then at the stage trained before (t = 0)


curriculum = partial(method_of, "curriculum", **{"K": 4, "steps_per_stage": 10, "lambda": 0.0, "replay": 0.0})


def test_l_k_is_the_gaussian_kl(schedule):
    m = curriculum(max_weight=1e9)
    z = torch.tensor([[0.5, -1.0]])
    x0 = torch.tensor([[1.0, 2.0]])
    step = 15  # stage k = 2, t_k = 500
    t = 500
    loss, logs = m.loss(Const(), Batch(z, x0), step, torch.Generator().manual_seed(0))
    abar = schedule.abar[t]
    g = z * (1 + t / 1000)
    q = torch.distributions.Normal(abar.sqrt() * x0, (1 - abar).sqrt())
    p = torch.distributions.Normal(g, (1 - abar).sqrt())
    kl = torch.distributions.kl_divergence(q, p).sum()
    assert torch.allclose(loss[0], kl, rtol=1e-5)
    # by hand: ||g - sqrt(abar) x0||^2 / (2 (1 - abar))
    by_hand = sum((g[0, i] - math.sqrt(abar) * x0[0, i]) ** 2 for i in range(2)) / (2 * (1 - abar))
    assert abs(float(loss[0]) - float(by_hand)) < 1e-4


def test_weight_is_clipped_near_zero(schedule):
    w = loss_weight(schedule.abar[torch.tensor([0, 1, 500])], max_weight=100.0)
    assert w[0] == 100.0 and w[1] == 100.0  # 1/(2*1e-4) = 5000 clipped; t = 0 is infinite before the clip
    assert abs(float(w[2]) - 0.5 / (1 - float(schedule.abar[500]))) < 1e-6


@pytest.mark.parametrize("step_kind", ["ddim", "ddpm"])
def test_consistency_target_is_one_teacher_step(schedule, step_kind):
    m = curriculum(consistency_step=step_kind, max_weight=1e9)
    z = torch.tensor([[0.5, -1.0], [2.0, 0.1]])
    x0 = torch.zeros_like(z)
    step = 15  # k = 2: t_k = 500, t_{k-1} = 750
    lam_loss, _ = curriculum(consistency_step=step_kind, max_weight=1e9, **{"lambda": 1.0}).loss(
        Const(), Batch(z, x0), step, torch.Generator())
    base_loss, _ = m.loss(Const(), Batch(z, x0), step, torch.Generator())
    R = lam_loss - base_loss  # lambda = 1 adds exactly R_k

    s, t = 750, 500
    g_prev = z * (1 + s / 1000)  # sg[G^(k-1)(z)]
    eps = 0.3 * g_prev + 0.001 * (s - 1)  # teacher network at diffusers index s - 1
    a = schedule.abar
    if step_kind == "ddpm":  # the seed's formula
        beta, alpha = schedule.betas[s], 1 - schedule.betas[s]
        x_hat = (g_prev - beta / (1 - a[s]).sqrt() * eps) / alpha.sqrt()
    else:  # exact DDIM jump 750 -> 500
        x0_pred = (g_prev - (1 - a[s]).sqrt() * eps) / a[s].sqrt()
        x_hat = a[t].sqrt() * x0_pred + (1 - a[t]).sqrt() * eps
    g = z * (1 + t / 1000)
    expected = ((g - x_hat) ** 2).sum(1)
    assert torch.allclose(R, expected, rtol=1e-4, atol=1e-5)


def test_first_stage_anchors_at_the_prior(schedule):
    teacher = Teacher(LinearEps(), schedule)
    z = torch.randn(3, 2)
    m = curriculum(**{"lambda": 1.0})
    # stage 1: t = 750, anchor t_0 = T = 1000 where G^(0)(z) = z
    with_r, _ = m.loss(Const(), Batch(z, torch.zeros_like(z)), 0, torch.Generator())
    without, _ = curriculum().loss(Const(), Batch(z, torch.zeros_like(z)), 0, torch.Generator())
    x_hat = ddim_jump(teacher, z, torch.full((3,), 1000), torch.full((3,), 750))
    assert torch.allclose(with_r - without, ((z * 1.75 - x_hat) ** 2).sum(1), rtol=1e-4)


def test_ddpm_step_matches_diffusers_posterior_mean(schedule):
    """The seed's step is DDPMScheduler.step's mean (no noise, no clipping)."""
    from diffusers import DDPMScheduler

    sch = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    teacher = Teacher(LinearEps(), schedule)
    x = torch.randn(4, 2)
    s = 600  # seed index -> diffusers index 599
    eps = LinearEps()(x, torch.full((4,), s - 1))
    ref = sch.step(eps, s - 1, x, generator=None, return_dict=True)
    mean_only = ref.pred_original_sample  # pred x0; rebuild the posterior mean by its formula
    a_prev = sch.alphas_cumprod[s - 2]
    a_t = sch.alphas_cumprod[s - 1]
    beta = sch.betas[s - 1]
    mu = (a_prev.sqrt() * beta / (1 - a_t)) * mean_only + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x
    ours = ddpm_step(teacher, x, torch.full((4,), s), torch.full((4,), s - 1))
    assert torch.allclose(ours, mu, atol=1e-4)


def test_replay_draws_only_trained_stages(schedule):
    m = curriculum(replay=0.5, K=5)
    gen = torch.Generator().manual_seed(0)
    k, _ = m._stages(25, 4000, gen)  # position 2 (stage 3); stages 1, 2 already trained
    assert set(k.tolist()) == {1, 2, 3}
    assert 0.4 < (k == 3).float().mean() < 0.6
    k0, _ = m._stages(5, 100, gen)  # first stage: nothing to replay
    assert set(k0.tolist()) == {1}


def test_training_reduces_the_loss(schedule):
    """A few hundred steps on a toy pair set: the loss of the last stage falls."""
    from onestep.nets import build_net

    torch.manual_seed(0)
    m = curriculum(K=2, steps_per_stage=150, **{"lambda": 0.1})
    net = build_net({"name": "mlp", "width": 32, "depth": 2, "temb_dim": 16}, (2,))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    z = torch.randn(256, 2)
    x0 = torch.tanh(z) * 2
    gen = torch.Generator().manual_seed(0)
    losses = []
    for step in range(300):
        loss, _ = m.loss(net, Batch(z, x0), step, gen)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(float(loss.mean().detach()))
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[150:160]) / 10
