"""`onestep <command>`: the argument parser and the dispatch into onestep.stages (each command's work), and the exit code: 0 done;
2 a user error (`onestep <command>: error: <message>`: an errors.OnestepError, a missing file); 143 preempted (SIGTERM; the resume
checkpoint is saved, the next attempt resumes); 130 interrupted (Ctrl-C: in training, a resume checkpoint is saved as on SIGTERM);
1 a bug (its traceback in the log). With --log, that line goes to the log and, naming the log, to stderr (Snakemake shows it)."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from onestep import __version__
from onestep.errors import OnestepError
from onestep.stages import people, preflight, run, tables, teacher, tracking, tuning

ABOUT = """One-step diffusion ablations: distil a diffusion teacher into one-step students, method by method.
`snakemake` runs the pipeline (it calls the rule internals below); `onestep COMMAND --help` for each command."""


def A(group: str, *flags: str, help: str, **kw) -> tuple:
    """One argument: its group (config, in, out, job), its flags, argparse's keywords (default: a required path)."""
    return group, flags, {"type": Path, "required": True, **kw} if flags[0].startswith("--") else kw, help


def opt(group: str, flag: str, help: str, default=None, **kw) -> tuple:
    """An optional argument: a path (None by default), else of its default's type."""
    return A(group, flag, help=help, required=False, default=default, **({"type": type(default)} if default else {}), **kw)


out = lambda help, flag="--out": A("out", flag, help=help)  # noqa: E731 (an output file)
TEACHER = A("in", "--teacher", help="the teacher checkpoint (teacher.pt)")
PAIRS = A("in", "--pairs", help="the teacher pairs (pairs.npz)")
REFERENCE = A("in", "--reference", help="the reference arrays (reference.npz)")
FEATURES = opt("in", "--features", "the dataset's classifier (features.pt; images with feature_net: classifier)")
PARENT = opt("in", "--parent", "the MLflow parent run's file (<name>.parent.json)")
PREFIX = out("the table's path without .md/.tex/.csv", "--out-prefix")
TRACKING = opt("config", "--tracking", "the MLflow settings (a file with `tracking:`, the rules' results/config/"
               "tracking.yaml); default: the --config file's own tracking section")
URI = opt("config", "--uri", "the MLflow tracking URI", "sqlite:///results/mlflow.db")
CONFIG = A("config", "--config", help="the job's config file (config.yaml: the sections it reads)")
JOB = [opt("job", "--threads", "torch threads (the job's Snakemake threads)", type=int),
       opt("job", "--log", "write stdout and stderr to this file (then attached to the job's MLflow run, if any)")]
SCORING = [TEACHER, REFERENCE, FEATURES, out("metrics.json"), out("samples.png", "--plot")]  # teacher-eval, evaluate


def _people() -> list:
    """The commands for people: (name, stage, help, the job config it reads: None, or tracked/untracked/if-parent
    (whether it writes to MLflow), arguments)."""
    return [
        ("check-config", people.check_config, "check config files (--configfile A B) before a run", None,
         [A("config", "files", help="config files, merged over config/config.yaml in order", type=Path, nargs="*")]),
        ("preflight", preflight.preflight, "before `make demo`/`make slurm`: config files, a stale lock, SLURM's status "
         "command", None, [A("config", "target", help="the Makefile target: demo, or slurm (its status command too)",
                             choices=["demo", "slurm"]),
                           A("config", "args", help="Snakemake's arguments (after --)", nargs=argparse.REMAINDER)]),
        ("where", people.where, "where a target's table, plots, runs and MLflow records are", None,
         [A("config", "target", help="the target (an ablation name)"), A("config", "args", nargs=argparse.REMAINDER,
          help="snakemake's arguments of the run (--configfile A B, --config key=value): its dataset and folders")]),
        ("compare", people.compare, "two ablations (or one on two tiers) side by side: headline metric, CI, p, seeds", None,
         [A("config", "tables", help="two table CSVs, or ablation names then ARGS (the run config)", nargs=argparse.REMAINDER)]),
        ("ui", people.ui, "the MLflow UI on the store", None,
         [URI, opt("config", "--artifacts", "the store's artifact folder (a moved store's runs re-rooted there); "
                   "default: mlartifacts next to a SQLite store"), opt("config", "--host", "the address", "127.0.0.1"),
          opt("config", "--port", "the port to listen on", 5000),
          opt("config", "--experiment", "the experiment whose runs table to open (tracking.experiment)", "onestep")]),
        ("sync", tracking.sync, "upload finished runs' files into the current MLflow store, after the fact", None,
         [A("in", "--run", help="run folders (config.yaml, train.json, metrics.json, logs, plots)", nargs="+"),
          opt("config", "--tracking", "the MLflow settings (a file with `tracking:`); default: <out>/config/"
              "tracking.yaml next to the run folders (MLFLOW_TRACKING_URI overrides its uri)")])]


