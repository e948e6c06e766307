"""The knobs a study searches: a method's space, a study's space from its config, and a trial's suggestions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from onestep.config import get_dotted, set_dotted
from onestep.methods import METHODS
from onestep.methods.base import STUDENT_SPACE
from onestep.tuning.keys import apply_keys

if TYPE_CHECKING:  # the parse-time readers of a space (values, studies) need no optuna
    import optuna


def method_space(name: str) -> dict[str, dict]:
    """The method's search space, {knob: {low, high, log} | {choices}}: its own `search_space`, then the
    student's knobs (STUDENT_SPACE) it does not declare itself."""
    own = METHODS[name].search_space
    return {**own, **{k: v for k, v in STUDENT_SPACE.items() if k not in own}}


def study_space(cfg: dict) -> dict[str, dict]:
    """The study's knobs: {parameter name: {key: dotted config key, low, high, log} | {key, choices}}; `lambda`
    from `tune.lambda` (log-uniform) unless null, then every entry of `tune.space` (named by its key)."""
    tc = cfg["tune"]
    out = {}
    if tc.get("lambda") is not None:
        out["lambda"] = {"key": "method.lambda", "low": tc["lambda"]["low"], "high": tc["lambda"]["high"], "log": True}
    for key, spec in (tc.get("space") or {}).items():
        out[key] = {"key": key, **spec}
    return out


def _suggest_one(trial: optuna.Trial, name: str, spec: dict):
    if "choices" in spec:
        return trial.suggest_categorical(name, list(spec["choices"]))
    if all(isinstance(spec[b], int) and not isinstance(spec[b], bool) for b in ("low", "high")):
        return trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
    return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))


def suggest(trial: optuna.Trial, cfg: dict) -> dict:
    """The trial's config: every knob of the study's space (`study_space`), with the method's total optimiser
    steps kept as the config has them (keys.apply_keys), and the study's training seed."""
    out = set_dotted(cfg, "seed", cfg["tune"]["seed"])  # every trial trains with the same seed: only the knobs differ
    return apply_keys(out, {spec["key"]: _suggest_one(trial, name, spec) for name, spec in study_space(cfg).items()})


def default_params(cfg: dict) -> dict:
    """The config's own value of every parameter of the study (its defaults: the first trial with defaults_first)."""
    return {name: get_dotted(cfg, spec["key"]) for name, spec in study_space(cfg).items()}
