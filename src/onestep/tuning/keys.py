"""A study's knobs as config keys: knob <-> dotted key, and a config with keys set at its method's own budget."""

from __future__ import annotations

from onestep.config import set_dotted
from onestep.methods import METHODS


def key(knob: str) -> str:
    """The config key of a declared knob: `method.<knob>`, or the dotted key itself (student.lr)."""
    return knob if "." in knob else f"method.{knob}"


def knob(key: str) -> str:
    """The declared knob of a config key (the inverse of `key`)."""
    return key.removeprefix("method.")


def with_steps(cfg: dict, steps: int) -> dict:
    """`cfg` training `steps` optimiser steps in total (the method's with_total_steps), untouched when it already
    does (a section left as written keeps its config hash)."""
    method = METHODS[cfg["method"]["name"]]
    if method.total_steps_of(cfg["method"]) == steps:
        return cfg
    return {**cfg, "method": method.with_total_steps(cfg["method"], steps)}


def apply_keys(cfg: dict, values: dict) -> dict:
    """`cfg` with {dotted config key: value} set, its method's total optimiser steps kept as they were (a knob
    that sets the number of rounds or stages changes how the steps are split, not the budget)."""
    steps = METHODS[cfg["method"]["name"]].total_steps_of(cfg["method"])
    out = cfg
    for k, v in values.items():
        out = set_dotted(out, k, v)
    return with_steps(out, steps)
