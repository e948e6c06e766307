"""`onestep <command>`: what the Snakemake rules call. This module only parses arguments and
dispatches: each command reads its config and input files, calls the module that does the work, and
writes its output files (outputs.py); MLflow is written to on the side (tracking.py, jobs.py).

Exit codes: 0 done; 2 a user error (`onestep <command>: error: <message>`, any errors.OnestepError or
a missing file); 143 preempted (SIGTERM; the resume checkpoint is saved, the next attempt resumes);
130 interrupted (Ctrl-C: in training, a resume checkpoint is saved as on SIGTERM); 1 a bug (its
traceback in the log). With --log, that one line goes to the log and, naming the log, to stderr too
(what Snakemake shows for a local job; a SLURM job's SLURM log).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import yaml

from onestep import outputs
from onestep.errors import OnestepError


def _job(a, tracked: bool = True) -> dict:
    """The job's config (--config: the file its rule wrote), with the tracking section of --tracking where
    given (the rules' results/config/tracking.yaml: run and job config files hold no tracking keys, so a
    tracking change re-runs no job). A job that writes to MLflow (`tracked`) checks the tracking server
    first, before any heavy import or work; torch threads = --threads."""
    from onestep.config import read_file

    cfg = with_tracking(read_file(a.config, "job config file"), getattr(a, "tracking", None), a.config, tracked)
    if tracked:
        from onestep import tracking

        tracking.check_server(cfg)
    if getattr(a, "threads", None):
        import torch

        torch.set_num_threads(a.threads)
    return cfg


def with_tracking(cfg: dict, tracking_file: Path | None, where, needed: bool = True) -> dict:
    """`cfg` with the tracking section of `tracking_file` (a file holding `tracking:`), else as is; a job
    that writes to MLflow (`needed`) and finds the section in neither stops naming both."""
    if tracking_file is not None:
        from onestep.config import read_file

        section = read_file(tracking_file, "tracking file").get("tracking")
        if not isinstance(section, dict):
            raise OnestepError(f"--tracking {tracking_file}: no `tracking:` section (the rules write it to "
                               "results/config/tracking.yaml)")
        return {**cfg, "tracking": section}
    if needed and "tracking" not in cfg:
        raise OnestepError(f"{where} has no tracking section: pass --tracking results/config/tracking.yaml "
                           "(Snakemake writes it when it starts its jobs)")
    return cfg


# ---------------------------------------------------------------- tracking


def cmd_init_tracking(a) -> None:
    from onestep import tracking

    cfg = _job(a)
    exp = tracking.init_store(cfg) if tracking.enabled(cfg) else None  # None: untracked (tracking.required: false)
    outputs.write_json(a.out, {"tracking_uri": tracking.tracking_uri(cfg), "experiment_id": exp})
    state = "ready" if exp is not None else "unreachable: jobs run untracked"
    print(f"MLflow store {state}: {tracking.tracking_uri(cfg)} (experiment {tracking.experiment_name(cfg)})")


def cmd_parent(a) -> None:
    from onestep import tracking

    cfg = _job(a)
    run_id = tracking.start_parent(cfg, a.ablation, a.kind)
    outputs.write_json(a.out, {"run_id": run_id, "ablation": a.ablation})
    print(f"parent run {run_id or '(untracked)'} for {a.ablation}")


def cmd_sync(a) -> None:
    from onestep import tracking

    for folder in a.run:
        cfg = outputs.read_yaml(folder / "config.yaml")
        up = folder.resolve().parents
        shared = up[2] / "config" / "tracking.yaml" if len(up) > 2 else None  # <out>/<dataset>/<ablation>/<run>
        given = a.tracking or (shared if "tracking" not in cfg and shared and shared.is_file() else None)
        cfg = with_tracking(cfg, given, folder / "config.yaml")
        run_id = tracking.sync_run(folder, cfg)
        print(f"{folder}: MLflow run {run_id} in {tracking.tracking_uri(cfg)}")


# ---------------------------------------------------------------- teacher preparation


def cmd_teacher(a):
    from onestep import data, jobs
    from onestep.checkpoint import Resume, save_checkpoint

    cfg = _job(a)
    data.check(cfg["dataset"])
    shape, pre = data.shape(cfg["dataset"]), cfg["teacher"].get("pretrained")
    # next to the output, not a declared output: it survives a failed job (see cmd_train)
    resume = Resume.open(a.out.with_suffix(".resume.pt"), cfg["teacher"].get("checkpoint_every", 0), cfg)
    tags = {"kind": "teacher", "source": "pretrained" if pre else "trained"}
    with jobs.resumable_record(cfg, "teacher", tags, resume, {}) as rec:
        if pre:  # a local diffusers DDPM directory, imported into the same checkpoint format
            from onestep.pretrained import import_teacher

            net, net_cfg = import_teacher(pre, cfg, shape)
            summary = {"pretrained": str(pre), "params": sum(p.numel() for p in net.parameters())}
        else:
            from onestep.training.train import train_teacher

            net, summary = train_teacher(cfg, jobs.device(cfg), rec.metrics, resume=resume)
            net_cfg = cfg["teacher"]["net"]
        rec.metrics(summary)
        save_checkpoint(a.out, "teacher", net_cfg, shape, cfg, net)
        rec.artifact(a.out, "checkpoint")
    outputs.write_json(a.out.with_suffix(".json"), summary)
    resume.path.unlink(missing_ok=True)
    print(json.dumps(summary))
    return jobs.Done(cfg, rec.run_id)


def cmd_pairs(a) -> None:
    from onestep import jobs
    from onestep.checkpoint import load_checkpoint
    from onestep.diffusion import teacher_pairs

    cfg = _job(a, tracked=False)
    pc, device = cfg["pairs"], jobs.device(cfg)
    net, ckpt = load_checkpoint(a.teacher, "teacher")
    from onestep.data import clip_x0

    z, x0 = teacher_pairs(net.to(device), tuple(ckpt["shape"]), pc["num"], pc["seed"], pc["ddim_steps"],
                          cfg["diffusion"], device, chunk=pc.get("batch_size", 4096), solver=pc.get("solver", "ddim"),
                          clip_x0=clip_x0(pc.get("clip_x0"), cfg["dataset"]))
    outputs.save_npz(a.out, z=z.numpy(), x0=x0.numpy())
    print(f"{pc['num']} teacher pairs written to {a.out}")


def cmd_trajectory(a) -> None:
    """The teacher's DDIM states x_t(z) at the times a method's grid names (its `state_grid`), once per teacher
    and grid: on the pairs' z (--pairs; read in training) or on the held-out stage noise (its diagnostics)."""
    import numpy as np

    from onestep import jobs
    from onestep.checkpoint import load_checkpoint
    from onestep.data import clip_x0
    from onestep.diffusion import teacher_states
    from onestep.evaluate import stage_noise

    cfg = _job(a, tracked=False)
    pc, device = cfg["pairs"], jobs.device(cfg)
    net, ckpt = load_checkpoint(a.teacher, "teacher")
    z = outputs.load_pairs(a.pairs)["z"] if a.pairs else stage_noise(cfg, tuple(ckpt["shape"]))
    times = tuple(sorted(a.times))
    x0, xt = teacher_states(net.to(device), z, pc["ddim_steps"], cfg["diffusion"], times, device,
                            chunk=pc.get("batch_size", 4096), clip_x0=clip_x0(pc.get("clip_x0"), cfg["dataset"]))
    outputs.save_npz(a.out, z=z.numpy(), x0=x0.numpy(), xt=xt.numpy(), trajectory_t=np.asarray(times, dtype=np.int64))
    print(f"DDIM states of {z.shape[0]} noises at {len(times)} times written to {a.out}")


