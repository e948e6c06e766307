"""One-step (and 2/4-step) SWD of baseline methods at their default config on the default checkerboard,
outside Snakemake: teacher, pairs, train_student, evaluate, seed 0. Prints one line per row.

    .venv/bin/python benchmarks/baselines_quick.py [--work DIR] [--teacher PATH] METHOD ...

Bars: one-step SWD >= 30% below the teacher's 1-step DDIM; distillations of the teacher
within 25% of the teacher's 50-step DDIM. The teacher is trained once into --work (or read from
--teacher); its pairs are cached there too.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from onestep.checkpoint import load_teacher, save_checkpoint
from onestep.config import REPO, with_method
from onestep.diffusion import ddim_sample
from onestep.evaluate import eval_noise, one_step, reference, score
from onestep.methods import METHODS
from onestep.training.train import train_student, train_teacher

DISTILLATIONS = {"reflow", "dmd2", "tdm", "curriculum", "kd", "progressive", "cd", "ctm"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("methods", nargs="+")
    p.add_argument("--work", default="/tmp/onestep_baselines")
    p.add_argument("--teacher", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="method key override for every listed method, e.g. --set reg_weight=0.25")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(open(REPO / "config" / "config.yaml")) | {"seed": 0}
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    tpath = Path(a.teacher) if a.teacher else work / "teacher.pt"
    if not tpath.exists():
        net, summary = train_teacher(cfg, "cpu", lambda *x, **k: None)
        save_checkpoint(tpath, "teacher", cfg["teacher"]["net"], (2,), cfg, net)
        print("teacher", json.dumps(summary), flush=True)
    teacher = load_teacher(tpath)
    ppath = work / "pairs.pt"
    if not ppath.exists():
        pc = cfg["pairs"]
        z = torch.randn(pc["num"], 2, generator=torch.Generator().manual_seed(pc["seed"]))
        torch.save({"z": z, "x0": ddim_sample(teacher.net, z, pc["ddim_steps"], cfg["diffusion"])}, ppath)
    pairs = torch.load(ppath)
    ref, info = reference(cfg)
    z = eval_noise(cfg, (2,))
    print(f"floor SWD {info['floor']['swd']:.4f}", flush=True)
    tswd = {}
    for steps in (1, 50):
        tswd[steps] = score(ddim_sample(teacher.net, z, steps, cfg["diffusion"]), ref, cfg)["metrics"]["swd"]
        print(f"teacher DDIM {steps:>2} steps SWD {tswd[steps]:.4f}", flush=True)
    for name in a.methods:
        over = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in a.set)}
        c = with_method(cfg, {"name": name, **over})
        t0 = time.time()
        student, summary = train_student(c, teacher, pairs, "cpu", lambda *x, **k: None, progress=False)
        wall = time.time() - t0
        steps = METHODS[name].sample_steps
        swd = {k: score(one_step(c, teacher, student, z, steps=k), ref, c)["metrics"]["swd"] for k in steps}
        bar1 = swd[1] <= 0.7 * tswd[1]
        bar50 = swd[1] <= 1.25 * tswd[50] if name in DISTILLATIONS else None
        print(f"{name:<10}{' ' + str(over) if over else ''} SWD " + " ".join(f"{k}-step {v:.4f}" for k, v in swd.items())
              + f" | wall {wall:.0f}s steps {summary['steps']} teacher_evals {summary['teacher_evals']}"
              + f" | beats 0.7 x teacher-1 ({0.7 * tswd[1]:.4f}): {bar1}"
              + ("" if bar50 is None else f" | within 1.25 x teacher-50 ({1.25 * tswd[50]:.4f}): {bar50}"), flush=True)


if __name__ == "__main__":
    main()
