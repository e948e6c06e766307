"""Ablation grids: each ablation file -> its runs (one resolved, checked config per grid point and seed).

`load_workflow(cfg, repo, read_tuned)` is what the Snakefile calls when the workflow is parsed: it validates
the config and every ablation file, so a bad value stops the run with one message naming the key and the
file before any job starts. Budgets that follow the dataset tier ('tier', '2x', '50%') resolve here.
"""

from __future__ import annotations

import copy
import itertools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from onestep import data
from onestep.config.files import REPO, deep_merge, merged_files, read_file, set_dotted
from onestep.config.method import method_names, with_method
from onestep.config.policy import job_device
from onestep.config.results import base_config, dataset_id, run_result_config, without_run
from onestep.config.schema import validate
from onestep.errors import ConfigError
from onestep.methods import METHODS
from onestep.outputs import differing_keys

# The method-blind budget axis (and the spec's `total_steps`): each run's optimiser steps, set by its method's
# `with_total_steps` hook (methods/base.py) whatever knobs hold them; optimiser steps, 'tier' or 'Nx' (tier_relative).
TOTAL_STEPS = "method.total_steps"


@dataclass
class Run:
    ablation: str
    name: str  # directory name, built from the grid point and the seed
    point: dict  # dotted key -> value
    seed: int
    config: dict  # fully resolved, without the sections no result depends on (NOT_IN_RESULTS: tracking)


@dataclass
class Ablation:
    name: str
    title: str
    file: str
    points: list[dict]  # grid points (dotted key -> value), in table order
    baseline: dict
    caption: str = ""
    requires: str | None = None  # a key of REQUIRES: "images" (image datasets only), "network_teacher"
    skipped: str | None = None  # why this ablation does not apply to the configured dataset
    runs: list[Run] = field(default_factory=list)
    table: str = "default"  # which tables.TABLES builder writes its table
    tuned: str | None = None  # its runs are this ablation's with the tuned values (tune_baselines); the table shows both
    total_steps: int | str | None = None  # every run's optimiser steps (the method's with_total_steps); None: its own
    reads: str | None = None  # no runs of its own: its table reads this ablation's runs (the same grid)

    @property
    def axes(self) -> list[str]:
        return list(self.points[0]) if self.points else []


def grid_points(spec: dict, where: str) -> list[dict]:
    """The ablation's points: the product of `grid` values, or the explicit `points` list (same keys each)."""
    if "grid" in spec:
        keys = list(spec["grid"])
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(spec["grid"][k] for k in keys))]
    points = spec["points"]
    for i, p in enumerate(points):
        if list(p) != list(points[0]):
            raise ConfigError(f"{where}: points[{i}]: keys {sorted(p)} differ from points[0] {sorted(points[0])}; "
                              "every point sets the same keys")
    return points


def _slug(v) -> str:
    return str(v).replace("/", "-").replace(" ", "")


def run_name(point: dict, seed: int) -> str:
    """A run's folder name: the last part of each grid key with its value, then the seed."""
    parts = [f"{k.split('.')[-1]}-{_slug(v)}" for k, v in point.items()]
    return "_".join([*parts, f"seed-{seed}"])


def _spec_ablation(spec: dict, points: list[dict], where: str) -> Ablation:
    ab = Ablation(spec["name"], spec.get("title", spec["name"]), where, points, spec.get("baseline") or {},
                  spec.get("caption", ""), spec.get("requires"), table=spec.get("table", "default"),
                  tuned=spec.get("tuned"), total_steps=spec.get("total_steps"),
                  reads=spec.get("reads"))
    if ab.baseline and ab.baseline not in [{k: p.get(k) for k in ab.baseline} for p in points]:
        raise ConfigError(f"{where}: baseline: {ab.baseline} is not one of the ablation's points")
    return ab