def cmd_features(a) -> None:
    from onestep.features import fit_features, save_feature_net

    cfg = _job(a, tracked=False)
    net, acc = fit_features(cfg)
    save_feature_net(a.out, net, acc)
    print(f"feature classifier: held-out accuracy {acc:.3f}")


def cmd_reference(a) -> None:
    from onestep.evaluate import reference

    cfg = _job(a, tracked=False)
    arrays, summary = reference(cfg, a.features)
    outputs.save_npz(a.out, **arrays)
    outputs.write_json(a.summary, summary | outputs.provenance(a.config))
    print(json.dumps(summary))


def cmd_teacher_eval(a):
    from onestep import jobs, tracking
    from onestep.checkpoint import load_checkpoint
    from onestep.config import plain_ddim
    from onestep.diffusion import pairs_label, teacher_sample
    from onestep.evaluate import generate, plot_samples, score

    cfg = _job(a)
    device = jobs.device(cfg)
    net, ckpt = load_checkpoint(a.teacher, "teacher")
    net.to(device)
    ref = outputs.load_npz(a.reference)
    from onestep.data import clip_x0

    a.clip_x0 = clip_x0(a.clip_x0, cfg["dataset"])
    plain = plain_ddim(a.solver, a.clip_x0)  # a DDIM row; else the pairs' solver row
    label = f"teacher DDIM {a.steps}" if plain else "teacher " + pairs_label(
        {"solver": a.solver, "ddim_steps": a.steps, "clip_x0": a.clip_x0})
    with tracking.record(cfg, label.replace(" ", "-"), {"kind": "reference", "ddim_steps": str(a.steps)}) as rec:
        t0 = time.time()
        x = generate(cfg, tuple(ckpt["shape"]),
                     lambda z: teacher_sample(net, z, a.steps, cfg["diffusion"], a.solver, a.clip_x0), device)
        result = {**score(x, ref, cfg, a.features), "steps": a.steps, "sampling_s": time.time() - t0,
                  "label": label, "solver": a.solver, "clip_x0": a.clip_x0,
                  "max_abs": float(x.abs().max()), **outputs.provenance(a.config)}
        rec.metrics(result["metrics"] | {k: result[k] for k in ("out_of_support",) if k in result})
        plot_samples(x, ref, a.plot, label if not plain else f"teacher DDIM {a.steps} steps")
        rec.artifact(a.plot, "plots")
    outputs.write_json(a.out, result)
    print(json.dumps(result["metrics"]))
    return jobs.Done(cfg, rec.run_id)


