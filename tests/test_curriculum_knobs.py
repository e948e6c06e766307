"""The ablation knobs of Curriculum Trajectory Matching each change what they should."""

import math
from functools import partial

import pytest
import torch
import yaml
from conftest import context, method_of
from torch import nn

from onestep.config import ConfigError, validate
from onestep.diffusion import ddim_jump
from onestep.methods.base import Batch
from onestep.methods.curriculum import CurriculumConfig
from onestep.methods.losses import Adversarial, PerceptualError, PseudoHuber
from onestep.nets import build_net

BASE = {"K": 10, "steps_per_stage": 5, "lambda": 1.0, "replay": 0.0}
curriculum = partial(method_of, "curriculum", **BASE)


def batch(shape=(2,), n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, *shape, generator=g), torch.randn(n, *shape, generator=g))


def test_budget_fixes_the_total_steps_whatever_K():
    for K in (10, 25, 50, 100, 1000):
        cfg = CurriculumConfig.from_dict({**BASE, "K": K, "budget": 4000})
        assert cfg.steps_per_stage == 4000 // K
        assert curriculum(K=K, budget=4000).total_steps == K * (4000 // K)


def test_global_consistency_costs_more_teacher_evaluations_and_ties_to_earlier_stages():
    ctx = context()
    student = build_net({"name": "mlp", "width": 16, "depth": 1}, (2,))
    b = batch()
    step = 5 * 6  # stage k = 7, t_k = 300
    costs = {}
    for scope, extra in (("adjacent", {}), ("global", {"global_stages": 3})):
        method = curriculum(ctx=ctx, consistency=scope, **extra)
        ctx.teacher.evals = 0
        _, logs = method.loss(student, b, step, torch.Generator().manual_seed(1))
        costs[scope] = ctx.teacher.evals
        assert float(logs["teacher_evals_per_sample"]) == (1 if scope == "adjacent" else 3)
    assert costs == {"adjacent": 16, "global": 48}

    # global with one draw: R_k equals || G(z, t_k) - DDIM_{t_j -> t_k}(G(z, t_j)) ||^2 for the drawn j < k
    method = curriculum(ctx=ctx, consistency="global", global_stages=1, **{"lambda": 1.0})
    gen = torch.Generator().manual_seed(3)
    k, _ = method._stages(step, 16, torch.Generator().manual_seed(3))
    j = method._anchors(k, k, gen)[0]
    assert (j < k).all() and (j >= 0).all() and len(set(j.tolist())) > 1
    _, logs = method.loss(student, b, step, torch.Generator().manual_seed(3))
    with torch.no_grad():
        t, tj = method.ts[k], method.ts[j]
        g_prev = torch.where((tj == 1000)[:, None], b.z, student(b.z, tj))
        R = ((student(b.z, t) - ddim_jump(ctx.teacher, g_prev, tj, t)) ** 2).sum(1).mean()
    assert torch.allclose(logs["R_k"], R, rtol=1e-5)


def test_late_loss_applies_only_below_late_t():
    ctx = context()
    student = build_net({"name": "mlp", "width": 16, "depth": 1}, (2,))
    b = batch()
    l2 = curriculum(ctx=ctx, late_t=250)
    ph = curriculum(ctx=ctx, late_t=250, loss="pseudo_huber")
    early, late = 5 * 2, 5 * 8  # t_k = 700 and 200
    g = torch.Generator
    assert torch.equal(l2.loss(student, b, early, g().manual_seed(0))[0], ph.loss(student, b, early, g().manual_seed(0))[0])
    a, c = l2.loss(student, b, late, g().manual_seed(0))[1]["L_k"], ph.loss(student, b, late, g().manual_seed(0))[1]["L_k"]
    assert not torch.allclose(a, c)


def test_pseudo_huber_matches_its_formula():
    d = PseudoHuber((3, 8, 8))
    a, b = torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.1)
    c = 0.00054 * math.sqrt(192)
    assert torch.allclose(d(a, b), torch.full((2,), math.sqrt(192 * 0.01 + c * c) - c))


def test_perceptual_is_rejected_on_points_and_needs_features(default_config):
    cfg = {**default_config, "method": {**default_config["method"], "loss": "perceptual"}}
    with pytest.raises(ConfigError, match="method.loss: 'perceptual' needs images"):
        validate(cfg)
    with pytest.raises(PerceptualError, match="needs images"):
        curriculum(loss="perceptual", late_t=1000).loss(
            build_net({"name": "mlp", "width": 8, "depth": 1}, (2,)), batch(), 0, torch.Generator())
    m = curriculum(shape=(1, 8, 8), loss="perceptual", late_t=1000)
    z = torch.randn(2, 1, 8, 8)
    assert m.sample(lambda x, t: x, z).shape == z.shape  # sampling needs no feature network
    with pytest.raises(PerceptualError, match="feature network"):
        m.loss(build_net({"name": "convnet", "width": 8, "depth": 1}, (1, 8, 8)), batch((1, 8, 8)), 0, torch.Generator())


