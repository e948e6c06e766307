"""What SWD and the exact-density metrics see on the checkerboard: known blur and leakage (docs/results.md).

Rows: samples of the density itself, the density blurred by N(0, sigma^2 I), and the density with a share eps
of its samples uniform on the board [-2, 2]^2. Columns: SWD at the tables' N (65536, against the pipeline's
reference draw; x floor: over the mean of `--floor-draws` data-vs-data draws) and the exact metrics of
`--exact` (10^6) samples with their floors (onestep.exact).

    .venv/bin/python benchmarks/exact_vs_swd.py
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from onestep import data, exact
from onestep.metrics import sliced_wasserstein

BOARD = {"name": "checkerboard"}


def rows(n: int, seed: int) -> dict[str, np.ndarray]:
    """name -> (n, 2) samples."""
    rng = np.random.default_rng(seed)
    x = data.sample(BOARD, n, seed).double().numpy()
    leak = x.copy()
    mask = rng.random(n) < 0.005
    leak[mask] = rng.uniform(-2, 2, (int(mask.sum()), 2))
    return {"the density itself": x, "blurred, sigma = 0.01": x + 0.01 * rng.standard_normal((n, 2)),
            "blurred, sigma = 0.03": x + 0.03 * rng.standard_normal((n, 2)), "0.5% uniform leakage": leak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=65536, help="SWD sample size (the tables' evaluation.num_samples)")
    ap.add_argument("--exact", type=int, default=1_000_000, help="exact metrics' sample size")
    ap.add_argument("--floor-draws", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    ref = data.sample(BOARD, a.n, 777)  # the pipeline's reference draw (evaluation.reference_seed)
    floor = np.mean([sliced_wasserstein(data.sample(BOARD, a.n, 778 + i), ref) for i in range(a.floor_draws)])
    small, big = rows(a.n, 1), rows(a.exact, 2)
    nu = exact.null("checkerboard", a.exact)
    print(f"SWD floor at N = {a.n}: {floor:.5f} ({a.floor_draws} data draws); exact metrics at N = {a.exact}: "
          f"TV floor {nu['tv_floor']:.5f} (null sd {nu['tv_null_sd']:.5f}), chi2 null sd {nu['chi2_null_sd']:.2e}")
    print("| samples | SWD (x floor) | off-support mass | TV | chi2 |")
    print("|---|---|---|---|---|")
    for name in small:
        s = sliced_wasserstein(torch.from_numpy(small[name]).float(), ref) / floor
        r = exact.exact_metrics("checkerboard", big[name])
        print(f"| {name} | {s:.2f} | {r['off_support']:.4%} | {r['tv']:.4f} | {r['chi2']:.2e} |", flush=True)


if __name__ == "__main__":
    main()