# ---------------------------------------------------------------- training and evaluation


def cmd_train(a):
    cfg = _job(a)  # before the heavy imports: an unreachable server fails at once
    from onestep import jobs
    from onestep.checkpoint import Resume, load_teacher, save_checkpoint
    from onestep.features import load_feature_net
    from onestep.methods import student_net
    from onestep.report import figures as plots
    from onestep.training.train import train_student
    from onestep.tuning.values import resolve_lambda, trained_alike

    given = outputs.provenance(a.config)  # the config file as given (method.lambda: tuned unresolved, no tracking)
    cfg = resolve_lambda(cfg, a.tuned)
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    # a previous training's evaluation is stale from now on, whatever happens to this job (kill, failure)
    for stale in ("metrics.json", "samples.png"):
        (out / stale).unlink(missing_ok=True)
    if a.same_as is not None and (source := trained_alike(a.config, a.same_as)) is not None:
        return _reuse_training(a, cfg, given, source)
    # the resume checkpoint is no declared output: Snakemake deletes a failed job's outputs, not this file
    resume = Resume.open(out / "resume.pt", cfg["student"].get("checkpoint_every", 0), cfg)
    prior = resume.state.extra if resume.state else {}
    device = jobs.device(cfg)
    teacher = load_teacher(a.teacher, device)
    pairs = outputs.load_pairs(a.pairs)
    if a.trajectory:  # method.target trajectory: the teacher's DDIM states of these pairs (rule trajectory)
        pairs |= outputs.load_states(a.trajectory, pairs["z"])
    run, tags = cfg["run"], _run_tags(cfg)
    rows: dict[str, list[dict]] = prior.get("rows") or {"step": [], "phase": []}

    with jobs.resumable_record(cfg, run["name"], tags, resume, {"rows": rows}, outputs.parent_id(a.parent)) as rec:

        def log(values: dict, step: int, series: str = "step") -> None:
            rec.metrics(values, step)
            rows[series].append({series: step, **values})

        feats = load_feature_net(a.features) if a.features else None
        student, summary = train_student(cfg, teacher, pairs, device, log, features=feats, resume=resume)
        rec.metrics(summary)
        save_checkpoint(out / "student.pt", "student", student_net(cfg), pairs["z"].shape[1:], cfg, student)
        outputs.write_csv(out / "train_log.csv", rows["step"], "step")
        outputs.write_csv(out / "stages.csv", rows["phase"], "phase")
        plots.curves(rows["step"], out / "curves.png", f"{run['ablation']}: {run['name']}")
        rec.artifact(a.config)  # the run's config as given; student.pt holds it resolved (method.lambda: tuned)
        for name in ("train_log.csv", "stages.csv", "curves.png", "student.pt"):
            rec.artifact(out / name)
        summary["mlflow_run_id"] = rec.run_id
    if "lambda_source" in run:  # method.lambda: tuned, resolved from the study (config.yaml says "tuned")
        summary |= {"lambda": cfg["method"]["lambda"], "lambda_source": run["lambda_source"]}
    outputs.write_json(out / "train.json", summary | given)
    resume.path.unlink(missing_ok=True)  # every output is written: the next attempt starts afresh
    print(json.dumps(summary))
    return jobs.Done(cfg, rec.run_id)


def _run_tags(cfg: dict) -> dict[str, str]:
    run = cfg["run"]
    return {"kind": "run", "ablation": run["ablation"], "run": run["name"], "seed": str(cfg["seed"]),
            "method": cfg["method"]["name"], **{f"grid.{k}": str(v) for k, v in run["point"].items()},
            **({"tuned": "true"} if run.get("tuned") else {})}


