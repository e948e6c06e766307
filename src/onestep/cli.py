"""`onestep <command>`: what the Snakemake rules call. Each command reads its config (JSON from the
rule's params), its input files, and writes its output files; MLflow is written to on the side."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml


def _cfg(s: str) -> dict:
    return json.loads(s)


_DEVICES: dict[str, str] = {}


def _device(cfg: dict) -> str:
    """The job's device, picked once per process (devices.pick_device: a free GPU slot, or CPU)."""
    import torch

    from onestep.devices import pick_device

    want = cfg.get("device", "auto")
    if want not in _DEVICES:
        _DEVICES[want] = pick_device(want, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    return _DEVICES[want]


def _write_json(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _save_npz(path: str | Path, **arrays) -> None:
    """Write to a temporary name and rename: a killed job never leaves a truncated file."""
    import numpy as np

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path) + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_pairs(path: str) -> dict:
    """Teacher pairs (z, x0) as tensors."""
    import numpy as np
    import torch

    with np.load(path) as z:
        return {"z": torch.from_numpy(z["z"]), "x0": torch.from_numpy(z["x0"])}


def _parent_id(path: str | None) -> str | None:
    """The MLflow parent run id from the file `mlflow_parent` wrote (files are the contract)."""
    return json.loads(Path(path).read_text())["run_id"] if path else None


def _threads(a) -> None:
    """torch threads = the job's Snakemake `threads` (passed as --threads)."""
    if getattr(a, "threads", None):
        import torch

        torch.set_num_threads(a.threads)


# ---------------------------------------------------------------- commands


def cmd_init_tracking(a) -> None:
    from onestep import tracking

    cfg = _cfg(a.cfg)
    tracking.check_server(cfg)
    exp = tracking.init_store(cfg)
    _write_json(a.out, {"tracking_uri": tracking.tracking_uri(cfg), "experiment_id": exp})
    print(f"MLflow store ready: {tracking.tracking_uri(cfg)} (experiment {tracking.experiment_name(cfg)})")


def cmd_parent(a) -> None:
    from onestep import tracking

    cfg = _cfg(a.cfg)
    tracking.check_server(cfg)
    run_id = tracking.start_parent(cfg, a.ablation, a.kind)
    _write_json(a.out, {"run_id": run_id, "ablation": a.ablation})
    print(f"parent run {run_id} for {a.ablation}")


def cmd_teacher(a) -> None:
    from onestep import data, tracking
    from onestep.train import Resume, save_checkpoint, train_teacher

    cfg = _cfg(a.cfg)
    tracking.check_server(cfg)
    _threads(a)
    data.check(cfg["dataset"])
    shape, pre = data.shape(cfg["dataset"]), cfg["teacher"].get("pretrained")
    # next to the output, not a declared output: it survives a failed job (see cmd_train)
    resume = Resume.open(Path(a.out).with_suffix(".resume.pt"), cfg["teacher"].get("checkpoint_every", 0), cfg)
    tags = {"kind": "teacher", "source": "pretrained" if pre else "trained"}
    with _resumable_record(cfg, "teacher", tags, resume, {}) as rec:
        if pre:  # a local diffusers DDPM directory, imported into the same checkpoint format
            from onestep.pretrained import import_teacher

            net, net_cfg = import_teacher(pre, cfg, shape)
            summary = {"pretrained": str(pre), "params": sum(p.numel() for p in net.parameters())}
        else:
            (net, summary), net_cfg = train_teacher(cfg, _device(cfg), rec.metrics, resume=resume), cfg["teacher"]["net"]
        rec.metrics(summary)
        save_checkpoint(a.out, "teacher", net_cfg, shape, cfg, net)
        rec.artifact(a.out, "checkpoint")
        rec.artifact(a.log, "logs")
    _write_json(Path(a.out).with_suffix(".json"), summary)
    resume.path.unlink(missing_ok=True)
    print(json.dumps(summary))


def cmd_pairs(a) -> None:
    import torch
    from tqdm import tqdm

    from onestep.diffusion import ddim_sample
    from onestep.train import load_checkpoint

    cfg = _cfg(a.cfg)
    _threads(a)
    pc, device = cfg["pairs"], _device(cfg)
    net, ckpt = load_checkpoint(a.teacher, "teacher")
    net.to(device)
    z = torch.randn(pc["num"], *ckpt["shape"], generator=torch.Generator().manual_seed(pc["seed"]))  # (N, *shape)
    chunks = []
    for zb in tqdm(z.split(4096), desc=f"pairs (DDIM {pc['ddim_steps']} steps)"):
        chunks.append(ddim_sample(net, zb.to(device), pc["ddim_steps"], cfg["diffusion"]).cpu())
    x0 = torch.cat(chunks)  # (N, *shape)
    _save_npz(a.out, z=z.numpy(), x0=x0.numpy())
    print(f"{pc['num']} teacher pairs written to {a.out}")


def cmd_features(a) -> None:
    import torch

    from onestep.evaluate import fit_features

    cfg = _cfg(a.cfg)
    _threads(a)
    net, acc = fit_features(cfg)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "shape": list(net.shape), "num_classes": net.head.out_features,
                "val_accuracy": acc}, a.out)
    print(f"feature classifier: held-out accuracy {acc:.3f}")


