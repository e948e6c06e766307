"""The tuned-values file of the equal-effort baseline tuning (issue 14, item 3): per method, the values its
Optuna study found for the knobs its file declares as tunable (`Method.search_space`), and the teacher
they were tuned under. Written by the tuning, read by the baselines; checked when the workflow is parsed
(config key `tuned_baselines`), so a file naming an unknown method or knob, a value outside the declared
range, or one produced under a different teacher stops before any job, naming the file and the key.

    teacher: 3f2a9c01b7e4        # teacher_hash(teacher.pt): sha256 (12 hex digits) of the checkpoint file
    trials: 16                   # the same for every method
    methods:
      cd: {p_mean: 0.31, p_std: 1.42}
      kd: {student.lr: 0.0007}   # a dotted key: outside the method section (the student's learning rate)

The studies (target tune_baselines, workflow/rules/tune.smk): `study_configs` gives one study config per method
of the `tune_baselines.grid` ablation (baselines): that ablation's run config of the method (its first seed),
its total optimiser steps set to `tune_baselines.budget` times its own, and a `tune` section searching exactly
the method's `search_space` with `tune_baselines.trials` trials, the defaults first, no pruning; the worker is
onestep.tune's, the same as the lambda study's. `gather` (onestep tune-gather) writes this file and the studies'
table from their best.yaml files; `resolve_run` applies it to a run of an ablation with `tuned: <grid>`
(baselines_tuned) when its config.yaml is written, so the run's config.yaml records the values it trained with.
A tuned value never changes a run's budget: `apply` keeps the method's total optimiser steps (`total_steps_of`).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import yaml

from onestep.config import ConfigError


def teacher_hash(path: str | Path) -> str:
    """sha256 (12 hex digits) of the teacher checkpoint's bytes, read once per process and file version (the
    parse-time check and every tuned run's config ask for it)."""
    st = Path(path).stat()
    return _file_hash(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def space(name: str) -> dict[str, dict]:
    """The method's declared search space: {knob: {low, high, log} | {choices}}."""
    from onestep.methods import METHODS

    return dict(METHODS[name].search_space)


def check_value(where: str, spec: dict, v) -> None:
    if "choices" in spec:
        if v not in spec["choices"]:
            raise ConfigError(f"{where}: {v!r} is not a declared choice; allowed: {', '.join(map(str, spec['choices']))}")
        return
    if isinstance(v, bool) or not isinstance(v, int | float) or not spec["low"] <= v <= spec["high"]:
        raise ConfigError(f"{where}: {v!r} is outside the declared range; allowed: {spec['low']} .. {spec['high']}")


def read(path: str | Path, teacher: str | Path | None = None) -> dict[str, dict]:
    """{method: {knob: value}} of a tuned-values file, checked against every method's search space and,
    when `teacher` (a checkpoint) exists, against the teacher it was tuned under."""
    from onestep.methods import METHODS

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"tuned_baselines: cannot read {path} ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("methods"), dict) or "teacher" not in doc:
        raise ConfigError(f"{path}: needs the keys teacher (the teacher's hash) and methods ({{method: {{knob: value}}}})")
    for name, values in doc["methods"].items():
        if name not in METHODS:
            raise ConfigError(f"{path}: methods.{name}: unknown method; allowed: {', '.join(METHODS)}")
        sp = space(name)
        for knob, v in (values or {}).items():
            if knob not in sp:
                raise ConfigError(f"{path}: methods.{name}.{knob}: not a tunable knob of {name}; allowed: "
                                  f"{', '.join(sp) or '(none)'} (its search_space)")
            check_value(f"{path}: methods.{name}.{knob}", sp[knob], v)
    if teacher is not None and Path(teacher).is_file() and str(doc["teacher"]) != (now := teacher_hash(teacher)):
        raise ConfigError(f"{path}: teacher: tuned under teacher {doc['teacher']}, but {teacher} is "
                          f"{now}; allowed: values tuned under this teacher (rerun tune_baselines)")
    return {name: dict(values or {}) for name, values in doc["methods"].items()}


def write(path: str | Path, teacher: str | Path, values: dict[str, dict], trials: int) -> None:
    """The tuned-values file: every method's values checked as `read` checks them."""
    doc = {"teacher": teacher_hash(teacher), "trials": int(trials), "methods": values}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=True))
    read(path, teacher)


def key(knob: str) -> str:
    """The config key of a declared knob: `method.<knob>`, or the dotted key itself (student.lr)."""
    return knob if "." in knob else f"method.{knob}"


def knob(key: str) -> str:
    """The declared knob of a config key (the inverse of `key`)."""
    return key.removeprefix("method.")


def with_steps(cfg: dict, steps: int) -> dict:
    """`cfg` training `steps` optimiser steps in total (the method's with_total_steps), untouched when it already
    does (a section left as written keeps its config hash)."""
    from onestep.methods import METHODS

    method = METHODS[cfg["method"]["name"]]
    if method.total_steps_of(cfg["method"]) == steps:
        return cfg
    return {**cfg, "method": method.with_total_steps(cfg["method"], steps)}


def apply_keys(cfg: dict, values: dict) -> dict:
    """`cfg` with {dotted config key: value} set, its method's total optimiser steps kept as they were (a knob
    such as progressive's start_steps changes the number of rounds, not the budget)."""
    from onestep.config import set_dotted
    from onestep.methods import METHODS

    steps = METHODS[cfg["method"]["name"]].total_steps_of(cfg["method"])
    out = cfg
    for k, v in values.items():
        out = set_dotted(out, k, v)
    return with_steps(out, steps)


