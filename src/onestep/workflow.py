"""The Snakemake workflow's plan, made at parse time: the validated config, ablations, runs, studies, teacher
rows, state grids and every input function and param the rules ask for (the one module rule files import).

workflow/rules/common.smk makes one `Plan` (`Plan.load`) and binds its folders; other rule files read the plan and
the module (`wf`) alone. Input functions take Snakemake's wildcards (e.g. a SimpleNamespace in tests).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from functools import cached_property
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config

from onestep import outputs, paper, provenance, targets  # the plan's names (the rule files import none)
from onestep.config import (
    IMAGE_FLOOR,
    ConfigError,
    Teacher,
    check_device,
    dataset_id,
    gpu_per_job,
    load_workflow,
    plain_ddim,
    resolve,
    sections_json,
    yaml_values,
)
from onestep.data import is_image
from onestep.devices import visible_gpus
from onestep.methods import METHODS
from onestep.report.study import PLOTS as STUDY_PLOTS
from onestep.tuning.studies import STUDY_SECTIONS, study_configs
from onestep.tuning.values import read as read_tuned
from onestep.tuning.values import resolve_run

# The package's CLI through the interpreter that runs Snakemake: a job finds it however it is started
# (no activated venv, an sbatch job with the caller's PATH), and imports the same package.
ONESTEP = f"{shlex.quote(sys.executable)} -m onestep"

# Each job reads a config file, not JSON on its shell line: the local rules `job_config` and `run_config`
# write it from these sections, with the sections as params, so a config change re-runs the writer
# (Snakemake's params trigger), then, the file being newer, the job and everything downstream. No config
# file holds the tracking section (config.NOT_IN_RESULTS): a job that writes to MLflow reads it from the
# tracking file (--tracking), so a tracking change re-runs no job.
JOB_SECTIONS = {
    "teacher": ("dataset", "diffusion", "teacher", "device"),
    "pairs": ("dataset", "diffusion", "pairs", "device"),
    "features": ("dataset", "evaluation"),
    "trajectory": ("dataset", "diffusion", "pairs", "evaluation", "device"),
    "reference": ("dataset", "evaluation"),
    "teacher_eval": ("dataset", "diffusion", "evaluation", "device"),
    "tune": STUDY_SECTIONS,  # what a tuning worker depends on: the base config without the ablation bookkeeping
}


def _invalid(e: ConfigError) -> WorkflowError:
    return WorkflowError(f"invalid configuration: {e}")


def _either(names) -> str:
    """A wildcard constraint matching exactly `names` (none: a regex that matches nothing)."""
    return "|".join(map(re.escape, names)) or "(?!)"


class Plan:
    """What the rules read, from Snakemake's validated config and its ablations (`load` makes one)."""

    def __init__(self, config: dict, ablations: dict, baseline_studies: dict[str, dict], configfiles=()):
        c = self.config = config
        self.ablations = ablations
        self.baseline_studies = baseline_studies  # tune_baselines: {method: its study's config}
        self.configfiles = list(configfiles)
        self.out = c["out"]
        self.data = dataset_id(c)
        self.root = f"{self.out}/{self.data}"
        self.logs = f"{self.out}/logs"
        self.tables = f"{self.out}/tables/{self.data}"
        self.plots = f"{self.out}/plots/{self.data}"
        self.paper_dir = f"{self.out}/paper/{self.data}"
        # ablations of ablate_all and the main table; other tables (baselines) are targets of their own
        self.applicable = [name for name, ab in ablations.items() if not ab.skipped and ab.table == "default"]
        self.is_images = is_image(c["dataset"])
        self.use_classifier = self.is_images and c["evaluation"]["feature_net"] == "classifier"
        self.runs = {(ab.name, run.name): run for ab in ablations.values() for run in ab.runs}
        # the teacher-state grids the runs' methods read (their hook state_grid): label -> interior times
        self.state_grids = dict(g for run in self.runs.values() if (g := self._method(run).state_grid(
            run.config["method"], c["diffusion"]["T"])))
        self.gpu_per_job = gpu_per_job(c)  # 1 on images, 0 on the 2-D tier by default
        self.study = f"{c['tune']['study']}-{self.data}"
        self.baseline_study = {m: f"{s['tune']['study']}-{self.data}" for m, s in baseline_studies.items()}
        # every Optuna study: its name (folder under <out>/optuna/, MLflow parent) -> (config file, workers)
        self.studies = {self.study: (self.job_config("tune"), c["tune"]["workers"])} | {
            name: (f"{self.root}/config/tune_baselines/{m}.yaml", baseline_studies[m]["tune"]["workers"])
            for m, name in self.baseline_study.items()}
        # the tuned-values file the `tuned:` ablations apply: config tuned_baselines, else tune_baselines' output
        self.tuned_values_file = c["tuned_baselines"] or f"{self.root}/tuned_baselines.yaml"
        self.tracking_config = f"{self.out}/config/tracking.yaml"
        self.tracking = {**c["tracking"], "uri": os.environ.get("MLFLOW_TRACKING_URI") or c["tracking"]["uri"]}
        self.tracking_store = json.dumps({k: self.tracking[k] for k in ("uri", "experiment", "enabled")}, sort_keys=True)

    @classmethod
    def load(cls, config: dict, overwrite: dict | None, basedir, configfiles=()) -> Plan:
        """The plan of Snakemake's `config` (updated in place: `--config` values read as YAML, then the method
        section with every knob, what jobs see), every ablation grid validated: one message, before any job."""
        update_config(config, yaml_values(overwrite or {}))
        try:
            ablations = load_workflow(config, basedir, read_tuned=read_tuned, targets=targets.requested())
            studies = study_configs(config, ablations)
        except ConfigError as e:
            raise _invalid(e) from None
        config.update(resolve(config))
        return cls(config, ablations, studies, configfiles)

    # ---------------------------------------------------------------- set-up of a local run

    def check_local_device(self) -> None:
        """`device: cuda` on a machine without one stops here (a cluster's login node may lack a GPU: its jobs
        check)."""
        try:
            check_device(self.config)
        except ConfigError as e:
            raise _invalid(e) from None

    @property
    def wildcard_constraints(self) -> dict[str, str]:
        return {"ablation": _either([*self.ablations, *self.studies]), "study": _either(self.studies),
                "method": _either(self.baseline_studies), "worker": r"\d+", "run": "[A-Za-z0-9_.=+-]+",
                "steps": r"\d+", "noise": "pairs|eval", "grid": _either(self.state_grids)}

    def write_tracking_config(self) -> None:
        """The tracking file as this invocation's jobs will read it (the tracking section, the URI that jobs
        will use: MLFLOW_TRACKING_URI wins); left as it is (not touched) when unchanged. No rule's input:
        written as Snakemake starts its jobs, so a tracking change plans nothing."""
        path = Path(self.tracking_config)
        if not path.is_file() or outputs.read_yaml(path) != {"tracking": self.tracking}:
            outputs.write_yaml(path, {"tracking": self.tracking})

    # ---------------------------------------------------------------- config files of the jobs

    def job_config(self, kind: str) -> str:
        """The config file of a job kind (JOB_SECTIONS)."""
        return f"{self.root}/config/{kind}.yaml"

    def job_sections(self, w) -> str:
        return sections_json(self.config, *JOB_SECTIONS[w.kind])

    def run_config(self, w) -> str:
        """The config file of one run of an ablation (its whole config: grid point, seed, run name)."""
        return f"{self.root}/{w.ablation}/{w.run}/config.yaml"

    def run_config_json(self, w) -> str:
        return json.dumps(self.runs[(w.ablation, w.run)].config, sort_keys=True)

    def study_config_json(self, w) -> str:
        return json.dumps(self.baseline_studies[w.method], sort_keys=True)

    def run_hash(self, w) -> str:
        """The hash of a run's config as train.json records it (outputs.config_hash): params of its evaluation,
        so a config change re-runs it. A `tuned:` run's file adds the tuned values (an input: a change re-runs)."""
        return outputs.config_hash(self.runs[(w.ablation, w.run)].config)

    # ---------------------------------------------------------------- what a run reads

    @staticmethod
    def _method(run):
        return METHODS[run.config["method"]["name"]]

    def lambda_best(self, w) -> list[str]:
        """best.yaml of the lambda study when this run asks for `method.lambda: tuned` (the DAG tunes first)."""
        asks = self.runs[(w.ablation, w.run)].config["method"].get("lambda") == "tuned"
        return [f"{self.out}/optuna/{self.study}/best.yaml"] if asks else []

    def lambda_best_arg(self, w) -> str:
        return " ".join(f"--tuned {f}" for f in self.lambda_best(w))

    def _states(self, w, noise: str) -> list[str]:
        """The teacher's DDIM states a run's method reads (its hooks state_grid, train_states, eval_states):
        of the pairs' z for training (`pairs`), of the held-out stage noise for evaluation (`eval`)."""
        run = self.runs[(w.ablation, w.run)]
        m, cls = run.config["method"], self._method(run)
        wanted = cls.train_states(m) if noise == "pairs" else cls.eval_states(m)
        grid = cls.state_grid(m, self.config["diffusion"]["T"]) if wanted else None
        return [f"{self.root}/teacher/trajectory/{noise}-{grid[0]}.npz"] if grid else []

    def pair_states(self, w) -> list[str]:
        return self._states(w, "pairs")

    def pair_states_arg(self, w) -> str:
        return " ".join(f"--trajectory {f}" for f in self.pair_states(w))

    def stage_states(self, w) -> list[str]:
        return self._states(w, "eval")

    def stage_states_arg(self, w) -> str:
        return " ".join(f"--trajectory {f}" for f in self.stage_states(w))

    def features(self, w=None) -> list[str]:
        return [f"{self.root}/features.pt"] if self.use_classifier else []

    def features_arg(self, w=None) -> str:
        return f"--features {self.root}/features.pt" if self.use_classifier else ""

    def tuned_values(self, w) -> list[str]:
        """A run of a `tuned:` ablation: its config.yaml is written from the tuned-values file (and the teacher it
        was tuned under, checked); the DAG tunes first unless config tuned_baselines names the file."""
        return [self.tuned_values_file, f"{self.root}/teacher/teacher.pt"] if self.ablations[w.ablation].tuned else []

    def default_run(self, w) -> str | None:
        """A run of a `tuned:` ablation: the folder of the grid's run of the same name (its default knobs); else
        None. When the tuned values are the method's defaults, the train job reuses that run's training (onestep
        train --same-as) instead of training the same config again; the tuned table reads that run anyway."""
        ab = self.ablations[w.ablation]
        return f"{self.root}/{ab.tuned}/{w.run}" if ab.tuned and (ab.tuned, w.run) in self.runs else None

    def same_as(self, w) -> list[str]:
        d = self.default_run(w)
        return [f"{d}/student.pt", f"{d}/train.json"] if d else []

    def same_as_arg(self, w) -> str:
        d = self.default_run(w)
        return f"--same-as {d}" if d else ""

    # ---------------------------------------------------------------- the teacher's jobs

    @property
    def pretrained(self) -> list[str]:
        """teacher.pretrained (a local diffusers folder): the teacher rule imports it instead of training."""
        pre = Teacher.of(self.config).pretrained
        return [pre] if pre else []

    def trajectory_pairs(self, w) -> list[str]:
        return [f"{self.root}/teacher/pairs.npz"] if w.noise == "pairs" else []

    def trajectory_pairs_arg(self, w) -> str:
        return " ".join(f"--pairs {f}" for f in self.trajectory_pairs(w))

    def grid_times(self, w) -> str:
        return " ".join(map(str, self.state_grids[w.grid]))

    @property
    def reference_params(self) -> dict:
        """Images: how the floor is drawn (a new way re-runs the reference rule)."""
        return {"floor": IMAGE_FLOOR} if self.is_images else {}

    @property
    def teacher_rows(self) -> list[str]:
        """The teacher rows of every table: DDIM at evaluation.teacher_steps, and the pairs' own solver unless it
        is one of them (a plain DDIM solve with one of those step counts)."""
        steps, pc = self.config["evaluation"]["teacher_steps"], self.config["pairs"]
        pairs_row = not plain_ddim(pc["solver"], pc["clip_x0"]) or pc["ddim_steps"] not in steps
        return [f"{self.root}/teacher/ddim-{s}/metrics.json" for s in steps] + (
            [f"{self.root}/teacher/pairs-solver/metrics.json"] if pairs_row else [])

    @property
    def pairs_solver_args(self) -> str:
        pc = self.config["pairs"]
        clip = f" --clip-x0 {pc['clip_x0']}" if pc["clip_x0"] is not None else ""
        return f"--steps {pc['ddim_steps']} --solver {pc['solver']}{clip}"

    # ---------------------------------------------------------------- ablations, tables and studies

    def spec_file(self, w) -> str:
        """The ablation's YAML, relative to the working directory where it lies below it: a moved or copied
        project folder plans nothing again (Snakemake's input trigger compares paths)."""
        path = Path(self.ablations[w.ablation].file).resolve()
        return os.path.relpath(path) if path.is_relative_to(Path.cwd().resolve()) else str(path)

    def _runs_of(self, name: str, file: str) -> list[str]:
        return [f"{self.root}/{name}/{run.name}/{file}" for run in self.ablations[name].runs]

    def _read_by_table(self, name: str) -> list[str]:
        """An ablation, the one whose default runs a `tuned:` ablation repeats, the one a `reads:` one's table reads."""
        return [name] + [n for n in (self.ablations[name].tuned, self.ablations[name].reads) if n]

    def table_runs(self, w) -> list[str]:
        """The runs' metrics an ablation's table reads: its own, and a `tuned:` ablation's default runs."""
        return [f for n in self._read_by_table(w.ablation) for f in self._runs_of(n, "metrics.json")]

    def table_configs(self, w) -> list[str]:
        return [f for n in self._read_by_table(w.ablation) for f in self._runs_of(n, "config.yaml")] + [
            self.job_config("teacher_eval"), self.job_config("reference")]

    def parent_kind(self, w) -> str:
        return "study" if w.ablation in self.studies else "ablation"

    def study_file(self, w) -> str:
        return self.studies[w.study][0]

    def study_workers(self, w) -> list[str]:
        return [f"{self.out}/optuna/{w.study}/worker-{i}.json" for i in range(self.studies[w.study][1])]

    def study_outputs(self, name: str) -> list[str]:
        """A study's summary: best.yaml, its trials table and figures (rule tune_summary)."""
        return [f"{self.out}/optuna/{name}/{f}" for f in ("best.yaml", "trials.md", "trials.tex", "trials.csv")] + [
            f"{self.out}/optuna/{name}/{p}.png" for p in STUDY_PLOTS]

    def baseline_targets(self, w=None) -> list[str]:
        """tune_baselines: every method study's summary, the tuned-values file and its table."""
        if not self.baseline_studies:
            grid = self.config["tune_baselines"]["grid"]
            raise WorkflowError(f"tune_baselines: no study to run: tune_baselines.grid {grid!r} is "
                                + (f"not among the ablations ({', '.join(self.ablations)})" if grid not in self.ablations
                                   else f"skipped here ({self.ablations[grid].skipped})"))
        return [f for name in self.baseline_study.values() for f in self.study_outputs(name)] + [
            f"{self.root}/tuned_baselines.yaml", *[f"{self.tables}/tune_baselines.{e}" for e in ("md", "tex", "csv")],
            f"{self.plots}/tune_baselines.png"]

    def baseline_bests(self) -> list[str]:
        return [f"{self.out}/optuna/{name}/best.yaml" for name in self.baseline_study.values()]

    def ablation_outputs(self, name: str) -> list[str]:
        """Table, plot and every run's metrics: a deleted run is re-run (then the table) by the target."""
        if self.ablations[name].skipped:
            raise WorkflowError(self.ablations[name].skipped)
        return [f"{self.tables}/{name}.md", f"{self.plots}/{name}.png", *self._runs_of(name, "metrics.json")]

    def ablation_target(self, name: str):
        """The input of target `name`: its outputs, or (skipped here) a function that says why when asked."""
        return (lambda w: self.ablation_outputs(name)) if self.ablations[name].skipped else self.ablation_outputs(name)

    def finished(self, name: str) -> bool:
        """Every run the ablation's table reads has its metrics.json on disk (what `tables` rebuilds from)."""
        return not self.ablations[name].skipped and all(
            Path(f).is_file() for n in self._read_by_table(name) for f in self._runs_of(n, "metrics.json"))

    def stored_tables(self, w=None) -> list[str]:
        """`tables`: the tables of every finished ablation, and the main table once all of them are finished."""
        done = [name for name in self.ablations if self.finished(name)]
        if not done:
            raise WorkflowError(f"tables: no finished ablation under {self.root}; run one first, e.g. "
                                "snakemake --cores 2 ablate_order")
        main = [f"{self.tables}/main.md"] if set(self.applicable) <= set(done) else []
        return [f for name in done for f in (f"{self.tables}/{name}.md", f"{self.plots}/{name}.png")] + main

    def main_inputs(self) -> list[str]:
        return [f"{self.tables}/{name}.csv" for name in self.applicable]

    # ---------------------------------------------------------------- the paper target

    @cached_property
    def paper(self) -> dict[str, dict]:
        """name -> artefact of `snakemake paper` (paper.artefacts)."""
        return paper.artefacts(self.config, self.ablations, bool(self.baseline_studies), (self.tables, self.plots),
                               f"{self.out}/optuna/{self.study}", self.configfiles)

    def paper_spec(self) -> str:
        return paper.spec_json(self.data, self.config, self.paper, self.configfiles)

    def paper_sources(self, w) -> list[str]:
        return self.paper[w.name]["sources"]

    def paper_files(self) -> list[str]:
        return [f"{self.paper_dir}/{name}.{ext}" for name in self.paper for ext in ("md", "tex", "csv", "png")]


