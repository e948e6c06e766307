"""GPU check: every code path that feeds a network, run on the GPU, one line per path (PASS or the error).

    make gpu-check                                      # on a GPU node: cuda, fp32 and bf16, then the CLI
    .venv/bin/python benchmarks/gpu_check.py --device cuda:1
    .venv/bin/python benchmarks/gpu_check.py --device cpu --no-pipeline   # a CPU smoke run of the script

Part 1, in process: for each method of the registry, on 2-D points (MLP) and on 8x8 images (a small
convnet, the digits pool held on the device), in fp32 and bf16: a few steps of the method-blind trainer
(its EMA, batches moved to the device, the method's own networks and optimisers) and sampling at every
step count the method offers. Part 2, through the CLI as the rules call it: a tiny one-run ablation
through Snakemake (teacher, pairs, reference, teacher evaluation, training, evaluation) with
`device` set to the device under test; each job's line says PASS or the last error line of its log.
Takes a few minutes on one GPU. Exit status 1 if any path failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
# a few optimiser steps of each method, by its own budget keys (every other method: `steps`)
TINY_BUDGET = {"curriculum": {"K": 2, "steps_per_stage": 2}, "progressive": {"start_steps": 2, "steps_per_round": 2},
               "reflow": {"reflow_steps": 2, "distill_steps": 2}}
TIERS = {
    "points": ({"name": "checkerboard"}, (2,), {"name": "mlp", "width": 32, "depth": 2, "temb_dim": 16}),
    "images": ({"name": "digits"}, (1, 8, 8), {"name": "convnet", "width": 16, "depth": 1, "temb_dim": 16}),
}
PIPELINE_RULES = ("teacher", "pairs", "reference", "features", "teacher_eval", "train", "evaluate")


def report(ok: bool, what: str, detail: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {what:<44} {detail}", flush=True)
    return ok


def last_error(text: str) -> str:
    lines = [s.strip() for s in text.strip().splitlines() if s.strip()]
    hits = [s for s in lines if "Error" in s or "error:" in s]
    return (hits or lines or ["(no output)"])[-1][:200]


def method_cfg(base: dict, name: str, tier: str, precision: str) -> dict:
    from onestep.config import deep_merge, with_method

    ds, _, net = TIERS[tier]
    cfg = deep_merge(with_method({**base, "seed": 0}, {"name": name}), {"method": TINY_BUDGET.get(name, {"steps": 3})})
    over = {"net": net, "batch_size": 16, "log_every": 1, "precision": precision, "checkpoint_every": 0}
    if name == "curriculum" and tier == "images":  # the late-stage discriminator path, on images
        cfg = deep_merge(cfg, {"method": {"loss": "adversarial", "late_t": 1000, "adversarial": {"net": net}}})
    return deep_merge(cfg, {"dataset": ds, "student": over})


def check_method(base: dict, name: str, tier: str, precision: str, device: str) -> bool:
    from onestep.diffusion import Schedule, Teacher
    from onestep.evaluate import sample
    from onestep.methods import build_method, context
    from onestep.nets import build_net
    from onestep.training.train import train_student

    what = f"{name} {tier} {precision}"
    try:
        t0 = time.time()
        cfg = method_cfg(base, name, tier, precision)
        _, shape, net = TIERS[tier]
        teacher = Teacher(build_net(net, shape).to(device), Schedule.from_config(cfg["diffusion"]))
        g = torch.Generator().manual_seed(0)
        pairs = {"z": torch.randn(64, *shape, generator=g), "x0": torch.randn(64, *shape, generator=g).clamp(-1, 1)}
        model, summary = train_student(cfg, teacher, pairs, device, lambda *a, **k: None, progress=False)
        method = build_method(cfg, context(cfg, teacher, shape))
        for steps in method.sample_steps:
            x = sample(method, model.to(device), torch.randn(8, *shape, generator=g).to(device), steps)
            if x.shape != (8, *shape) or not torch.isfinite(x).all():
                raise RuntimeError(f"{steps}-step samples: shape {tuple(x.shape)}, finite {bool(torch.isfinite(x).all())}")
        mem = summary.get("gpu_max_mem_gib")
        return report(True, what, f"{summary['steps']} steps + sampling {method.sample_steps}, {time.time() - t0:.1f} s"
                      + (f", peak {mem:.2f} GiB" if mem is not None else ""))
    except Exception as e:  # noqa: BLE001 - the check reports every failure and goes on
        frame = traceback.extract_tb(e.__traceback__)[-1]
        return report(False, what, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                                   f"({Path(frame.filename).name}:{frame.lineno})")


def check_pipeline(device: str, cores: int) -> bool:
    """A tiny one-point ablation through Snakemake and the CLI, exactly as the rules call it."""
    work = Path(tempfile.mkdtemp(prefix="onestep-gpu-check-"))
    (work / "ablations").mkdir()
    (work / "ablations" / "check.yaml").write_text(yaml.safe_dump(
        {"name": "gpu_check", "title": "GPU check", "baseline": {"method.ordering": "forward"},
         "grid": {"method.ordering": ["forward"]}}))
    tiny = {"out": str(work / "results"), "seeds": [0], "ablations_dir": str(work / "ablations"),
            "device": device, "gpu_per_job": 1, "dataset": {"name": "digits"},
            "teacher": {"steps": 20, "batch_size": 64, "log_every": 10, "warmup": 2, "precision": "auto"},
            "pairs": {"num": 256, "ddim_steps": 4, "seed": 1},
            "student": {"batch_size": 32, "log_every": 5, "precision": "auto"},
            "method": {"K": 2, "steps_per_stage": 5},
            "evaluation": {"num_samples": 256, "teacher_steps": [1, 4], "feature_steps": 20}}
    (work / "check.yaml").write_text(yaml.safe_dump(tiny))
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "snakemake"), "gpu_check", "-s", str(REPO / "Snakefile"), "--cores", str(cores),
           "--configfile", str(REPO / "config" / "config.yaml"), str(REPO / "config" / "digits.yaml"),
           str(work / "check.yaml"), "--resources", "gpu=1", "--keep-going"]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI":
           f"sqlite:///{work / 'mlflow.db'}"}
    t0 = time.time()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    logs = work / "results" / "logs"
    failed = {line.split("Error in rule ", 1)[1].rstrip(":").strip() for line in p.stderr.splitlines()
              if "Error in rule " in line}
    ok = True
    for rule in PIPELINE_RULES:
        files = sorted((logs / rule).rglob("*.log")) if (logs / rule).is_dir() else []
        if rule in failed:
            ok &= report(False, f"cli {rule}", last_error(files[-1].read_text(errors="replace")) if files else
                         "no log written")
        elif files:
            report(True, f"cli {rule}", f"{len(files)} job(s) finished")
    ok &= report(p.returncode == 0, "snakemake gpu_check (tiny digits ablation)",
                 f"{time.time() - t0:.0f} s, outputs in {work}" if p.returncode == 0 else last_error(p.stderr))
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--methods", nargs="*", default=None, help="a subset of the registry (default: all)")
    p.add_argument("--no-pipeline", action="store_true", help="skip the Snakemake/CLI part")
    p.add_argument("--cores", type=int, default=4, help="Snakemake --cores of the pipeline part")
    a = p.parse_args()

    from onestep.methods import METHODS

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"gpu_check: --device {a.device} but torch {torch.__version__} finds no CUDA device here; "
                 "run it on a GPU node (or --device cpu for a smoke run of the script)")
    name = torch.cuda.get_device_name(a.device) if a.device.startswith("cuda") else "CPU"
    print(f"device {a.device}: {name}; torch {torch.__version__}", flush=True)
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    ok = True
    for method in a.methods or sorted(METHODS):
        for tier in TIERS:
            for precision in a.precisions:
                ok &= check_method(base, method, tier, precision, a.device)
    if not a.no_pipeline:
        ok &= check_pipeline(a.device, a.cores)
    print("all paths passed" if ok else "some paths FAILED (lines above)", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