RUN_FILES = ("train_log.csv", "stages.csv", "curves.png", "curves.pdf")  # a training's files besides the outputs


def _reuse_training(a, cfg: dict, given: dict, source: Path):
    """cmd_train for a tuned run whose values are its method's defaults (tuned.trained_alike): the grid's run
    `source` trained this very config. Its weights are saved under this run's config and its logs copied;
    train.json keeps its counted cost (what the result cost) and names it (reused_from); the folder is then
    recorded in MLflow as any finished run folder is (tracking.sync_run: params, numbers, curves, files)."""
    import shutil

    from onestep import jobs, tracking
    from onestep.checkpoint import load_checkpoint, save_checkpoint

    out = a.out
    (out / "resume.pt").unlink(missing_ok=True)  # a killed attempt's training is not needed any more
    net, ckpt = load_checkpoint(source / "student.pt", "student")
    save_checkpoint(out / "student.pt", "student", ckpt["net"], ckpt["shape"], cfg, net)
    for name in RUN_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    prior = outputs.read_json(source / "train.json")
    summary = {k: v for k, v in prior.items() if k not in given and k != "mlflow_run_id"}
    reused = {"reused_from": str(source), "reused_mlflow_run_id": prior.get("mlflow_run_id") or ""}
    outputs.write_json(out / "train.json", summary | reused | given)  # no run id yet: sync_run makes a new run
    run_id = tracking.sync_run(out, cfg, tags=_run_tags(cfg) | reused, parent_id=outputs.parent_id(a.parent))
    summary |= reused | {"mlflow_run_id": run_id}
    outputs.write_json(out / "train.json", summary | given)
    print(f"{cfg['run']['ablation']}/{cfg['run']['name']}: the same config as {source} (its tuned values are the "
          f"defaults): its training reused, not repeated")
    print(json.dumps(summary))
    return jobs.Done(cfg, run_id)


def cmd_evaluate(a):
    import torch

    from onestep import jobs, tracking
    from onestep.checkpoint import load_checkpoint, load_teacher
    from onestep.evaluate import generate, multi_step_scores, plot_samples, sample, score
    from onestep.methods import build_method, context

    student, ckpt = load_checkpoint(a.run / "student.pt", "student")
    # the run's config, resolved (method.lambda: tuned), travels with the weights; tracking from --tracking
    cfg = with_tracking(ckpt["config"], a.tracking, a.run / "student.pt")
    tracking.check_server(cfg)
    if a.threads:
        torch.set_num_threads(a.threads)
    train = outputs.check_current(a.run / "train.json")  # trained with the run's current config.yaml
    given = {k: train.pop(k) for k in ("config_file", "config_hash", "config")}
    device = jobs.device(cfg)
    teacher = load_teacher(a.teacher, device)
    ref = outputs.load_npz(a.reference)
    student.to(device)
    shape = tuple(ckpt["shape"])
    t0 = time.time()
    method = build_method(cfg, context(cfg, teacher, shape))  # once, not per noise chunk
    x = generate(cfg, shape, lambda z: sample(method, student, z), device)
    result = {**score(x, ref, cfg, a.features), "sampling_s": time.time() - t0, "train": train,
              "ablation": cfg["run"]["ablation"], "run": cfg["run"]["name"], "point": cfg["run"]["point"],
              "seed": cfg["seed"], "method": cfg["method"]["name"], "tuned": cfg["run"].get("tuned"), **given}
    result["multistep"] = multi_step_scores(cfg, method, student, shape, ref, a.features, device)
    result["method_report"] = method.report() if hasattr(method, "report") else {}  # e.g. steps on the evaluated stage
    if type(method).eval_states(cfg["method"]):  # the method's own evaluation (curriculum: per-stage errors)
        from onestep.evaluate import stage_noise

        states = outputs.load_npz(a.trajectory) if a.trajectory else None
        diag = method.diagnostics(student, states, stage_noise(cfg, shape))
    else:
        diag = {}
    result |= diag.get("record", {})
    plot_samples(x, ref, a.plot, f"{cfg['run']['name']}: one step")
    with tracking.record(cfg, cfg["run"]["name"], run_id=train["mlflow_run_id"]) as rec:
        rec.metrics({f"eval_{k}": v for k, v in result["metrics"].items()})
        rec.metrics({f"eval_{k}": result[k] for k in ("out_of_support",) if k in result} | result["method_report"])
        rec.metrics({f"eval_{k.replace('@', '_at')}": v for k, v in result["multistep"].items()})  # swd_at2
        for step, values in diag.get("series", []):  # e.g. one point per curriculum stage, step = k
            rec.metrics(values, step)
        if diag.get("metrics"):
            rec.metrics({f"eval_{k}": v for k, v in diag["metrics"].items()})
        rec.artifact(a.plot, "plots")
    outputs.write_json(a.out, result)
    print(json.dumps(result["metrics"]))
    return jobs.Done(cfg, rec.run_id)