def _internals() -> list:
    """The rule internals, as `_people`."""
    ablation = A("config", "--ablation", help="the ablation (or study) name", type=str)
    folder = A("config", "--folder", help="the study's folder (its journal; best.yaml there)")
    return [
        ("init-tracking", tracking.init_tracking, "create the MLflow store and experiment once", "tracked",
         [out("store.json: the tracking URI and experiment id")]),
        ("parent", tracking.parent, "create the MLflow parent run of an ablation or study", "tracked",
         [ablation, opt("config", "--kind", "the parent's kind tag", "ablation", choices=("ablation", "study")),
          out("<ablation>.parent.json: the parent run id")]),
        ("teacher", teacher.teacher, "train the DDPM teacher (or import teacher.pretrained)", "tracked",
         [out("teacher.pt (and teacher.json, its summary)")]),
        ("pairs", teacher.pairs, "teacher DDIM pairs (z, x0)", "untracked", [TEACHER, out("pairs.npz")]),
        ("trajectory", teacher.trajectory, "the teacher's DDIM states x_t(z) at a method's grid times", "untracked",
         [A("config", "--times", help="the interior times 0 < t < T (a method's state_grid)", type=int, nargs="+"),
          TEACHER, opt("in", "--pairs", "states of these pairs' z (pairs.npz); without it: the held-out stage noise"),
          out("trajectory/<noise>-<grid>.npz: x0, xt (N, M, ...), trajectory_t (M,)")]),
        ("features", teacher.features, "train the dataset's classifier (digits: FID/KID features)", "untracked",
         [out("features.pt")]),
        ("reference", teacher.reference, "reference samples/features of the data and the metric floor", "untracked",
         [FEATURES, out("reference.npz"), out("reference.json: the metric floor", "--summary")]),
        ("teacher-eval", teacher.teacher_eval, "score the teacher's DDIM samples (a reference row)", "tracked",
         [A("config", "--steps", help="DDIM steps (steps of --solver)", type=int),
          opt("config", "--solver", "the ODE solver (pairs.solver)", "ddim", choices=["ddim", "dpm++", "heun", "rk4"]),
          opt("config", "--clip-x0", "clip x0 (pairs.clip_x0): a number, or auto (the data bound)", type=str), *SCORING]),
        ("train", run.train, "train one run (a grid point and seed) of an ablation", "tracked",
         [TEACHER, PAIRS, FEATURES, PARENT, opt("in", "--tuned", "best.yaml of the lambda study (method.lambda: tuned)"),
          opt("in", "--trajectory", "the pairs' DDIM states at the run's grid (method.target: trajectory)"),
          opt("in", "--same-as", "a tuned run: the grid's run of the same name; when it trained the same config (the "
              "tuned values are the defaults), its training is reused instead of repeated"),
          out("the run's folder: student.pt, train.json, train_log.csv, stages.csv, curves.png")]),
        ("evaluate", run.evaluate, "score a trained run's one-step and few-step samples", None,
         [TRACKING, A("in", "--run", help="the run's folder (student.pt with its config, train.json)"),
          opt("in", "--trajectory", "the teacher's DDIM states of the stage noise at the run's grid (the method's "
              "diagnostics)"), *SCORING]),
        ("tables", tables.tables, "an ablation's table and figures from its runs' metrics.json", "if-parent",
         [ablation, A("in", "--spec", help="the ablation YAML"), A("in", "--runs", help="every run's metrics.json", nargs="+"),
          opt("in", "--teachers", "the teacher rows' metrics.json", [], nargs="*", type=Path),
          A("in", "--reference", help="reference.json (the metric floor)"), PARENT, PREFIX,
          out("the figure (also _curves.png, _samples.png and PDFs)", "--plot")]),
        ("main-table", tables.main_table, "the main table from the ablation tables", None,
         [A("in", "--tables", help="per-ablation table CSVs", nargs="+"), PREFIX, out("the figure", "--plot")]),
        ("paper-artefact", tables.paper_artefact, "copy one artefact's md, tex, csv, png under results/paper", None,
         [A("in", "--src", help="its .md, .tex, .csv and .png", nargs="+"), PREFIX]),
        ("paper-index", tables.paper_index, "results/paper/<tier>/index.md from the paper spec", None,
         [A("in", "--spec", help="paper.yaml (the paper_spec rule's)"), out("index.md")]),
        ("tune-worker", tuning.tune_worker, "one Optuna worker of a study (tune_lambda, tune_baselines)", "tracked",
         [folder, opt("config", "--worker", "the worker's index", 0, type=int), TEACHER, PAIRS, REFERENCE, FEATURES,
          PARENT, out("worker-<i>.json")]),
        ("tune-summary", tuning.tune_summary, "the study's best values, trial tables and plots", "tracked", [folder, PARENT]),
        ("tune-gather", tuning.tune_gather, "the tuned-values file of tune_baselines from every method's study, and "
         "the studies' table", None,
         [A("in", "--best", help="every method study's best.yaml", nargs="+"), TEACHER,
          out("the tuned-values file (tuned_baselines.yaml, format: onestep/tuning/values.py)"), PREFIX,
          out("the studies' figure: validation metric of the defaults and of the tuned values per method", "--plot")])]