# `requires:` of an ablation file -> (why this config cannot run it, "" when it can; the config that can)
REQUIRES = {
    "images": (lambda cfg: "" if data.is_image(cfg["dataset"]) else
               f"runs on images only; dataset '{cfg['dataset']['name']}' is 2-D points",
               "an image config, e.g. snakemake --cores 2 {name} --configfile config/digits.yaml"),
    "network_teacher": (lambda cfg: "" if (cfg.get("teacher") or {}).get("kind") != "analytic" else
                        "starts students from the teacher's network; this tier's teacher is analytic "
                        "(teacher.kind: analytic) and has no weights",
                        "a network teacher, e.g. snakemake --cores 2 {name} (the default config)"),
}


def load_ablation(path: Path, cfg: dict) -> Ablation:
    """One ablation file: its points and, unless it does not apply to the dataset, its runs."""
    where = str(path)
    spec = read_file(path, "ablation file")
    validate(spec, "ablation", where)
    points = grid_points(spec, where)
    ab = _spec_ablation(spec, points, where)
    if ab.requires and (why := REQUIRES[ab.requires][0](cfg)):
        ab.skipped = f"{ab.name} ({where}) {why}. Run it with {REQUIRES[ab.requires][1].format(name=ab.name)}"
        return ab
    fixed = copy.deepcopy(spec.get("fixed") or {})
    base = deep_merge(base_config(cfg), {k: v for k, v in fixed.items() if k != "method"})
    tier = with_method(base, {})["method"]
    base = with_method(base, tier_relative(fixed.get("method") or {}, tier, where))
    per_method = spec.get("per_method") or {}
    if ab.reads:  # its table reads the runs of `reads` (check_reads), it trains none
        return ab
    unknown = sorted(set(per_method) - set(method_names()))
    if unknown:
        raise ConfigError(f"{where}: per_method: unknown method(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(method_names())}")
    for point in points:
        for seed in spec.get("seeds", cfg["seeds"]):
            ab.runs.append(_run(ab, base, tier, per_method, point, seed, where))
    return ab


def _run(ab: Ablation, base: dict, tier: dict, per_method: dict, point: dict, seed: int, where: str) -> Run:
    switch = point.get("method.name")
    run_cfg = with_method(base, {**per_method.get(switch, {}), "name": switch}) if switch else base
    for k, v in point.items():
        if k == "method.budget":  # 'tier' or 'Nx' (N times the tier's budget): steps of this tier
            v = tier_relative({"budget": v}, tier, f"{where}: grid")["budget"]
        if k != TOTAL_STEPS:
            run_cfg = set_dotted(run_cfg, k, v)
    steps = point.get(TOTAL_STEPS, ab.total_steps)
    if steps is not None:  # method-blind: the method's own hook sets its knobs (steps, stages, rounds, phases)
        steps = tier_relative({"budget": steps}, tier, f"{where}: {TOTAL_STEPS}")["budget"]
        run_cfg = with_method(run_cfg, METHODS[run_cfg["method"]["name"]].with_total_steps(run_cfg["method"], steps))
    name = run_name(point, seed)
    run_cfg = {**run_cfg, "seed": seed, "run": {"ablation": ab.name, "name": name, "point": point}}
    run_cfg["device"] = job_device(run_cfg)
    validate(run_cfg, "config", f"{where} (run {name})")
    return Run(ab.name, name, point, seed, run_result_config(run_cfg))


