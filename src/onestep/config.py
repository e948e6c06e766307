"""Configuration: defaults + ablation grid -> one resolved, schema-checked config per run.

The Snakefile calls `load_workflow(config, repo)` when the workflow is parsed, so every bad value
stops the run with one message naming the key (and the file) before any job starts.

The `method` section is checked against the method's own knobs: its schema, its defaults and its
cross-key rules all come from the method's dataclass (`METHODS[name].Config`, methods/base.py), so a
config names only the knobs it changes and each resolved run config holds every knob.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from onestep.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "workflow" / "schemas"


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def yaml_values(over):
    """`--config` overrides with their values read as YAML. Snakemake parses `key=value` as an int, a
    float or a bool, else with YAML's BaseLoader, which keeps every scalar inside a list or mapping a
    string (`seeds=[0]` -> ['0']); each string is read again with yaml.safe_load (`[0]` -> [0])."""
    if isinstance(over, dict):
        return {k: yaml_values(v) for k, v in over.items()}
    if isinstance(over, list):
        return [yaml_values(v) for v in over]
    if isinstance(over, str):
        try:
            return yaml.safe_load(over)
        except yaml.YAMLError:
            return over
    return over


def plain_ddim(solver: str | None, clip_x0) -> bool:
    """pairs.solver / clip_x0 (or a teacher row's) naming a plain DDIM solve, the reference rows' sampler:
    solver ddim and no clipping; else the pairs' own solver row (tables, teacher-eval, the workflow's rows)."""
    return (solver or "ddim") == "ddim" and clip_x0 is None


def get_dotted(cfg: dict, key: str):
    """The value at a dotted key (method.lambda)."""
    return _get(cfg, key.split("."))


def set_dotted(cfg: dict, key: str, value) -> dict:
    out = copy.deepcopy(cfg)
    node = out
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return out


def _key(path) -> str:
    s = ""
    path = list(path)
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "<top level>"


def _describe(schema: dict) -> str:
    if "const" in schema:
        return repr(schema["const"])
    bounds = [f"{op} {schema[k]}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
              if k in schema]
    return " ".join([f"a {schema.get('type', 'value')}", *bounds])


def _message(err, prefix: tuple = ()) -> str:
    key, v = _key([*prefix, *err.absolute_path]), err.validator_value
    if err.validator == "enum":
        return f"{key}: {err.instance!r} is not allowed; allowed values: {', '.join(map(str, v))}"
    if err.validator == "type":
        return f"{key}: {err.instance!r} must be of type {v if isinstance(v, str) else ' or '.join(v)}"
    if err.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[err.validator]
        return f"{key}: {err.instance!r} is out of range; allowed: {op} {v}"
    if err.validator == "additionalProperties":
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        return f"{key}: unknown key(s) {', '.join(extra)}; allowed keys: {allowed}"
    if err.validator == "oneOf":
        return f"{key}: {err.instance!r} is not allowed; allowed: {' or '.join(_describe(x) for x in v)}"
    if err.validator == "required":
        return f"{key}: {err.message}"
    return f"{key}: {err.message}"


def method_names() -> list[str]:
    """The registered methods (methods.METHODS), in registry order."""
    from onestep.methods import METHODS

    return list(METHODS)


@functools.cache
def _schema_file(name: str) -> dict:
    """workflow/schemas/<name>.schema.yaml, read once per process (a grid of 1000 runs validates 1000 configs
    against it: reading it each time was most of `snakemake -n`'s planning time). Never mutated."""
    with open(SCHEMAS / f"{name}.schema.yaml") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def _validator(name: str, method=None):
    """The JSON-schema validator of a schema file (`name`), of the `net` definition (`$net`) or of a method's
    section (`$method`, the method's Config class): built once per process."""
    import jsonschema

    if name == "$net":
        defs = _schema_file("config")["$defs"]
        schema = {"$defs": defs, **defs["net"]}
    elif name == "$run":  # a grid run's config file: the config without the keys no run reads (run_result_config)
        schema = dict(_schema_file("config"))
        schema["required"] = [k for k in schema.get("required", []) if k not in (*NOT_IN_RESULTS, *NOT_IN_RUNS)]
    elif name == "$method":
        cls, mname = method
        schema = cls.schema(mname)
    else:
        schema = _schema_file(name)
    return jsonschema.Draft202012Validator(schema)


def _check(instance, schema: str | dict, where: str, prefix: tuple = ()) -> None:
    import jsonschema

    v = _validator(schema) if isinstance(schema, str) else jsonschema.Draft202012Validator(schema)
    _raise_first(v, instance, where, prefix)


def _raise_first(validator, instance, where: str, prefix: tuple = ()) -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{where}: {_message(errors[0], prefix)}")


def _non_finite(node, path: tuple = ()):
    """The first NaN or infinite number in a config (its key path), else None."""
    import math

    if isinstance(node, float) and not math.isfinite(node):
        return path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        found = _non_finite(v, (*path, k))
        if found is not None:
            return found
    return None


def check_finite(cfg, where: str) -> None:
    """YAML's .nan / .inf are floats that pass every bound of a JSON schema: refuse them by key."""
    path = _non_finite(cfg)
    if path is not None:
        value = _get(cfg, path)
        raise ConfigError(f"{where}: {_key(path)}: {value} is not allowed; allowed: a finite number")


def _get(node, path):
    for k in path:
        node = node[k]
    return node


def check_method_nets(m: dict, where: str, path: tuple = ("method",)) -> None:
    """A method's own networks (e.g. method.adversarial.net) against the config schema's `net` keys."""
    for k, v in m.items():
        if k == "net" and isinstance(v, dict):
            _raise_first(_validator("$net"), v, where, (*path, k))
        elif isinstance(v, dict):
            check_method_nets(v, where, (*path, k))


def validate(cfg: dict, schema: str = "config", where: str = "config") -> None:
    """Check against workflow/schemas/<schema>.schema.yaml (and, for a config, the method section
    against its dataclass's schema and rules); raise ConfigError with one message. `$run`: a grid run's
    config file (the config schema without the keys no run reads, run_result_config)."""
    check_finite(cfg, where)
    _check(cfg, schema, where)
    if schema not in ("config", "$run"):
        return
    from onestep.methods import METHODS

    name, names = cfg["method"]["name"], method_names()
    if name not in names:
        raise ConfigError(f"{where}: method.name: {name!r} is not allowed; allowed values: {', '.join(names)}")
    _raise_first(_validator("$method", (METHODS[name].Config, name)), cfg["method"], where, ("method",))
    check_method_nets(cfg["method"], where)
    try:
        METHODS[name].Config.check(method_section(cfg["method"]), cfg)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    check_semantics(cfg, where)


def method_section(section: dict) -> dict:
    """`section` over its method's defaults (every knob of METHODS[name].Config); as is for an unknown name."""
    from onestep.methods import METHODS, defaults

    name = section.get("name")
    return deep_merge(defaults(name), section) if name in METHODS else copy.deepcopy(section)


def resolve(cfg: dict) -> dict:
    """`cfg` with its method section filled from the method's dataclass defaults."""
    return {**cfg, "method": method_section(cfg["method"])}


def with_method(cfg: dict, section: dict) -> dict:
    """`cfg` with its method section set from `section` (nested keys), every knob filled. Switching to
    another method starts from that method's dataclass defaults, not the current method's keys."""
    name = section.get("name", cfg["method"]["name"])
    start = cfg["method"] if name == cfg["method"]["name"] else {"name": name}
    return {**cfg, "method": method_section(deep_merge(start, section))}


def check_semantics(cfg: dict, where: str) -> None:
    """Rules a JSON schema cannot say, outside the method section (the method's own: `Config.check`)."""
    if "tune" in cfg:  # (a grid run's config file has no tune section: NOT_IN_RUNS)
        check_tune(cfg, where)
    ds = cfg["dataset"]
    if ds["name"] in ("npz", "folder") and not ds.get("path"):
        raise ConfigError(f"{where}: dataset.path: dataset '{ds['name']}' needs a path (an .npz file or image folder)")
    check_gpu_tier(cfg, where)


def check_tune(cfg: dict, where: str) -> None:
    if cfg["tune"]["lambda"] is not None:
        lo, hi = cfg["tune"]["lambda"]["low"], cfg["tune"]["lambda"]["high"]
        if lo >= hi:
            raise ConfigError(f"{where}: tune.lambda: low ({lo}) must be below high ({hi})")
    for k, spec in (cfg["tune"].get("space") or {}).items():
        if "low" in spec and spec["low"] >= spec["high"]:
            raise ConfigError(f"{where}: tune.space.{k}: low ({spec['low']}) must be below high ({spec['high']})")
    beat, grace = cfg["tune"]["heartbeat_s"], cfg["tune"]["grace_s"]
    if grace < 2 * beat:
        raise ConfigError(f"{where}: tune.grace_s: {grace} is below two heartbeats (tune.heartbeat_s = {beat}); a live "
                          f"trial would be taken for dead; allowed: grace_s >= {2 * beat}")
    if cfg["tune"]["validation"]["noise_seed"] == cfg["evaluation"]["noise_seed"]:
        raise ConfigError(f"{where}: tune.validation.noise_seed: must differ from evaluation.noise_seed "
                          f"({cfg['evaluation']['noise_seed']}); the study must not see the evaluation noise")


def check_gpu_tier(cfg: dict, where: str) -> None:
    """The paper tier's keys: a pretrained teacher folder, accumulation, the Inception test double."""
    import os

    pre = cfg["teacher"].get("pretrained")
    if pre and not Path(pre).is_dir():
        raise ConfigError(f"{where}: teacher.pretrained: folder not found: {pre} (a local diffusers UNet2DModel + "
                          "DDPMScheduler directory, e.g. google/ddpm-cifar10-32)")
    if cfg["student"].get("pretrained"):
        raise ConfigError(f"{where}: student.pretrained: only the teacher can be loaded from a diffusers folder; "
                          "the student starts from the teacher (student.init_from_teacher)")
    for sec in ("teacher", "student"):
        b, k = cfg[sec].get("batch_size", 1), cfg[sec].get("grad_accum", 1)
        if b % k:
            raise ConfigError(f"{where}: {sec}.grad_accum: {k} must divide {sec}.batch_size ({b}), the global batch")
    if cfg["evaluation"].get("feature_net") == "test_double" and os.environ.get("ONESTEP_ALLOW_TEST_DOUBLE") != "1":
        raise ConfigError(f"{where}: evaluation.feature_net: 'test_double' is the test suite's random stand-in for "
                          "Inception (meaningless FID), refused unless ONESTEP_ALLOW_TEST_DOUBLE=1; use 'inception'")


def check_device(cfg: dict, where: str = "config") -> None:
    """`device: cuda[:N]` / `mps` on a machine that lacks it stops at parse time (local runs; a cluster's
    login node may have no GPU, its jobs check again where they run)."""
    from onestep.devices import device_problem, torch_devices

    want = cfg.get("device", "auto")
    if want in ("auto", "cpu"):
        return  # always possible; no torch import at parse time
    problem = device_problem(want, *torch_devices())
    if problem:
        raise ConfigError(f"{where}: {problem}")


def gpu_per_job(cfg: dict) -> int:
    """GPUs a training / sampling job requests: `gpu_per_job`, where `auto` is 1 on images, 0 on 2-D points."""
    want = cfg.get("gpu_per_job", "auto")
    from onestep.data import is_image

    return int(is_image(cfg["dataset"])) if want == "auto" else int(want)


def job_device(cfg: dict) -> str:
    """The `device` a job is given: `auto` becomes `cpu` where the job requests no GPU (gpu_per_job 0), so a
    local 2-D job does not take a GPU slot that Snakemake never counted for it."""
    want = cfg.get("device", "auto")
    return "cpu" if want == "auto" and gpu_per_job(cfg) == 0 else want


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
    requires: str | None = None  # "images": runs only on an image dataset
    skipped: str | None = None  # why this ablation does not apply to the configured dataset
    runs: list[Run] = field(default_factory=list)
    table: str = "default"  # which tables.TABLES builder writes its table
    tuned: str | None = None  # its runs are this ablation's with the tuned values (tune_baselines); the table shows both

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
    parts = [f"{k.split('.')[-1]}-{_slug(v)}" for k, v in point.items()]
    return "_".join([*parts, f"seed-{seed}"])


# Config sections no result depends on: validated with the config, then left out of every run's and job's
# config file (and so of the config hash the results record). A job reads them from the one tracking file
# (results/config/tracking.yaml, `--tracking`): changing tracking.required, timeout_s or the experiment
# re-runs no training or evaluation; only the MLflow set-up rules look at them.
NOT_IN_RESULTS = ("tracking",)


def result_config(cfg: dict) -> dict:
    """`cfg` without the sections no result depends on (NOT_IN_RESULTS): what a run's config file holds."""
    return {k: v for k, v in cfg.items() if k not in NOT_IN_RESULTS}


# How the images' data floor is drawn (evaluate.image_floor, recorded in reference.json). The reference rule
# takes it as a param, so changing how the floor is computed re-runs that rule (a code change alone would not).
IMAGE_FLOOR = "with-replacement, held-out half"

# keys a grid run never reads: the Optuna studies' settings (a tuned run records its applied values under
# run.tuned), the tuned-values file's path, torch threads (the rule's --threads) and the output folder
NOT_IN_RUNS = ("tune", "tuned_baselines", "threads", "out")


def run_result_config(cfg: dict) -> dict:
    """What a grid run's config file holds (and its hash covers): result_config without NOT_IN_RUNS, so a
    change to the lambda study, to thread counts or to the tuned-values path re-runs no training."""
    return {k: v for k, v in result_config(cfg).items() if k not in NOT_IN_RUNS}


def base_config(cfg: dict) -> dict:
    """The config shared by every run (no per-run keys; not the folder of the grids, nor the settings of the
    equal-effort tuning, which no run reads: tuning more or adding it to the paper re-runs no ablation)."""
    return {k: v for k, v in cfg.items() if k not in ("run", "seed", "ablations_dir", "tune_baselines")}


def read_file(path: str | Path, what: str = "config file") -> dict:
    """A YAML file as a dict; ConfigError naming the file, and the line and column of a YAML error."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what} ({e.strerror or e})") from e
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{at}: not valid YAML ({problem}); check the indentation (spaces, no tabs) "
                          "and the brackets there") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: a {what} is a mapping of keys (key: value), not a {type(obj).__name__}")
    return obj


def check_files(paths: list[str | Path], defaults: str | Path | None = None) -> dict[str, Ablation]:
    """`onestep check-config`: the defaults (config/config.yaml) and each file over them, as Snakemake
    merges `--configfile A B`, then load_workflow. Snakemake reads --configfile itself and its message
    names neither the file nor the line; this does."""
    cfg = read_file(defaults or REPO / "config" / "config.yaml")
    for p in paths:
        cfg = deep_merge(cfg, read_file(p))
    ablations = load_workflow(cfg)
    from onestep.tuning import studies

    studies.study_configs(cfg, ablations)  # tune_baselines' studies, as the workflow builds them
    return ablations


def load_ablation(path: Path, cfg: dict) -> Ablation:
    where = str(path)
    spec = read_file(path, "ablation file")
    validate(spec, "ablation", where)
    points = grid_points(spec, where)
    ab = Ablation(spec["name"], spec.get("title", spec["name"]), where, points, spec.get("baseline") or {},
                  spec.get("caption", ""), spec.get("requires"), table=spec.get("table", "default"),
                  tuned=spec.get("tuned"))
    if ab.baseline and ab.baseline not in [{k: p.get(k) for k in ab.baseline} for p in points]:
        raise ConfigError(f"{where}: baseline: {ab.baseline} is not one of the ablation's points")
    from onestep import data

    if ab.requires == "images" and not data.is_image(cfg["dataset"]):
        ab.skipped = (f"{ab.name} ({where}) runs on images only; dataset '{cfg['dataset']['name']}' is 2-D points. "
                      f"Run it with an image config, e.g. snakemake --cores 2 {ab.name} --configfile config/digits.yaml")
        return ab
    fixed = copy.deepcopy(spec.get("fixed") or {})
    base = deep_merge(base_config(cfg), {k: v for k, v in fixed.items() if k != "method"})
    tier = with_method(base, {})["method"]
    base = with_method(base, tier_relative(fixed.get("method") or {}, tier, where))
    per_method = spec.get("per_method") or {}
    unknown = sorted(set(per_method) - set(method_names()))
    if unknown:
        raise ConfigError(f"{where}: per_method: unknown method(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(method_names())}")
    seeds = spec.get("seeds", cfg["seeds"])
    for point in points:
        for seed in seeds:
            switch = point.get("method.name")
            run_cfg = with_method(base, {**per_method.get(switch, {}), "name": switch}) if switch else base
            for k, v in point.items():
                if k == "method.budget":  # 'tier' or 'Nx' (N times the tier's budget): steps of this tier
                    v = tier_relative({"budget": v}, tier, f"{where}: grid")["budget"]
                run_cfg = set_dotted(run_cfg, k, v)
            name = run_name(point, seed)
            run_cfg = {**run_cfg, "seed": seed, "run": {"ablation": ab.name, "name": name, "point": point}}
            run_cfg["device"] = job_device(run_cfg)
            validate(run_cfg, "config", f"{where} (run {name})")
            ab.runs.append(Run(ab.name, name, point, seed, run_result_config(run_cfg)))
    return ab


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


def load_workflow(cfg: dict, repo: str | Path | None = None) -> dict[str, Ablation]:
    """Validate the config and every ablation file; {target name: Ablation}."""
    validate(cfg, "config", "config")
    from onestep import data

    try:
        data.check(cfg["dataset"])
    except data.DataError as e:
        raise ConfigError(f"config: {e}") from e
    values = None
    if cfg.get("tuned_baselines"):  # the tuned-values file: unknown method or knob, other teacher -> stop here
        from onestep.tuning import values as tuned_values

        values = tuned_values.read(cfg["tuned_baselines"], Path(cfg["out"]) / dataset_id(cfg) / "teacher" / "teacher.pt")
    adir = Path(cfg.get("ablations_dir", "config/ablations"))
    if not adir.is_absolute():
        adir = Path(repo or REPO) / adir
    if not adir.is_dir():
        raise ConfigError(f"config: ablations_dir: folder not found: {adir}")
    out = {}
    for path in sorted(adir.glob("*.yaml")):
        ab = load_ablation(path, cfg)
        if ab.name in out:
            raise ConfigError(f"{path}: name: '{ab.name}' is already used by {out[ab.name].file}")
        out[ab.name] = ab
    for ab in out.values():
        if ab.tuned:
            check_tuned(ab, out, cfg)
            missing = [] if values is None else sorted({r.config["method"]["name"] for r in ab.runs} - set(values))
            if missing:
                raise ConfigError(f"{cfg['tuned_baselines']}: methods.{missing[0]}: missing; {ab.name} ({ab.file}) "
                                  f"runs {', '.join(missing)} with tuned values; the file has: "
                                  f"{', '.join(values) or '(none)'}")
    return out


def without_run(cfg: dict) -> dict:
    """A run's config without its bookkeeping (`run`: ablation, name, grid point, tuned record): what its
    training depends on, so two runs that agree here train the same thing."""
    return {k: v for k, v in cfg.items() if k != "run"}


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
            from onestep.outputs import differing_keys

            keys = differing_keys(without_run(theirs[name].config), without_run(run.config))
            raise ConfigError(f"{where}: run {name} differs from the same run of {ab.tuned} in {', '.join(keys)}; allowed: the "
                              f"same configs (only the tuned values may differ, set when the runs are written)")


def sections(cfg: dict, *keys: str) -> str:
    """JSON of the named config sections: what a rule's job depends on (params -> rerun on change).
    Never the sections no result depends on (NOT_IN_RESULTS): jobs read those from the tracking file."""
    out = {k: cfg[k] for k in keys if k in cfg and k not in NOT_IN_RESULTS}
    if "device" in keys:
        out["device"] = job_device(cfg)
    return json.dumps(out, sort_keys=True)


def dataset_id(cfg: dict) -> str:
    ds = cfg["dataset"]
    return ds["name"] if ds["name"] not in ("npz", "folder") else Path(ds["path"]).stem