# ---------------------------------------------------------------- tables


def cmd_tables(a) -> None:
    from onestep import tracking
    from onestep.report import tables

    cfg = _job(a, tracked=bool(a.parent))
    for f in [*a.runs, *a.teachers, a.reference]:  # every input made by the current config, or none
        outputs.check_current(f)
    summary = tables.TABLES[tables.load_spec(a.spec).get("table", "default")](
        a.spec, a.runs, a.teachers, a.reference, a.out_prefix, a.plot)
    print(summary)
    if a.parent:  # side channel: attach the table and figures to the ablation's parent run
        stem = str(a.plot)[: -len(".png")]
        with tracking.record(cfg, a.ablation, run_id=outputs.parent_id(a.parent)) as rec:
            for ext in (".md", ".tex", ".csv"):
                rec.artifact(str(a.out_prefix) + ext, "tables")
            for suffix in ("", "_curves", "_samples"):
                for ext in (".png", ".pdf"):
                    rec.artifact(stem + suffix + ext, "plots")


def cmd_main_table(a) -> None:
    from onestep.report.main import build_main

    print(build_main(a.tables, a.out_prefix, a.plot))


def cmd_paper_artefact(a) -> None:
    from onestep import paper

    print("\n".join(map(str, paper.copy_artefact(a.src, a.out_prefix))))


def cmd_paper_index(a) -> None:
    from onestep import paper

    print(paper.write_index(a.spec, a.out))


# ---------------------------------------------------------------- Optuna


def cmd_tune_worker(a) -> None:
    from contextlib import contextmanager

    import optuna

    from onestep import jobs, tracking
    from onestep.checkpoint import load_teacher
    from onestep.tuning.objective import Objective
    from onestep.tuning.study import study_name
    from onestep.tuning.worker import run_worker

    cfg = _job(a)
    device = jobs.device(cfg)
    teacher = load_teacher(a.teacher, device)
    pairs = outputs.load_pairs(a.pairs)
    parent = outputs.parent_id(a.parent)
    name = study_name(cfg)

    @contextmanager
    def trial_run(trial, tcfg):
        tags = {"kind": "trial", "study": name, "trial": str(trial.number), "worker": str(a.worker)}
        status = lambda e: "KILLED" if isinstance(e, optuna.TrialPruned) else "FAILED"  # noqa: E731
        with tracking.record(tcfg, f"trial-{trial.number}", tags, parent_id=parent, status_for=status) as rec:
            trial.set_user_attr("mlflow_run_id", rec.run_id)  # closed as KILLED if this worker dies (on_dead)
            rec.params(tcfg)
            yield rec

    def on_dead(trial, reason: str) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        try:
            if run_id:
                tracking.close_run(cfg, run_id, "KILLED", reason)
        except Exception as e:  # a side channel: the study goes on
            print(f"onestep tune-worker: warning: trial {trial.number}'s MLflow run {run_id} not closed ({e})",
                  file=sys.stderr)

    objective = Objective(cfg, teacher, pairs, outputs.load_npz(a.reference), a.features, trial_run, device)
    result = run_worker(cfg, a.folder, a.worker, objective, on_dead)
    outputs.write_json(a.out, result)
    print(json.dumps(result))


def cmd_tune_summary(a) -> None:
    from onestep import tracking
    from onestep.report.study import PLOTS
    from onestep.tuning import study, summary

    cfg = _job(a)
    best = summary.summarize(cfg, a.folder)
    print(json.dumps(best))
    if a.parent:
        with tracking.record(cfg, study.study_name(cfg), run_id=outputs.parent_id(a.parent)) as rec:
            numbers = {f"best_{k}": v for k, v in best["params"].items() if isinstance(v, int | float)}
            rec.metrics({"best_value": best["value"], "best_trial": best["trial"], **numbers})
            for f in ("best.yaml", "trials.md", "trials.tex", "trials.csv", *(f"{p}.png" for p in PLOTS)):
                rec.artifact(a.folder / f, "study")


def cmd_tune_gather(a) -> None:
    from onestep.tuning import summary

    values = summary.gather(a.best, a.teacher, a.out, a.out_prefix, a.plot)
    print(json.dumps(values))
    print(f"tuned values of {len(values)} method(s) written to {a.out}")


# ---------------------------------------------------------------- for people


