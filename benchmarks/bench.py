"""`make bench`: the pipeline's own costs, measured side by side in one run; one table, results/bench/*.json.

- trainer: `train.fit` (through train_student: LR schedule, logging every `log_every`, EMA, resume
  checkpoints every `--checkpoint-every` steps, the curriculum's bookkeeping) against a bare PyTorch
  loop on the same student, batch, optimiser and method loss (schedule, prepare, loss, backward,
  step: nothing else). Goal: ratio >= 0.95.
- sampling: one-step G(z, 0) against the teacher's 50-step DDIM on the same noise. Goal: >= 40x.
- metrics: one 2-D score (SWD, MMD, FD) at the default N = evaluation.num_samples (65536), the cost every
  evaluate job pays per sampler. SWD sorts along the contiguous dim: 42 s -> 8 s at N = 65536 (1 thread).
- gmm: the analytic teacher's exact epsilon, 1024 modes in 64-D, against the network teacher's forward (goal:
  >= 1e5 samples/s on one core).
- planning: `snakemake -n` of a grid of 1000 run configurations (goal < 30 s), of `ablate_all` and `paper`;
  from the dry run's job stats, how many reference / teacher / pairs jobs serve those runs (once per
  dataset and teacher, never per run).
- startup: what every job and every snakemake invocation pays before any work (fresh interpreters, best of 3): the
  CLI's import (`python -m onestep --help`), a train / evaluate job's imports with its schedule and an untracked
  record (`tracking.enabled: false`), and which heavy libraries that loads (diffusers, mlflow, matplotlib,
  scipy.stats: none of them is needed before the work starts).
- memory: peak resident memory (getrusage of the child) of an `onestep train` and an `onestep
  evaluate` job on a small run; peak GPU memory from the job's train.json where it ran on a GPU.

Not a test: the numbers depend on the machine. Defaults keep it under ~5 minutes on 2 CPU cores.

    .venv/bin/python benchmarks/bench.py [--steps 600] [--threads 1] [--device cpu|cuda] [--out results/bench]
    .venv/bin/python benchmarks/bench.py --only planning      # one measure (trainer, sampling, gmm, planning, startup, memory)
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def defaults() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def run_config(steps: int, device: str) -> dict:
    """config/config.yaml's curriculum run (student MLP 128 x 3, batch 512, Adam), `steps` optimiser steps."""
    from onestep.config import resolve

    cfg = resolve(defaults())
    cfg["method"].update(K=10, steps_per_stage=max(1, steps // 10))
    cfg.update(seed=0, device=device, run={"ablation": "bench", "name": "bench", "point": {}})
    return cfg


def toy_teacher(cfg: dict, device: str):
    from onestep.diffusion import Schedule, Teacher
    from onestep.nets import build_net

    torch.manual_seed(0)  # throughput does not depend on the teacher's training
    return Teacher(build_net(cfg["teacher"]["net"], (2,)).to(device).eval(), Schedule.from_config(cfg["diffusion"]))


def toy_pairs(n: int = 8192) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"z": torch.randn(n, 2, generator=g), "x0": torch.randn(n, 2, generator=g)}  # (N, 2) each


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- trainer vs a bare loop


def bare_loop(cfg: dict, teacher, pairs: dict, device: str) -> float:
    """Steps/s of the method's loss alone: the same student, batches, Adam and method, no trainer."""
    from onestep import accel
    from onestep.methods import build_method, context, student_net
    from onestep.nets import build_net
    from onestep.training.batches import PairBatches

    torch.manual_seed(cfg["seed"])
    ctx = context(cfg, teacher, (2,))
    method = build_method(cfg, ctx, cfg["seed"], device)
    net = build_net(student_net(cfg), (2,)).to(device)
    opt = accel.adam(net.parameters(), cfg["student"]["lr"], device)
    gen = torch.Generator().manual_seed(cfg["seed"])
    batches = PairBatches({k: v.to(device) for k, v in pairs.items()}, cfg["student"]["batch_size"], cfg["seed"])
    total = method.total_steps
    sync(device)
    t0 = time.perf_counter()
    for step in range(total):
        method.schedule(step)
        b = next(batches)
        batch = method.prepare(b, step, gen)
        loss, _ = method.loss(net, batch, step, gen)  # (B,)
        opt.zero_grad(set_to_none=True)
        loss.mean().backward()
        opt.step()
    sync(device)
    return total / (time.perf_counter() - t0)


def trainer_loop(cfg: dict, teacher, pairs: dict, device: str, checkpoint_every: int, folder: Path) -> float:
    """Steps/s of train.fit with its logging (rows kept, as the CLI buffers them), EMA and resume checkpoints."""
    from onestep.training.resume import Resume
    from onestep.training.train import train_student

    rows = []
    resume = Resume(folder / "resume.pt", checkpoint_every)
    sync(device)
    t0 = time.perf_counter()
    train_student(cfg, teacher, pairs, device, lambda values, step, series="step": rows.append((series, step, values)),
                  progress=True, resume=resume)
    sync(device)
    wall = time.perf_counter() - t0
    (folder / "resume.pt").unlink(missing_ok=True)
    return cfg["method"]["K"] * cfg["method"]["steps_per_stage"] / wall


def bench_trainer(steps: int, device: str, checkpoint_every: int, repeats: int) -> dict:
    cfg = run_config(steps, device)
    teacher, pairs = toy_teacher(cfg, device), toy_pairs()
    bare_loop(run_config(50, device), teacher, pairs, device)  # warm-up (allocator, kernels)
    fit, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):  # interleaved: drifts of a shared machine hit both alike
            fit.append(trainer_loop(cfg, teacher, pairs, device, checkpoint_every, Path(tmp)))
            bare.append(bare_loop(cfg, teacher, pairs, device))
    return {"steps": cfg["method"]["K"] * cfg["method"]["steps_per_stage"], "batch": cfg["student"]["batch_size"],
            "net": cfg["student"]["net"], "log_every": cfg["student"]["log_every"], "checkpoint_every": checkpoint_every,
            "trainer_steps_per_s": max(fit), "bare_steps_per_s": max(bare), "ratio": max(fit) / max(bare),
            "all_trainer": fit, "all_bare": bare, "goal": ">= 0.95"}


