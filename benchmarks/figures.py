"""Print the figures issue targets are measured by, from a finished `make demo` (stored files only).

    .venv/bin/python benchmarks/figures.py [--out results] [--dataset checkerboard] [--ablation ablate_order]

Targets (2-D checkerboard, sliced Wasserstein distance SWD, same sample size as the data floor):
  teacher DDIM 50 steps     <= 1.5 x floor
  curriculum (forward) G(z, 0) <= 2.2 x floor, and >= 40% below the teacher's 1-step DDIM
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="results")
    p.add_argument("--dataset", default="checkerboard")
    p.add_argument("--ablation", default="ablate_order")
    p.add_argument("--baseline", default="forward", help="grid value the curriculum targets are checked on")
    p.add_argument("--diagnose", action="store_true", help="also sample the teacher at 50..1000 DDIM steps")
    a = p.parse_args()
    root = Path(a.out) / a.dataset
    ref = json.loads((root / "reference.json").read_text())
    floor = ref["floor"]["swd"]
    print(f"data-vs-data floor: SWD {floor:.4f} at N = {ref['num_samples']}")
    teacher = {int(d.name.split("-")[1]): json.loads((d / "metrics.json").read_text())
               for d in sorted((root / "teacher").glob("ddim-*")) if (d / "metrics.json").exists()}
    for steps, m in sorted(teacher.items()):
        print(f"teacher DDIM {steps:>3} steps: SWD {m['metrics']['swd']:.4f} = {m['metrics']['swd'] / floor:.2f} x floor")
    tj = root / "teacher" / "teacher.json"
    if tj.exists():
        t = json.loads(tj.read_text())
        print(f"teacher training: {t['wall_time_s']:.0f} s, {t['samples_per_s']:.0f} samples/s, {t['steps']} steps")
    t50 = teacher[max(teacher)]["metrics"]["swd"]
    t1 = teacher[min(teacher)]["metrics"]["swd"]
    ok = [("teacher 50-step <= 1.5 x floor", t50 <= 1.5 * floor)]
    groups: dict[str, list[dict]] = {}
    for f in sorted((root / a.ablation).glob("*/metrics.json")):
        m = json.loads(f.read_text())
        groups.setdefault(",".join(str(v) for v in m["point"].values()), []).append(m)
    for label, ms in groups.items():
        swd = statistics.mean(m["metrics"]["swd"] for m in ms)
        wall = statistics.mean(m["train"]["wall_time_s"] for m in ms)
        sps = statistics.mean(m["train"]["samples_per_s"] for m in ms)
        print(f"curriculum {label:>9}: SWD {swd:.4f} = {swd / floor:.2f} x floor, {swd / t50:.2f} x teacher-50, "
              f"{100 * (1 - swd / t1):.0f}% below teacher-1; train {wall:.0f} s, {sps:.0f} samples/s ({len(ms)} seeds)")
        if label == a.baseline:
            ok += [("curriculum <= 2.2 x floor", swd <= 2.2 * floor), ("curriculum >= 40% below teacher 1-step",
                                                                        swd <= 0.6 * t1)]
    for name, good in ok:
        print(f"[{'PASS' if good else 'FAIL'}] {name}")
    if a.diagnose:
        diagnose(root, ref)


def diagnose(root: Path, ref: dict) -> None:
    """Where the teacher's 50-step error comes from: DDIM discretisation vs the network itself."""
    import yaml

    from onestep import data, outputs
    from onestep.checkpoint import load_checkpoint
    from onestep.diffusion import ddim_sample
    from onestep.evaluate import eval_noise, score

    net, ckpt = load_checkpoint(root / "teacher" / "teacher.pt", "teacher")
    cfg = ckpt["config"]
    ev = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())["evaluation"]
    cfg = {**cfg, "evaluation": ev}
    arrays = outputs.load_npz(root / "reference.npz")  # checked against its stored SHA-256
    noise = eval_noise(cfg, tuple(ckpt["shape"]))
    std_data = float(data.sample(cfg["dataset"], 20000, 1).std(0).mean())
    print(f"diagnosis (teacher DDIM at more steps, same noise; data std {std_data:.4f}):")
    for steps in (50, 100, 250, 1000):
        x = ddim_sample(net, noise, steps, cfg["diffusion"])
        swd = score(x, arrays, cfg)["metrics"]["swd"]
        print(f"  DDIM {steps:>4} steps: SWD {swd:.4f} = {swd / ref['floor']['swd']:.2f} x floor, "
              f"sample std {float(x.std(0).mean()):.4f}")


if __name__ == "__main__":
    main()
