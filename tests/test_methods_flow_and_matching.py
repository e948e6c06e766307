"""Baselines reflow, meanflow, dmd2, shortcut, drifting, tdm: each core on a hand-checkable case,
gradients only where they should flow, and a short training run that moves the loss (or the samples)."""

import copy
import math

import conftest
import pytest
import torch
from conftest import context, method_of
from torch import nn

from onestep.config import validate, with_method
from onestep.diffusion import Schedule
from onestep.evaluate import few_steps
from onestep.methods import METHODS, student_net
from onestep.methods.base import Batch
from onestep.methods.common import dm_gradient, interpolate
from onestep.methods.drifting import drift_field
from onestep.methods.meanflow import MeanFlowConfig, meanflow_target, sample_times
from onestep.methods.shortcut import consistency_target, consistency_times
from onestep.methods.tdm import grid
from onestep.nets import build_net

NAMES = ("reflow", "meanflow", "dmd2", "shortcut", "drifting", "tdm")
MU, SD = torch.tensor([1.5, -1.0]), 0.5  # the Gaussian "data" of the distribution-matching tests


def tiny(times: int = 1) -> nn.Module:
    return build_net({"name": "mlp", "width": 32, "depth": 2, "temb_dim": 16, "times": times}, (2,))


class GaussEps(conftest.GaussEps):
    """Exact epsilon of N(MU, SD^2 I) data plus a residual MLP that starts at zero: a fake score copied
    from it can learn."""

    def __init__(self, schedule: Schedule):
        res = tiny()
        nn.init.zeros_(res.out[-1].weight)
        nn.init.zeros_(res.out[-1].bias)
        super().__init__(schedule, MU, SD, res)


class Param(nn.Module):
    """A 'student' whose output is its parameter (B, 2), whatever the input: dL/doutput = P.grad."""

    def __init__(self, p):
        super().__init__()
        self.p = nn.Parameter(p.clone())

    def forward(self, x, t, s=None):
        return self.p


def method(name, schedule, **cfg):
    """`name` around the exact teacher of N(MU, SD^2 I) data with a trainable residual (GaussEps above)."""
    return method_of(name, ctx=context(GaussEps(schedule), schedule=schedule), **cfg)


def params(net):
    return [p.detach().clone() for p in net.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def gauss_data(n, gen):
    return MU + SD * torch.randn(n, 2, generator=gen)


def train_on_gauss_data(m, net: nn.Module, gen: torch.Generator, tracked, steps: int = 200) -> list[float]:
    """`steps` Adam steps of method `m` on data-only batches of the Gaussian data; per step, the number
    `tracked(loss, logs)` (the curve the test asserts on)."""
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        batch = Batch(torch.randn(256, 2, generator=gen), torch.zeros(256, 2), gauss_data(256, gen))
        loss, logs = m.loss(net, batch, step, gen)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(float(tracked(loss, logs)))
    return losses


# ---------------------------------------------------------------- registry, config


def test_registry_schemas_and_defaults(default_config):
    cfg = {**default_config, "seed": 0}
    for name in NAMES:
        c = with_method(cfg, {"name": name})
        validate(c)  # the dataclass defaults pass the method's schema
        assert c["method"] == {"name": name, **METHODS[name].Config.defaults()}
        assert student_net(c).get("times", 1) == METHODS[name].times
    assert [n for n in NAMES if METHODS[n].needs_data] == ["meanflow", "shortcut", "drifting"]
    bad = with_method(cfg, {"name": "meanflow", "K": 3})
    with pytest.raises(Exception, match="unknown key"):
        validate(bad)


# ---------------------------------------------------------------- reflow


class LinV(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, x, t):
        return self.a * x


def test_reflow_targets(schedule):
    m = method("reflow", schedule, reflow_steps=5, distill_steps=5, distill_solver="euler", distill_ode_steps=4,
               flow_weight=0.0)
    assert [m.schedule(s)["phase"] for s in (0, 4, 5, 9)] == [0, 0, 1, 1]
    z, x0 = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 0.5]])
    # phase 0: a field equal to the pair's straight velocity z - x0 has zero loss
    loss, _ = m.loss(lambda x, t: (z - x0).expand_as(x), Batch(z, x0), 0, torch.Generator())
    assert float(loss) == 0.0
    # phase 1: the target is 4 Euler steps of the frozen field v_2(x) = 0.4 x: z (1 - 0.4/4)^4
    teacher_field = LinV(0.4)
    m.aux_step(teacher_field, Batch(z, x0), 5, torch.Generator())
    assert not any(p.requires_grad for p in m.frozen.parameters())
    student = LinV(0.2)
    loss, logs = m.loss(student, Batch(z, x0), 5, torch.Generator())
    expected = ((z - 0.2 * z - z * 0.9**4) ** 2).sum()
    assert torch.allclose(loss[0], expected, rtol=1e-5)
    loss.sum().backward()
    assert student.a.grad is not None and m.frozen.a.grad is None  # the target is stop-gradient
    assert torch.allclose(interpolate(x0, z, torch.tensor([0.25])), 0.75 * x0 + 0.25 * z)


