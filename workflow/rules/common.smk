# Parse-time set-up: validate the config and every ablation grid (one message, before any job).
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config

from onestep.data import is_image
from onestep.config import (IMAGE_FLOOR, ConfigError, check_device, dataset_id, gpu_per_job, load_workflow, plain_ddim, resolve,
                            sections_json, yaml_values)
from onestep.devices import visible_gpus
from onestep.methods import METHODS
from onestep.tuning import studies as tune_studies, values as tune_values
from onestep.outputs import config_hash

# The package's CLI through the interpreter that runs Snakemake: a job finds it however it is started
# (no activated venv, an sbatch job with the caller's PATH), and imports the same package.
ONESTEP = f"{shlex.quote(sys.executable)} -m onestep"

# `--config key=value`: values read as YAML (numbers inside lists and mappings too), then validated
update_config(config, yaml_values(workflow.config_settings.overwrite_config or {}))
try:
    ABLATIONS = load_workflow(config, workflow.basedir, read_tuned=tune_values.read)
    # tune_baselines: {method: its study's config} for every method of tune_baselines.grid (onestep/tuning/studies.py)
    BASELINE_STUDIES = tune_studies.study_configs(config, ABLATIONS)
except ConfigError as e:
    raise WorkflowError(f"invalid configuration: {e}") from None
config.update(resolve(config))  # the method section with every knob (its dataclass defaults): what jobs see

OUT = config["out"]
DATA = dataset_id(config)
ROOT = f"{OUT}/{DATA}"
LOGS = f"{OUT}/logs"
TABLES = f"{OUT}/tables/{DATA}"
PLOTS = f"{OUT}/plots/{DATA}"
# ablations of the curriculum (ablate_all, the main table); other tables (baselines) are targets of their own
APPLICABLE = [name for name, ab in ABLATIONS.items() if not ab.skipped and ab.table == "default"]
IS_IMAGES = is_image(config["dataset"])
USE_CLASSIFIER = IS_IMAGES and config["evaluation"]["feature_net"] == "classifier"
RUNS = {(ab.name, run.name): run for ab in ABLATIONS.values() for run in ab.runs}
# the teacher-state grids the runs' methods read (their hook state_grid): label -> interior times
STATE_GRIDS = dict(g for run in RUNS.values()
                   if (g := METHODS[run.config["method"]["name"]].state_grid(run.config["method"], config["diffusion"]["T"])))
TEACHER_STEPS = config["evaluation"]["teacher_steps"]
# the teacher rows of every table: DDIM at TEACHER_STEPS, and the pairs' own solver unless it is one of them
_PC = config["pairs"]
PAIRS_ROW = not plain_ddim(_PC.get("solver"), _PC.get("clip_x0")) or _PC["ddim_steps"] not in TEACHER_STEPS
TEACHER_ROWS = [f"{ROOT}/teacher/ddim-{s}/metrics.json" for s in TEACHER_STEPS] + (
    [f"{ROOT}/teacher/pairs-solver/metrics.json"] if PAIRS_ROW else [])
STUDY = f"{config['tune']['study']}-{DATA}"
# what a tuning worker depends on: the base config without the ablation bookkeeping
TUNE_SECTIONS = tune_studies.STUDY_SECTIONS
# Every Optuna study of the workflow: its name (the folder under <out>/optuna/ and the MLflow parent) -> its
# config file and its workers. tune_lambda's, and one per method of tune_baselines.grid (rule tune_study_config).
BASELINE_STUDY = {m: f"{c['tune']['study']}-{DATA}" for m, c in BASELINE_STUDIES.items()}  # method -> study name
STUDIES = {STUDY: (f"{ROOT}/config/tune.yaml", config["tune"]["workers"])} | {
    name: (f"{ROOT}/config/tune_baselines/{m}.yaml", BASELINE_STUDIES[m]["tune"]["workers"])
    for m, name in BASELINE_STUDY.items()}
# the tuned-values file the `tuned:` ablations apply: config tuned_baselines, else tune_baselines' own output
TUNED_VALUES = config.get("tuned_baselines") or f"{ROOT}/tuned_baselines.yaml"


# GPUs a training / sampling job requests (`gpu_per_job`): 1 on images, 0 on the 2-D tier by default.
GPU_PER_JOB = gpu_per_job(config)

# Local runs (no --jobs, i.e. no cluster executor): at most one `gpu=1` job per visible GPU. With no GPU
# the constraint scales `gpu=1` down to 0 and the jobs run on CPU. An explicit --resources gpu=N wins.
# `device: cuda` on a machine without one stops here (a cluster's login node may lack a GPU: its jobs check).
if workflow.nodes is None:
    try:
        check_device(config)
    except ConfigError as e:
        raise WorkflowError(f"invalid configuration: {e}") from None
    if "gpu" not in workflow.global_resources:
        workflow.register_resource("gpu", visible_gpus())


