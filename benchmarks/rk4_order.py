"""RK4's order on the analytic teacher: one Gaussian N(mu, v I), whose PF-ODE flow is affine and known exactly.

Prints the largest error of rk4_trajectory's x0 against the exact flow at 8 to 256 steps (docs/results.md).

    .venv/bin/python benchmarks/rk4_order.py
"""

from __future__ import annotations

import torch

from onestep.diffusion import rk4_trajectory, seed_sigmas
from onestep.nets import build_net

DIFF = {"T": 1000, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}
MU, V = [0.5, -0.3], 0.04


def main() -> None:
    ds = {"name": "gmm", "gmm": {"dim": 2, "modes": 8, "means": [MU] * 8, "variances": [V] * 8}}
    net = build_net({"name": "gmm_exact", "dataset": ds, "diffusion": DIFF,
                     "correction": {"name": "mlp", "width": 8, "depth": 1, "temb_dim": 8}}, (2,))
    net = net.eval().requires_grad_(False)
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(0)).double()
    s_top, mu = float(seed_sigmas(DIFF)[-1]), torch.tensor(MU, dtype=torch.float64)
    want = mu + (z * (1 + s_top**2) ** 0.5 - mu) / (V + s_top**2) ** 0.5 * V**0.5  # (y - mu) / sqrt(v + s^2) kept
    for n in (8, 16, 32, 64, 128, 256):
        x0, _ = rk4_trajectory(net, z, n, DIFF)
        print(f"{n:4d} steps: max |x0 - exact| = {float((x0.double() - want).abs().max()):.2g}")


if __name__ == "__main__":
    main()
