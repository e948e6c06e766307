"""A run's stages: train one grid point and seed (or reuse a finished training of the same config), and
score its one-step and few-step samples."""

from __future__ import annotations

import json
import time
from pathlib import Path

from onestep import outputs, provenance

RUN_FILES = ("train_log.csv", "stages.csv", "curves.png", "curves.pdf")  # a training's files besides the outputs
STALE = ("metrics.json", "samples.png")  # the evaluation of a run's previous training


def train(cfg: dict, config: Path, teacher: Path, pairs: Path, out: Path, features: Path | None = None,
          parent: Path | None = None, tuned: Path | None = None, trajectory: Path | None = None,
          same_as: Path | None = None):
    """Train one run into the folder `out`: student.pt, train.json, train_log.csv, stages.csv, curves.png.
    A tuned run (`same_as`: the grid's run of the same name) whose config that run trained reuses its training."""
    from onestep.tuning.values import resolve_lambda, trained_alike

    given = outputs.provenance(config)  # the config file as given (method.lambda: tuned unresolved, no tracking)
    given["code"] = provenance.of_run("train", cfg)  # the code that trains it (version, its files' hash)
    cfg = resolve_lambda(cfg, tuned)
    out.mkdir(parents=True, exist_ok=True)
    # a previous training's evaluation is stale from now on, whatever happens to this job (kill, failure)
    for stale in STALE:
        (out / stale).unlink(missing_ok=True)
    if same_as is not None and (source := trained_alike(config, same_as)) is not None:
        return reuse_training(cfg, given, source, out, parent)
    return _fit(cfg, config, given, teacher, pairs, out, features, parent, trajectory)


def run_tags(cfg: dict) -> dict[str, str]:
    """The MLflow tags of a run's training."""
    from onestep.tracking_view import order_key

    run = cfg["run"]
    values = "/".join(f"{v:012.4f}" if isinstance(v, int | float) else str(v) for v in run["point"].values())
    return {"kind": "run", "ablation": run["ablation"], "run": run["name"], "seed": str(cfg["seed"]),
            "onestep.order": f"{order_key(run['ablation'])}/{values}/{int(cfg['seed']):04d}",  # the table's: grid order
            "method": cfg["method"]["name"], **{f"grid.{k}": str(v) for k, v in run["point"].items()},
            **({"tuned": "true"} if run.get("tuned") else {})}


def _fit(cfg: dict, config: Path, given: dict, teacher: Path, pairs: Path, out: Path, features: Path | None,
         parent: Path | None, trajectory: Path | None):
    """Train the student (resumed from out/resume.pt where a killed attempt left one) and write its files."""
    from onestep import jobs
    from onestep.checkpoint import load_teacher
    from onestep.config import Student
    from onestep.features import load_feature_net
    from onestep.tracking import show_grid
    from onestep.tracking_view import run_label
    from onestep.training.resume import Resume
    from onestep.training.train import train_student

    # the resume checkpoint is no declared output: Snakemake deletes a failed job's outputs, not this file
    resume = Resume.open(out / "resume.pt", Student.of(cfg).checkpoint_every, cfg)
    prior = resume.state.extra if resume.state else {}
    device = jobs.device(cfg)
    net = load_teacher(teacher, device)
    data = outputs.load_pairs(pairs)
    if trajectory:  # method.target trajectory: the teacher's DDIM states of these pairs (rule trajectory)
        data |= outputs.load_states(trajectory, data["z"])
    run = cfg["run"]
    rows: dict[str, list[dict]] = prior.get("rows") or {"step": [], "phase": []}

    label = run_label(run["point"], cfg["seed"])  # the run's name in MLflow: its grid point and seed
    with jobs.resumable_record(cfg, label, run_tags(cfg), resume, {"rows": rows}, outputs.parent_id(parent)) as rec:
        show_grid(cfg, run["point"])

        def log(values: dict, step: int, series: str = "step") -> None:
            rec.metrics(values, step)
            rows[series].append({series: step, **values})

        feats = load_feature_net(features) if features else None
        student, summary = train_student(cfg, net, data, device, log, features=feats, resume=resume)
        rec.metrics(summary)
        _write_training(cfg, student, data["z"].shape[1:], rows, out)
        rec.artifact(config)  # the run's config as given; student.pt holds it resolved (method.lambda: tuned)
        for name in ("train_log.csv", "stages.csv", "curves.png", "student.pt"):
            rec.artifact(out / name)
        summary["mlflow_run_id"] = rec.run_id
    if "lambda_source" in run:  # method.lambda: tuned, resolved from the study (config.yaml says "tuned")
        summary |= {"lambda": cfg["method"]["lambda"], "lambda_source": run["lambda_source"]}
    outputs.write_json(out / "train.json", summary | given)
    resume.path.unlink(missing_ok=True)  # every output is written: the next attempt starts afresh
    print(json.dumps(summary))
    return jobs.Done(cfg, rec.run_id)


def _write_training(cfg: dict, student, shape, rows: dict[str, list[dict]], out: Path) -> None:
    """A finished training's files: student.pt, train_log.csv, stages.csv, curves.png."""
    from onestep.checkpoint import save_checkpoint
    from onestep.methods import student_net
    from onestep.report import figures as plots

    run = cfg["run"]
    save_checkpoint(out / "student.pt", "student", student_net(cfg), shape, cfg, student)
    outputs.write_csv(out / "train_log.csv", rows["step"], "step")
    outputs.write_csv(out / "stages.csv", rows["phase"], "phase")
    plots.curves(rows["step"], out / "curves.png", f"{run['ablation']}: {run['name']}")


