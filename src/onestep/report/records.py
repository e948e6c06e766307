"""The stored records a table reads: metrics.json of runs, teacher rows, reference.json, the ablation spec."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from onestep.config import plain_ddim
from onestep.report import cells
from onestep.report.columns import SUPPORT


def read_json(paths) -> list[dict]:
    out = []
    for p in paths:
        with open(p) as f:
            out.append(json.load(f))
    return out


def load_spec(path: str | Path) -> dict:
    """An ablation's spec file, with its grid `points` and `axes`."""
    with open(path) as f:
        spec = yaml.safe_load(f)
    from onestep.config import grid_points

    spec["points"] = grid_points(spec, str(path))
    spec["axes"] = list(spec["points"][0])
    return spec


def setting(point: dict, axes: list[str]) -> str:
    return ", ".join(f"{a.split('.')[-1]}={point[a]}" for a in axes)


def pairs_row(t: dict) -> bool:
    """A teacher row of the pairs' own solver (teacher-eval --solver / --clip-x0), not a plain DDIM row."""
    return not plain_ddim(t.get("solver"), t.get("clip_x0"))


def teacher_label(t: dict) -> str:
    """A teacher reference row's label: 'teacher DDIM 50 steps', or the pairs' solver row's own label."""
    return t["label"] if pairs_row(t) else f"teacher DDIM {t['steps']} step{'s' * (t['steps'] > 1)}"


def references(ref: dict, teachers: list[dict]) -> list[tuple[str, dict]]:
    """The reference rows (label, metrics): the data floor, then every teacher row."""
    return [("data vs data (floor)", ref["floor"])] + [(teacher_label(t), t["metrics"]) for t in teachers]


def support_header(n) -> str:
    return f"outside support (of {n})"


def support_caption(margin) -> str:
    return " " + SUPPORT.caption.format(margin=margin)


def support_refs(teachers: list[dict]) -> list[str]:
    """The reference rows' outside-support cells: none for the floor (its draws are data), each teacher's count."""
    return [""] + [cells.num(t.get(SUPPORT.key, math.nan), 6) for t in teachers]


def present(runs, col: str) -> bool:
    """Some run has the column (a NaN where a run lacks it: a method's own numbers, support counts)."""
    return not all(math.isnan(v) for v in runs[col].to_list())