# ---------------------------------------------------------------- one step vs 50-step DDIM


def bench_sampling(device: str, n: int) -> dict:
    from onestep.diffusion import ddim_sample
    from onestep.evaluate import one_step
    from onestep.methods import student_net
    from onestep.nets import build_net

    cfg = run_config(10, device)
    teacher = toy_teacher(cfg, device)
    student = build_net(student_net(cfg), (2,)).to(device).eval()
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(1)).to(device)  # (N, 2)

    def timed(fn) -> float:
        fn()  # warm-up
        best = float("inf")
        for _ in range(2):
            sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                fn()
            sync(device)
            best = min(best, time.perf_counter() - t0)
        return best

    t_one = timed(lambda: one_step(cfg, teacher, student, z))
    t_ddim = timed(lambda: ddim_sample(teacher.net, z, 50, cfg["diffusion"]))
    return {"samples": n, "one_step_samples_per_s": n / t_one, "ddim50_samples_per_s": n / t_ddim,
            "ratio": t_ddim / t_one, "goal": ">= 40"}


def bench_metrics(n: int) -> dict:
    """One 2-D score at the default evaluation size (every run's and every reference row's evaluate does
    it once per sampler): seconds per metric on the default N."""
    from onestep.metrics import frechet, mmd2, sliced_wasserstein

    n = n or defaults()["evaluation"]["num_samples"]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 2, generator=g), 1.1 * torch.randn(n, 2, generator=g)  # (N, 2) each
    out = {"samples": n}
    for name, fn in (("swd", lambda: sliced_wasserstein(x, y, defaults()["evaluation"]["swd_projections"])),
                     ("mmd", lambda: mmd2(x, y)), ("fd", lambda: frechet(x.double().numpy(), y.double().numpy()))):
        t0 = time.perf_counter()
        fn()
        out[f"{name}_s"] = time.perf_counter() - t0
    from onestep import data, exact

    ev = defaults()["evaluation"]
    m, big = ev.get("exact_bins", exact.BINS_PER_CELL), ev.get("exact_samples", 1_000_000)
    xe = data.sample({"name": "checkerboard"}, big, 1).numpy()  # (exact_samples, 2)
    exact.bins.cache_clear()  # the density's bins built inside the timing
    t0 = time.perf_counter()
    exact.exact_metrics("checkerboard", xe, m)
    out |= {"exact_s": time.perf_counter() - t0, "exact_samples": big}
    return out


# ---------------------------------------------------------------- snakemake -n planning


