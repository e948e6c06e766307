"""Networks f(x, t) built by name from config: `build_net({"name": "mlp", ...}, sample_shape)`.

Every network maps a batch x (B, *shape) and timesteps t (B,) (integers or floats on the
DDPM index scale 0..T) to a tensor of the same shape as x. The teacher uses it as
eps_phi(x_t, t); the student as G_theta(z, t).

Built with `times: 2`, a network takes a second time s (B,) as well, f(x, t, s): methods that jump
from t to s (CTM, MeanFlow's (t, r), shortcut's step size) use it. The second embedding is its own
module, so a two-time student still loads a one-time teacher's weights (strict=False, the extra
embedding fresh).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from onestep.diffusion import Schedule, denoise, edm_scalings, seed_sigmas


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t (B,) -> (B, dim), as in DDPM/Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, dim)


def time_embedding(net: nn.Module, t: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
    """temb(t), plus temb_s(s) for a two-time network; (B, W)."""
    temb = net.temb(timestep_embedding(t, net.temb_dim))
    if (s is None) != (net.temb_s is None):
        raise ValueError("a network built with times: 2 needs f(x, t, s); one built with times: 1 takes no s")
    return temb if s is None else temb + net.temb_s(timestep_embedding(s, net.temb_dim))


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.temb = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        u = self.fc1(nn.functional.silu(self.norm(h))) + self.temb(temb)  # (B, W)
        return h + self.fc2(nn.functional.silu(u))


class MLP(nn.Module):
    """Residual MLP with a sinusoidal timestep embedding, for 2-D data."""

    def __init__(self, shape: tuple[int, ...], width: int = 256, depth: int = 4, temb_dim: int = 64, times: int = 1):
        super().__init__()
        (dim,) = shape
        self.temb_dim = temb_dim
        self.temb = nn.Sequential(nn.Linear(temb_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.temb_s = nn.Sequential(nn.Linear(temb_dim, width), nn.SiLU(), nn.Linear(width, width)) if times == 2 else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResBlock(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        temb = time_embedding(self, t, s)  # (B, W)
        h = self.inp(x)  # (B, W)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)  # (B, D)


class ConvBlock(nn.Module):
    def __init__(self, ch: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.temb = nn.Linear(ch, ch)
        self.norm2 = nn.GroupNorm(groups, ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        u = self.conv1(nn.functional.silu(self.norm1(h))) + self.temb(temb)[:, :, None, None]  # (B, C, H, W)
        return h + self.conv2(nn.functional.silu(self.norm2(u)))


class ConvNet(nn.Module):
    """Small residual convnet at full resolution, for tiny images (8x8 digits) on CPU."""

    def __init__(self, shape: tuple[int, ...], width: int = 64, depth: int = 4, temb_dim: int = 64, times: int = 1):
        super().__init__()
        c_in, channels = shape[0], width
        self.temb_dim = temb_dim
        self.temb = nn.Sequential(nn.Linear(temb_dim, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.temb_s = (nn.Sequential(nn.Linear(temb_dim, channels), nn.SiLU(), nn.Linear(channels, channels))
                       if times == 2 else None)
        self.inp = nn.Conv2d(c_in, channels, 3, padding=1)
        self.blocks = nn.ModuleList(ConvBlock(channels) for _ in range(depth))
        self.out = nn.Sequential(nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, c_in, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        temb = time_embedding(self, t, s)  # (B, C)
        h = self.inp(x)  # (B, C, H, W)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)


class UNet(nn.Module):
    """diffusers' UNet2DModel (32x32 and up) behind the same f(x, t) interface.

    `width` is the base channel count (block channels width * (1, 2, 2, 2), the DDPM CIFAR-10 layout),
    `depth` the ResNet layers per block; `temb_dim` is accepted for a uniform config and unused
    (UNet2DModel sizes its own embedding). `times: 2` feeds s through UNet2DModel's timestep-type
    class embedding. Other UNet2DModel arguments pass through.
    """

    def __init__(self, shape: tuple[int, ...], width: int = 128, depth: int = 2, temb_dim: int | None = None,
                 times: int = 1, **kwargs):
        super().__init__()
        from diffusers import UNet2DModel

        if times == 2:
            kwargs.setdefault("class_embed_type", "timestep")
        c, h, _ = shape
        kwargs.setdefault("block_out_channels", tuple(width * m for m in (1, 2, 2, 2)))
        kwargs.setdefault("layers_per_block", depth)
        kwargs.setdefault("down_block_types", ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"))
        kwargs.setdefault("up_block_types", ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
        self.unet = UNet2DModel(sample_size=h, in_channels=c, out_channels=c, **kwargs)

    def forward(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x, t, class_labels=s).sample


class ExactEps(nn.Module):
    """The analytic teacher (`teacher.kind: analytic`): the exact eps*(x_t, t) of the dataset's Gaussian mixture
    (gmm.eps) behind the teacher network's interface, t the diffusers index (fractional: linear in sigma, as
    diffusers' Heun; -1 is abar = 1), plus `correction`, a network of `correction`'s config whose output layer
    starts at zero. The frozen teacher never evaluates it (zero, untrained); a trainable copy (DMD2's fake score,
    methods/common.fake_score) is the exact score plus a trained network, i.e. a fake score started at the teacher."""

    solve_dtype = torch.float64  # the exact ODE solves (diffusion.rk4_trajectory) call it in float64

    def __init__(self, shape: tuple[int, ...], dataset: dict, diffusion: dict, correction: dict):
        super().__init__()
        from onestep import gmm

        mix = gmm.mixture(dataset)
        self.isotropic, self.tied = mix.isotropic, mix.tied
        for k in ("weights", "means", "variances"):  # the mixture travels in the checkpoint (teacher.pt)
            self.register_buffer(k, getattr(mix, k))
        self.register_buffer("sigma", seed_sigmas(diffusion))  # (T+1,) float64, the seed's t = 0..T
        self.correction = build_net(correction, shape)
        nn.init.zeros_(self._last().weight)
        nn.init.zeros_(self._last().bias)

    def _last(self) -> nn.Module:
        return [m for m in self.correction.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]

    def mixture(self, dtype=None):
        from onestep.gmm import Mixture

        return Mixture(self.weights, self.means, self.variances, self.isotropic, self.tied).to(dtype)

    def sigma_at(self, t: torch.Tensor) -> torch.Tensor:
        """sigma (B,) float64 at the diffusers index t (B,), seed index t + 1 in [0, T]."""
        tt = (t.to(self.sigma) + 1).clamp(0, len(self.sigma) - 1)
        lo = tt.floor().long().clamp(max=len(self.sigma) - 2)
        return self.sigma[lo] + (tt - lo) * (self.sigma[lo + 1] - self.sigma[lo])

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        from onestep.gmm import eps

        sig = self.sigma_at(t.reshape(-1).expand(x.shape[0]))
        y = x * (1 + sig * sig).sqrt().to(x).view(-1, 1)  # y = x_t / sqrt(abar_t)
        out = eps(self.mixture(x.dtype), y, sig.to(x.dtype))
        last = self._last()
        if last.weight.requires_grad:  # a trainable copy (the fake score); the frozen teacher's correction is zero
            out = out + self.correction(x.to(last.weight.dtype), t).to(x.dtype)
        return out


def _x0_at_T(h: EpsHead, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
    """G(z, t) = (z - sqrt(1 - abar_T) eps(z, T; t)) / sqrt(abar_T): the one-step generator's read (kd, dmd2, the
    curriculum), its own time t as the second input."""
    if s is not None:
        raise ValueError("an eps_head network read as x0_at_T is a one-time generator G(z, t); it takes no second time")
    T = torch.full_like(t, h.T)
    return denoise(h.eps(x, T, t), x, h.abar_at(T, x.ndim))


def _x0(h: EpsHead, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
    """x0(x_t, t[, s]) = (x_t - sqrt(1 - abar_t) eps(x_t, t[; s])) / sqrt(abar_t): an x0 prediction (tdm)."""
    return denoise(h.eps(x, t, s), x, h.abar_at(t, x.ndim))


def _v(h: EpsHead, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
    """v(x_t, t) = (eps - sqrt(1 - abar_t) x_t) / sqrt(abar_t) (Salimans & Ho's v = alpha eps - sigma x0): the
    v-prediction whose x0 is the epsilon network's (progressive)."""
    a = h.abar_at(t, x.ndim)
    return (h.eps(x, t, s) - (1 - a).sqrt() * x) / a.sqrt()


def _edm(h: EpsHead, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
    """EDM's raw network F with D = c_skip(sigma) x / sqrt(abar) + c_out(sigma) F (sigma_min 0): F = (D - c_skip x /
    sqrt(abar)) / c_out, D the epsilon network's x0 prediction; 0 at sigma = 0, where c_out is 0 (cd, ctm)."""
    a = h.abar_at(t, x.ndim)
    c_skip, c_out = edm_scalings(((1 - a) / a).sqrt(), h.sigma_data)
    live = c_out > 0
    F = (denoise(h.eps(x, t, s), x, a) - c_skip * x / a.sqrt()) / torch.where(live, c_out, torch.ones_like(c_out))
    return torch.where(live, F, torch.zeros_like(F))


def _flow(h: EpsHead, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
    """The rectified-flow velocity v = z - x0 at x_r = (1 - r) x0 + r z, r = t / T (methods/common.py's convention):
    x_r is the VP state x_r / sqrt((1 - r)^2 + r^2) at abar = (1 - r)^2 / ((1 - r)^2 + r^2), whose fractional index
    (abar_T at most noise) the epsilon network reads; v = eps - x0 of that prediction (reflow)."""
    r = (t.to(x.dtype) / h.T).clamp(0, 1).view(-1, *([1] * (x.ndim - 1)))  # (B, 1, ...)
    n = ((1 - r) ** 2 + r**2).sqrt()
    a = torch.maximum(((1 - r) / n) ** 2, h.abar[-1])  # the schedule's last abar at most noise
    xv = x / n
    eps = h.eps(xv, h.index_of(a.flatten()), s)
    return eps - denoise(eps, xv, a)


READS = {"x0_at_T": _x0_at_T, "x0": _x0, "v": _v, "edm": _edm, "flow": _flow}


class EpsHead(nn.Module):
    """A student network in a method's own parameterisation built from an epsilon network `net`, so the teacher's
    weights are a meaningful start (student.init_from_teacher): `read` (READS) turns eps_net(x, t - 1[, s]) (the
    teacher's index shift) into what the method's student returns: an x0 prediction, a v-prediction, EDM's raw F,
    a rectified flow's velocity, or the one-step generator G(z, t) read at T. `times`: the method's time inputs
    (the x0_at_T read feeds its t as the net's second time). `diffusion`: the schedule's config (abar by time);
    `sigma_data`: EDM's, for `edm`. With the teacher's weights and the second-time embedding's last layer zero
    (`start_from`), the student is the teacher read that way: its x0 prediction from z at T, its x0 at t, its v,
    its EDM denoiser, its flow."""

    def __init__(self, shape: tuple[int, ...], net: dict, diffusion: dict, read: str, times: int = 1,
                 sigma_data: float | None = None):
        super().__init__()
        if read not in READS:
            raise ValueError(f"eps_head.read: unknown read '{read}'; allowed: {', '.join(READS)}")
        if read == "edm" and not (sigma_data or 0) > 0:
            raise ValueError(f"eps_head.sigma_data: the edm read needs EDM's sigma_data > 0, got {sigma_data}")
        inner = 2 if read == "x0_at_T" else times
        self.net = build_net({**net, "times": inner}, shape)
        self.read, self.sigma_data = READS[read], None if sigma_data is None else float(sigma_data)
        abar = Schedule.from_config(diffusion).abar  # (T+1,), abar_0 = 1
        self.T = abar.shape[0] - 1
        self.register_buffer("abar", abar, persistent=False)
        self.register_buffer("nlog_abar", -abar.double().log(), persistent=False)  # (T+1,) ascending, for index_of

    def abar_at(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        return self.abar[t.long().clamp(0, self.T)].view(-1, *([1] * (ndim - 1)))  # (B, 1, ...)

    def index_of(self, a: torch.Tensor) -> torch.Tensor:
        """The fractional seed index tau (B,) with abar(tau) = a (a >= abar_T), linear in log abar between the
        table's points."""
        nl, q = self.nlog_abar, -a.double().log()
        hi = torch.searchsorted(nl, q).clamp(1, self.T)
        w = (q - nl[hi - 1]) / (nl[hi] - nl[hi - 1])
        return (hi - 1 + w.clamp(0, 1)).to(a.dtype)

    def eps(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
        idx = (t - 1).clamp(min=0)  # the teacher's network index of time t (diffusion.Teacher.index)
        return self.net(x, idx) if s is None else self.net(x, idx, s)

    def forward(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        return self.read(self, x, t, s)

    @torch.no_grad()
    def start_from(self, teacher: nn.Module) -> tuple[list[str], list[str]]:
        """The teacher's weights into `net`, a second-time embedding's output layer zeroed (so it adds nothing yet);
        (missing, unexpected) keys of the load, the fresh second-time embedding excepted."""
        missing, unexpected = self.net.load_state_dict(teacher.state_dict(), strict=False)
        second = self.net.unet.class_embedding if isinstance(self.net, UNet) else self.net.temb_s  # embeds s
        if second is not None:
            last = [m for m in second.modules() if isinstance(m, nn.Linear)][-1]
            last.weight.zero_()
            last.bias.zero_()
        return [k for k in missing if "temb_s." not in k and "class_embedding." not in k], list(unexpected)


NETS: dict[str, type[nn.Module]] = {"mlp": MLP, "convnet": ConvNet, "unet2d": UNet, "eps_head": EpsHead,
                                 "gmm_exact": ExactEps}


def build_net(cfg: dict, shape: tuple[int, ...]) -> nn.Module:
    """Build a network from {"name": ..., **kwargs}; the name picks the class from NETS."""
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    try:
        cls = NETS[cfg["name"]]
    except KeyError:
        raise ValueError(f"net.name: unknown network '{cfg['name']}'; allowed: {', '.join(NETS)}") from None
    return cls(tuple(shape), **kwargs)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
