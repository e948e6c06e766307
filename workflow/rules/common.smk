# Parse-time set-up: validate the config and every ablation grid (one message, before any job).
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from onestep.data import is_image
from onestep.config import ConfigError, check_device, dataset_id, gpu_per_job, load_workflow, resolve, sections
from onestep.devices import visible_gpus

try:
    ABLATIONS = load_workflow(config, workflow.basedir)
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
TEACHER_STEPS = config["evaluation"]["teacher_steps"]
# the teacher rows of every table: DDIM at TEACHER_STEPS, and the pairs' own solver unless it is one of them
_PC = config["pairs"]
PAIRS_ROW = _PC.get("solver", "ddim") != "ddim" or _PC.get("clip_x0") is not None or _PC["ddim_steps"] not in TEACHER_STEPS
TEACHER_ROWS = [f"{ROOT}/teacher/ddim-{s}/metrics.json" for s in TEACHER_STEPS] + (
    [f"{ROOT}/teacher/pairs-solver/metrics.json"] if PAIRS_ROW else [])
STUDY = f"{config['tune']['study']}-{DATA}"
# what a tuning worker depends on: the base config without the ablation bookkeeping
TUNE_SECTIONS = ("dataset", "diffusion", "student", "method", "evaluation", "tune", "tracking", "device")


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
    ablation="|".join([*ABLATIONS, STUDY]),
    worker=r"\d+",
    run="[A-Za-z0-9_.=+-]+",
    steps=r"\d+",


# Each job reads a config file, not JSON on its shell line: the local rules `job_config` and `run_config`
# (configs.smk) write it from these sections, with the sections as params, so a config change re-runs
# the writer (Snakemake's params trigger), then, the file being newer, the job and everything downstream.
JOB_SECTIONS = {
    "tracking": ("tracking", "dataset"),
    "teacher": ("dataset", "diffusion", "teacher", "tracking", "device"),
    "pairs": ("dataset", "diffusion", "pairs", "device"),
    "features": ("dataset", "evaluation"),
    "reference": ("dataset", "evaluation"),
    "teacher_eval": ("dataset", "diffusion", "evaluation", "tracking", "device"),
    "tune": TUNE_SECTIONS,
}


def job_config(kind):
    """The config file of a job kind (JOB_SECTIONS)."""
    return f"{ROOT}/config/{kind}.yaml"


def run_config(w):
    """The config file of one run of an ablation (its whole config: grid point, seed, run name)."""
    return f"{ROOT}/{w.ablation}/{w.run}/config.yaml"


def tuned(w):
    """best.yaml of the lambda study when this run asks for `method.lambda: tuned` (the DAG tunes first)."""
    return [f"{OUT}/optuna/{STUDY}/best.yaml"] if RUNS[(w.ablation, w.run)].config["method"].get("lambda") == "tuned" else []


def tuned_arg(w):
    return " ".join(f"--tuned {f}" for f in tuned(w))




def features(w=None):
    return [f"{ROOT}/features.pt"] if USE_CLASSIFIER else []


def features_arg(w=None):
    return f"--features {ROOT}/features.pt" if USE_CLASSIFIER else ""


def run_metrics(name):
    return [f"{ROOT}/{name}/{run.name}/metrics.json" for run in ABLATIONS[name].runs]


def ablation_outputs(name):
    """Table, plot and every run's metrics: a deleted run is re-run (then the table) by the target."""
    if ABLATIONS[name].skipped:
        raise WorkflowError(ABLATIONS[name].skipped)
    return [f"{TABLES}/{name}.md", f"{PLOTS}/{name}.png", *run_metrics(name)]


def finished(name):
    """Every run of the ablation has its metrics.json on disk (what `tables` rebuilds from)."""
    return not ABLATIONS[name].skipped and all(Path(f).is_file() for f in run_metrics(name))


def stored_tables(w=None):
    """`tables`: the tables of every finished ablation, and the main table once all of them are finished."""
    done = [name for name in ABLATIONS if finished(name)]
    if not done:
        raise WorkflowError(f"tables: no finished ablation under {ROOT}; run one first, e.g. snakemake --cores 2 ablate_order")
    main = [f"{TABLES}/main.md"] if set(APPLICABLE) <= set(done) else []
    return [f for name in done for f in (f"{TABLES}/{name}.md", f"{PLOTS}/{name}.png")] + main