def bench_gmm(n: int = 8192, repeats: int = 5) -> dict:
    """The analytic teacher's exact eps (nets.ExactEps) for 1024 modes in 64-D, float32, a random t per sample (the
    training path): one variance for all (config/gmm64d.yaml), one per component, diagonal; and the network
    teacher (MLP 256 x 3) on the same batch. Goal: >= 1e5 samples/s on one core."""
    import os

    from onestep.nets import build_net

    diff = defaults()["diffusion"]
    out = {"samples": n, "dim": 64, "modes": 1024, "load_avg_1min": os.getloadavg()[0]}  # a shared machine says so
    mlp = {"name": "mlp", "width": 256, "depth": 3, "temb_dim": 64}
    x = torch.randn(n, 64, generator=torch.Generator().manual_seed(0))
    t = torch.randint(0, diff["T"], (n,), generator=torch.Generator().manual_seed(1))
    kinds = {"tied": ("isotropic", 1.0), "isotropic": ("isotropic", 3.0), "diagonal": ("diagonal", 3.0)}
    nets = {k: build_net({"name": "gmm_exact", "diffusion": diff, "correction": mlp, "dataset": {
        "name": "gmm", "gmm": {"dim": 64, "modes": 1024, "covariance": c, "anisotropy": a}}}, (64,))
        for k, (c, a) in kinds.items()}
    nets["network"] = build_net(mlp, (64,))
    for name, net in nets.items():
        net = net.eval().requires_grad_(False)
        with torch.no_grad():
            net(x, t)  # warm-up
            best = min(_timed(lambda net=net: net(x, t)) for _ in range(repeats))
        out[f"{name}_samples_per_s"] = n / best
    return out | _gmm2d(repeats)


def _gmm2d(repeats: int, n: int = 512) -> dict:
    """config/gmm2d.yaml's analytic teacher against config/config.yaml's network teacher (MLP 128 x 3) on a
    training batch (512, a random t each): the teacher call inside every distillation step."""
    from onestep.nets import build_net

    cfg = defaults()
    ds = yaml.safe_load((REPO / "config" / "gmm2d.yaml").read_text())["dataset"]
    x, t = torch.randn(n, 2), torch.randint(0, cfg["diffusion"]["T"], (n,))
    nets = {"gmm2d_exact": build_net({"name": "gmm_exact", "dataset": ds, "diffusion": cfg["diffusion"],
                                      "correction": cfg["teacher"]["net"]}, (2,)),
            "gmm2d_network": build_net(cfg["teacher"]["net"], (2,))}
    out = {}
    for name, net in nets.items():
        net = net.eval().requires_grad_(False)
        with torch.no_grad():
            net(x, t)
            out[f"{name}_calls_per_s"] = 1 / min(_timed(lambda net=net: net(x, t)) for _ in range(20 * repeats))
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def job_stats(text: str) -> dict[str, int]:
    stats, on = {}, False
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("job ") and "count" in line:
            on = True
        elif on and parts and parts[0] == "total":
            stats["total"] = int(parts[1])
            break
        elif on and len(parts) == 2 and parts[1].isdigit():
            stats[parts[0]] = int(parts[1])
    return stats


def plan(work: Path, target: str, extra: dict) -> tuple[float, dict]:
    cfg = work / f"{target}.yaml"
    cfg.write_text(yaml.safe_dump({"out": str(work / "results"), **extra}))
    cmd = [str(BIN / "snakemake"), "-n", "--cores", "2", "-s", str(REPO / "Snakefile"), "--configfile",
           str(REPO / "config" / "config.yaml"), str(cfg), "--", target]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"snakemake -n {target} failed:\n{(p.stdout + p.stderr)[-3000:]}")
    return wall, job_stats(p.stdout)


def bench_planning() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "abl").mkdir()
        lambdas = [round(0.01 * 2 ** i, 4) for i in range(10)]
        replays = [round(0.05 * i, 2) for i in range(10)]
        (work / "abl" / "grid.yaml").write_text(yaml.safe_dump({
            "name": "ablate_grid1000", "grid": {"method.lambda": lambdas, "method.replay": replays},
            "seeds": list(range(10))}))  # 10 x 10 points x 10 seeds = 1000 runs
        t_grid, grid = plan(work, "ablate_grid1000", {"ablations_dir": str(work / "abl")})
        t_all, full = plan(work, "ablate_all", {})
        t_paper, paper = plan(work, "paper", {})
    runs = grid.get("train", 0)
    once = {k: grid.get(k, 0) for k in ("teacher", "pairs", "reference", "teacher_eval")}
    return {"grid_runs": runs, "grid_plan_s": t_grid, "grid_jobs_total": grid.get("total"), "grid_jobs": grid, "ablate_all_plan_s": t_all,
            "ablate_all_jobs": full, "paper_plan_s": t_paper, "paper_jobs": paper, "shared_jobs": once,
            "goal": "< 30 s; teacher, pairs, reference once per dataset"}


