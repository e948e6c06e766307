"""The teacher's pairs: why tail noise is sent far off, and what each pairs solver gives.

    .venv/bin/python benchmarks/pairs_check.py --teacher results/checkerboard/teacher/teacher.pt [--n 65536]

Prints (1) the teacher's eps at t = T against the ideal eps for |z| bins (at t = T, abar_T ~ 4e-5, so
E[eps | x_T] = (x_T - sqrt(abar_T) E[x0 | x_T]) / sqrt(1 - abar_T) ~ x_T for data within +-2), and
(2) per solver setting: SWD of N samples from fresh noise against N data samples, the data-vs-data floor
at that N, the count of samples with a coordinate outside +-2.5 and the max |x|, and the wall time.
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

from onestep import data
from onestep.checkpoint import load_checkpoint
from onestep.config import REPO
from onestep.diffusion import teacher_sample
from onestep.metrics import sliced_wasserstein

SETTINGS = [("ddim", 50, None), ("ddim", 250, None), ("ddim", 50, 2.0), ("dpm++", 50, None), ("dpm++", 50, 2.0),
            ("heun", 25, 2.0), ("dpm++", 25, 2.0)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", required=True)
    p.add_argument("--n", type=int, default=65536)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=None, help="comma-separated indices of SETTINGS")
    p.add_argument("--tail-only", action="store_true", help="only (1) and (1b): the tail diagnosis")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(open(REPO / "config" / "config.yaml"))
    net, _ = load_checkpoint(a.teacher, "teacher")
    diff, ds = cfg["diffusion"], cfg["dataset"]
    # (1) eps at t = T (diffusers index T - 1) against x_T / sqrt(1 - abar_T), by |z|
    z = torch.randn(1_000_000, 2, generator=torch.Generator().manual_seed(5))
    r = z.norm(dim=1)
    with torch.no_grad():
        eps = net(z, torch.full((z.shape[0],), diff["T"] - 1))
    for lo, hi in ((0, 2), (2, 3), (3, 4), (4, 5), (5, 9)):
        m = (r >= lo) & (r < hi)
        if m.any():
            ratio = (eps[m] * z[m]).sum(1) / (z[m] * z[m]).sum(1)  # eps's component along x_T, per |x_T|^2
            print(f"|z| in [{lo}, {hi}): n = {int(m.sum()):>6}, eps . z / |z|^2 = {float(ratio.mean()):.3f} "
                  f"(ideal ~1.000), |eps - z| mean {float((eps[m] - z[m]).norm(dim=1).mean()):.3f}", flush=True)
    # (1b) the tail itself: every z of those 10^6 draws with a coordinate beyond +-4, through each setting
    tail = z[(z.abs() > 4).any(1)]
    for solver, steps, clip in SETTINGS:
        x = teacher_sample(net, tail, steps, diff, solver, clip)
        print(f"tail noise (n = {tail.shape[0]}, |z_i| > 4): {solver} {steps} clip {clip}: outside +-2.5: "
              f"{int((x.abs() > 2.5).any(1).sum())}, max |x| {float(x.abs().max()):.1f}", flush=True)
    if a.tail_only:
        return
    # (2) solvers
    ref = data.sample(ds, a.n, seed=777)
    floor = sliced_wasserstein(data.sample(ds, a.n, seed=778), ref)
    print(f"N = {a.n}: floor (data vs data) SWD {floor:.4f}", flush=True)
    noise = torch.randn(a.n, 2, generator=torch.Generator().manual_seed(12345))
    pick = range(len(SETTINGS)) if a.only is None else [int(i) for i in a.only.split(",")]
    for i in pick:
        solver, steps, clip = SETTINGS[i]
        t0 = time.time()
        x = teacher_sample(net, noise, steps, diff, solver, clip)
        wall = time.time() - t0
        out = (x.abs() > 2.5).any(1)
        swd = sliced_wasserstein(x, ref)
        swd_in = sliced_wasserstein(x[~out], ref[: int((~out).sum())]) if out.any() else swd
        print(f"{solver:>5} {steps:>3} steps clip {clip}: SWD {swd:.4f} ({swd / floor:.2f}x floor), outside +-2.5: "
              f"{int(out.sum())} (max |x| {float(x.abs().max()):.1f}), SWD without them {swd_in:.4f} | {wall:.0f}s",
              flush=True)


if __name__ == "__main__":
    main()
