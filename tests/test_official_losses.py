"""One loss evaluation per baseline against its official formula, written here from the papers' equations and
the official code (each test's docstring names them), not from the method files' helpers.

The stand-ins are closed form: the teacher is the exact epsilon of N(MU, S^2 I) data (conftest.GaussEps), the
students small fixed nets (`Quad`: affine in x plus a quadratic term, so central differences are exact). Each
test records what the method fed its networks (`Rec`) and recomputes the loss from those inputs in the
official code's own variables (EDM's sigma, the logsnr of diffusion_distillation, flow times); a wrong weight,
distance, target network or noise level makes it fail.
"""

import copy
import math

import pytest
import torch
from conftest import DIFF, GaussEps, context, method_of
from torch import nn

from onestep.diffusion import Schedule, Teacher
from onestep.methods.base import Batch

MU, S, T = torch.tensor([0.8, -0.4]), 0.3, 1000


@pytest.fixture(scope="module")
def sch():
    return Schedule.from_config(DIFF)


class Quad(nn.Module):
    """F(x, t[, s]) = A x + b t/T + c s/T + q (x.x) t/T: a smooth fixed stand-in for a student network."""

    def __init__(self, seed: int, times: int = 1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(2, 2)
        with torch.no_grad():
            self.lin.weight.copy_(0.5 * torch.randn(2, 2, generator=g))
            self.lin.bias.copy_(0.1 * torch.randn(2, generator=g))
        self.b, self.c, self.q = (nn.Parameter(0.3 * torch.randn(2, generator=g)) for _ in range(3))
        self.times = times

    def forward(self, x, t, s=None):
        tt = (t.float() / T)[:, None]
        out = self.lin(x) + self.b * tt + self.q * (x * x).sum(1, keepdim=True) * tt
        return out if s is None else out + self.c * (s.float() / T)[:, None]


class ZeroRes(nn.Module):
    """A residual that is 0 but has a parameter (so a fake score built on it can be stepped)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x, i):
        return self.w * torch.zeros_like(x)


class Rec(nn.Module):
    """Records each call's inputs (detached) and whether autograd was on."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, *args):
        self.calls.append({"args": [a.detach().clone() for a in args], "grad": torch.is_grad_enabled()})
        return self.net(*args)


def edm(sch):
    """(sigma_t, abar_t) per index t = 0..T, in float64."""
    abar = sch.abar.double()
    return ((1 - abar) / abar).sqrt(), abar


def teacher_ctx(sch, s=S, **fields):
    """A Context around the recorded exact teacher (with one unused parameter: a fake score copies it to train)."""
    eps = GaussEps(sch, MU, s)
    eps.unused = nn.Parameter(torch.zeros(1))
    return context(Teacher(Rec(eps), sch), schedule=sch, **fields)


def gauss_denoiser(sch, x_edm, sig):
    """The teacher's EDM denoiser D(x; sigma) of N(MU, S^2 I) data: MU + S^2 / (S^2 + sigma^2) (x - MU)."""
    return MU.double() + (S**2 / (S**2 + sig**2))[:, None] * (x_edm - MU.double())


def c_skip_out(sig, s_d, s_min):
    """Consistency models' boundary parameterisation (Song et al. 2023, appendix C)."""
    return s_d**2 / ((sig - s_min) ** 2 + s_d**2), (sig - s_min) * s_d / (sig**2 + s_d**2).sqrt()


# ---------------------------------------------------------------- consistency distillation / training


def test_cd_loss_is_the_cd_codes_fixed_n_uniform_l2_against_the_ema_target(sch):
    """openai/consistency_models cm/karras_diffusion.py `consistency_losses` with launch.sh's CD flags: a Heun step
    of the teacher from sigma_{n+1} to sigma_n (heun_solver, d = (x - D(x)) / sigma), the target from the EMA model
    at 0.95 (cm/train_util.py `_update_target_ema`), weight_schedule uniform, loss_norm l2 = mean_flat of the
    squared difference, N = 40 levels; f = c_skip x + c_out F (Song et al. 2023, appendix C)."""
    m = method_of("cd", ctx=teacher_ctx(sch))
    assert (m.cfg.s0, m.cfg.s1, m.cfg.target_ema) == (39, 39, 0.95) and m.grid.size(0) == m.grid.size(3999) == 40
    theta0, theta1 = Quad(1), Quad(2)
    m.aux_step(theta0, None, 0, None)  # theta^- = theta0 (a copy at step 0)
    m.aux_step(theta1, None, 1, None)  # theta^- = 0.95 theta0 + 0.05 theta1
    tgt = Quad(0)
    with torch.no_grad():
        for p, a, b in zip(tgt.parameters(), theta0.parameters(), theta1.parameters(), strict=True):
            p.copy_(0.95 * a + 0.05 * b)
    student = Rec(theta1)
    x0 = MU + S * torch.randn(16, 2, generator=torch.Generator().manual_seed(5))
    loss, _ = m.loss(student, Batch(torch.zeros(16, 2), x0), 2, torch.Generator().manual_seed(6))
    (hi,) = student.calls  # the online pass only: the target pass ran on theta^-
    x_hi, t_hi = hi["args"]
    sig, abar = edm(sch)
    x_edm = x_hi.double() / abar[t_hi].sqrt()[:, None]
    grid = torch.tensor(sorted(set(m.grid.grid(0).tolist())))
    t_lo = grid[torch.searchsorted(grid, t_hi) - 1]  # the grid point below: adjacent pairs
    s1, s0 = sig[t_hi], sig[t_lo]
    d1 = (x_edm - gauss_denoiser(sch, x_edm, s1)) / s1[:, None]
    x_eul = x_edm + d1 * (s0 - s1)[:, None]
    d2 = (x_eul - gauss_denoiser(sch, x_eul, s0)) / s0[:, None]
    x_lo = x_edm + (d1 + d2) / 2 * (s0 - s1)[:, None]  # EDM state at sigma_n
    s_min = float(sig[1])

    def f(net, x, t, x_e):  # x: the VP state the network is fed, x_e its EDM state
        cs, co = c_skip_out(sig[t], 0.5, s_min)
        return cs[:, None] * x_e + co[:, None] * net(x, t).double()

    with torch.no_grad():
        want = ((f(theta1, x_hi, t_hi, x_edm) - f(tgt, (abar[t_lo].sqrt()[:, None] * x_lo).float(), t_lo, x_lo)) ** 2).mean(1)
    assert torch.allclose(loss.detach().double(), want, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("name", ["ct", "cd"])
def test_ict_recipe_weights_pairs_by_the_inverse_gap_under_pseudo_huber(sch, name):
    """iCT (Song & Dhariwal 2023, sections 3.2-3.5): lambda(sigma_i) = 1 / (sigma_{i+1} - sigma_i), d = sqrt(||a -
    b||^2 + c^2) - c with c = 0.00054 sqrt(d), the target the online network under stop-gradient; ct (always) and
    cd with its iCT knob values."""
    over = {} if name == "ct" else {"pairs": "lognormal", "weighting": "ict", "distance": "pseudo_huber", "target": "online"}
    m = method_of(name, ctx=teacher_ctx(sch, s=0.0), **over)
    net = Rec(Quad(3))
    x0 = MU.expand(12, 2).clone()
    loss, _ = m.loss(net, Batch(torch.zeros(12, 2), x0, data=x0), 0, torch.Generator().manual_seed(2))
    hi, lo = net.calls
    assert hi["grad"] and not lo["grad"]
    sig, abar = edm(sch)
    (x1, t1), (x0_, t0) = hi["args"], lo["args"]
    s_min, c = float(sig[1]), 0.00054 * math.sqrt(2)

    def f(x, t):
        cs, co = c_skip_out(sig[t], 0.5, s_min)
        return cs[:, None] * x.double() / abar[t].sqrt()[:, None] + co[:, None] * net.net(x, t).double()

    with torch.no_grad():
        want = ((((f(x1, t1) - f(x0_, t0)) ** 2).sum(1) + c * c).sqrt() - c) / (sig[t1] - sig[t0])
    assert torch.allclose(loss.detach().double(), want, rtol=1e-3)


# ---------------------------------------------------------------- distribution matching


def test_dmd2_fake_loss_is_compute_loss_fake(sch):
    """tianweiy/DMD2 main/edm/edm_guidance.py `compute_loss_fake`: noisy = x + sigma n with sigma a level of the
    flipped Karras grid (1000 levels, 0.002..80, rho 7) drawn over all levels, the fake x0 prediction regressed on
    x with weight sigma^-2 + 1/sigma_data^2, torch.mean over the batch and elements; G(z') on fresh noise."""
    ctx = teacher_ctx(sch)
    d = method_of("dmd2", ctx=ctx).cfg
    assert (d.fake_updates, d.t_min, d.t_max, d.levels, d.fake_lr) == (5, 20, 980, 1000, 1e-3)  # ratio 5, equal rates
    m = method_of("dmd2", ctx=ctx, fake_updates=1)
    sig, abar = edm(sch)
    ramp = torch.linspace(0, 1, 1000, dtype=torch.float64)
    official = (0.002 ** (1 / 7) + ramp * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7  # smallest first
    lo, hi = (m.idx - 1).clamp(min=1), (m.idx + 1).clamp(max=T)
    err = lambda k: (sig[k].log() - official.log()).abs()  # noqa: E731
    assert (err(m.idx) <= err(lo) + 1e-12).all() and (err(m.idx) <= err(hi) + 1e-12).all()  # nearest VP index
    fake = Rec(GaussEps(sch, MU + 0.2, S, residual=ZeroRes()))
    m.fake, m.opt = fake, torch.optim.SGD(fake.parameters(), lr=0.0)  # a fixed fake score
    student = Rec(Quad(4))
    logs = m.aux_step(student, Batch(torch.zeros(32, 2), torch.zeros(32, 2)), 0, torch.Generator().manual_seed(1))
    (g,) = student.calls
    x = student.net(*g["args"]).detach().double()  # G(z'), z' drawn inside
    assert not torch.allclose(g["args"][0], torch.zeros(32, 2))  # fresh noise, not the batch's z
    (call,) = fake.calls
    x_t, i = call["args"]
    t = i.long() + 1  # the teacher's index shift
    s_t = sig[t]
    noisy = x_t.double() / abar[t].sqrt()[:, None]  # = x + sigma n
    eps = fake.net(x_t, i).double()
    pred = (x_t.double() - (1 - abar[t]).sqrt()[:, None] * eps) / abar[t].sqrt()[:, None]
    weights = s_t**-2 + 1 / 0.5**2
    want = (weights[:, None] * (pred - x) ** 2).mean()
    assert torch.allclose(noisy - x, ((noisy - x) / s_t[:, None]) * s_t[:, None])  # the EDM state x + sigma n
    assert float(logs["fake_loss"]) == pytest.approx(float(want), rel=1e-4)


def _tdm_states(sch, m, call):
    """From a recorded student call (x_{t_i}, t_i) with grad: (x0_hat, t_mid, x_mid, eps_hat), recomputed in float64
    from TDM's formulas (train_tdm_demo.py)."""
    _, abar = edm(sch)
    x, t_i = call["args"]
    x0 = call["net"](x, t_i).detach().double()
    t_mid = t_i - m.cfg.t_top // 4  # the next point of the K = 4 grid (900 / 4 = 225)
    a_i, a_mid = abar[t_i][:, None], abar[t_mid][:, None]
    eps_hat = (x.double() - a_i.sqrt() * x0) / (1 - a_i).sqrt()  # predicted_origin, inverted
    x_mid = a_mid.sqrt() * x0 + (1 - a_mid).sqrt() * eps_hat  # noise_scheduler.add_noise(x0, eps, t_mid)
    return x0, t_mid, x_mid, eps_hat


def test_tdm_losses_are_the_official_demos(sch):
    """Luo-Yihong/TDM train_tdm_demo.py with the README's flags (--total_steps 900 --use_huber --use_separate):
    the student's x0 at t_g of its own 4-step trajectory, DDIM-moved to t_mid = t_g - 900/4 (`add_noise` with
    the predicted eps), diffused forward from t_mid to tau in [max(20, t_mid), t_g - 10) (`Predictor.add_noise`:
    x_mid alpha_tau / alpha_mid + sqrt(sigma_tau^2 - (alpha_tau sigma_mid / alpha_mid)^2) n); `loss_instruct`:
    mean((sqrt((x0 - (x0 + D_real - D_fake))^2 + 1e-3^2) - 1e-3) / mean|x0 - D_real|); `loss_score`:
    mse(D_fake, x0) min(snr, 5) is_weight with is_weight = exp(-mean m^2 / 2) / exp(-mean n^2 / 2), m the total
    noise of x_tau about x0 (`obtain_mixed_noise`)."""
    ctx = teacher_ctx(sch)
    m = method_of("tdm", ctx=ctx)
    assert (m.cfg.ks, m.cfg.t_top, m.cfg.separate, m.cfg.fake_updates, m.cfg.huber_c) == ((4,), 900, True, 1, 1e-3)
    assert m.sample_steps == (1, 2, 4) and m.times == 1
    fake = Rec(GaussEps(sch, MU + 0.3, S, residual=ZeroRes()))
    m.fakes["4"], m.opt = fake, torch.optim.SGD(fake.parameters(), lr=0.0)  # a fixed fake score
    net, B = Quad(5), 20000
    student = Rec(net)
    z = torch.randn(B, 2, generator=torch.Generator().manual_seed(3))
    sig, abar = edm(sch)

    def last_call():
        call = student.calls[-1]
        assert call["args"][1].shape == (B,)
        return {**call, "net": net}

    loss, _ = m.loss(student, Batch(z, torch.zeros(B, 2)), 0, torch.Generator().manual_seed(4))
    assert student.calls[-1]["grad"] and not any(c["grad"] for c in student.calls[:-1])  # no grad before t_i
    call = last_call()
    x0, t_mid, x_mid, _ = _tdm_states(sch, m, call)
    t_i = call["args"][1]
    assert set(t_i.tolist()) == {900, 675, 450, 225}
    (real,) = ctx.teacher.net.calls
    x_tau, i = real["args"]
    tau = i.long() + 1
    assert ((tau >= t_mid.clamp(min=20)) & (tau < t_i - 10)).all()  # --use_separate: each step its own interval
    a_tau, a_mid = abar[tau][:, None], abar[t_mid][:, None]
    keep = (a_tau / a_mid).sqrt()
    beta2 = (1 - a_tau) - keep**2 * (1 - a_mid)
    on = beta2.flatten() > 1e-6  # tau = t_mid adds no noise
    n = ((x_tau.double() - keep * x_mid) / beta2.clamp(min=1e-12).sqrt())[on]
    assert on.float().mean() > 0.99 and torch.allclose((x_tau.double() - keep * x_mid)[~on], torch.zeros(1).double(),
                                                       atol=1e-4)
    assert n.mean().abs() < 0.02 and (n.var() - 1).abs() < 0.03  # q(x_tau | x_mid): forward from the moved state
    noisy = x_tau.double() / a_tau.sqrt()
    d_real = gauss_denoiser(sch, noisy, sig[tau])
    fake_mu = (MU + 0.3).double()
    d_fake = fake_mu + (S**2 / (S**2 + sig[tau] ** 2))[:, None] * (noisy - fake_mu)
    c = 1e-3
    want = ((((d_real - d_fake) ** 2 + c * c).sqrt() - c) / (x0 - d_real).abs().mean(1, keepdim=True)).mean(1)
    assert torch.allclose(loss.detach().double(), want, rtol=1e-3)

    student.calls.clear()
    d = m._draw(student, z, 4, torch.Generator().manual_seed(5))  # the state both losses read, with its noise
    x0, t_mid, x_mid, eps_hat = _tdm_states(sch, m, last_call())
    tau, n = d["tau"], d["n"].double()
    a_tau, a_mid = abar[tau][:, None], abar[t_mid][:, None]
    keep = (a_tau / a_mid).sqrt()
    beta = ((1 - a_tau) - keep**2 * (1 - a_mid)).clamp(min=0).sqrt()
    x_tau = keep * x_mid + beta * n  # Predictor.add_noise(x_mid, n, t_mid, tau)
    assert torch.allclose(d["x_tau"].double(), x_tau, atol=1e-5)
    mixed = (keep * (1 - a_mid).sqrt() * eps_hat + beta * n) / (1 - a_tau).sqrt()  # obtain_mixed_noise
    is_weight = torch.exp(-0.5 * (mixed**2).mean(1)) / torch.exp(-0.5 * (n**2).mean(1))
    noisy = x_tau / a_tau.sqrt()
    d_fake = fake_mu + (S**2 / (S**2 + sig[tau] ** 2))[:, None] * (noisy - fake_mu)
    snr = (a_tau / (1 - a_tau)).flatten().clamp(max=5)
    want = ((d_fake - x0) ** 2).mean(1) * snr * is_weight
    assert torch.allclose(m.fake_loss(fake, d).double(), want, rtol=1e-3, atol=1e-6)
    logs = m.aux_step(student, Batch(z, torch.zeros(B, 2)), 0, torch.Generator().manual_seed(5))
    assert float(logs["fake_loss"]) == pytest.approx(float(want.mean().detach()), rel=1e-4)  # the same draw, one update


# ---------------------------------------------------------------- progressive distillation


@pytest.mark.parametrize("clip", [None, 0.5])
def test_progressive_loss_is_diffusion_distillations_training_loss(sch, clip):
    """google-research diffusion_distillation/diffusion_distillation/dpm.py `training_losses`: two teacher DDIM steps
    t -> t - 1/2N -> t - 1/N in logsnr terms, x_target = (z_teacher - stdv_frac z) / (a_s - stdv_frac a_t) with
    stdv_frac = exp((softplus(logsnr_t) - softplus(logsnr_s)) / 2), a v-predicting student, loss snr_trunc =
    max(x_mse, eps_mse); `_run_model`'s clip_x clips the teacher's x prediction and re-derives eps (our round-0
    clip_x0). Ours sums over the d = 2 elements where meanflat averages: a factor 2."""
    ctx = teacher_ctx(sch, data_bound=lambda: 5.0)
    m = method_of("progressive", ctx=ctx, start_steps=4, steps_per_round=10, clip_x0=clip)
    student = Rec(Quad(6))
    x0 = MU + S * torch.randn(10, 2, generator=torch.Generator().manual_seed(7))
    loss, _ = m.loss(student, Batch(torch.zeros(10, 2), x0), 0, torch.Generator().manual_seed(8))
    (call,) = student.calls
    z, t = call["args"]
    abar = sch.abar.double()
    logsnr = lambda k: (abar[k] / (1 - abar[k])).log()  # noqa: E731
    alpha = lambda k: torch.sigmoid(logsnr(k)).sqrt()[:, None]  # noqa: E731
    stdv = lambda k: torch.sigmoid(-logsnr(k)).sqrt()[:, None]  # noqa: E731

    def teacher_x_eps(zk, k):
        eps = GaussEps(sch, MU, S)(zk.float(), k - 1).double()
        x = (zk - stdv(k) * eps) / alpha(k)
        if clip is not None:
            x = x.clamp(-clip, clip)
            eps = (zk - alpha(k) * x) / stdv(k)
        return x, eps

    n = 4
    i = torch.round(t.double() * n / T)
    mid, s = torch.round((i - 0.5) * T / n).long(), torch.round((i - 1) * T / n).long()
    zd = z.double()
    x, e = teacher_x_eps(zd, t)
    x, e = teacher_x_eps(alpha(mid) * x + stdv(mid) * e, mid)
    z_teacher = alpha(s) * x + stdv(s) * e
    frac = torch.exp(0.5 * (nn.functional.softplus(logsnr(t)) - nn.functional.softplus(logsnr(s))))[:, None]
    x_target = (z_teacher - frac * zd) / (alpha(s) - frac * alpha(t))
    with torch.no_grad():
        x_pred = alpha(t) * zd - stdv(t) * student.net(z, t).double()  # predict_x_from_v
    eps_target = (zd - alpha(t) * x_target) / stdv(t)
    eps_pred = (zd - alpha(t) * x_pred) / stdv(t)
    x_mse, eps_mse = ((x_pred - x_target) ** 2).mean(1), ((eps_pred - eps_target) ** 2).mean(1)
    want = 2 * torch.maximum(x_mse, eps_mse)
    assert torch.allclose(loss.detach().double(), want, rtol=2e-3)


# ---------------------------------------------------------------- consistency trajectory models


def test_ctm_dsm_term_is_sony_ctms_weighted_and_balanced(sch):
    """sony/ctm code/cm/karras_diffusion.py: denoising_loss = mean_flat(karras_weight (D - x0)^2) with karras_weight =
    (sigma^2 + s_d^2) / (sigma s_d)^2 (get_weightings), scaled by calculate_adaptive_weight = ||grad_W L_ctm|| /
    (||grad_W L_dsm|| + 1e-4), clamped to [0, 1e4], W the last layer; sigmas from code/cm/resample.py
    HalfLogNormalHalfUniformSampler (half lognormal(-1.2, 1.2), half Karras ramp in [0, 0.7])."""
    ctx = teacher_ctx(sch)
    m = method_of("ctm", ctx=ctx)
    student = Rec(Quad(7, times=2))
    x0 = MU + S * torch.randn(16, 2, generator=torch.Generator().manual_seed(9))
    loss, logs = m.loss(student, Batch(torch.zeros(16, 2), x0), 0, torch.Generator().manual_seed(10))
    x_d, td, _ = student.calls[-1]["args"]  # the DSM call D(x_d, sigma, sigma)
    sig, abar = edm(sch)
    s_d, s = 0.5, sig[td]
    x_e = x_d.double() / abar[td].sqrt()[:, None]
    cs, co = s_d**2 / (s**2 + s_d**2), s * s_d / (s**2 + s_d**2).sqrt()
    denoised = cs[:, None] * x_e + co[:, None] * student.net(x_d, td, td).double()
    w = (s**2 + s_d**2) / (s * s_d) ** 2
    dsm = (w[:, None] * (denoised - x0.double()) ** 2).mean(1)
    assert float(logs["L_dsm"]) == pytest.approx(float(dsm.mean()), rel=1e-3)
    assert (s[:8] > 0).all() and float(s[8:].max()) <= 80 * 1.05  # half lognormal, half the Karras ramp below 80
    # the balance: recompute both terms' gradients at the last weight matrix
    W = student.net.lin.weight
    L_ctm, L_dsm = logs["L_ctm"], logs["L_dsm"]
    total = loss.mean()
    g_tot = torch.autograd.grad(total, W)[0]
    assert float(logs["dsm_balance"]) > 0 and torch.isfinite(g_tot).all()
    assert float(total) == pytest.approx(float(L_ctm + logs["dsm_balance"] * L_dsm), rel=1e-5)


def test_ctm_balance_is_the_gradient_norm_ratio(sch):
    """sony/ctm calculate_adaptive_weight, d_weight = ||grad L1|| / (||grad L2|| + 1e-4) at the last layer, clamped."""
    m = method_of("ctm", ctx=teacher_ctx(sch))
    net = Quad(8, times=2)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(11))
    t = torch.full((6,), 300)
    L1 = (net(x, t, t) ** 2).sum(1)
    L2 = 3.0 * (net(x, t, t) - 1).abs().sum(1)
    W = net.lin.weight
    want = torch.autograd.grad(L1.mean(), W, retain_graph=True)[0].norm() / (
        torch.autograd.grad(L2.mean(), W, retain_graph=True)[0].norm() + 1e-4)
    assert float(m.balance(net, L1, L2)) == pytest.approx(float(want), rel=1e-5)


# ---------------------------------------------------------------- flow methods from data


def test_meanflow_loss_is_the_identity_target_with_the_adaptive_weight(sch):
    """MeanFlow (Geng et al. 2025, eq. 9-10; Gsunshine/py-meanflow): z_t = (1 - t) x + t e, v = e - x,
    u_tgt = v - (t - r) (v . d_z u + d_t u) (here by a central difference, exact on Quad), loss = ||u - sg(u_tgt)||^2
    divided by sg(||u - u_tgt||^2 + 1e-3)^0.75 (norm_p 0.75, norm_eps 1e-3); t, r logit-normal(-2, 2), ratio 0.75."""
    m = method_of("meanflow", ctx=teacher_ctx(sch))
    assert (m.cfg.time_mean, m.cfg.time_std, m.cfg.ratio_r_neq_t) == (-2.0, 2.0, 0.75)
    net = Quad(9, times=2)
    x = MU + S * torch.randn(12, 2, generator=torch.Generator().manual_seed(12))
    e = torch.randn(12, 2, generator=torch.Generator().manual_seed(13))
    loss, _ = m.loss(net, Batch(e, torch.zeros(12, 2), data=x), 0, torch.Generator().manual_seed(14))
    from onestep.methods.meanflow import sample_times

    t, r = sample_times(12, m.cfg, torch.Generator().manual_seed(14))  # the same draws
    u = lambda z, tt, rr: net(z, tt, rr).double()  # noqa: E731  time scale 1
    z, v, h = (1 - t[:, None]) * x + t[:, None] * e, e - x, 1e-2
    with torch.no_grad():
        dudt = (u(z + h * v, t + h, r) - u(z - h * v, t - h, r)) / (2 * h)
        err = ((u(z, t, r) - (v.double() - (t - r).double()[:, None] * dudt)) ** 2).sum(1)
    want = err / (err + 1e-3) ** 0.75
    assert torch.allclose(loss.detach().double(), want, rtol=2e-3)


def test_shortcut_loss_is_flow_matching_at_1_over_m_and_the_two_step_target(sch):
    """Shortcut models (Frans et al. 2025, eq. 5; kvfrans/shortcut-models targets_shortcut.py): flow matching at the
    smallest step d = 1/M, ||s(x_t, t, 1/M) - (e - x)||^2, and self-consistency at 2d against
    sg[(s(x_t, t, d) + s(x'_{t-d}, t - d, d)) / 2], x'_{t-d} = x_t - d s(x_t, t, d) (t = 1 noise, t = 0 data)."""
    m = method_of("shortcut", ctx=teacher_ctx(sch))
    M = m.cfg.max_steps
    net = Rec(Quad(10, times=2))
    x = MU + S * torch.randn(16, 2, generator=torch.Generator().manual_seed(15))
    e = torch.randn(16, 2, generator=torch.Generator().manual_seed(16))
    loss, _ = m.loss(net, Batch(e, torch.zeros(16, 2), data=x), 0, torch.Generator().manual_seed(17))
    n_sc = round(0.25 * 16)
    first, second, online = net.calls  # the two target passes (no grad), then the trained pass
    assert not first["grad"] and not second["grad"] and online["grad"]
    x_t, tT, dT = online["args"]
    t, d_in = tT / T, dT / T
    s = lambda z, tt, dd: net.net(z, tt * T, dd * T).double()  # noqa: E731
    with torch.no_grad():
        fm = ((s(x_t, t, d_in) - (e - x).double()) ** 2).sum(1)[: 16 - n_sc]
        assert torch.allclose(d_in[: 16 - n_sc], torch.full((16 - n_sc,), 1.0 / M))
        xs, ts, d = x_t[16 - n_sc:], t[16 - n_sc:], d_in[16 - n_sc:] / 2
        s1 = s(xs, ts, d)
        s2 = s((xs.double() - d.double()[:, None] * s1).float(), ts - d, d)
        sc = ((s(xs, ts, 2 * d) - (s1 + s2) / 2) ** 2).sum(1)
    assert torch.allclose(loss.detach().double(), torch.cat([fm, sc]), rtol=1e-3, atol=1e-6)


def test_target_ema_follows_the_cd_codes_update():
    """openai/consistency_models cm/nn.py update_ema: targ = rate targ + (1 - rate) src, per optimiser step."""
    from onestep.methods.common import TargetEMA

    ema, net = TargetEMA(0.95), Quad(11)
    ema.update(net)
    start = copy.deepcopy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)
    for a, b, c in zip(ema.net.parameters(), start.parameters(), net.parameters(), strict=True):
        assert torch.allclose(a, 0.95 * b + 0.05 * c) and not a.requires_grad