# ---------------------------------------------------------------- start-up cost of a job

JOB_IMPORTS = """
import sys
from onestep import jobs, evaluate, tracking
from onestep.stages import run
from onestep.training import train
from onestep.diffusion import Schedule
Schedule.from_config({"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02})
cfg = {"tracking": {"uri": "sqlite:///unused.db", "enabled": False}}
with tracking.record(cfg, "run") as rec:
    rec.metrics({"loss": 1.0})
print(" ".join(m for m in ("diffusers", "mlflow", "matplotlib", "scipy.stats", "cleanfid", "optuna") if m in sys.modules))
"""


def bench_startup(repeats: int = 3) -> dict:
    def best(cmd: list[str]) -> tuple[float, str]:
        times, out = [], ""
        for _ in range(repeats):
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
            times.append(time.perf_counter() - t0)
            if p.returncode:
                raise SystemExit(f"{cmd[:3]} failed:\n{p.stderr[-2000:]}")
            out = p.stdout.strip()
        return min(times), out

    cli, _ = best([sys.executable, "-m", "onestep", "--help"])
    job, heavy = best([sys.executable, "-c", JOB_IMPORTS])
    return {"cli_import_s": cli, "job_imports_s": job, "heavy_loaded": heavy.split()}


# ---------------------------------------------------------------- peak memory of real jobs