def test_reflow_training_reduces_the_loss(schedule):
    torch.manual_seed(0)
    m = method("reflow", schedule, reflow_steps=150, distill_steps=50, distill_ode_steps=2)
    net, gen = tiny(), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    z = torch.randn(256, 2)
    x0 = torch.tanh(2 * z)
    losses = []
    for step in range(m.total_steps):
        m.aux_step(net, Batch(z, x0), step, gen)
        loss, logs = m.loss(net, Batch(z, x0), step, gen)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(float(logs["L_flow"]))
    assert sum(losses[140:150]) < 0.5 * sum(losses[:10])
    one = m.sample(net, z, 1)
    assert ((one - x0) ** 2).sum(1).mean() < 0.5 * ((z - x0) ** 2).sum(1).mean()


# ---------------------------------------------------------------- meanflow


class ToyU(nn.Module):
    """u(z, t, r) = z (t/T)^2 + r/T on the network's 0..T time scale."""

    def forward(self, z, t, r):
        return z * (t / 1000).view(-1, 1) ** 2 + (r / 1000).view(-1, 1)


def test_meanflow_jvp_target_by_hand_and_by_finite_differences():
    x, e = torch.tensor([[1.0, -1.0], [0.3, 2.0]]), torch.tensor([[0.5, 0.2], [-1.0, 0.4]])
    t, r = torch.tensor([0.8, 0.6]), torch.tensor([0.3, 0.6])
    u, tgt = meanflow_target(ToyU(), x, e, t, r, 1000)  # time scale T = 1000: ToyU reads t/1000
    z_t, v = interpolate(x, e, t), e - x
    tt, rr = t.view(-1, 1), r.view(-1, 1)
    dudt = v * tt**2 + 2 * z_t * tt  # (v . d_z + d_t) u by hand
    assert torch.allclose(u, z_t * tt**2 + rr) and torch.allclose(tgt, v - (tt - rr) * dudt, atol=1e-6)

    torch.manual_seed(0)
    net = tiny(times=2)
    x, e, t, r = torch.randn(16, 2), torch.randn(16, 2), torch.rand(16) * 0.8 + 0.1, torch.rand(16) * 0.1
    u, tgt = meanflow_target(net, x, e, t, r, 1000)  # the stiff time scale: a sharp check of du/dt
    assert u.requires_grad and not tgt.requires_grad  # stop-gradient on the target
    h, z_t, v = 1e-4, interpolate(x, e, t), e - x  # the net sees 1000 t: h = 1e-4 is 0.1 on its time scale
    with torch.no_grad():
        fd = (net(z_t + h * v, 1000 * (t + h), 1000 * r) - net(z_t - h * v, 1000 * (t - h), 1000 * r)) / (2 * h)
    assert (tgt - (v - (t - r).view(-1, 1) * fd)).abs().max() < 1e-2 * tgt.abs().max()


def test_meanflow_times_and_gradient_path(schedule):
    cfg = MeanFlowConfig(ratio_r_neq_t=0.25)
    t, r = sample_times(4000, cfg, torch.Generator().manual_seed(0))
    assert (r <= t).all() and 0.7 < (r == t).float().mean() < 0.8 and (t > 0).all() and (t < 1).all()
    m = method("meanflow", schedule)
    net = tiny(times=2)
    gen = torch.Generator().manual_seed(0)
    loss, _ = m.loss(net, Batch(torch.randn(8, 2), torch.zeros(8, 2), gauss_data(8, gen)), 0, gen)
    loss.sum().backward()
    assert all(p.grad is not None for p in net.parameters())  # both time embeddings are trained


def test_meanflow_training_reduces_the_loss(schedule):
    torch.manual_seed(0)
    m = method("meanflow", schedule, p=0.0)  # plain squared error: the loss itself must fall
    net, gen = tiny(times=2), torch.Generator().manual_seed(0)
    losses = train_on_gauss_data(m, net, gen, lambda loss, logs: loss.mean())
    assert sum(losses[-20:]) / 20 < 0.6 * sum(losses[:5]) / 5  # the conditional variance of v stays
    x = m.sample(net, torch.randn(2000, 2, generator=gen), 1)
    assert (x.mean(0) - MU).norm() < 0.3


