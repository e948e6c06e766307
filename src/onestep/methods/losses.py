"""Distances d(a, b) per sample, and an adversarial term with its own discriminator.

Each distance is a small class: hyperparameters in the constructor, `__call__(a, b) -> (B,)`.
`DISTANCES[name](shape, features)` builds one; methods never branch on the name.

- `l2`:           ||a - b||^2, the seed's choice (with w(t) it is the Gaussian KL).
- `pseudo_huber`: sqrt(||a - b||^2 + c^2) - c, c = 0.00054 sqrt(d) (iCT), d = numel of a sample.
- `perceptual`:   ||phi(a) - phi(b)||^2 with phi a frozen feature network of images: the dataset's own
                  (the one FID uses, `backbone: features`) or LPIPS (`backbone: lpips`, needs the `lpips`
                  package and its backbone weights on disk). Points (2-D data) have no perceptual space.

`Adversarial` is the non-regression option: a discriminator D(x, t) trained alongside with its own
optimiser (`step`) and a generator term (`__call__`) of kind `hinge` or `non_saturating`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from onestep.errors import OnestepError
from onestep.methods.base import Knobs, knob
from onestep.methods.common import huber_c, pseudo_huber
from onestep.nets import NETS, build_net


class PerceptualError(OnestepError, RuntimeError):
    pass


class L2:
    def __init__(self, shape: tuple[int, ...], features=None):
        pass

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).flatten(1).sum(1)  # (B,)


class PseudoHuber:
    def __init__(self, shape: tuple[int, ...], features=None):
        self.c = huber_c(None, shape)  # iCT's 0.00054 sqrt(d)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return pseudo_huber(a, b, self.c)  # (B,)


class Perceptual:
    """Squared distance in a frozen feature space; gradients flow through phi into `a` and `b`, not into phi."""

    def __init__(self, shape: tuple[int, ...], features: Callable[[torch.Tensor], torch.Tensor] | None):
        if len(shape) != 3:
            raise PerceptualError(f"method.loss: 'perceptual' needs images (C, H, W); the data has shape {shape}")
        if features is None:
            raise PerceptualError("method.loss: 'perceptual' needs a feature network; none was given to the trainer")
        self.phi = features
        owner = getattr(features, "__self__", features)  # a module, or the module of a bound method
        if isinstance(owner, nn.Module):
            owner.requires_grad_(False)  # phi is frozen: gradients go to the student only

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((self.phi(a) - self.phi(b)) ** 2).flatten(1).sum(1)  # (B,)


DISTANCES: dict[str, type] = {"l2": L2, "pseudo_huber": PseudoHuber, "perceptual": Perceptual}


def lpips_features(shape: tuple[int, ...], net: str = "alex") -> Callable[[torch.Tensor], torch.Tensor]:
    """LPIPS as phi (its distance is the squared norm of the stacked, weighted, normalised features)."""
    try:
        import lpips
    except ImportError as e:
        raise PerceptualError("method.perceptual.backbone: 'lpips' needs the lpips package (pip install lpips==0.1.4)") from e
    try:
        model = lpips.LPIPS(net=net, verbose=False).eval().requires_grad_(False)
    except Exception as e:  # the backbone weights come from torchvision's cache; no download here
        raise PerceptualError(
            f"method.perceptual.backbone: 'lpips' could not load its {net} backbone ({type(e).__name__}: {e}); "
            f"place the torchvision weights in {torch.hub.get_dir()}/checkpoints/ or use backbone 'features'"
        ) from e

    def phi(x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # (B, 3, H, W) in [-1, 1]
        x = nn.functional.interpolate(x, size=max(32, x.shape[-1]), mode="bilinear") if x.shape[-1] < 32 else x
        feats = model.net(model.scaling_layer(x))
        parts = [lin(lpips.normalize_tensor(f)) for f, lin in zip(feats, model.lins, strict=True)]
        return torch.cat([(p / p.shape[-1]).flatten(1) for p in parts], 1)  # (B, F)

    return phi


NET_SCHEMA = {"type": "object", "required": ["name"], "properties": {"name": {"enum": list(NETS)}}}


@dataclass(frozen=True)
class AdversarialConfig(Knobs):
    """The adversarial term's knobs (a config section, e.g. curriculum's `adversarial`)."""

    kind: Literal["hinge", "non_saturating"] = knob("hinge", "generator / discriminator loss pair")
    weight: float = knob(0.1, "weight of the generator term", minimum=0)
    lr: float = knob(2e-4, "discriminator Adam learning rate", exclusiveMinimum=0)
    betas: tuple[float, float] = knob((0.0, 0.99), "discriminator Adam betas", items={"minimum": 0, "exclusiveMaximum": 1})
    net: dict = knob({"name": "mlp", "width": 128, "depth": 2}, "discriminator body (nets.build_net)", schema=NET_SCHEMA)


class Discriminator(nn.Module):
    """D(x, t) -> logit (B,): a body from `build_net` (same interface as the nets) and a linear readout."""

    def __init__(self, net_cfg: dict, shape: tuple[int, ...]):
        super().__init__()
        self.body = build_net(net_cfg, shape)
        self.head = nn.Linear(math.prod(shape), 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.silu(self.body(x, t)).flatten(1)).squeeze(1)  # (B,)


GEN_LOSS = {  # generator term per sample, from D(fake)
    "hinge": lambda d_fake: -d_fake,
    "non_saturating": lambda d_fake: nn.functional.softplus(-d_fake),
}
DISC_LOSS = {  # discriminator loss per sample, from D(real), D(fake)
    "hinge": lambda d_real, d_fake: nn.functional.relu(1 - d_real) + nn.functional.relu(1 + d_fake),
    "non_saturating": lambda d_real, d_fake: nn.functional.softplus(-d_real) + nn.functional.softplus(d_fake),
}


class Adversarial:
    """A discriminator trained alongside the student, with its own Adam optimiser and learning rate."""

    def __init__(self, shape: tuple[int, ...], cfg: AdversarialConfig = AdversarialConfig()):  # noqa: B008 (frozen)
        self.kind, self.weight = cfg.kind, cfg.weight
        self.D = Discriminator(cfg.net, shape)
        self.opt = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))

    def __call__(self, fake: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Generator term, weighted, per sample (B,); gradients reach the student through `fake`, not D."""
        self.D.requires_grad_(False)
        return self.weight * GEN_LOSS[self.kind](self.D(fake, t))

    def step(self, real: torch.Tensor, fake: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One optimiser step of D on (real, detached fake) at times t; returns D's mean loss."""
        self.D.requires_grad_(True)
        loss = DISC_LOSS[self.kind](self.D(real, t), self.D(fake.detach(), t)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def to(self, device) -> Adversarial:
        self.D.to(device)
        return self

    def state_dict(self) -> dict:
        return {"D": self.D.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.D.load_state_dict(state["D"])
        self.opt.load_state_dict(state["opt"])