def _add(sub, name: str, fn, help: str, config: str | None, args: list, job: bool) -> None:
    """A subcommand: --config (and --tracking) where it reads a job config, its arguments, the job options."""
    s = sub.add_parser(name, help=help, description=help)
    s.set_defaults(fn=fn, load=config)
    groups = {k: s.add_argument_group(t) for k, t in {"config": "config", "in": "inputs", "out": "outputs", "job": "job"}.items()}
    for group, flags, kw, arg_help in [*([CONFIG, TRACKING] if config else []), *args, *(JOB if job else [])]:
        groups[group].add_argument(*flags, help=arg_help, **kw)


def parser() -> argparse.ArgumentParser:
    people_cmds, internals = _people(), _internals()
    listing = "\n\n".join(f"{title}:\n" + "\n".join(f"  {c[0]:<16}{c[2]}" for c in cmds) for title, cmds in (
        ("commands for people", people_cmds), ("rule internals (what the Snakemake rules run)", internals)))
    p = argparse.ArgumentParser(prog="onestep", usage="onestep [-h] [--version] COMMAND ...",
                                description=f"{ABOUT}\n\n{listing}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"onestep {__version__}")
    p.set_defaults(config=None)  # a command without a config file
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", help=argparse.SUPPRESS, prog="onestep")
    for c in people_cmds + internals:
        _add(sub, *c, job=c in internals)
    return p


def dispatch(a: argparse.Namespace):
    """Call the command's stage with the arguments it names, the job's config as `cfg` where it reads one."""
    from onestep.jobs import job_config

    args = vars(a) | ({"cfg": job_config(a.config, a.tracking, a.load == "tracked" or (a.load == "if-parent" and bool(
        a.parent)), a.threads)} if a.load else {})
    return a.fn(**{k: v for k, v in args.items() if k in inspect.signature(a.fn).parameters})


def main(argv: list[str] | None = None) -> None:
    """Run the command; with --log, inside its own log file, attached to its MLflow run once closed."""
    from onestep import jobs
    from onestep.training.resume import Preempted

    a = parser().parse_args(argv)
    log, code, done, line = getattr(a, "log", None), 0, None, ""
    jobs.exit_on_sigterm()
    with jobs.logged(log):
        try:
            done = dispatch(a)
        except Preempted as e:
            ctrl_c = e.signal == "SIGINT"
            line = f"onestep {a.cmd}: {'interrupted (Ctrl-C)' if ctrl_c else 'preempted'}: {e}"
            code = 130 if ctrl_c else 143  # 128 + SIGINT / SIGTERM, as if the signal had ended the process
        except KeyboardInterrupt:  # Ctrl-C outside a training loop (or twice): stop now, one line
            line, code = f"onestep {a.cmd}: interrupted (Ctrl-C); nothing of this job's outputs was written", 130
        except (OnestepError, FileNotFoundError) as e:
            line, code = f"onestep {a.cmd}: error: {e}", 2
        except Exception as e:  # a full disk or read-only folder, out of GPU memory: one line; else a bug
            line, code = jobs.failure(a.cmd, e, a.config, log)
        if line and code != 1:
            jobs.last_line(line)  # the log ends with it, even on a full disk
    jobs.attach_log(done, log, a.cmd)
    if line and log is not None:
        # the cause outside the log too: Snakemake shows a local job's stderr above "Error in rule"; a SLURM job's log
        jobs.last_line(f"{line.splitlines()[0]} (log: {log})")
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