wildcard_constraints:
    ablation="|".join(map(re.escape, [*ABLATIONS, *STUDIES])),
    study="|".join(map(re.escape, STUDIES)),
    method="|".join(map(re.escape, BASELINE_STUDIES)) or "(?!)",
    worker=r"\d+",
    run="[A-Za-z0-9_.=+-]+",
    steps=r"\d+",
    noise="pairs|eval",
    grid="|".join(map(re.escape, STATE_GRIDS)) or "(?!)",


# Each job reads a config file, not JSON on its shell line: the local rules `job_config` and `run_config`
# (configs.smk) write it from these sections, with the sections as params, so a config change re-runs
# the writer (Snakemake's params trigger), then, the file being newer, the job and everything downstream.
# No config file holds the tracking section (config.NOT_IN_RESULTS): a job that writes to MLflow reads it
# from TRACKING_CONFIG (--tracking), so a tracking change re-runs no job.
JOB_SECTIONS = {
    "teacher": ("dataset", "diffusion", "teacher", "device"),
    "pairs": ("dataset", "diffusion", "pairs", "device"),
    "features": ("dataset", "evaluation"),
    "trajectory": ("dataset", "diffusion", "pairs", "evaluation", "device"),
    "reference": ("dataset", "evaluation"),
    "teacher_eval": ("dataset", "diffusion", "evaluation", "device"),
    "tune": TUNE_SECTIONS,
}


def job_config(kind):
    """The config file of a job kind (JOB_SECTIONS)."""
    return f"{ROOT}/config/{kind}.yaml"


# The MLflow settings every job reads (--tracking): the tracking section, with the URI that jobs will use
# (MLFLOW_TRACKING_URI wins), shared by every dataset. The file is no rule's output or input: Snakemake
# writes it as it starts its jobs (onstart, tracking.smk; never in a dry run), when its content changed.
# What a job produces does not depend on it, so changing tracking.required, timeout_s or system_metrics_s
# plans nothing. (As an input it would be re-written upstream of every job, and Snakemake does not look
# for other reasons to run a job below one that must run: an ancient input does not pass it on, so a
# missing metrics.json went unplanned for one invocation.) The store's set-up (init_tracking, the parent
# runs) re-runs when the store or experiment changes (TRACKING_STORE, its params).
TRACKING_CONFIG = f"{OUT}/config/tracking.yaml"
TRACKING = {**config["tracking"], "uri": os.environ.get("MLFLOW_TRACKING_URI") or config["tracking"]["uri"]}
TRACKING_STORE = json.dumps({k: TRACKING[k] for k in ("uri", "experiment")}, sort_keys=True)


def write_tracking_config():
    """TRACKING_CONFIG as this invocation's jobs will read it; left as it is (not touched) when unchanged."""
    from onestep import outputs

    path = Path(TRACKING_CONFIG)
    if not path.is_file() or outputs.read_yaml(path) != {"tracking": TRACKING}:
        outputs.write_yaml(path, {"tracking": TRACKING})


def run_config(w):
    """The config file of one run of an ablation (its whole config: grid point, seed, run name)."""
    return f"{ROOT}/{w.ablation}/{w.run}/config.yaml"


def tuned(w):
    """best.yaml of the lambda study when this run asks for `method.lambda: tuned` (the DAG tunes first)."""
    return [f"{OUT}/optuna/{STUDY}/best.yaml"] if RUNS[(w.ablation, w.run)].config["method"].get("lambda") == "tuned" else []


def tuned_arg(w):
    return " ".join(f"--tuned {f}" for f in tuned(w))


def _method(w):
    return RUNS[(w.ablation, w.run)].config["method"]


def _states(w, noise):
    """The teacher's DDIM states a run's method reads (its hooks state_grid, train_states, eval_states):
    of the pairs' z for training (`pairs`), of the held-out stage noise for evaluation (`eval`)."""
    m = _method(w)
    cls = METHODS[m["name"]]
    wanted = cls.train_states(m) if noise == "pairs" else cls.eval_states(m)
    grid = cls.state_grid(m, config["diffusion"]["T"]) if wanted else None
    return [f"{ROOT}/teacher/trajectory/{noise}-{grid[0]}.npz"] if grid else []


def pair_states(w):
    return _states(w, "pairs")


def pair_states_arg(w):
    return " ".join(f"--trajectory {f}" for f in pair_states(w))


def stage_states(w):
    return _states(w, "eval")


def stage_states_arg(w):
    return " ".join(f"--trajectory {f}" for f in stage_states(w))