def apply(cfg: dict, values: dict) -> dict:
    """A run config with a method's tuned values: method knobs, or dotted keys (student.lr) elsewhere; the
    method's total optimiser steps kept (apply_keys)."""
    return apply_keys(cfg, {key(k): v for k, v in values.items()})


def resolve_run(cfg: dict, path: str | Path, teacher: str | Path) -> dict:
    """A run config (an ablation with `tuned:`) with its method's values from the tuned-values file `path`
    (checked: `read`, the teacher too), recorded under run.tuned {file, teacher, values}; validated as a run."""
    from onestep.config import validate

    values = read(path, teacher)
    name, run = cfg["method"]["name"], cfg.get("run", {})
    if name not in values:
        raise ConfigError(f"{path}: methods.{name}: missing; run {run.get('ablation')}/{run.get('name')} needs "
                          f"{name}'s tuned values; the file has: {', '.join(values) or '(none)'} (rerun tune_baselines)")
    out = apply(cfg, values[name])
    out["run"] = {**out.get("run", {}), "tuned": {"file": str(path), "teacher": teacher_hash(teacher),
                                                  "values": values[name]}}
    validate(out, "$run", f"{path} applied to run {run.get('ablation')}/{run.get('name')}")
    return out


def trained_alike(config_file: str | Path, folder: str | Path) -> Path | None:
    """`folder` (the grid's run of the same name: baselines/name-kd_seed-0 for baselines_tuned/name-kd_seed-0)
    when its finished training (student.pt, train.json) was made from exactly what the run config `config_file`
    asks for: the config its train.json records, every section but `run` equal (a method whose study kept its
    defaults: the same knobs, budget and seed); None otherwise, a training of an older config of that run too.
    Such a tuned run reuses that training (onestep train --same-as)."""
    import json

    from onestep.config import without_run

    folder = Path(folder)
    if not all((folder / f).is_file() for f in ("student.pt", "train.json")):
        return None
    mine = yaml.safe_load(Path(config_file).read_text()) or {}
    theirs = json.loads((folder / "train.json").read_text()).get("config") or {}
    return folder if without_run(mine) == without_run(theirs) else None


# ---------------------------------------------------------------- the studies (target tune_baselines)

STUDY_SECTIONS = ("dataset", "diffusion", "student", "method", "evaluation", "tune", "device")


def study_config(run_cfg: dict, cfg: dict) -> dict:
    """The config of one method's study: the grid's run config `run_cfg` with its total optimiser steps scaled by
    tune_baselines.budget (the same share for every method), the tune seed, and a `tune` section over exactly the
    method's search_space (tune_baselines.trials, .workers; defaults first; no pruning). Only the sections a
    study reads (STUDY_SECTIONS, and seed): the grid's seeds or the paper switch do not re-run a study."""
    from onestep.config import validate
    from onestep.methods import METHODS

    tb, name = cfg["tune_baselines"], run_cfg["method"]["name"]
    method = METHODS[name]
    steps = max(1, round(tb["budget"] * method.total_steps_of(run_cfg["method"])))
    out = with_steps({k: v for k, v in run_cfg.items() if k != "run"}, steps)
    trial_steps = method.total_steps_of(out["method"])
    out["tune"] = {**cfg["tune"], "study": f"tune_baselines-{name}", "n_trials": tb["trials"],
                   "workers": tb["workers"], "lambda": None, "pruner": "none", "defaults_first": True,
                   "space": {key(k): dict(spec) for k, spec in method.search_space.items()},
                   "budget": {"share": tb["budget"], "steps": trial_steps}}
    out["seed"] = cfg["tune"]["seed"]
    validate(out, "$run", f"tune_baselines: the study of {name} (run config of {run_cfg['run']['ablation']})")
    return {k: out[k] for k in (*STUDY_SECTIONS, "seed") if k in out}


def study_configs(cfg: dict, ablations: dict) -> dict[str, dict]:
    """{method: its study's config}, one per method of the tune_baselines.grid ablation, in grid order; none
    when the grid is not among the ablations (another ablations_dir) or does not apply to the dataset."""
    tb = cfg["tune_baselines"]
    grid = ablations.get(tb["grid"])
    if grid is None or grid.skipped:
        return {}
    if "method.name" not in grid.axes:
        raise ConfigError(f"config: tune_baselines.grid: {tb['grid']} ({grid.file}) has no method.name axis; allowed: "
                          "an ablation over methods (baselines)")
    out = {}
    for run in grid.runs:  # the method's first run (its first seed); the study sets its own seed
        if run.config["method"]["name"] not in out:
            out[run.config["method"]["name"]] = study_config(run.config, cfg)
    return out


def gather(best_files, teacher: str | Path, out: str | Path, out_prefix: str | Path, plot: str | Path) -> dict:
    """The tuned-values file `out` from the studies' best.yaml files (every study with the same number of trials),
    and the studies' table <out_prefix>.{md,tex,csv} and figure `plot` (report.study.tuned_table)."""
    from onestep.report.study import tuned_table

    docs = [yaml.safe_load(Path(f).read_text()) for f in best_files]
    trials = sorted({d["n_trials"] for d in docs})
    if len(trials) != 1:
        raise ConfigError(f"tune-gather: the studies ran different numbers of trials ({', '.join(map(str, trials))}): "
                          "equal effort needs the same for every method; rerun tune_baselines")
    values = {d["method"]: {knob(d["keys"][p]): v for p, v in d["params"].items()} for d in docs}
    write(out, teacher, values, trials[0])
    tuned_table(docs, values, trials[0], out_prefix, plot)
    return values