def test_perceptual_compares_in_feature_space():
    torch.manual_seed(0)
    phi_net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    ctx = context(shape=(1, 8, 8), features=phi_net)
    student = build_net({"name": "convnet", "width": 8, "depth": 1}, (1, 8, 8))
    b = batch((1, 8, 8), n=4)
    m = curriculum(ctx=ctx, loss="perceptual", late_t=1000, **{"lambda": 0.0})
    loss, logs = m.loss(student, b, 0, torch.Generator().manual_seed(0))
    t = m.ts[1]
    abar = ctx.schedule.abar[t]
    with torch.no_grad():
        g = student(b.z, torch.full((4,), int(t)))
        expect = (0.5 / (1 - abar)).clamp(max=100) * ((phi_net(g) - phi_net(abar.sqrt() * b.x0)) ** 2).sum(1)
    assert torch.allclose(loss.detach(), expect, rtol=1e-5)
    loss.mean().backward()
    assert all(p.grad is None for p in phi_net.parameters())  # phi is frozen
    assert all(p.grad is not None for p in student.parameters())


def test_adversarial_gradients_reach_the_student_and_the_discriminator_has_its_own():
    ctx = context()
    student = build_net({"name": "mlp", "width": 16, "depth": 1}, (2,))
    adv = {"kind": "hinge", "weight": 0.5, "lr": 1e-2, "net": {"name": "mlp", "width": 16, "depth": 1}}
    m = curriculum(ctx=ctx, loss="adversarial", late_t=1000, adversarial=adv)
    assert isinstance(m.adv, Adversarial)
    b = batch()
    d_before = [p.detach().clone() for p in m.adv.D.parameters()]
    s_before = [p.detach().clone() for p in student.parameters()]
    aux = m.aux_step(student, b, 0, torch.Generator().manual_seed(0))
    assert "adv_d" in aux
    assert any(not torch.equal(a, p) for a, p in zip(d_before, m.adv.D.parameters(), strict=True))  # D stepped
    assert all(torch.equal(a, p) for a, p in zip(s_before, student.parameters(), strict=True))  # student untouched
    d_grads = [p.grad.clone() for p in m.adv.D.parameters()]  # from D's own step
    loss, logs = m.loss(student, b, 0, torch.Generator().manual_seed(0))
    assert float(logs["adv_g"]) != 0.0
    loss.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    # the generator term puts no gradient into D
    assert all(torch.equal(g, p.grad) for g, p in zip(d_grads, m.adv.D.parameters(), strict=True))
    # non-saturating and hinge generator terms differ
    ns = curriculum(ctx=ctx, loss="adversarial", late_t=1000, adversarial={**adv, "kind": "non_saturating"})
    ns.adv.D.load_state_dict(m.adv.D.state_dict())
    assert not torch.allclose(ns.loss(student, b, 0, torch.Generator().manual_seed(0))[1]["adv_g"], logs["adv_g"])
    # state travels through a checkpoint
    state = m.state_dict()
    ns.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(ns.adv.D.state_dict().values(), m.adv.D.state_dict().values(), strict=True))


def test_new_knobs_are_validated(default_config):
    def bad(**m):
        cfg = {**default_config, "method": {**default_config["method"], **m}}
        with pytest.raises(ConfigError) as e:
            validate(cfg)
        return str(e.value)

    assert "method.consistency: 'everywhere' is not allowed; allowed values: adjacent, global" in bad(consistency="everywhere")
    assert "method.loss: 'l1' is not allowed" in bad(loss="l1")
    assert "method.consistency_step: 'ddpm' does not apply to consistency 'global'" in bad(consistency="global",
                                                                                         consistency_step="ddpm")
    assert "method.adversarial.kind" in bad(adversarial={"kind": "wasserstein"})
    assert "method.budget" in bad(budget=0)


def test_every_shipped_config_validates(default_config):
    from onestep.config import REPO, deep_merge

    with open(REPO / "config" / "digits.yaml") as f:
        validate(deep_merge(default_config, yaml.safe_load(f)), where="config/digits.yaml")
