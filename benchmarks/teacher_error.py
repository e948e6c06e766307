"""A network teacher's error per noise level against the exact epsilon of a Gaussian-mixture tier (docs/results.md).

Trains the tier's network teacher (teacher.kind network: config/config.yaml's MLP, `--steps` steps) on the tier's
mixture, then at each t of a grid draws x_t ~ q_t (data + noise) and prints, per t, the mean squared error
E |eps_net(x_t, t) - eps*(x_t, t)|^2 / d, the exact target's own E |eps*|^2 / d, and their ratio; a figure beside.
Not a test: the numbers depend on the training.

    .venv/bin/python benchmarks/teacher_error.py --configfile config/gmm2d.yaml [--steps 15000] [--out results/teacher_error]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TIMES = (1, 10, 50, 100, 200, 300, 500, 700, 900, 1000)


def tier_config(configfile: Path, steps: int) -> dict:
    from onestep.config import resolve
    from onestep.config.files import deep_merge

    cfg = deep_merge(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), yaml.safe_load(configfile.read_text()))
    cfg["teacher"] = {**cfg["teacher"], "kind": "network", "steps": steps, "checkpoint_every": 0}
    return {**resolve(cfg), "seed": 0, "device": "cpu", "run": {"ablation": "teacher_error", "name": "net", "point": {}}}


def errors(cfg: dict, net, n: int) -> list[dict]:
    from onestep import data
    from onestep.diffusion import Schedule
    from onestep.nets import build_net

    exact = build_net({"name": "gmm_exact", "dataset": cfg["dataset"], "diffusion": cfg["diffusion"],
                       "correction": cfg["teacher"]["net"]}, data.shape(cfg["dataset"])).eval().requires_grad_(False)
    abar = Schedule.from_config(cfg["diffusion"]).abar
    x0 = data.sample(cfg["dataset"], n, 4242)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4243))
    rows = []
    with torch.no_grad():
        for t in TIMES:
            a = abar[t]
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            idx = torch.full((n,), t - 1)  # the networks' (diffusers) index
            e_star, e_net = exact(xt, idx), net(xt, idx)
            mse = float(((e_net - e_star) ** 2).mean())
            rows.append({"t": t, "mse": mse, "exact_power": float((e_star**2).mean()),
                         "ratio": mse / max(float((e_star**2).mean()), 1e-30)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", type=Path, default=REPO / "config" / "gmm2d.yaml")
    ap.add_argument("--steps", type=int, default=15000)
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "teacher_error")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from onestep.training.train import train_teacher

    cfg = tier_config(a.configfile, a.steps)
    net, summary = train_teacher(cfg, "cpu", lambda *_, **__: None, progress=False)
    rows = errors(cfg, net.eval(), a.samples)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.configfile.stem}.json").write_text(json.dumps({"steps": a.steps, "rows": rows}, indent=2) + "\n")
    print(f"| t | E|eps_net - eps*|^2 / d | E|eps*|^2 / d | ratio |  ({a.configfile.name}, {a.steps} steps)")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['t']} | {r['mse']:.3g} | {r['exact_power']:.3g} | {r['ratio']:.3g} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.loglog([r["t"] for r in rows], [r["mse"] for r in rows], "o-", label="network teacher's MSE")
    ax.loglog([r["t"] for r in rows], [r["exact_power"] for r in rows], "s--", label="E|eps*|² (the target)")
    ax.set_xlabel("t"), ax.set_ylabel("per coordinate"), ax.legend(), ax.set_title(a.configfile.stem)
    fig.tight_layout()
    fig.savefig(a.out / f"{a.configfile.stem}.png", dpi=120)


if __name__ == "__main__":
    main()
