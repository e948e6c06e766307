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
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from onestep.config import ConfigError


def teacher_hash(path: str | Path) -> str:
    """sha256 (12 hex digits) of the teacher checkpoint's bytes."""
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
    if teacher is not None and Path(teacher).is_file() and str(doc["teacher"]) != teacher_hash(teacher):
        raise ConfigError(f"{path}: teacher: tuned under teacher {doc['teacher']}, but {teacher} is "
                          f"{teacher_hash(teacher)}; allowed: values tuned under this teacher (rerun tune_baselines)")
    return {name: dict(values or {}) for name, values in doc["methods"].items()}


def write(path: str | Path, teacher: str | Path, values: dict[str, dict], trials: int) -> None:
    """The tuned-values file: every method's values checked as `read` checks them."""
    doc = {"teacher": teacher_hash(teacher), "trials": int(trials), "methods": values}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=True))
    read(path, teacher)


def apply(cfg: dict, values: dict) -> dict:
    """A run config with a method's tuned values: method knobs, or dotted keys (student.lr) elsewhere."""
    from onestep.config import set_dotted

    out = cfg
    for knob, v in values.items():
        out = set_dotted(out, knob if "." in knob else f"method.{knob}", v)
    return out