def tier_relative(fixed: dict, tier: dict, where: str) -> dict:
    """An ablation's fixed method knobs that follow the dataset tier instead of copying one tier's numbers:
    `budget: tier` is the tier's total optimiser steps (its method.budget, or K x steps_per_stage: 4000 on the
    checkerboard and digits; a tier of 10 x 100 gets 1000), `budget: "Nx"` N times that (ablate_budget's grid
    values), and `consolidation: "P%"` is P% of the budget (rounded down)."""
    out = dict(fixed)
    budget = out.get("budget")
    if isinstance(budget, str):
        steps = tier["budget"] if tier.get("budget") is not None else tier["K"] * tier["steps_per_stage"]
        if budget == "tier":
            out["budget"] = steps
        elif re.fullmatch(r"[0-9]+([.][0-9]+)?x", budget):
            out["budget"] = max(1, int(float(budget[:-1]) * steps))
        else:
            raise ConfigError(f"{where}: method.budget: {budget!r} is not a budget; allowed: optimiser steps, 'tier' "
                              f"(the tier's {steps}) or 'Nx' (N times it, e.g. '2x')")
    share = out.get("consolidation")
    if isinstance(share, str):
        if out.get("budget") is None:
            raise ConfigError(f"{where}: fixed.method.consolidation: {share!r} is a share of the budget, and "
                              "fixed.method.budget is not set; allowed: a budget (steps, or 'tier') with it")
        out["consolidation"] = int(out["budget"] * float(share.rstrip("%")) / 100)
    return out


# read_tuned(path, teacher_checkpoint) -> {method: its tuned values}: the tuned-values file's reader
# (tuning.values.read), passed in by the caller so that config/ does not import the tuning code.
ReadTuned = Callable[[str, Path], dict]


def load_workflow(cfg: dict, repo: str | Path | None = None, read_tuned: ReadTuned | None = None,
                  targets: list[str] | None = None) -> dict[str, Ablation]:
    """Validate the config and every ablation file; {target name: Ablation}. With `read_tuned` (tuning.values.read) the
    tuned-values file of `tuned_baselines` is read and checked too (unknown method or knob, another teacher,
    a method of a `tuned:` ablation missing); without it that file is not looked at. `targets`: the requested
    targets; when each names an ablation, another ablation whose grid this config cannot run is skipped with a
    warning (any other target, or none known: every grid must be valid)."""
    validate(cfg, "config", "config")
    try:
        data.check(cfg["dataset"])
    except data.DataError as e:
        raise ConfigError(f"config: {e}") from e
    values = None
    if cfg.get("tuned_baselines") and read_tuned is not None:
        values = read_tuned(cfg["tuned_baselines"], Path(cfg["out"]) / dataset_id(cfg) / "teacher" / "teacher.pt")
    out = _ablations(cfg, repo, targets)
    for ab in out.values():
        check_reads(ab, out)
        if ab.tuned and not ab.skipped:
            check_tuned(ab, out, cfg)
            missing = [] if values is None else sorted({r.config["method"]["name"] for r in ab.runs} - set(values))
            if missing:
                raise ConfigError(f"{cfg['tuned_baselines']}: methods.{missing[0]}: missing; {ab.name} ({ab.file}) "
                                  f"runs {', '.join(missing)} with tuned values; the file has: "
                                  f"{', '.join(values) or '(none)'}")
    return out


def check_files(paths: list[str | Path], defaults: str | Path | None = None, read_tuned: ReadTuned | None = None,
                check_studies: Callable[[dict, dict[str, Ablation]], object] | None = None) -> dict[str, Ablation]:
    """`onestep check-config`: the defaults and each file over them (merged_files), then load_workflow, then
    `check_studies(cfg, ablations)` (tuning.studies.study_configs: tune_baselines' studies, as the workflow builds them)."""
    cfg = merged_files(paths, defaults)
    ablations = load_workflow(cfg, read_tuned=read_tuned)
    if check_studies is not None:
        check_studies(cfg, ablations)
    return ablations


