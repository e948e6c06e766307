"""Balanced terms: method.balance puts L_k, lambda R_k and the adversarial term on
comparable scales; the per-term magnitudes are logged (training curves)."""

from functools import partial

import pytest
import torch
from conftest import method_of
from torch import nn

from onestep.methods.base import Batch
from onestep.methods.curriculum_stages import loss_weight


class Affine(nn.Module):
    """G(z, t) = A z + b (the last parameter with a matrix: A)."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor([0.1, -0.2]))
        self.A = nn.Parameter(torch.tensor([[1.0, 0.3], [-0.2, 0.8]]))

    def forward(self, z, t):
        return z @ self.A.T + self.b


curriculum = partial(method_of, "curriculum", **{"K": 4, "steps_per_stage": 10, "lambda": 0.1, "replay": 0.0})


def _batch():
    g = torch.Generator().manual_seed(0)
    return Batch(torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g))


@pytest.mark.parametrize("step", [5, 35])  # t_k = 750 and t_k = 0 (w clipped at 100)
def test_unweighted_divides_l_k_by_its_weight(schedule, step):
    seed, flat = curriculum(), curriculum(balance="unweighted")
    t = seed.ts[seed.order[step // 10]]
    w = float(loss_weight(schedule.abar[t], 100.0))
    _, a = seed.loss(Affine(), _batch(), step, torch.Generator().manual_seed(1))
    _, b = flat.loss(Affine(), _batch(), step, torch.Generator().manual_seed(1))
    assert float(a["L_k"]) == pytest.approx(w * float(b["L_k"]), rel=1e-5)
    assert float(a["R_k"]) == pytest.approx(float(b["R_k"]), rel=1e-6)
    assert float(a["term_R"]) == pytest.approx(0.1 * float(a["R_k"]), rel=1e-6)  # the magnitude lambda R_k


def test_adaptive_matches_the_gradient_norms_of_the_last_layer(schedule):
    m = curriculum(balance="adaptive")
    net, batch = Affine(), _batch()
    loss, logs = m.loss(net, batch, 35, torch.Generator().manual_seed(1))  # t_k = 0: w = 100 against lambda = 0.1
    # by hand: lambda_eff = lambda ||d L / d A|| / ||d R / d A||, then lambda_eff R has the gradient norm of lambda L
    _, seed_logs = curriculum().loss(net, batch, 35, torch.Generator().manual_seed(1))
    g = net(batch.z, None)
    L = 100.0 * ((g - batch.x0) ** 2).sum(1).mean()
    x_hat = m._targets(net, batch.z, torch.zeros(16, dtype=torch.long), [torch.full((16,), 3)])[0]
    R = ((g - x_hat) ** 2).sum(1).mean()
    gL = torch.autograd.grad(L, net.A, retain_graph=True)[0].norm()
    gR = torch.autograd.grad(R, net.A)[0].norm()
    assert float(logs["lambda_eff"]) == pytest.approx(0.1 * float(gL / gR), rel=1e-4)
    assert float(logs["lambda_eff"]) > 10 * 0.1  # at t = 0 the seed's weighting buries R_k; adaptive lifts it
    loss.mean().backward()  # the effective weight is a constant: the loss still trains the student
    assert net.A.grad is not None and float(seed_logs["term_R"]) < float(logs["term_R"])


def test_adaptive_adversarial_term_has_its_weight_times_l_k_gradient(schedule):
    m = curriculum(balance="adaptive", loss="adversarial", late_t=1000,
                adversarial={"net": {"name": "mlp", "width": 8, "depth": 1, "temb_dim": 8}, "weight": 0.5})
    net, batch = Affine(), _batch()
    _, logs = m.loss(net, batch, 5, torch.Generator().manual_seed(1))  # t_k = 750 (VQGAN's clip 1e4 not reached)
    g = net(batch.z, None)
    t = torch.full((16,), 750)
    abar = schedule.abar[750]
    L = float(loss_weight(abar, 100.0)) * ((g - abar.sqrt() * batch.x0) ** 2).sum(1).mean()
    A = m.adv(g, t).mean()  # 0.5 x the raw generator term
    gL = torch.autograd.grad(L, net.A, retain_graph=True)[0].norm()
    gA = torch.autograd.grad(A, net.A)[0].norm()
    # the scaled term's gradient norm = 0.5 x L_k's: adv_scale x ||grad A|| = 0.5 ||grad L||
    assert float(logs["adv_scale"]) * float(gA) == pytest.approx(0.5 * float(gL), rel=1e-4)