def cmd_reference(a) -> None:
    from onestep.evaluate import reference

    cfg = _cfg(a.cfg)
    _threads(a)
    arrays, summary = reference(cfg, a.features)
    _save_npz(a.out, **arrays)
    _write_json(a.summary, summary)
    print(json.dumps(summary))


def _load_ref(path: str):
    import numpy as np

    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def cmd_teacher_eval(a) -> None:
    import torch

    from onestep import plots, tracking
    from onestep.diffusion import ddim_sample
    from onestep.evaluate import generate, score, to_unit
    from onestep.train import load_checkpoint

    cfg = _cfg(a.cfg)
    tracking.check_server(cfg)
    _threads(a)
    net, ckpt = load_checkpoint(a.teacher, "teacher")
    ref = _load_ref(a.reference)
    device = _device(cfg)
    net.to(device)
    with tracking.record(cfg, f"teacher-ddim-{a.steps}", {"kind": "reference", "ddim_steps": str(a.steps)}) as rec:
        t0 = time.time()
        x = generate(cfg, tuple(ckpt["shape"]), lambda z: ddim_sample(net, z, a.steps, cfg["diffusion"]), device)
        result = {**score(x, ref, cfg, a.features), "steps": a.steps, "sampling_s": time.time() - t0,
                  "label": f"teacher DDIM {a.steps}"}
        rec.metrics(result["metrics"])
        x = to_unit(x[:64]) if x.dtype == torch.uint8 else x
        plots.samples(x, a.plot, f"teacher DDIM {a.steps} steps", torch.from_numpy(ref["x"]) if x.ndim == 2 else None)
        rec.artifact(a.plot, "plots")
        rec.artifact(a.log, "logs")
    _write_json(a.out, result)
    print(json.dumps(result["metrics"]))


def _on_sigterm(resume) -> None:
    """SIGTERM (SLURM preemption or time limit, scancel): save a resume checkpoint at the end of the step."""
    import signal

    def handler(signum, frame):
        resume.preempted = True
        print("SIGTERM: saving a resume checkpoint at the end of this step", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, handler)


@contextmanager
def _resumable_record(cfg: dict, name: str, tags: dict, resume, extra: dict, parent_id: str | None = None):
    """The job's MLflow run, continued by a resumed attempt. Metrics go to MLflow at each resume
    checkpoint, so the steps a kill loses (after the last checkpoint) are not in MLflow either and are
    logged once, on resume; a preempted run is KILLED, not FAILED; SIGTERM saves a checkpoint first."""
    from onestep import tracking
    from onestep.train import Preempted

    prior = resume.state["loop"]["extra"] if resume.state else {}
    _on_sigterm(resume)
    status = lambda e: "KILLED" if isinstance(e, Preempted) else "FAILED"  # noqa: E731
    with tracking.record(cfg, name, tags, parent_id=parent_id, run_id=prior.get("mlflow_run_id"),
                         status_for=status, system_metrics=True) as rec:
        if resume.state:
            rec.tag("resumed_from_step", resume.state["step"])
        else:
            rec.params(cfg)
        if resume.every > 0:
            rec.flush_every = 1 << 30
        resume.extra, resume.on_save = {**extra, "mlflow_run_id": rec.run_id}, rec.flush
        yield rec


