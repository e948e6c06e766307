"""The tuned-values file: what the studies found per method, under which teacher; read, written, applied to runs.

Per method, the values its Optuna study found for the knobs it searches (onestep.tuning.space.method_space), and
the teacher they were tuned under. Gathered from the studies' best.yaml files (`gather`, onestep tune-gather),
read by the baselines; checked when the workflow is parsed (config key `tuned_baselines`), so a file naming an
unknown method or knob, a value outside the declared range, or one produced under a different teacher stops
before any job, naming the file and the key.

    teacher: 3f2a9c01b7e4        # teacher_hash(teacher.pt): sha256 (12 hex digits) of the checkpoint file
    trials: 16                   # the same for every method
    methods:
      cd: {p_mean: 0.31, p_std: 1.42}
      kd: {student.lr: 0.0007}   # a dotted key: outside the method section (the student's learning rate)

A run applies values: `resolve_run` applies the file to a run of an ablation with `tuned: <grid>` when its
config.yaml is written, so the run's config.yaml records the values it trained with; `trained_alike` finds the
default run a tuned run can reuse. A value never changes a run's budget: `apply` keeps the method's total
optimiser steps (keys.apply_keys). `resolve_lambda` gives a run with `method.lambda: tuned` the lambda study's
best lambda (its best.yaml).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import yaml

from onestep.config import set_dotted, validate, without_run
from onestep.errors import ConfigError
from onestep.methods import METHODS
from onestep.tuning.keys import apply_keys, key, knob
from onestep.tuning.space import method_space


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
        sp = method_space(name)
        for k, v in (values or {}).items():
            if k not in sp:
                raise ConfigError(f"{path}: methods.{name}.{k}: not a tunable knob of {name}; allowed: "
                                  f"{', '.join(sp) or '(none)'} (its search_space)")
            check_value(f"{path}: methods.{name}.{k}", sp[k], v)
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


def gather(docs: list[dict], teacher: str | Path, out: str | Path) -> dict[str, dict]:
    """The tuned-values file `out` from the studies' best.yaml documents (onestep.tuning.best), every study with
    the same number of trials (equal effort); returns {method: {knob: value}}."""
    trials = sorted({d["n_trials"] for d in docs})
    if len(trials) != 1:
        raise ConfigError(f"tune-gather: the studies ran different numbers of trials ({', '.join(map(str, trials))}): "
                          "equal effort needs the same for every method; rerun tune_baselines")
    values = {d["method"]: {knob(d["keys"][p]): v for p, v in d["params"].items()} for d in docs}
    write(out, teacher, values, trials[0])
    return values


def apply(cfg: dict, values: dict) -> dict:
    """A run config with a method's tuned values: method knobs, or dotted keys (student.lr) elsewhere; the
    method's total optimiser steps kept (keys.apply_keys)."""
    return apply_keys(cfg, {key(k): v for k, v in values.items()})


def resolve_run(cfg: dict, path: str | Path, teacher: str | Path) -> dict:
    """A run config (an ablation with `tuned:`) with its method's values from the tuned-values file `path`
    (checked: `read`, the teacher too), recorded under run.tuned {file, teacher, values}; validated as a run."""
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


def resolve_lambda(cfg: dict, best_file: str | Path | None) -> dict:
    """Replace `method.lambda: tuned` with the lambda study's best lambda (best.yaml from tune_summary)."""
    if cfg["method"].get("lambda") != "tuned":
        return cfg
    if not best_file or not Path(best_file).is_file():
        raise FileNotFoundError(f"method.lambda: 'tuned' needs the study's best.yaml, not found: {best_file}")
    best = yaml.safe_load(Path(best_file).read_text())
    out = set_dotted(cfg, "method.lambda", float(best["lambda"]))
    return set_dotted(out, "run.lambda_source", f"tuned: {best['study']} trial {best['trial']} ({best_file})")


def trained_alike(config_file: str | Path, folder: str | Path) -> Path | None:
    """`folder` (the grid's run of the same name: baselines/name-<m>_seed-0 for baselines_tuned/name-<m>_seed-0)
    when its finished training (student.pt, train.json) was made from exactly what the run config `config_file`
    asks for: the config its train.json records, every section but `run` equal (a method whose study kept its
    defaults: the same knobs, budget and seed); None otherwise, a training of an older config of that run too.
    Such a tuned run reuses that training (onestep train --same-as)."""
    folder = Path(folder)
    if not all((folder / f).is_file() for f in ("student.pt", "train.json")):
        return None
    mine = yaml.safe_load(Path(config_file).read_text()) or {}
    theirs = json.loads((folder / "train.json").read_text()).get("config") or {}
    return folder if without_run(mine) == without_run(theirs) else None
