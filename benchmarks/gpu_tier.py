"""Throughput and memory of the paper tier (config/cifar10.yaml) on whatever device is present.

Runs the pipeline's own code paths (train.train_teacher, train.train_student with the curriculum,
evaluate.one_step, diffusion.ddim_sample) on random 3 x 32 x 32 data, and prints:

  teacher training     samples/s (steady state: the last log interval), model FLOPs utilisation
                       (MFU: the network's training FLOPs per sample x samples/s over the card's dense
                       bf16 peak, accel.PEAK_BF16_TFLOPS), peak GPU memory
  curriculum training  samples/s, MFU of the student network alone (teacher evaluations and targets
                       are extra work: a lower bound), peak GPU memory
  sampling             one-step images/s vs the teacher's 50-step DDIM images/s

Batch size and learning rate move together: --batch B scales both sections' lr from the config's
batch by (B / batch) ** 0.5 (--lr-scale sqrt, Adam's usual rule) or linearly; the optimiser is
fused Adam on CUDA; --compile [MODE] compiles the trained network (reduce-overhead: CUDA graphs).

    .venv/bin/python benchmarks/gpu_tier.py                          # the cifar10.yaml UNet, on the GPU if present
    .venv/bin/python benchmarks/gpu_tier.py --precision fp32 --compile
    .venv/bin/python benchmarks/gpu_tier.py --batch 512 --compile max-autotune   # a bigger batch, lr scaled
    .venv/bin/python benchmarks/gpu_tier.py --tiny --steps 4 --batch 8 --samples 16   # a CPU smoke run

Figures depend on the device; quote them with the device line printed first.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from onestep.config import deep_merge

REPO = Path(__file__).resolve().parents[1]
TINY_NET = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8,
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}


def config(a, npz: Path) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = deep_merge(cfg, yaml.safe_load((REPO / "config" / "cifar10.yaml").read_text()))
    gpu = {"precision": a.precision, "compile": a.compile, "channels_last": not a.no_channels_last,
           "grad_accum": a.grad_accum, "batch_size": a.batch, "log_every": max(1, a.steps // 4)}
    lr = {sec: scaled_lr(cfg[sec]["lr"], cfg[sec]["batch_size"], a.batch, a.lr_scale) for sec in ("teacher", "student")}
    over = {"dataset": {"path": str(npz)}, "device": a.device, "seed": 0,
            "teacher": {**gpu, "pretrained": None, "steps": a.steps, "warmup": 1, "lr": lr["teacher"]},
            "student": {**gpu, "warmup": 1, "lr": lr["student"]},
            "method": {"K": 4, "steps_per_stage": max(1, a.steps // 4)}}
    if a.tiny:
        over["teacher"]["net"] = {**TINY_NET, "dropout": 0.0}
        over["student"]["net"] = TINY_NET
    return deep_merge(cfg, over)


def scaled_lr(lr: float, batch: int, new_batch: int, rule: str) -> float:
    """The learning rate for `new_batch` when `lr` was set for `batch`: sqrt (Adam) or linear scaling."""
    ratio = new_batch / batch
    return lr * {"sqrt": ratio ** 0.5, "linear": ratio, "none": 1.0}[rule]


def utilisation(net, shape, device: str, precision: str, samples_per_s: float, times: int = 1) -> str:
    """'x.x TFLOP/s, MFU y%' of `net` training at samples_per_s (FLOPs counted on a batch of 8)."""
    from onestep.accel import mfu, peak_tflops, precision_context, train_flops

    net = copy.deepcopy(net).train().requires_grad_(True)  # the returned nets are frozen EMA copies
    x = torch.randn(8, *shape, device=device)
    t = [torch.randint(0, 1000, (8,), device=device) for _ in range(times)]
    with precision_context(device, precision):
        flops = train_flops(net, x, *t)
    peak = peak_tflops(device)
    u = mfu(flops, samples_per_s, peak)
    achieved = flops * samples_per_s / 1e12
    return (f"{flops / 1e9:.1f} GFLOP/sample, {achieved:.1f} TFLOP/s, "
            + (f"MFU {100 * u:.1f}% of {peak:.0f}" if u is not None else "MFU n/a (peak unknown for this device)"))


def timed(fn, device: str) -> tuple[object, float]:
    from onestep.accel import synchronize

    synchronize(device)
    t0 = time.time()
    out = fn()
    synchronize(device)
    return out, time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="a tiny UNet (CPU smoke run) instead of the DDPM CIFAR-10 one")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps of each training benchmark")
    p.add_argument("--batch", type=int, default=128, help="global batch")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--lr-scale", default="sqrt", choices=["sqrt", "linear", "none"],
                   help="how lr follows --batch from the config's batch size")
    p.add_argument("--compile", nargs="?", const=True, default=False,
                   help="torch.compile the trained network; optional MODE: reduce-overhead | max-autotune")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--samples", type=int, default=2048, help="images generated by each sampler")
    p.add_argument("--ddim-steps", type=int, default=50)
    a = p.parse_args()

    from onestep.accel import memory_stats, reset_memory
    from onestep.diffusion import Schedule, Teacher, ddim_sample
    from onestep.evaluate import one_step
    from onestep.training.train import train_student, train_teacher

    dev = a.device
    name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; precision {a.precision}, compile {a.compile}, "
          f"channels_last {not a.no_channels_last}, batch {a.batch} (grad_accum {a.grad_accum}), "
          f"{'tiny UNet' if a.tiny else 'DDPM CIFAR-10 UNet'}")
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "random32.npz"
        np.savez(npz, x=np.random.default_rng(0).integers(0, 256, (max(1024, a.batch), 32, 32, 3), dtype=np.uint8))
        cfg = config(a, npz)
        ticks: list[dict] = []
        net, ts = train_teacher(cfg, dev, lambda v, step, series="step": ticks.append(v), progress=False)
        steady = ticks[-1]["samples_per_s"] if ticks else ts["samples_per_s"]
        print(f"teacher training: {steady:.0f} samples/s steady ({ts['samples_per_s']:.0f} over all {a.steps} steps "
              f"incl. warm-up), {ts['params'] / 1e6:.1f}M params, precision {ts['precision']}, "
              f"peak memory {ts.get('gpu_max_mem_gib', float('nan')):.2f} GiB")
        print(f"  teacher utilisation: {utilisation(net.to(dev).train(), (3, 32, 32), dev, ts['precision'], steady)}")

        teacher = Teacher(net.to(dev), Schedule.from_config(cfg["diffusion"]))
        g = torch.Generator().manual_seed(0)
        n_pairs = max(4 * a.batch, 512)
        pairs = {"z": torch.randn(n_pairs, 3, 32, 32, generator=g), "x0": torch.randn(n_pairs, 3, 32, 32, generator=g)}
        ticks = []
        student, ss = train_student(cfg, teacher, pairs, dev, lambda v, step, series="step": ticks.append(v),
                                    progress=False)
        steady = [t["samples_per_s"] for t in ticks if "samples_per_s" in t]
        print(f"curriculum training: {steady[-1] if steady else ss['samples_per_s']:.0f} samples/s steady "
              f"({ss['samples_per_s']:.0f} overall), teacher evals {ss['teacher_evals']}, precision {ss['precision']}, "
              f"peak memory {ss.get('gpu_max_mem_gib', float('nan')):.2f} GiB")
        print(f"  student utilisation (its own passes only): "
              f"{utilisation(student.to(dev).train(), (3, 32, 32), dev, ss['precision'], steady[-1] if steady else ss['samples_per_s'])}")

        z = torch.randn(a.samples, 3, 32, 32, generator=g).to(dev)
        eval_cfg = copy.deepcopy(cfg)
        reset_memory(dev)
        one_step(eval_cfg, teacher, student.to(dev), z[: min(64, a.samples)])  # warm-up
        _, t1 = timed(lambda: one_step(eval_cfg, teacher, student, z, batch_size=1024), dev)
        mem1 = memory_stats(dev).get("gpu_max_mem_gib", float("nan"))
        reset_memory(dev)
        _, tk = timed(lambda: ddim_sample(teacher.net, z, a.ddim_steps, cfg["diffusion"], batch_size=1024), dev)
        memk = memory_stats(dev).get("gpu_max_mem_gib", float("nan"))
        print(f"one-step sampling: {a.samples / t1:.0f} images/s (peak {mem1:.2f} GiB); teacher DDIM {a.ddim_steps} steps: "
              f"{a.samples / tk:.1f} images/s (peak {memk:.2f} GiB); speed-up {tk / t1:.0f}x")


if __name__ == "__main__":
    main()