# ---------------------------------------------------------------- dmd2


def test_dmd2_gradient_is_zero_when_fake_equals_real_and_is_the_loss_gradient(schedule):
    m = method("dmd2", schedule)
    x = torch.randn(6, 2)
    t = torch.full((6,), 300)
    eps = torch.randn(6, 2)
    assert dm_gradient(m.ctx.teacher, m.fake, x, t, eps).abs().max() == 0  # fake starts as the teacher
    with torch.no_grad():
        m.fake.res.out[-1].bias.fill_(0.1)  # fake != real
    g = dm_gradient(m.ctx.teacher, m.fake, x, t, eps)
    a = schedule.abar[300]
    x_t = a.sqrt() * x + (1 - a).sqrt() * eps
    eps_real = m.ctx.teacher.net(x_t, t - 1)
    d_real = (x_t - (1 - a).sqrt() * eps_real) / a.sqrt()
    d_fake = (x_t - (1 - a).sqrt() * (eps_real + 0.1)) / a.sqrt()
    assert torch.allclose(g, (d_fake - d_real) / (x - d_real).abs().mean(1, keepdim=True), atol=1e-5)

    student = Param(x)
    gen = torch.Generator().manual_seed(3)
    loss, _ = m.loss(student, Batch(torch.randn(6, 2), torch.zeros(6, 2)), 0, gen)
    loss.sum().backward()
    gen = torch.Generator().manual_seed(3)  # same draws: t, then eps
    t2 = m.idx[torch.randint(m.cfg.t_min, m.cfg.t_max + 1, (6,), generator=gen)]  # levels of the Karras grid
    g2 = dm_gradient(m.ctx.teacher, m.fake, x, t2, torch.randn(6, 2, generator=gen))
    assert torch.allclose(student.p.grad, g2, atol=1e-6)  # dL/dx = grad: the stop-gradient target
    assert all(p.grad is None for p in m.fake.parameters())  # the generator loss never trains the fake score


def test_dmd2_fake_optimiser_updates_only_the_fake_score(schedule):
    m = method("dmd2", schedule, fake_updates=2)
    student = tiny()
    s0, t0, f0 = params(student), params(m.ctx.teacher.net), params(m.fake)
    logs = m.aux_step(student, Batch(torch.randn(32, 2), torch.zeros(32, 2)), 0, torch.Generator().manual_seed(0))
    assert "fake_loss" in logs
    assert same(s0, params(student)) and all(p.grad is None for p in student.parameters())
    assert same(t0, params(m.ctx.teacher.net))
    assert not same(f0, params(m.fake))
    state = copy.deepcopy(m.state_dict())
    m2 = method("dmd2", schedule)
    m2.load_state_dict(state)
    assert same(params(m.fake), params(m2.fake))


def test_dmd2_training_moves_samples_to_the_teacher(schedule):
    torch.manual_seed(0)
    m = method("dmd2", schedule)
    net, gen = tiny(), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    z = torch.randn(1000, 2, generator=gen)
    before = float((m.sample(net, z).mean(0) - MU).norm())
    for step in range(150):
        batch = Batch(torch.randn(256, 2, generator=gen), torch.zeros(256, 2))
        m.aux_step(net, batch, step, gen)
        loss, _ = m.loss(net, batch, step, gen)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    x = m.sample(net, z)
    assert float((x.mean(0) - MU).norm()) < 0.3 * before
    assert abs(float(x.std(0).mean()) - SD) < 0.25


class Linear(nn.Module):
    """v(x, t) = x: from t = 1 the flow's exact solution at t = 0 is z / e."""

    def forward(self, x, t):
        return x


def test_reflow_distils_an_accurate_solve(schedule):
    """The distillation target is an accurate solve of the frozen reflowed flow (the paper: adaptive RK45),
    not a 4-step Euler one: on v = x, exact z / e, 4 Euler steps give z (3/4)^4, 14% off."""
    m = method("reflow", schedule)
    m.frozen = Linear()
    z = torch.randn(64, 2)
    assert torch.allclose(m.distill_target(z), z / math.e, rtol=1e-3, atol=1e-5)
    euler4 = method("reflow", schedule, distill_solver="euler", distill_ode_steps=4)
    euler4.frozen = Linear()
    assert torch.allclose(euler4.distill_target(z), z * 0.75**4)


# ---------------------------------------------------------------- shortcut


class ToyS(nn.Module):
    def forward(self, x, t, d):
        return 0.5 * x + (t / 1000).view(-1, 1)