def cmd_check_config(a) -> None:
    from onestep.config import check_files
    from onestep.tuning import studies, values

    abl = check_files(a.files, read_tuned=values.read, check_studies=studies.study_configs)
    runs = sum(len(ab.runs) for ab in abl.values())
    print(f"config ok: {' + '.join(map(str, a.files)) or 'defaults'}; {len(abl)} ablations, {runs} runs")


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


# ---------------------------------------------------------------- the parser


Groups = dict[str, argparse._ArgumentGroup]  # a subcommand's argument groups: config, in, out, job


def _command(sub, name: str, fn, help: str, config: bool = True, job: bool = True) -> Groups:
    """A subcommand with its argument groups; --config (the job's config file) and the job options
    (--threads, --log) unless told otherwise."""
    s = sub.add_parser(name, help=help, description=help)
    s.set_defaults(fn=fn)
    g = {"config": s.add_argument_group("config"), "in": s.add_argument_group("inputs"),
         "out": s.add_argument_group("outputs"), "job": s.add_argument_group("job")}
    if config:
        g["config"].add_argument("--config", type=Path, required=True,
                                 help="the job's config file (config.yaml: the sections it reads)")
    if config or name == "evaluate":
        g["config"].add_argument("--tracking", type=Path, default=None,
                                 help="the MLflow settings (a file with `tracking:`, the rules' results/config/"
                                 "tracking.yaml); default: the --config file's own tracking section")
    if job:
        g["job"].add_argument("--threads", type=int, default=None, help="torch threads (the job's Snakemake threads)")
        g["job"].add_argument("--log", type=Path, default=None,
                              help="write stdout and stderr to this file (then attached to the job's MLflow run, if any)")
    return g


def _teacher(g: Groups) -> None:
    g["in"].add_argument("--teacher", type=Path, required=True, help="the teacher checkpoint (teacher.pt)")


def _pairs(g: Groups) -> None:
    g["in"].add_argument("--pairs", type=Path, required=True, help="the teacher pairs (pairs.npz)")


def _reference(g: Groups, help: str = "the reference arrays (reference.npz)") -> None:
    g["in"].add_argument("--reference", type=Path, required=True, help=help)


def _features(g: Groups) -> None:
    g["in"].add_argument("--features", type=Path, default=None,
                         help="the dataset's classifier (features.pt; images with feature_net: classifier)")


def _parent(g: Groups) -> None:
    g["in"].add_argument("--parent", type=Path, default=None, help="the MLflow parent run's file (<name>.parent.json)")


def _out(g: Groups, help: str) -> None:
    g["out"].add_argument("--out", type=Path, required=True, help=help)


def _plot(g: Groups, help: str) -> None:
    g["out"].add_argument("--plot", type=Path, required=True, help=help)


def _scoring(g: Groups) -> None:
    """What a scoring job (teacher-eval, evaluate) reads and writes besides its samples' source."""
    _teacher(g)
    _reference(g)
    _features(g)
    _out(g, "metrics.json")
    _plot(g, "samples.png")


def _out_prefix(g: Groups) -> None:
    g["out"].add_argument("--out-prefix", type=Path, required=True, help="the table's path without .md/.tex/.csv")


def _tracking_commands(sub) -> None:
    g = _command(sub, "init-tracking", cmd_init_tracking, "create the MLflow store and experiment once")
    _out(g, "store.json: the tracking URI and experiment id")
    g = _command(sub, "parent", cmd_parent, "create the MLflow parent run of an ablation or study")
    g["config"].add_argument("--ablation", required=True, help="the ablation (or study) name")
    g["config"].add_argument("--kind", choices=("ablation", "study"), default="ablation", help="the parent's kind tag")
    _out(g, "<ablation>.parent.json: the parent run id")
    g = _command(sub, "sync", cmd_sync, "upload finished runs' files into the current MLflow store, after the fact",
                 config=False, job=False)
    g["in"].add_argument("--run", type=Path, nargs="+", required=True,
                         help="run folders (config.yaml, train.json, metrics.json, logs, plots)")
    g["config"].add_argument("--tracking", type=Path, default=None,
                             help="the MLflow settings (a file with `tracking:`); default: <out>/config/tracking.yaml "
                             "next to the run folders (MLFLOW_TRACKING_URI overrides its uri)")