def cmd_train(a) -> None:
    from onestep import tracking

    tracking.check_server(_cfg(a.cfg))  # before the heavy imports: an unreachable server fails at once
    from onestep import plots
    from onestep.evaluate import load_feature_net
    from onestep.train import Resume, load_teacher, save_checkpoint, student_net, train_student
    from onestep.tune import resolve_tuned

    cfg = resolve_tuned(_cfg(a.cfg), a.tuned)
    _threads(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # the resume checkpoint is no declared output: Snakemake deletes a failed job's outputs, not this file
    resume = Resume.open(out / "resume.pt", cfg["student"].get("checkpoint_every", 0), cfg)
    prior = resume.state["loop"]["extra"] if resume.state else {}
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    device = _device(cfg)
    teacher = load_teacher(a.teacher, device)
    pairs = _load_pairs(a.pairs)
    parent = _parent_id(a.parent)
    run = cfg["run"]
    tags = {"kind": "run", "ablation": run["ablation"], "run": run["name"], "seed": str(cfg["seed"]),
            "method": cfg["method"]["name"], **{f"grid.{k}": str(v) for k, v in run["point"].items()}}
    rows: dict[str, list[dict]] = prior.get("rows") or {"step": [], "phase": []}

    with _resumable_record(cfg, run["name"], tags, resume, {"rows": rows}, parent) as rec:

        def log(values: dict, step: int, series: str = "step") -> None:
            rec.metrics(values, step)
            rows[series].append({series: step, **values})

        feats = load_feature_net(a.features) if a.features else None
        student, summary = train_student(cfg, teacher, pairs, device, log, features=feats, resume=resume)
        rec.metrics(summary)
        save_checkpoint(out / "student.pt", "student", student_net(cfg), pairs["z"].shape[1:], cfg, student)
        for series, name in (("step", "train_log.csv"), ("phase", "stages.csv")):
            with open(out / name, "w", newline="") as f:
                keys = list(dict.fromkeys(k for r in rows[series] for k in r)) or [series]  # logs may add keys later
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(rows[series])
        plots.curves(rows["step"], out / "curves.png", f"{run['ablation']}: {run['name']}")
        for name in ("config.yaml", "train_log.csv", "stages.csv", "curves.png", "student.pt"):
            rec.artifact(out / name)
        rec.artifact(a.log, "logs")
        summary["mlflow_run_id"] = rec.run_id
    _write_json(out / "train.json", summary)
    resume.path.unlink(missing_ok=True)  # every output is written: the next attempt starts afresh
    print(json.dumps(summary))


def cmd_evaluate(a) -> None:
    import torch

    from onestep import plots, tracking
    from onestep.evaluate import build_method, generate, multi_step_scores, sample, score, to_unit
    from onestep.train import load_checkpoint, load_teacher

    run_dir = Path(a.run)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    tracking.check_server(cfg)
    _threads(a)
    train = json.loads((run_dir / "train.json").read_text())
    device = _device(cfg)
    student, ckpt = load_checkpoint(run_dir / "student.pt", "student")
    teacher = load_teacher(a.teacher, device)
    ref = _load_ref(a.reference)
    student.to(device)
    t0 = time.time()
    method = build_method(cfg, teacher, tuple(ckpt["shape"]))  # once, not per noise chunk
    x = generate(cfg, tuple(ckpt["shape"]), lambda z: sample(method, student, z), device)
    result = {**score(x, ref, cfg, a.features), "sampling_s": time.time() - t0, "train": train,
              "ablation": cfg["run"]["ablation"], "run": cfg["run"]["name"], "point": cfg["run"]["point"],
              "seed": cfg["seed"], "method": cfg["method"]["name"]}
    result["multistep"] = multi_step_scores(cfg, method, student, tuple(ckpt["shape"]), ref, a.features, device)
    x = to_unit(x[:64]) if x.dtype == torch.uint8 else x
    plots.samples(x, a.plot, f"{cfg['run']['name']}: one step", torch.from_numpy(ref["x"]) if x.ndim == 2 else None)
    with tracking.record(cfg, cfg["run"]["name"], run_id=train["mlflow_run_id"]) as rec:
        rec.metrics({f"eval_{k}": v for k, v in result["metrics"].items()})
        rec.metrics({f"eval_{k.replace('@', '_at')}": v for k, v in result["multistep"].items()})  # swd_at2
        rec.artifact(a.plot, "plots")
        rec.artifact(a.log, "logs")
    _write_json(a.out, result)
    print(json.dumps(result["metrics"]))


def cmd_tables(a) -> None:
    from onestep import tables, tracking

    if a.parent:
        tracking.check_server(_cfg(a.cfg))
    summary = tables.TABLES[tables.load_spec(a.spec).get("table", "default")](
        a.spec, a.runs, a.teachers, a.reference, a.out_prefix, a.plot)
    print(summary)
    if a.parent:  # side channel: attach the table and figures to the ablation's parent run
        cfg = _cfg(a.cfg)
        stem = str(a.plot)[: -len(".png")]
        with tracking.record(cfg, a.ablation, run_id=_parent_id(a.parent)) as rec:
            for ext in (".md", ".tex", ".csv"):
                rec.artifact(str(a.out_prefix) + ext, "tables")
            for suffix in ("", "_curves", "_samples"):
                for ext in (".png", ".pdf"):
                    rec.artifact(stem + suffix + ext, "plots")


def cmd_main_table(a) -> None:
    from onestep import tables

    print(tables.build_main(a.tables, a.out_prefix, a.plot))


def cmd_tune_worker(a) -> None:
    from contextlib import contextmanager

    import optuna

    from onestep import tracking, tune
    from onestep.train import load_teacher

    cfg = _cfg(a.cfg)
    tracking.check_server(cfg)
    _threads(a)
    device = _device(cfg)
    teacher = load_teacher(a.teacher, device)
    pairs = _load_pairs(a.pairs)
    parent = _parent_id(a.parent)
    name = tune.study_name(cfg)

    @contextmanager
    def trial_run(trial, tcfg):
        tags = {"kind": "trial", "study": name, "trial": str(trial.number), "worker": str(a.worker)}
        status = lambda e: "KILLED" if isinstance(e, optuna.TrialPruned) else "FAILED"  # noqa: E731
        with tracking.record(tcfg, f"trial-{trial.number}", tags, parent_id=parent, status_for=status) as rec:
            rec.params(tcfg)
            yield rec

    objective = tune.Objective(cfg, teacher, pairs, _load_ref(a.reference), a.features, trial_run, device)
    result = tune.run_worker(cfg, a.folder, a.worker, objective)
    _write_json(a.out, result)
    print(json.dumps(result))


def cmd_tune_summary(a) -> None:
    from onestep import tracking, tune

    cfg = _cfg(a.cfg)
    tracking.check_server(cfg)
    best = tune.summarize(cfg, a.folder)
    print(json.dumps(best))
    if a.parent:
        with tracking.record(cfg, tune.study_name(cfg), run_id=_parent_id(a.parent)) as rec:
            rec.metrics({"best_value": best["value"], "best_lambda": best["lambda"], "best_trial": best["trial"]})
            for f in ("best.yaml", "trials.md", "trials.tex", "trials.csv", "history.png", "intermediate.png",
                      "lambda_slice.png"):
                rec.artifact(Path(a.folder) / f, "study")


def cmd_where(a) -> None:
    out = a.out
    uri = os.environ.get("MLFLOW_TRACKING_URI") or a.uri
    print(f"""
Done: {a.target}
  table : {out}/tables/{a.dataset}/{a.target}.md  (also .tex, .csv)
  plots : {out}/plots/{a.dataset}/{a.target}.png, _curves.png, _samples.png  (also .pdf)
  runs  : {out}/<dataset>/{a.target}/<run>/  (metrics.json, samples.png, curves.png)
  MLflow: {uri}  (artifacts in {a.artifacts})
Open the MLflow UI:  make ui   (or: .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000)
""")
    table = Path(out) / "tables" / a.dataset / f"{a.target}.md"
    if table.is_file():
        print(table.read_text())


def cmd_ui(a) -> None:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or a.uri
    argv = [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", uri,
            "--host", a.host, "--port", str(a.port)]
    print(" ".join(argv))
    from onestep.tracking import ui_url

    print(f"runs table (ablation parents, runs nested under them): {ui_url(uri, a.experiment, a.host, a.port)}",
          flush=True)
    os.execv(argv[0], argv)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="onestep", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, *args):
        s = sub.add_parser(name)
        s.set_defaults(fn=fn)
        s.add_argument("--threads", type=int, default=None, help="torch threads (the job's Snakemake threads)")
        for arg in args:
            s.add_argument(*arg[0], **arg[1])
        return s

    cfg = (["--cfg"], {"required": True, "help": "config sections as JSON"})
    out = (["--out"], {"required": True})
    log = (["--log"], {"default": None, "help": "this job's log file, attached to its MLflow run"})
    teacher = (["--teacher"], {"required": True})
    ref = (["--reference"], {"required": True})
    feats = (["--features"], {"default": None})
    add("init-tracking", cmd_init_tracking, cfg, out)
    add("parent", cmd_parent, cfg, out, (["--ablation"], {"required": True}), (["--kind"], {"default": "ablation"}))
    add("teacher", cmd_teacher, cfg, out, log)
    add("pairs", cmd_pairs, cfg, teacher, out)
    add("features", cmd_features, cfg, out)
    add("reference", cmd_reference, cfg, out, feats, (["--summary"], {"required": True}))
    add("teacher-eval", cmd_teacher_eval, cfg, teacher, ref, feats, out, log,
        (["--steps"], {"type": int, "required": True}), (["--plot"], {"required": True}))
    add("train", cmd_train, cfg, teacher, out, log, feats, (["--pairs"], {"required": True}), (["--parent"], {"default": None}),
        (["--tuned"], {"default": None, "help": "best.yaml of the lambda study (for method.lambda: tuned)"}))
    add("tune-worker", cmd_tune_worker, cfg, teacher, ref, feats, out, (["--pairs"], {"required": True}),
        (["--parent"], {"default": None}), (["--folder"], {"required": True}), (["--worker"], {"type": int, "default": 0}))
    add("tune-summary", cmd_tune_summary, cfg, (["--folder"], {"required": True}), (["--parent"], {"default": None}))
    add("evaluate", cmd_evaluate, teacher, ref, feats, out, log, (["--run"], {"required": True}),
        (["--plot"], {"required": True}))
    add("tables", cmd_tables, cfg, (["--runs"], {"nargs": "+", "required": True}),
        (["--teachers"], {"nargs": "*", "default": []}), ref, (["--spec"], {"required": True, "help": "the ablation YAML"}),
        (["--out-prefix"], {"required": True}), (["--plot"], {"required": True}),
        (["--parent"], {"default": None}), (["--ablation"], {"required": True}))
    add("main-table", cmd_main_table, (["--tables"], {"nargs": "+", "required": True, "help": "per-ablation table CSVs"}),
        (["--out-prefix"], {"required": True}), (["--plot"], {"required": True}))
    add("where", cmd_where, (["target"], {}), (["--out"], {"default": "results"}), (["--dataset"], {"default": "checkerboard"}),
        (["--uri"], {"default": "sqlite:///results/mlflow.db"}), (["--artifacts"], {"default": "results/mlartifacts"}))
    add("ui", cmd_ui, (["--uri"], {"default": "sqlite:///results/mlflow.db"}), (["--host"], {"default": "127.0.0.1"}),
        (["--port"], {"type": int, "default": 5000}),
        (["--experiment"], {"default": "onestep", "help": "the experiment whose runs table to open (tracking.experiment)"}))
    a = p.parse_args(argv)
    try:
        a.fn(a)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        from onestep.config import ConfigError
        from onestep.data import DataError
        from onestep.evaluate import FeatureError
        from onestep.methods.losses import PerceptualError
        from onestep.pretrained import PretrainedError
        from onestep.tracking import TrackingError
        from onestep.train import CheckpointError, Preempted

        if isinstance(e, Preempted):
            print(f"onestep {a.cmd}: preempted: {e}", file=sys.stderr)
            sys.exit(143)  # 128 + SIGTERM, as if the signal had ended the process
        if isinstance(e, ConfigError | DataError | FeatureError | CheckpointError | TrackingError | PerceptualError
                      | PretrainedError | FileNotFoundError):
            print(f"onestep {a.cmd}: error: {e}", file=sys.stderr)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