def test_shortcut_consistency_target_by_hand():
    x = torch.tensor([[1.0, 2.0]])
    t, d = torch.tensor([0.5]), torch.tensor([0.25])
    s1 = 0.5 * x + 0.5
    s2 = 0.5 * (x - 0.25 * s1) + 0.25
    assert torch.allclose(consistency_target(ToyS(), x, t, d, 1000), (s1 + s2) / 2)
    net = tiny(times=2)
    assert not consistency_target(net, x, t, d, 1000).requires_grad  # stop-gradient
    t, d = consistency_times(5000, 128, torch.Generator().manual_seed(0))
    two_d = 2 * d
    assert set((1 / two_d).round().long().tolist()) == {1, 2, 4, 8, 16, 32, 64}
    assert (t >= two_d - 1e-6).all() and (t <= 1 + 1e-6).all()
    assert torch.allclose(t / two_d, (t / two_d).round())  # t on the 2d grid


def test_shortcut_training_reduces_the_loss(schedule):
    torch.manual_seed(0)
    m = method("shortcut", schedule, max_steps=8)
    net, gen = tiny(times=2), torch.Generator().manual_seed(0)
    losses = train_on_gauss_data(m, net, gen, lambda loss, logs: logs["L_fm"])
    assert sum(losses[-20:]) / 20 < 0.6 * sum(losses[:5]) / 5  # the conditional variance of e - x stays
    for steps in (1, 4):
        assert (m.sample(net, torch.randn(2000, 2, generator=gen), steps).mean(0) - MU).norm() < 0.3


