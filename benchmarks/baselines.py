"""Print each method's one-step SWD on the checkerboard against the issue-6 quality bars (stored files only).

    .venv/bin/python benchmarks/baselines.py [--out results] [--dataset checkerboard] [--ablation baselines]
    .venv/bin/python benchmarks/baselines.py --run --seeds 0      # first run `snakemake baselines` (one seed)

Bars (2-D checkerboard, sliced Wasserstein distance on the same held-out noise):
  every method        one-step SWD at least 30% below the teacher's 1-step DDIM  (SWD <= 0.70 x DDIM-1)
  distillations       one-step SWD within 25% of the teacher's 50-step DDIM      (SWD <= 1.25 x DDIM-50)
A distillation is a method that does not train from data (`needs_data` False in its class). A method
that misses a bar is printed with its figure and MISSED, not hidden.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="results")
    p.add_argument("--dataset", default="checkerboard")
    p.add_argument("--ablation", default="baselines")
    p.add_argument("--run", action="store_true", help="run `snakemake baselines` first")
    p.add_argument("--seeds", default=None, help="with --run: comma-separated seeds (config `seeds` otherwise)")
    p.add_argument("--cores", default="2")
    a = p.parse_args()
    if a.run:
        cmd = [str(Path(sys.executable).with_name("snakemake")), "--cores", a.cores, a.ablation]
        if a.seeds:  # a config file on top of the defaults (--config would pass the seeds as strings)
            seeds = Path(tempfile.mkdtemp()) / "seeds.yaml"
            seeds.write_text(f"seeds: [{a.seeds}]\n")
            cmd += ["--configfile", "config/config.yaml", str(seeds)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)

    from onestep.methods import METHODS

    root = Path(a.out) / a.dataset
    teacher = {int(d.name.split("-")[1]): json.loads((d / "metrics.json").read_text())["metrics"]["swd"]
               for d in (root / "teacher").glob("ddim-*") if (d / "metrics.json").exists()}
    floor = json.loads((root / "reference.json").read_text())["floor"]["swd"]
    t1, t50 = teacher.get(1), teacher.get(50)
    if t1 is None or t50 is None:
        sys.exit(f"teacher DDIM 1- and 50-step metrics are needed under {root}/teacher/ddim-{{1,50}}/")
    print(f"data-vs-data floor SWD {floor:.4f}; teacher DDIM: " +
          ", ".join(f"{n} steps {v:.4f}" for n, v in sorted(teacher.items())))
    print(f"bars: every method SWD <= {0.7 * t1:.4f} (0.70 x DDIM-1); distillations SWD <= {1.25 * t50:.4f} (1.25 x DDIM-50)\n")
    runs: dict[str, list[dict]] = {}
    for f in sorted((root / a.ablation).glob("*/metrics.json")):
        m = json.loads(f.read_text())
        runs.setdefault(m["method"], []).append(m)
    head = f"{'method':<12} {'seeds':>5} {'SWD@1':>8} {'/DDIM-1':>8} {'/DDIM-50':>9} {'SWD@2':>8} {'SWD@4':>8} {'train s':>8} " \
           f"{'teacher evals':>14}  bars"
    print(head)
    print("-" * len(head))
    for name, ms in runs.items():
        swd = statistics.mean(m["metrics"]["swd"] for m in ms)
        few = [statistics.mean(m["multistep"][f"swd@{n}"] for m in ms) if f"swd@{n}" in ms[0].get("multistep", {})
               else None for n in (2, 4)]
        distill = name in METHODS and not METHODS[name].needs_data
        verdict = ["1-step bar " + ("met" if swd <= 0.7 * t1 else "MISSED")]
        if distill:
            verdict.append("50-step bar " + ("met" if swd <= 1.25 * t50 else "MISSED"))
        wall = statistics.mean(m["train"]["wall_time_s"] for m in ms)
        evals = statistics.mean(m["train"].get("teacher_evals", 0) for m in ms)
        fmt = lambda v: f"{v:8.4f}" if v is not None else f"{'-':>8}"  # noqa: E731
        print(f"{name:<12} {len(ms):>5} {swd:8.4f} {swd / t1:8.2f} {swd / t50:9.2f} {fmt(few[0])} {fmt(few[1])} "
              f"{wall:8.0f} {evals:14.3g}  {'; '.join(verdict)}{'' if distill else ' (trains from data)'}")


if __name__ == "__main__":
    main()