# ---------------------------------------------------------------- the local rules' bodies and helpers


local_gpus = visible_gpus  # the GPUs a local run may hand out (`gpu=1` jobs at once; none: the jobs run on CPU)
code = provenance.rule_param  # a rule's param `code`: the hash of the source files its job runs (a change re-runs it)


def write_config(cfg_json: str, out: str) -> None:
    """A job's config file from its params (JSON, sorted keys: a change re-runs the writer)."""
    outputs.write_yaml(out, json.loads(cfg_json))


def write_run_config(cfg_json: str, tuned: list[str], out: str) -> None:
    """A run's config.yaml; for a `tuned:` ablation (tuned = [tuned-values file, teacher.pt]) with its method's
    tuned values applied (checked against the teacher), recorded under run.tuned."""
    cfg = json.loads(cfg_json)
    if tuned:
        cfg = resolve_run(cfg, tuned[0], tuned[1])
    outputs.write_yaml(out, cfg)


def prefix(name: str, suffix: str):
    """A param: output `name` without `suffix` (a table's --out-prefix), derived from it (so no param of its own)."""

    def of(wildcards, output):
        return str(getattr(output, name))[: -len(suffix)]

    return of


def folder(name: str, io: str = "input"):
    """A param: the folder of input (or output) `name` (a run's folder), derived from it."""

    def of(wildcards, input, output):  # noqa: A002 (Snakemake passes them by these names)
        return os.path.dirname(getattr(input if io == "input" else output, name))

    return of
