"""Flow-matching helpers shared by reflow, meanflow and shortcut (not a method; no registry entry).

Convention (methods.md): x_t = (1 - t) x + t e, t in [0, 1], data x at t = 0, noise e at t = 1,
velocity v = dx_t/dt = e - x. Sampling integrates from t = 1 (the noise z) down to t = 0.

Time scale. Every network takes times on the DDPM index scale 0..T (nets.py). A flow time t in
[0, 1] (and a second time r, or a step size d, in [0, 1]) enters the network as T t (float), so
t = 1 sits where the DDPM prior x_T ~ N(0, I) sits and t = 0 where the data sits.
"""

from __future__ import annotations

import torch


def expand(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) to broadcast against a (B, ...) tensor."""
    return t.view(-1, *([1] * (ndim - 1)))


def interpolate(x: torch.Tensor, e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x + t e for per-sample t (B,)."""
    t = expand(t, x.ndim)
    return (1 - t) * x + t * e


def logit_normal(n: int, mean: float, std: float, gen: torch.Generator) -> torch.Tensor:
    """t = sigmoid(N(mean, std^2)), (n,) on the CPU generator."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=gen))


@torch.no_grad()
def euler(velocity, z: torch.Tensor, steps: int) -> torch.Tensor:
    """Euler solve of dx/dt = velocity(x, t) from t = 1 (x = z) to t = 0 in `steps` equal steps."""
    x = z
    for i in range(steps):
        t = torch.full((z.shape[0],), 1.0 - i / steps, device=z.device)
        x = x - velocity(x, t) / steps
    return x