class Recorder(nn.Module):
    """A two-time net that records the step size d of every call, split into trained calls (grad on)
    and queries (no grad: bootstrap targets, sampling)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.trained, self.queried = set(), set()

    def forward(self, x, t, d):
        ds = {round(float(v) / 1000, 6) for v in d}
        (self.trained if torch.is_grad_enabled() else self.queried).update(ds)
        return self.lin(x)


def test_shortcut_every_queried_step_size_is_trained(schedule):
    """Every d a bootstrap target or the sampler queries is a d the loss trains (flow matching at the
    smallest step 1/M, as the official code does); the targets come from the EMA copy (ctx.ema)."""
    M = 8
    student, ema = Recorder(), Recorder().requires_grad_(False)
    c = context(GaussEps(schedule), schedule=schedule)
    c.ema = ema
    m = method_of("shortcut", ctx=c, max_steps=M)
    gen = torch.Generator().manual_seed(0)
    for step in range(20):
        batch = Batch(torch.randn(256, 2, generator=gen), torch.zeros(256, 2), gauss_data(256, gen))
        m.loss(student, batch, step, gen)[0].mean().backward()
    assert not student.queried  # the targets never query the online weights ...
    assert ema.queried == {1 / 2, 1 / 4, 1 / 8}  # ... but the EMA copy, at every d = 2^-k down to 1/M
    for n in m.sample_steps:
        m.sample(ema, torch.randn(4, 2), n)
    assert ema.queried <= student.trained, f"queried but never trained: {ema.queried - student.trained}"
    assert student.trained == {1, 1 / 2, 1 / 4, 1 / 8}  # no d = 0 that nothing queries
    off = method_of("shortcut", ctx=c, max_steps=M, ema_target=False)
    online = Recorder()
    off.loss(online, batch, 0, gen)
    assert online.queried == {1 / 2, 1 / 4, 1 / 8}  # ema_target: false: the online weights, stop-gradient


# ---------------------------------------------------------------- drifting


def test_drift_field_is_antisymmetric_and_attracts():
    gen = torch.Generator().manual_seed(0)
    x, p, q = torch.randn(5, 2, generator=gen), torch.randn(7, 2, generator=gen), torch.randn(9, 2, generator=gen) + 1
    s = torch.tensor(1.3)
    taus = (0.05, 0.2)
    assert torch.allclose(drift_field(x, p, q, taus, s), -drift_field(x, q, p, taus, s), atol=1e-6)
    assert drift_field(x, p, p, taus, s).abs().max() < 1e-6  # q = p: no drift
    one_pos, one_neg = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(drift_field(x, one_pos, one_neg, taus, s), 2 * (one_pos - one_neg).expand(5, 2))


def test_drifting_loss_gradient_is_minus_twice_the_drift(schedule):
    m = method("drifting", schedule)
    x = torch.randn(6, 2)
    student = Param(x)
    data = torch.randn(6, 2) + 3
    loss, _ = m.loss(student, Batch(torch.randn(6, 2), torch.zeros(6, 2), data), 0, torch.Generator())
    loss.sum().backward()
    V = drift_field(x, data, x, m.cfg.taus, neg_mask=torch.eye(6, dtype=torch.bool))
    assert torch.allclose(student.p.grad, -2 * V, atol=1e-5)
    assert torch.allclose(loss, (V**2).sum(1), atol=1e-5)
    assert (V.mean(0) @ (data.mean(0) - x.mean(0))) > 0  # pulled toward the data


def test_drifting_training_reduces_the_loss(schedule):
    torch.manual_seed(0)
    m = method("drifting", schedule)
    net, gen = tiny(), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for step in range(200):
        batch = Batch(torch.randn(256, 2, generator=gen), torch.zeros(256, 2), gauss_data(256, gen))
        loss, _ = m.loss(net, batch, step, gen)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(float(loss.mean()))
    assert sum(losses[-20:]) < 0.5 * sum(losses[:20])
    assert (m.sample(net, torch.randn(2000, 2, generator=gen)).mean(0) - MU).norm() < 0.3


# ---------------------------------------------------------------- tdm


class ZeroX0(nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)


def test_tdm_grid_trajectory_and_intervals(schedule):
    assert grid(1000, 4).tolist() == [1000, 750, 500, 250, 0] and grid(1000, 1).tolist() == [1000, 0]
    assert grid(900, 4).tolist() == [900, 675, 450, 225, 0]  # the default t_top
    m = method("tdm", schedule, ks=[4], t_top=1000)
    z = torch.randn(3, 2)
    t_i = torch.tensor([1000, 750, 250])
    x = m.trajectory(ZeroX0(), z, 4, t_i)
    a = schedule.abar
    ratio = lambda s, t: ((1 - a[t]) / (1 - a[s])).sqrt()  # noqa: E731  DDIM move with x0_hat = 0
    assert torch.allclose(x[0], z[0]) and torch.allclose(x[1], z[1] * ratio(1000, 750))
    assert torch.allclose(x[2], z[2] * ratio(1000, 750) * ratio(750, 500) * ratio(500, 250), rtol=1e-5)
    t_i, t_next = m._steps(4, torch.zeros(4000, 2), torch.Generator().manual_seed(0))
    tau = m._tau(t_i, t_next, torch.Generator().manual_seed(1))
    assert (tau < t_i - 10).all() and (tau >= t_next.clamp(min=m.cfg.t_min)).all()  # each step its own interval
    assert set(t_i.tolist()) == {1000, 750, 500, 250}
    shared = method("tdm", schedule, ks=[4], t_top=1000, separate=False)._tau(t_i, t_next, torch.Generator().manual_seed(1))
    assert (shared < 990).all() and (shared >= t_i).any()  # not separate: up to t_top - 10 from every step
    assert torch.allclose(m.sample(ZeroX0(), z, 4), torch.zeros_like(z))  # t_K = 0: x = x0_hat


def test_tdm_fake_scores_are_per_step_count_and_only_they_train(schedule):
    m = method("tdm", schedule, ks=[1, 2], fake_updates=1)
    assert m.sample_steps == (1, 2) and m.schedule(0)["K"] == 1 and m.schedule(1)["K"] == 2
    student = tiny()
    s0, f1, f2 = params(student), params(m.fakes["1"]), params(m.fakes["2"])
    m.aux_step(student, Batch(torch.randn(32, 2), torch.zeros(32, 2)), 1, torch.Generator().manual_seed(0))  # K = 2
    assert same(s0, params(student)) and same(f1, params(m.fakes["1"])) and not same(f2, params(m.fakes["2"]))
    loss, _ = m.loss(student, Batch(torch.randn(32, 2), torch.zeros(32, 2)), 1, torch.Generator().manual_seed(0))
    loss.sum().backward()
    assert all(p.grad is None for p in m.fakes.parameters()) and student.out[-1].weight.grad is not None


def test_tdm_training_moves_samples_to_the_teacher(schedule):
    torch.manual_seed(0)
    m = method("tdm", schedule)
    net, gen = tiny(), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    z = torch.randn(1000, 2, generator=gen)
    before = float((m.sample(net, z, 1).mean(0) - MU).norm())
    for step in range(200):
        batch = Batch(torch.randn(256, 2, generator=gen), torch.zeros(256, 2))
        m.aux_step(net, batch, step, gen)
        loss, _ = m.loss(net, batch, step, gen)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    assert m.sample_steps == (1, 2, 4) and few_steps(m) == (2, 4)  # the evaluation scores the knob-set counts
    assert few_steps(method("tdm", schedule, ks=[1])) == ()
    for steps in m.sample_steps:
        assert float((m.sample(net, z, steps).mean(0) - MU).norm()) < 0.3 * before