def _ablations(cfg: dict, repo: str | Path | None, targets: list[str] | None = None) -> dict[str, Ablation]:
    """Every ablation file of `ablations_dir` (relative to the repository), by name; when every target names an
    ablation, another one that this config cannot run is skipped, its reason printed as a warning."""
    adir = Path(cfg.get("ablations_dir", "config/ablations"))
    if not adir.is_absolute():
        adir = Path(repo or REPO) / adir
    if not adir.is_dir():
        raise ConfigError(f"config: ablations_dir: folder not found: {adir}")
    out, paths = {}, sorted(adir.glob("*.yaml"))
    names = {(read_file(p, "ablation file") or {}).get("name") for p in paths} if targets else set()
    strict = set(targets) & names if targets and all(t in names or _typo(t, names) for t in targets) else None
    for path in paths:
        try:
            ab = load_ablation(path, cfg)
        except ConfigError as e:
            name = (read_file(path, "ablation file") or {}).get("name") if strict is not None else None
            if name is None or name in strict:
                raise
            ab = Ablation(name, name, str(path), [], {}, skipped=f"{name} is not valid with this config ({e})")
            print(f"warning: {name} left out (not a requested target): {e}", file=sys.stderr)
        if ab.name in out:
            raise ConfigError(f"{path}: name: '{ab.name}' is already used by {out[ab.name].file}")
        out[ab.name] = ab
    return out


def _typo(target: str, names: set) -> bool:
    """A mistyped ablation name (close to one): the workflow's target check names the valid ones."""
    import difflib

    return bool(difflib.get_close_matches(target, [n for n in names if n], n=1, cutoff=0.8))


def check_tuned(ab: Ablation, ablations: dict[str, Ablation], cfg: dict) -> None:
    """An ablation with `tuned: X` repeats X's runs (same names, configs equal but for the run's bookkeeping), X
    being the ablation the studies start from (tune_baselines.grid): its table compares default and tuned only."""
    where, grid = f"{ab.file}: tuned", cfg["tune_baselines"]["grid"]
    if ab.tuned != grid:
        raise ConfigError(f"{where}: {ab.tuned!r} is not the ablation the values are tuned on; allowed: {grid!r} "
                          "(config tune_baselines.grid)")
    src = ablations.get(ab.tuned)
    if src is None or src.tuned:
        raise ConfigError(f"{where}: {ab.tuned!r} is not an ablation of default runs; allowed: "
                          f"{', '.join(n for n, a in ablations.items() if not a.tuned)}")
    if ab.skipped or src.skipped:
        return
    if "method.name" not in ab.axes:
        raise ConfigError(f"{where}: {ab.name} has no method.name axis; the tuned values are per method")
    mine = {r.name: r for r in ab.runs}
    theirs = {r.name: r for r in src.runs}
    if set(mine) != set(theirs):
        raise ConfigError(f"{where}: {ab.name}'s runs differ from {ab.tuned}'s ({src.file}): only in {ab.name}: "
                          f"{', '.join(sorted(set(mine) - set(theirs))) or '-'}; only in {ab.tuned}: "
                          f"{', '.join(sorted(set(theirs) - set(mine))) or '-'}; allowed: the same grid and seeds")
    for name, run in mine.items():
        if without_run(run.config) != without_run(theirs[name].config):
            keys = differing_keys(without_run(theirs[name].config), without_run(run.config))
            raise ConfigError(f"{where}: run {name} differs from the same run of {ab.tuned} in {', '.join(keys)}; allowed: the "
                              f"same configs (only the tuned values may differ, set when the runs are written)")


def check_reads(ab: Ablation, ablations: dict[str, Ablation]) -> None:
    """An ablation with `reads: X` (baselines_compute) has no runs: its table reads X's, so X is an ablation of runs
    with the same grid points."""
    if not ab.reads:
        return
    src = ablations.get(ab.reads)
    if src is None or src.reads or src.tuned:
        raise ConfigError(f"{ab.file}: reads: {ab.reads!r} is not an ablation of runs; allowed: "
                          f"{', '.join(n for n, a in ablations.items() if not a.reads and not a.tuned)}")
    if src.points != ab.points:
        raise ConfigError(f"{ab.file}: grid: differs from that of {ab.reads} ({src.file}); allowed: the same points")