def reuse_training(cfg: dict, given: dict, source: Path, out: Path, parent: Path | None):
    """`train` for a tuned run whose values are its method's defaults (tuned.trained_alike): the grid's run
    `source` trained this very config. Its weights are saved under this run's config and its logs copied;
    train.json keeps its counted cost (what the result cost) and names it (reused_from); the folder is then
    recorded in MLflow as any finished run folder is (tracking.sync_run: params, numbers, curves, files)."""
    import shutil

    from onestep import jobs
    from onestep.checkpoint import load_checkpoint, save_checkpoint
    from onestep.tracking_sync import sync_run

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
    run_id = sync_run(out, cfg, tags=run_tags(cfg) | reused, parent_id=outputs.parent_id(parent))
    summary |= reused | {"mlflow_run_id": run_id}
    outputs.write_json(out / "train.json", summary | given)
    print(f"{cfg['run']['ablation']}/{cfg['run']['name']}: the same config as {source} (its tuned values are the "
          f"defaults): its training reused, not repeated")
    print(json.dumps(summary))
    return jobs.Done(cfg, run_id)


def evaluate(run: Path, teacher: Path, reference: Path, out: Path, plot: Path, features: Path | None = None,
             trajectory: Path | None = None, tracking: Path | None = None, threads: int | None = None):
    """Score the run folder `run`'s one-step and few-step samples (`out`: metrics.json, `plot`: samples.png),
    recorded in the run's MLflow run; its config travels with its weights, the tracking section from `tracking`."""
    from onestep import jobs
    from onestep.checkpoint import load_checkpoint, load_teacher
    from onestep.report.figures import run_samples
    from onestep.tracking import check_server, log_into
    from onestep.tracking_view import run_label

    student, ckpt = load_checkpoint(run / "student.pt", "student")
    # the run's config, resolved (method.lambda: tuned), travels with the weights; tracking from --tracking
    cfg = jobs.with_tracking(ckpt["config"], tracking, run / "student.pt")
    check_server(cfg)
    jobs.set_threads(threads)
    train = outputs.check_current(run / "train.json")  # trained with the run's current config.yaml
    given = {k: train.pop(k) for k in ("config_file", "config_hash", "config")} | {"code": provenance.of_run("evaluate", cfg)}
    device = jobs.device(cfg)
    net = load_teacher(teacher, device)
    ref = outputs.load_npz(reference)
    student.to(device)
    about = {"train": train, "ablation": cfg["run"]["ablation"], "run": cfg["run"]["name"], "point": cfg["run"]["point"],
             "seed": cfg["seed"], "method": cfg["method"]["name"], "tuned": cfg["run"].get("tuned"), **given}
    x, result, diag = _score(cfg, student, net, tuple(ckpt["shape"]), ref, features, trajectory, device, about)
    run_samples(x, ref, plot, f"{cfg['run']['name']}: one step", result["metrics"].get("off_support"))
    outputs.write_json(out, result)
    # the training's run gets the scores and files without being reopened: its Duration stays the training's
    with log_into(cfg, train["mlflow_run_id"], run_label(cfg["run"]["point"], cfg["seed"]), run_tags(cfg)) as rec:
        _record(rec, result, diag)
        rec.artifact(plot, "plots")
        rec.artifact(out)  # metrics.json
        rec.artifact(run / "train.json")
    print(json.dumps(result["metrics"]))
    return jobs.Done(cfg, rec.run_id)


def _score(cfg: dict, student, teacher, shape: tuple, ref: dict, features: Path | None, trajectory: Path | None,
           device: str, about: dict):
    """The student's one-step samples, their scores (`about`: the run's identity, after the sampling time) with
    the few-step scores and the method's own numbers, and the method's diagnostics."""
    from onestep.evaluate import exact_sample, generate, multi_step_scores, sample, score, stage_noise
    from onestep.methods import build_method, context

    t0 = time.time()
    method = build_method(cfg, context(cfg, teacher, shape))  # once, not per noise chunk
    x = generate(cfg, shape, lambda z: sample(method, student, z), device)
    exact_x = exact_sample(cfg, shape, lambda z: sample(method, student, z), device)  # 2-D: the exact metrics' own
    result = {**score(x, ref, cfg, features, exact_x), "sampling_s": time.time() - t0, **about}
    result["multistep"] = multi_step_scores(cfg, method, student, shape, ref, features, device)
    result["method_report"] = method.report() if hasattr(method, "report") else {}  # e.g. steps on the evaluated stage
    diag = {}
    # the method's own evaluation (e.g. per-stage errors), on the states it asked for (eval_states); a job run
    # by hand without them (--trajectory) scores without it
    if trajectory and type(method).eval_states(cfg["method"]):
        diag = method.diagnostics(student, outputs.load_npz(trajectory), stage_noise(cfg, shape))
    result |= diag.get("record", {})
    return x, result, diag


def _record(rec, result: dict, diag: dict) -> None:
    """A run's evaluation (metrics.json's `result`) into its MLflow run: the one-step and few-step scores, the
    method's own numbers (its report), and its diagnostics (`diag`: a series of steps, numbers)."""
    from onestep import tracking

    rec.metrics(tracking.eval_metrics(result["metrics"]))
    rec.metrics(tracking.eval_metrics({k: result[k] for k in ("out_of_support",) if k in result}) | result["method_report"])
    rec.metrics(tracking.eval_metrics(result["multistep"]))
    for step, values in diag.get("series", []):  # e.g. one point per stage of a staged method
        rec.metrics(values, step)
    if diag.get("metrics"):
        rec.metrics(tracking.eval_metrics(diag["metrics"]))