def peak_rss_mib(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """Peak resident memory of `cmd` (getrusage of the only child of a fresh interpreter), in MiB."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
             "print('RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    p = subprocess.run([sys.executable, "-c", probe, *cmd], cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{(p.stdout + p.stderr)[-3000:]}")
    return int(re.search(r"RSS_KIB (\d+)", p.stdout).group(1)) / 1024, p.stdout


def bench_memory(device: str) -> dict:
    onestep = str(BIN / "onestep")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg = run_config(200, device)
        cfg["teacher"].update(steps=100)
        cfg["pairs"].update(num=4096, ddim_steps=10)
        cfg["tracking"].update(uri=f"sqlite:///{work / 'mlflow.db'}", artifacts=str(work / "mlartifacts"))
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        c = ["--config", "config.yaml", "--threads", "1"]
        for argv in (["teacher", *c, "--out", "teacher.pt"], ["pairs", *c, "--teacher", "teacher.pt", "--out", "pairs.npz"],
                     ["reference", *c, "--out", "reference.npz", "--summary", "reference.json"]):
            subprocess.run([onestep, *argv], cwd=work, check=True, capture_output=True)
        train, _ = peak_rss_mib([onestep, "train", *c, "--teacher", "teacher.pt", "--pairs", "pairs.npz", "--out", "run"],
                                work)
        evaluate, _ = peak_rss_mib([onestep, "evaluate", "--threads", "1", "--run", "run", "--teacher", "teacher.pt",
                                    "--reference", "reference.npz", "--out", "run/metrics.json", "--plot", "run/samples.png"],
                                   work)
        summary = json.loads((work / "run" / "train.json").read_text())
    gpu = {k: v for k, v in summary.items() if k.startswith("gpu_")}
    return {"train_peak_rss_mib": train, "evaluate_peak_rss_mib": evaluate, "train_steps": summary.get("steps"),
            "device": device, **gpu}


def table(res: dict) -> str:
    """One row per measure; a measure not run (--only) has no row."""
    rows = []
    if "trainer" in res:
        tr = res["trainer"]
        rows.append(("trainer / bare loop", f"{tr['trainer_steps_per_s']:.1f} / {tr['bare_steps_per_s']:.1f} steps/s",
                     f"{tr['ratio']:.3f}", ">= 0.95"))
    if "sampling" in res:
        sa = res["sampling"]
        rows.append(("one step / DDIM-50",
                     f"{sa['one_step_samples_per_s']:.3g} / {sa['ddim50_samples_per_s']:.3g} samples/s",
                     f"{sa['ratio']:.1f}x", ">= 40x"))
    if "metrics" in res:
        me = res["metrics"]
        rows.append((f"2-D score, N = {me['samples']}", f"SWD {me['swd_s']:.1f} s, MMD {me['mmd_s']:.1f} s, "
                     f"FD {me['fd_s']:.1f} s", "", ""))
        if "exact_s" in me:
            rows.append((f"exact metrics, N = {me['exact_samples']}", f"{me['exact_s']:.2f} s",
                         f"{me['exact_s'] / me['swd_s']:.3f}x the SWD", "<= 1x the SWD at N = {}".format(me["samples"])))
    if "gmm" in res:
        g = res["gmm"]
        rows.append((f"exact score, {g['modes']} modes in {g['dim']}-D",
                     f"{g['tied_samples_per_s']:.3g} one variance / {g['isotropic_samples_per_s']:.3g} isotropic / "
                     f"{g['diagonal_samples_per_s']:.3g} diagonal samples/s",
                     f"network teacher {g['network_samples_per_s']:.3g}/s; load avg {g['load_avg_1min']:.1f}",
                     ">= 1e5/s"))
        rows.append(("gmm2d teacher call, batch 512", f"exact {g['gmm2d_exact_calls_per_s']:.0f} / network "
                     f"{g['gmm2d_network_calls_per_s']:.0f} calls/s",
                     f"{g['gmm2d_exact_calls_per_s'] / g['gmm2d_network_calls_per_s']:.2f}x", ">= 1x"))
    if "planning" in res:
        pl = res["planning"]
        once = pl["shared_jobs"]
        rows += [
            (f"snakemake -n, {pl['grid_runs']} runs", f"{pl['grid_plan_s']:.1f} s", "", "< 30 s"),
            ("snakemake -n ablate_all", f"{pl['ablate_all_plan_s']:.1f} s", f"{pl['ablate_all_jobs'].get('total', '')} jobs",
             ""),
            ("snakemake -n paper", f"{pl['paper_plan_s']:.1f} s", f"{pl['paper_jobs'].get('total', '')} jobs", ""),
            (f"shared jobs for {pl['grid_runs']} runs", ", ".join(f"{k} {v}" for k, v in once.items()),
             "once" if set(once.values()) <= {0, 1}
             or once["teacher_eval"] == len(defaults()["evaluation"]["teacher_steps"]) else "PER RUN",
             "once per dataset/teacher"),
        ]
    if "startup" in res:
        st = res["startup"]
        rows.append(("job start: CLI import / a job's imports", f"{st['cli_import_s']:.2f} / {st['job_imports_s']:.2f} s",
                     "heavy libraries loaded: " + (", ".join(st["heavy_loaded"]) or "none"), ""))
    if "memory" in res:
        me = res["memory"]
        gpu = f"{me['gpu_max_mem_gib']:.2f} GiB" if "gpu_max_mem_gib" in me else "no GPU"
        rows.append(("peak RSS train / evaluate", f"{me['train_peak_rss_mib']:.0f} / {me['evaluate_peak_rss_mib']:.0f} MiB",
                     gpu, ""))
    head = ("measure", "value", "ratio / note", "goal")
    w = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (x + 2) for x in w) + "|", *map(line, rows)])


MEASURES = ("trainer", "sampling", "metrics", "gmm", "planning", "startup", "memory")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="optimiser steps of each trainer / bare-loop measurement")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved trainer / bare-loop pairs (best kept)")
    ap.add_argument("--checkpoint-every", type=int, default=200, help="resume checkpoints in the trainer run")
    ap.add_argument("--samples", type=int, default=8192, help="noise samples of the sampling measurement")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    ap.add_argument("--only", nargs="+", choices=MEASURES, default=list(MEASURES),
                    help="run these measures only (the table shows them; the others' JSON files are left as they are)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": a.device, "threads": a.threads,
           "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    res = {}
    for name, fn in (("trainer", lambda: bench_trainer(a.steps, a.device, a.checkpoint_every, a.repeats)),
                     ("sampling", lambda: bench_sampling(a.device, a.samples)),
                     ("metrics", lambda: bench_metrics(0)),
                     ("gmm", bench_gmm),
                     ("planning", bench_planning),
                     ("startup", bench_startup),
                     ("memory", lambda: bench_memory(a.device))):
        if name not in a.only:
            continue
        t0 = time.perf_counter()
        res[name] = {**fn(), "bench_s": time.perf_counter() - t0, "env": env}
        (a.out / f"{name}.json").write_text(json.dumps(res[name], indent=2, default=str) + "\n")
        print(f"{name}: done in {res[name]['bench_s']:.0f} s", file=sys.stderr, flush=True)
    print(table(copy.deepcopy(res)))
    print(f"\n(results in {a.out}/*.json; {env['device']}, {a.threads} thread(s), torch {env['torch']})")


if __name__ == "__main__":
    main()