def features(w=None):
    return [f"{ROOT}/features.pt"] if USE_CLASSIFIER else []


def features_arg(w=None):
    return f"--features {ROOT}/features.pt" if USE_CLASSIFIER else ""


def run_hash(w):
    """The hash of a run's config (params of its evaluation: a config change re-runs it)."""
    return config_hash(RUNS[(w.ablation, w.run)].config)


def run_configs(name):
    return [f"{ROOT}/{name}/{run.name}/config.yaml" for run in ABLATIONS[name].runs]


def spec_file(name):
    """The ablation's YAML, relative to the working directory where it lies below it: a moved or copied
    project folder plans nothing again (Snakemake's input trigger compares paths)."""
    path = Path(ABLATIONS[name].file).resolve()
    return os.path.relpath(path) if path.is_relative_to(Path.cwd().resolve()) else str(path)


def run_metrics(name):
    return [f"{ROOT}/{name}/{run.name}/metrics.json" for run in ABLATIONS[name].runs]


def table_runs(name):
    """The runs an ablation's table reads: its own, and for a `tuned:` ablation the default runs it repeats."""
    tuned_from = ABLATIONS[name].tuned
    return run_metrics(name) + (run_metrics(tuned_from) if tuned_from else [])


def table_configs(name):
    tuned_from = ABLATIONS[name].tuned
    return run_configs(name) + (run_configs(tuned_from) if tuned_from else [])


def tuned_values(w):
    """A run of a `tuned:` ablation: its config.yaml is written from the tuned-values file (and the teacher it
    was tuned under, checked); the DAG tunes first unless config tuned_baselines names the file."""
    return [TUNED_VALUES, f"{ROOT}/teacher/teacher.pt"] if ABLATIONS[w.ablation].tuned else []


def default_run(w):
    """A run of a `tuned:` ablation: the folder of the grid's run of the same name (its default knobs); else None.
    When the tuned values are the method's defaults, the train job reuses that run's training (onestep train
    --same-as) instead of training the same config again; the tuned table reads that run anyway."""
    ab = ABLATIONS[w.ablation]
    return f"{ROOT}/{ab.tuned}/{w.run}" if ab.tuned and (ab.tuned, w.run) in RUNS else None


def same_as(w):
    d = default_run(w)
    return [f"{d}/student.pt", f"{d}/train.json"] if d else []


def same_as_arg(w):
    d = default_run(w)
    return f"--same-as {d}" if d else ""


def baseline_studies():
    """tune_baselines: every method study's summary, the tuned-values file and its table."""
    if not BASELINE_STUDIES:
        grid = config["tune_baselines"]["grid"]
        raise WorkflowError(f"tune_baselines: no study to run: tune_baselines.grid {grid!r} is "
                            + (f"not among the ablations ({', '.join(ABLATIONS)})" if grid not in ABLATIONS
                               else f"skipped here ({ABLATIONS[grid].skipped})"))
    return [f for name in BASELINE_STUDY.values() for f in study_outputs(name)] + [
        f"{ROOT}/tuned_baselines.yaml", *[f"{TABLES}/tune_baselines.{e}" for e in ("md", "tex", "csv")],
        f"{PLOTS}/tune_baselines.png"]


def study_outputs(name):
    """A study's summary: best.yaml, its trials table and figures (rule tune_summary)."""
    return [f"{OUT}/optuna/{name}/{f}" for f in ("best.yaml", "trials.md", "trials.tex", "trials.csv")] + [
        f"{OUT}/optuna/{name}/{p}.png" for p in ("history", "intermediate", "slice")]


def ablation_outputs(name):
    """Table, plot and every run's metrics: a deleted run is re-run (then the table) by the target."""
    if ABLATIONS[name].skipped:
        raise WorkflowError(ABLATIONS[name].skipped)
    return [f"{TABLES}/{name}.md", f"{PLOTS}/{name}.png", *run_metrics(name)]


def finished(name):
    """Every run the ablation's table reads has its metrics.json on disk (what `tables` rebuilds from)."""
    return not ABLATIONS[name].skipped and all(Path(f).is_file() for f in table_runs(name))


def stored_tables(w=None):
    """`tables`: the tables of every finished ablation, and the main table once all of them are finished."""
    done = [name for name in ABLATIONS if finished(name)]
    if not done:
        raise WorkflowError(f"tables: no finished ablation under {ROOT}; run one first, e.g. snakemake --cores 2 ablate_order")
    main = [f"{TABLES}/main.md"] if set(APPLICABLE) <= set(done) else []
    return [f for name in done for f in (f"{TABLES}/{name}.md", f"{PLOTS}/{name}.png")] + main