def _teacher_commands(sub) -> None:
    g = _command(sub, "teacher", cmd_teacher, "train the DDPM teacher (or import teacher.pretrained)")
    _out(g, "teacher.pt (and teacher.json, its summary)")
    g = _command(sub, "pairs", cmd_pairs, "teacher DDIM pairs (z, x0)")
    _teacher(g)
    _out(g, "pairs.npz")
    g = _command(sub, "trajectory", cmd_trajectory, "the teacher's DDIM states x_t(z) at a method's grid times")
    g["config"].add_argument("--times", type=int, nargs="+", required=True,
                             help="the interior times 0 < t < T (a method's state_grid)")
    _teacher(g)
    g["in"].add_argument("--pairs", type=Path, default=None,
                         help="states of these pairs' z (pairs.npz); without it: the held-out stage noise")
    _out(g, "trajectory/<noise>-<grid>.npz: x0, xt (N, M, ...), trajectory_t (M,)")
    g = _command(sub, "features", cmd_features, "train the dataset's classifier (digits: FID/KID features)")
    _out(g, "features.pt")
    g = _command(sub, "reference", cmd_reference, "reference samples/features of the data and the metric floor")
    _features(g)
    _out(g, "reference.npz")
    g["out"].add_argument("--summary", type=Path, required=True, help="reference.json: the metric floor")
    g = _command(sub, "teacher-eval", cmd_teacher_eval, "score the teacher's DDIM samples (a reference row)")
    g["config"].add_argument("--steps", type=int, required=True, help="DDIM steps (steps of --solver)")
    g["config"].add_argument("--solver", default="ddim", choices=["ddim", "dpm++", "heun"],
                             help="the ODE solver (pairs.solver); not ddim, or with --clip-x0: the pairs' row")
    g["config"].add_argument("--clip-x0", default=None,
                             help="clip the x0 prediction (pairs.clip_x0): a number, or auto (the data's bound)")
    _scoring(g)


def _run_commands(sub) -> None:
    g = _command(sub, "train", cmd_train, "train one run (a grid point and seed) of an ablation")
    _teacher(g)
    _pairs(g)
    _features(g)
    _parent(g)
    g["in"].add_argument("--tuned", type=Path, default=None, help="best.yaml of the lambda study (method.lambda: tuned)")
    g["in"].add_argument("--trajectory", type=Path, default=None,
                         help="the pairs' DDIM states at the run's grid (method.target: trajectory)")
    g["in"].add_argument("--same-as", type=Path, default=None,
                         help="a tuned run: the grid's run of the same name; when it trained the same config (the "
                              "tuned values are the defaults), its training is reused instead of repeated")
    _out(g, "the run's folder: student.pt, train.json, train_log.csv, stages.csv, curves.png")
    g = _command(sub, "evaluate", cmd_evaluate, "score a trained run's one-step and few-step samples", config=False)
    g["in"].add_argument("--run", type=Path, required=True, help="the run's folder (student.pt with its config, train.json)")
    g["in"].add_argument("--trajectory", type=Path, default=None,
                         help="the teacher's DDIM states of the stage noise at the run's grid (the method's diagnostics)")
    _scoring(g)


def _table_commands(sub) -> None:
    g = _command(sub, "tables", cmd_tables, "an ablation's table and figures from its runs' metrics.json")
    g["config"].add_argument("--ablation", required=True, help="the ablation's name")
    g["in"].add_argument("--spec", type=Path, required=True, help="the ablation YAML")
    g["in"].add_argument("--runs", type=Path, nargs="+", required=True, help="every run's metrics.json")
    g["in"].add_argument("--teachers", type=Path, nargs="*", default=[], help="the teacher rows' metrics.json")
    _reference(g, "reference.json (the metric floor)")
    _parent(g)
    _out_prefix(g)
    _plot(g, "the figure (also _curves.png, _samples.png and PDFs)")
    g = _command(sub, "main-table", cmd_main_table, "the main table from the ablation tables", config=False)
    g["in"].add_argument("--tables", type=Path, nargs="+", required=True, help="per-ablation table CSVs")
    _out_prefix(g)
    _plot(g, "the figure")
    g = _command(sub, "paper-artefact", cmd_paper_artefact, "copy one artefact's md, tex, csv, png under results/paper",
                 config=False)
    g["in"].add_argument("--src", type=Path, nargs="+", required=True, help="its .md, .tex, .csv and .png")
    _out_prefix(g)
    g = _command(sub, "paper-index", cmd_paper_index, "results/paper/<tier>/index.md from the paper spec", config=False)
    g["in"].add_argument("--spec", type=Path, required=True, help="paper.yaml (the paper_spec rule's)")
    _out(g, "index.md")


