"""Baselines kd, progressive, cd, ct, ctm: each core against a hand-checkable case, where gradients flow
(and where they must not), and a short training run whose loss falls.

The hand-checkable teacher is exact for Gaussian data N(mu, s^2 I): eps(x_t, t) = sigma_t (x_t - alpha_t mu)
/ (alpha_t^2 s^2 + sigma_t^2). With s = 0 (a single point mu) the PF-ODE keeps eps constant, so every
DDIM or Heun step is exact: x_t -> alpha_s mu + sigma_s eps.
"""

import math

import pytest
import torch
from conftest import DIFF, GaussEps, context, method_of
from torch import nn

from onestep import data
from onestep.config import ConfigError
from onestep.diffusion import Schedule, Teacher
from onestep.methods import student_net
from onestep.methods.base import Batch
from onestep.methods.common import Consistency, edm_sigmas, grid_size, index_grid, lognormal_probs, pf_ode_step, pseudo_huber
from onestep.methods.progressive import ProgressiveConfig, round_at, student_steps, target_x
from onestep.nets import build_net

MU = torch.tensor([1.0, -0.5])


@pytest.fixture(scope="module")
def sch():
    return Schedule.from_config(DIFF)


class Recorder(nn.Module):
    """Wraps a student and records each call: inputs, whether autograd records it, whether its weights are live."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, t, s=None):
        live = any(p.requires_grad for p in self.net.parameters())
        self.calls.append({"x": x.detach().clone(), "t": t.clone(), "grad": torch.is_grad_enabled(), "live": live})
        return self.net(x, t) if s is None else self.net(x, t, s)


def make(name, sch, s=0.0, shape=(2,), **over):
    """(method, its teacher): `name` around the exact teacher of N(MU, s^2 I) (of 0 on images), sigma_data 0.5."""
    # data_bound (progressive's clip_x0: auto) far outside N(MU, s^2): the clip never acts in these tests
    ctx = context(GaussEps(sch, MU if shape == (2,) else torch.zeros(shape), s), shape, sch, data_std=lambda: 0.5,
                  data_bound=lambda: 100.0)
    return method_of(name, ctx=ctx, **over), ctx.teacher


def mlp(times=1, width=32):
    torch.manual_seed(0)
    return build_net({"name": "mlp", "width": width, "depth": 1, "temb_dim": 16, "times": times}, (2,))


def batch(n=16, s=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    return Batch(z, MU + s * z, MU + s * torch.randn(n, 2, generator=g))


def grads(net):
    return [p.grad for p in net.parameters()]


# ---------------------------------------------------------------- kd


def test_kd_is_the_seeds_l_distill(sch):
    m, teacher = make("kd", sch)
    net = mlp()
    b = batch()
    loss, _ = m.loss(net, b, 0, torch.Generator())
    g = net(b.z, torch.full((16,), 1000))  # G(z) = F(z, T)
    assert torch.allclose(loss, ((g - b.x0) ** 2).sum(1))
    loss.mean().backward()
    assert all(p is not None for p in grads(net)) and teacher.evals == 0  # pairs only, no teacher call
    assert torch.allclose(m.sample(net, b.z), g.detach())
    l1, _ = make("kd", sch, distance="l1")[0].loss(net, b, 0, torch.Generator())
    assert torch.allclose(l1, (g - b.x0).abs().sum(1))


# ---------------------------------------------------------------- progressive


def test_progressive_rounds_halve_to_one_step():
    cfg = ProgressiveConfig(start_steps=16, steps_per_round=800)
    assert cfg.rounds == 5
    assert [student_steps(round_at(k, cfg), cfg) for k in (0, 799, 800, 2400, 3200, 3999, 10**6)] == [16, 16, 8, 2, 1, 1, 1]


def test_progressive_target_lands_one_student_step_on_two_teacher_steps(sch):
    m, teacher = make("progressive", sch)
    x0, eps = MU.expand(8, 2), torch.randn(8, 2)
    t, mid, s = torch.full((8,), 500), torch.full((8,), 250), torch.full((8,), 125)
    a_t, a_s = sch.at("abar", t, 2), sch.at("abar", s, 2)
    x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
    x_s = m.teacher_step(m.teacher_step(x_t, t, mid), mid, s)
    assert torch.allclose(x_s, a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps, atol=1e-5)  # exact teacher on a point
    assert torch.allclose(target_x(x_s, x_t, a_t, a_s), x0, atol=1e-4)  # the x-prediction that lands there is mu
    assert torch.allclose(target_x(x_s, x_t, a_t, torch.ones_like(a_s)), x_s)  # s = 0: the teacher's result itself
    assert teacher.evals == 16


def test_progressive_student_becomes_the_frozen_teacher(sch):
    m, teacher = make("progressive", sch, start_steps=2, steps_per_round=5)
    net = Recorder(mlp())
    loss, _ = m.loss(net, batch(), 0, torch.Generator())
    assert m.prev is None and teacher.evals == 2 * 16  # round 0: two teacher half steps
    loss.mean().backward()
    assert all(p is not None for p in grads(net))
    loss, _ = m.loss(net, batch(), 5, torch.Generator())  # round 1: the round-0 student is the teacher
    assert m.round == 1 and teacher.evals == 32
    assert all(not p.requires_grad for p in m.prev.parameters())
    before = [p.clone() for p in m.prev.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, m.prev.parameters(), strict=True))  # a copy, not the student
    # resume: the frozen teacher travels in the method's state
    m2, _ = make("progressive", sch, start_steps=2, steps_per_round=5)
    m2.load_state_dict(m.state_dict())
    m2.loss(net, batch(), 6, torch.Generator())
    assert all(torch.equal(a, b) for a, b in zip(before, m2.prev.parameters(), strict=True))


def test_progressive_one_step_sample_is_the_x_prediction_at_T(sch):
    m, _ = make("progressive", sch)
    net, z = mlp(), torch.randn(8, 2)
    t = torch.full((8,), 1000)
    assert torch.allclose(m.sample(net, z, 1), m.xhat(net, z, t), atol=1e-6)
    assert m.sample(net, z, 4).shape == z.shape


# ---------------------------------------------------------------- iCT pieces


def test_ict_discretisation_and_sampling(sch):
    sig = edm_sigmas(sch)
    assert sig[0] == 0 and torch.isclose(sig[500], ((1 - sch.abar[500]) / sch.abar[500]).sqrt())
    assert [grid_size(k, 4000, 10, 1280) for k in (0, 499, 500, 1000, 3500, 3999)] == [11, 11, 21, 41, 1281, 1281]
    g = index_grid(tuple(sig.double().tolist()), 11, 7.0)
    assert g[0] == 1 and g[-1] == 1000 and list(g) == sorted(set(g)) and len(g) == 11
    assert len(index_grid(tuple(sig.double().tolist()), 1281, 7.0)) <= 1000  # deduplicated on the index grid
    gt = torch.tensor(g)
    p = lognormal_probs(sig[gt[:-1]], sig[gt[1:]], -1.1, 2.0)
    assert torch.isclose(p.sum(), torch.tensor(1.0))
    peak = int(p.argmax())
    assert sig[gt[peak]] <= math.exp(-1.1) * 3 and sig[gt[peak + 1]] >= math.exp(-1.1) / 3  # mass around e^P_mean
    c = 0.00054 * math.sqrt(2)
    assert torch.isclose(pseudo_huber(torch.tensor([[3.0, 4.0]]), torch.zeros(1, 2), c), torch.tensor(math.sqrt(25 + c * c) - c))


def test_consistency_boundary_condition(sch):
    f, net = Consistency(sch, 0.5), mlp()
    x, one = torch.randn(8, 2), torch.ones(8, dtype=torch.long)
    assert torch.allclose(f(net, x, one), x / sch.abar[1].sqrt())  # f(x, t_min) = x: c_skip = 1, c_out = 0


# cd's iCT recipe as knob values (its default is the CD code's recipe: tests/test_official_losses.py)
ICT_CD = {"pairs": "lognormal", "weighting": "ict", "distance": "pseudo_huber", "target": "online"}


@pytest.mark.parametrize("name", ["ct", "cd"])
def test_consistency_pair_target_and_stop_gradient(sch, name):
    m, teacher = make(name, sch, s0=10, s1=10, **({} if name == "ct" else ICT_CD))
    net = Recorder(mlp())
    b = batch()
    loss, _ = m.loss(net, b, 0, torch.Generator().manual_seed(3))
    (hi, lo) = net.calls
    assert hi["grad"] and not lo["grad"]  # the target pass is under stop-gradient
    assert (hi["t"] > lo["t"]).all()
    sig, abar = edm_sigmas(sch), sch.abar
    noise = lambda c: (c["x"] - abar[c["t"]].sqrt()[:, None] * MU) / (1 - abar[c["t"]]).sqrt()[:, None]  # noqa: E731
    # CT: the same z for both states; CD: the (exact, on a point) teacher Heun step keeps it too
    assert torch.allclose(noise(hi), noise(lo), atol=1e-4)
    assert teacher.evals == (0 if name == "ct" else 2 * 16)
    f = Consistency(sch, 0.5)
    with torch.no_grad():
        want = pseudo_huber(f(net.net, hi["x"], hi["t"]), f(net.net, lo["x"], lo["t"]), 0.00054 * math.sqrt(2))
    assert torch.allclose(loss.detach(), want / (sig[hi["t"]] - sig[lo["t"]]), rtol=1e-4)
    loss.mean().backward()
    assert all(p is not None for p in grads(net))


def test_heun_step_is_exact_on_a_point_and_costs_two_evals(sch):
    teacher = Teacher(GaussEps(sch, MU, 0.0), sch)
    eps, t, s = torch.randn(4, 2), torch.full((4,), 700), torch.full((4,), 20)
    a_t, a_s = sch.at("abar", t, 2), sch.at("abar", s, 2)
    x_s = pf_ode_step(teacher, a_t.sqrt() * MU + (1 - a_t).sqrt() * eps, t, s)
    assert torch.allclose(x_s, a_s.sqrt() * MU + (1 - a_s).sqrt() * eps, atol=1e-3) and teacher.evals == 8


# ---------------------------------------------------------------- ctm


def test_ctm_jumps(sch):
    m, teacher = make("ctm", sch)
    net = mlp(times=2)
    x, t, zero = torch.randn(8, 2), torch.full((8,), 600), torch.zeros(8, dtype=torch.long)
    assert torch.allclose(m.G(net, x, t, t), x, atol=1e-6)  # G(x, t, t) = x
    assert torch.allclose(m.G(net, x, t, zero), m.D(net, x, t, zero))  # G(x, t, 0) = D: the one-step sample
    assert torch.allclose(m.D(net, x, zero, zero), x)  # at t = 0 the denoiser is the identity
    i_t, i_s, i_u = m.times_at(4096, torch.Generator().manual_seed(0))
    assert (i_t >= 2).all() and (i_s < i_t).all() and (i_u < i_t).all() and (i_u >= i_s.clamp(min=1)).all()
    assert i_s.min() == 0 and i_t.max() == len(m.grid) - 1
    # the teacher solve t -> u along the grid is exact on a point
    eps = torch.randn(8, 2)
    it, iu = torch.full((8,), 15), torch.tensor([14, 10, 5, 1, 14, 10, 5, 1])
    a_t, a_u = sch.at("abar", m.grid[it], 2), sch.at("abar", m.grid[iu], 2)
    x_u = m.solve(a_t.sqrt() * MU + (1 - a_t).sqrt() * eps, it, iu)
    assert torch.allclose(x_u, a_u.sqrt() * MU + (1 - a_u).sqrt() * eps, atol=1e-3)
    assert teacher.evals == 2 * 2 * (1 + 5 + 10 + 14)  # one Heun step (2 evals) per grid interval, per sample


def test_ctm_gradients_only_through_the_inner_jump(sch):
    m, _ = make("ctm", sch)
    net = Recorder(mlp(times=2))
    loss, logs = m.loss(net, batch(), 0, torch.Generator().manual_seed(1))
    flags = [(c["grad"], c["live"]) for c in net.calls]
    # inner G (live), outer G (frozen weights), target G, G (no grad), DSM D (live)
    assert flags == [(True, True), (True, False), (False, True), (False, True), (True, True)]
    loss.mean().backward()
    assert all(p is not None for p in grads(net))
    # the frozen outer jump passes the gradient to its input only
    x = torch.randn(4, 2, requires_grad=True)
    plain = mlp(times=2)
    m.G_sg(plain, x, torch.full((4,), 300), torch.zeros(4, dtype=torch.long)).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in plain.parameters())


def test_ctm_target_is_the_ema_copy(sch):
    """CTM's target G(G(x_u, u, s), s, 0) comes from the method's own EMA copy theta^- (rate target_ema, 0.999 as
    sony/ctm), made from the student at the first aux_step; the online student is only called with gradients on
    (or with frozen weights for the outer jump)."""
    m, _ = make("ctm", sch)
    assert m.cfg.target_ema == 0.999
    net = Recorder(mlp(times=2))
    m.aux_step(net, batch(), 0, torch.Generator().manual_seed(0))
    ema = m.target.net
    assert ema is not net and all(not p.requires_grad for p in ema.parameters())
    ema.calls.clear()
    m.loss(net, batch(), 0, torch.Generator().manual_seed(1))
    assert [c["grad"] for c in net.calls] == [True, True, True]  # inner G, outer G (frozen weights), DSM D
    assert [c["grad"] for c in ema.calls] == [False, False]  # the two target jumps
    off, _ = make("ctm", sch, ema_target=False)
    net = Recorder(mlp(times=2))
    off.aux_step(net, batch(), 0, torch.Generator().manual_seed(0))
    off.loss(net, batch(), 0, torch.Generator().manual_seed(1))
    assert [c["grad"] for c in net.calls].count(False) == 2  # ema_target: false: the online weights


@pytest.mark.parametrize("name", ["cd", "ct", "ctm"])
def test_sigma_data_comes_from_the_data(sch, name):
    """sigma_data: auto is the data's std over every element, not CIFAR-10's 0.5 (the default, measured better
    here); without a data source `auto` stops with a message naming the key."""
    ds = {"name": "checkerboard"}
    want = float(data.full(ds).double().std())
    assert abs(data.std(ds) - want) < 1e-9 and abs(want - 0.5) > 0.3
    teacher = Teacher(GaussEps(sch, MU, 0.0), sch)
    build = lambda ctx, **over: method_of(name, ctx=ctx, **over)  # noqa: E731
    m = build(context(teacher, data_std=lambda: data.std(ds)), sigma_data="auto")
    got = m.f.s_d if name != "ctm" else m.s_d
    assert abs(got - want) < 1e-6
    if name != "ctm":
        assert m.schedule(0)["sigma_data"] == pytest.approx(want)  # logged with the run
    m = build(context(teacher, data_std=lambda: data.std(ds)), sigma_data=0.7)
    assert (m.f.s_d if name != "ctm" else m.s_d) == 0.7
    with pytest.raises(ConfigError, match="method.sigma_data"):
        build(context(teacher), sigma_data="auto")
    m = build(context(teacher))  # the default needs no data
    assert (m.f.s_d if name != "ctm" else m.s_d) == 0.5


def test_sigma_data_in_the_schema(default_config):
    from onestep.config import validate, with_method

    for v in ("auto", 1.2):
        validate(with_method({**default_config, "seed": 0}, {"name": "ct", "sigma_data": v}))
    for v in ("data", 0):
        with pytest.raises(ConfigError, match="sigma_data"):
            validate(with_method({**default_config, "seed": 0}, {"name": "ct", "sigma_data": v}))


def test_ctm_asks_for_a_two_time_student(default_config):
    cfg = {**default_config, "method": {"name": "ctm"}}
    assert student_net(cfg)["times"] == 2
    assert "times" not in student_net({**default_config, "method": {"name": "kd"}})


# ---------------------------------------------------------------- training: the loss falls


# (name, overrides, loss ratio last/first it must beat): CT's estimator is noisy (the pair shares only
# z), its loss falls least; every method must also move its one-step samples onto the data's mean.
# ctm without its adaptive balance (the balanced DSM weight moves with the gradients, so its total is no fixed
# objective); its DSM term, at sony/ctm's own noise levels, keeps the posterior's irreducible error: 0.7.
FALLS = [("kd", {}, 0.5), ("progressive", {"start_steps": 1}, 0.5), ("cd", {"s0": 10, "s1": 10}, 0.7),
         ("ct", {"s0": 10, "s1": 10}, 0.9), ("ctm", {"N": 6, "balance": False}, 0.7)]


@pytest.mark.parametrize(("name", "over", "ratio"), FALLS)
def test_short_training_lowers_the_loss(sch, name, over, ratio):
    s = 0.5
    m, _ = make(name, sch, s=s, **over)
    net = mlp(times=m.times, width=32)
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(9))
    err0 = (m.sample(net, z).mean(0) - MU).norm()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for step in range(150):
        loss, _ = m.loss(net, batch(64, s, seed=step), step, gen)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(float(loss.detach().mean()))
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert math.isfinite(last) and last < ratio * first, (first, last)
    err = (m.sample(net, z).mean(0) - MU).norm()
    assert err < 0.5 * err0, (float(err0), float(err))


@pytest.mark.parametrize("name", ["kd", "progressive", "cd", "ct", "ctm"])
def test_trainer_runs_each_method_blind(default_config, sch, name):
    """The method-blind trainer on checkerboard, a few steps: the method's own step budget, its
    two-time student where it needs one, data batches where it trains from data."""
    from onestep.config import deep_merge, validate, with_method
    from onestep.evaluate import few_steps
    from onestep.training.train import train_student

    cfg = with_method({**default_config, "seed": 0}, {"name": name})
    steps = {"progressive": {"start_steps": 2, "steps_per_round": 3}}.get(name, {"steps": 6})
    cfg = deep_merge(cfg, {"method": steps, "student": {"batch_size": 32, "log_every": 2,
                                                       "net": {"width": 16, "depth": 1, "temb_dim": 8}}})
    validate(cfg)
    teacher = Teacher(build_net({"name": "mlp", "width": 16, "depth": 1, "temb_dim": 8}, (2,)), sch)
    pairs = {"z": torch.randn(128, 2), "x0": torch.randn(128, 2)}
    rows = []
    model, summary = train_student(cfg, teacher, pairs, "cpu", lambda v, step, series="step": rows.append(v), progress=False)
    assert summary["steps"] == 6 and summary["params"] > 0 and rows
    ctx = context(teacher, data_std=lambda: data.std(cfg["dataset"]), data_bound=lambda: data.bound(cfg["dataset"]))
    method = method_of(**cfg["method"], ctx=ctx)
    x = method.sample(model, torch.randn(8, 2), 1)
    assert x.shape == (8, 2) and torch.isfinite(x).all()
    assert few_steps(method) == ((2, 4) if name != "kd" else ())


@pytest.mark.parametrize("name", ["kd", "progressive", "cd", "ct", "ctm"])
def test_methods_take_images(sch, name):
    m, _ = make(name, sch, shape=(1, 8, 8))
    torch.manual_seed(0)
    net = build_net({"name": "convnet", "width": 8, "depth": 1, "temb_dim": 8, "times": m.times}, (1, 8, 8))
    x = torch.randn(4, 1, 8, 8)
    loss, _ = m.loss(net, Batch(x, x.tanh(), x.tanh()), 0, torch.Generator())
    assert loss.shape == (4,) and torch.isfinite(loss).all()
    for n in m.sample_steps:
        assert m.sample(net, x, n).shape == x.shape