def _tune_commands(sub) -> None:
    g = _command(sub, "tune-worker", cmd_tune_worker, "one Optuna worker of a study (tune_lambda, tune_baselines)")
    g["config"].add_argument("--folder", type=Path, required=True, help="the study's folder (its journal)")
    g["config"].add_argument("--worker", type=int, default=0, help="the worker's index")
    _teacher(g)
    _pairs(g)
    _reference(g)
    _features(g)
    _parent(g)
    _out(g, "worker-<i>.json")
    g = _command(sub, "tune-summary", cmd_tune_summary, "the study's best values, trial tables and plots")
    g["config"].add_argument("--folder", type=Path, required=True, help="the study's folder (writes best.yaml there)")
    _parent(g)
    g = _command(sub, "tune-gather", cmd_tune_gather, "the tuned-values file of tune_baselines from every method's "
                 "study, and the studies' table", config=False)
    g["in"].add_argument("--best", type=Path, nargs="+", required=True, help="every method study's best.yaml")
    _teacher(g)
    _out(g, "the tuned-values file (tuned_baselines.yaml, format: onestep/tuning/values.py)")
    _out_prefix(g)
    _plot(g, "the studies' figure: validation metric of the defaults and of the tuned values per method")


def _people_commands(sub) -> None:
    g = _command(sub, "check-config", cmd_check_config, "check config files (--configfile A B) before a run: "
                 "file and line of a YAML error, the key of a bad value", config=False, job=False)
    g["config"].add_argument("files", type=Path, nargs="*", help="config files, merged over config/config.yaml in order")
    g = _command(sub, "where", cmd_where, "where a target's table, plots, runs and MLflow records are",
                 config=False, job=False)
    g["config"].add_argument("target", help="the target (an ablation name)")
    g["config"].add_argument("--out", default="results", help="the results folder")
    g["config"].add_argument("--dataset", default="checkerboard", help="the dataset id")
    g["config"].add_argument("--uri", default="sqlite:///results/mlflow.db", help="the MLflow tracking URI")
    g["config"].add_argument("--artifacts", default="results/mlartifacts", help="the MLflow artifact folder")
    g = _command(sub, "ui", cmd_ui, "the MLflow UI on the store", config=False, job=False)
    g["config"].add_argument("--uri", default="sqlite:///results/mlflow.db", help="the MLflow tracking URI")
    g["config"].add_argument("--host", default="127.0.0.1", help="the address to listen on")
    g["config"].add_argument("--port", type=int, default=5000, help="the port to listen on")
    g["config"].add_argument("--experiment", default="onestep",
                             help="the experiment whose runs table to open (tracking.experiment)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onestep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for add in (_tracking_commands, _teacher_commands, _run_commands, _table_commands, _tune_commands,
                _people_commands):
        add(sub)
    return p


def _config_or_none(a) -> dict | None:
    """The job's config file as a dict, for an error message (None when there is none or it is unreadable)."""
    try:
        return yaml.safe_load(Path(a.config).read_text()) if getattr(a, "config", None) else None
    except (OSError, yaml.YAMLError):
        return None


def main(argv: list[str] | None = None) -> None:
    """Run the command; with --log, inside its own log file, attached to its MLflow run once closed."""
    from onestep import jobs
    from onestep.checkpoint import Preempted

    a = parser().parse_args(argv)
    log, code, done, line = getattr(a, "log", None), 0, None, ""
    jobs.exit_on_sigterm()
    with jobs.logged(log):
        try:
            done = a.fn(a)
        except Preempted as e:
            ctrl_c = e.signal == "SIGINT"
            line = f"onestep {a.cmd}: {'interrupted (Ctrl-C)' if ctrl_c else 'preempted'}: {e}"
            code = 130 if ctrl_c else 143  # 128 + SIGINT / SIGTERM, as if the signal had ended the process
        except KeyboardInterrupt:  # Ctrl-C outside a training loop (or twice): stop now, one line
            line, code = f"onestep {a.cmd}: interrupted (Ctrl-C); nothing of this job's outputs was written", 130
        except (OnestepError, FileNotFoundError) as e:
            line, code = f"onestep {a.cmd}: error: {e}", 2
        except Exception as e:
            if type(e).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
                from onestep.accel import oom_message

                line, code = f"onestep {a.cmd}: error: {oom_message(e, a.cmd, _config_or_none(a))}", 2
            elif log is None:
                raise
            else:
                traceback.print_exc()  # a bug: its traceback belongs in the job's log
                line, code = f"onestep {a.cmd}: failed ({type(e).__name__}: {e}); the traceback is in the log", 1
        if line and code != 1:
            print(line, file=sys.stderr)
    jobs.attach_log(done, log)
    if line and log is not None:
        # the cause outside the log too: Snakemake shows a local job's stderr above its "Error in rule"; a
        # SLURM job's goes to its SLURM log, which Snakemake names there with this job's log
        print(f"{line.splitlines()[0]} (log: {log})", file=sys.stderr, flush=True)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
