"""Configuration: defaults + ablation grid -> one resolved, schema-checked config per run.

The Snakefile calls `load_workflow(config, repo)` when the workflow is parsed, so every bad value
stops the run with one message naming the key (and the file) before any job starts.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from onestep.errors import OnestepError

REPO = Path(__file__).resolve().parents[2]
IMAGE_DATASETS = ("digits", "npz", "folder")
SCHEMAS = REPO / "workflow" / "schemas"


class ConfigError(OnestepError, ValueError):
    """One clear message: the key, the bad value, what is allowed."""


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


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
    """Methods with a schema (workflow/schemas/methods/<name>.schema.yaml)."""
    return sorted(p.name.removesuffix(".schema.yaml") for p in (SCHEMAS / "methods").glob("*.schema.yaml"))


def _check(instance, schema: str, where: str, prefix: tuple = ()) -> None:
    import jsonschema

    with open(SCHEMAS / f"{schema}.schema.yaml") as f:
        sch = yaml.safe_load(f)
    errors = sorted(jsonschema.Draft202012Validator(sch).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{where}: {_message(errors[0], prefix)}")


def validate(cfg: dict, schema: str = "config", where: str = "config") -> None:
    """Check against workflow/schemas/<schema>.schema.yaml (and the method's own schema for a config);
    raise ConfigError with one message."""
    _check(cfg, schema, where)
    if schema != "config":
        return
    name, names = cfg["method"]["name"], method_names()
    if name not in names:
        raise ConfigError(f"{where}: method.name: {name!r} is not allowed; allowed values: {', '.join(names)}")
    _check(cfg["method"], f"methods/{name}", where, ("method",))
    check_semantics(cfg, where)


def with_method(cfg: dict, section: dict) -> dict:
    """`cfg` with its method section set from `section` (nested keys). Switching to another method
    starts from that method's defaults (`methods.<name>`, else its own), not the current method's keys."""
    name = section.get("name", cfg["method"]["name"])
    start = cfg["method"] if name == cfg["method"]["name"] else {**(cfg.get("methods") or {}).get(name, {}), "name": name}
    return {**cfg, "method": deep_merge(start, section)}


def check_semantics(cfg: dict, where: str) -> None:
    """Rules a JSON schema cannot say."""
    T, m = cfg["diffusion"]["T"], cfg["method"]
    if "K" in m and not 1 <= m["K"] <= T:
        raise ConfigError(f"{where}: method.K: {m['K']} is out of range; allowed: 1 <= K <= diffusion.T = {T}")
    if m.get("consistency_step") == "ddpm" and m.get("anchor") == "trained" and m.get("ordering") != "forward":
        raise ConfigError(
            f"{where}: method.consistency_step: 'ddpm' cannot bridge upward in t, which anchor 'trained' needs "
            f"under ordering '{m.get('ordering')}'; allowed: consistency_step ddim, or anchor grid"
        )
    if m.get("consistency") == "global" and m.get("consistency_step") == "ddpm":
        raise ConfigError(f"{where}: method.consistency_step: 'ddpm' does not apply to consistency 'global', which "
                          "ties stage k to every earlier t_j by exact DDIM jumps; allowed: ddim")
    if m.get("loss") == "perceptual" and cfg["dataset"]["name"] not in ("digits", "npz", "folder"):
        raise ConfigError(f"{where}: method.loss: 'perceptual' needs images; dataset '{cfg['dataset']['name']}' is 2-D "
                          "points with no perceptual feature space; allowed here: l2, pseudo_huber, adversarial")
    if m.get("loss") == "perceptual" and (m.get("perceptual") or {}).get("backbone", "features") == "features" \
            and cfg["evaluation"].get("feature_net") != "classifier":
        raise ConfigError(f"{where}: method.perceptual.backbone: 'features' uses the dataset's classifier features, but "
                          f"evaluation.feature_net is '{cfg['evaluation'].get('feature_net')}'; allowed: lpips, or "
                          "evaluation.feature_net classifier")
    if m.get("s1", 1) < m.get("s0", 1):
        raise ConfigError(f"{where}: method.s1: {m['s1']} is below method.s0 = {m['s0']}; allowed: s1 >= s0")
    lo, hi = cfg["tune"]["lambda"]["low"], cfg["tune"]["lambda"]["high"]
    if lo >= hi:
        raise ConfigError(f"{where}: tune.lambda: low ({lo}) must be below high ({hi})")
    if cfg["tune"]["validation"]["noise_seed"] == cfg["evaluation"]["noise_seed"]:
        raise ConfigError(f"{where}: tune.validation.noise_seed: must differ from evaluation.noise_seed "
                          f"({cfg['evaluation']['noise_seed']}); the study must not see the evaluation noise")
    ds = cfg["dataset"]
    if ds["name"] in ("npz", "folder") and not ds.get("path"):
        raise ConfigError(f"{where}: dataset.path: dataset '{ds['name']}' needs a path (an .npz file or image folder)")
    check_gpu_tier(cfg, where)


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


@dataclass
class Run:
    ablation: str
    name: str  # directory name, built from the grid point and the seed
    point: dict  # dotted key -> value
    seed: int
    config: dict  # fully resolved


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


def base_config(cfg: dict) -> dict:
    """The config shared by every run (no per-run keys)."""
    return {k: v for k, v in cfg.items() if k not in ("run", "seed")}


def load_ablation(path: Path, cfg: dict) -> Ablation:
    where = str(path)
    try:
        with open(path) as f:
            spec = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{where}: cannot read ablation file ({e})") from e
    validate(spec, "ablation", where)
    points = grid_points(spec, where)
    ab = Ablation(spec["name"], spec.get("title", spec["name"]), where, points, spec.get("baseline") or {},
                  spec.get("caption", ""), spec.get("requires"), table=spec.get("table", "default"))
    if ab.baseline and ab.baseline not in [{k: p.get(k) for k in ab.baseline} for p in points]:
        raise ConfigError(f"{where}: baseline: {ab.baseline} is not one of the ablation's points")
    if ab.requires == "images" and cfg["dataset"]["name"] not in IMAGE_DATASETS:
        ab.skipped = (f"{ab.name} ({where}) runs on images only; dataset '{cfg['dataset']['name']}' is 2-D points. "
                      f"Run it with an image config, e.g. snakemake --cores 2 {ab.name} --configfile config/digits.yaml")
        return ab
    fixed = copy.deepcopy(spec.get("fixed") or {})
    base = with_method(deep_merge(base_config(cfg), {k: v for k, v in fixed.items() if k != "method"}),
                       fixed.get("method") or {})
    seeds = spec.get("seeds", cfg["seeds"])
    for point in points:
        for seed in seeds:
            run_cfg = with_method(base, {"name": point["method.name"]}) if "method.name" in point else base
            for k, v in point.items():
                run_cfg = set_dotted(run_cfg, k, v)
            name = run_name(point, seed)
            run_cfg = {**run_cfg, "seed": seed, "run": {"ablation": ab.name, "name": name, "point": point}}
            validate(run_cfg, "config", f"{where} (run {name})")
            ab.runs.append(Run(ab.name, name, point, seed, run_cfg))
    return ab


def load_workflow(cfg: dict, repo: str | Path | None = None) -> dict[str, Ablation]:
    """Validate the config and every ablation file; {target name: Ablation}."""
    validate(cfg, "config", "config")
    from onestep import data

    try:
        data.check(cfg["dataset"])
    except data.DataError as e:
        raise ConfigError(f"config: {e}") from e
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
    return out


def sections(cfg: dict, *keys: str) -> str:
    """JSON of the named config sections: what a rule's job depends on (params -> rerun on change)."""
    return json.dumps({k: cfg[k] for k in keys if k in cfg}, sort_keys=True)


def dataset_id(cfg: dict) -> str:
    ds = cfg["dataset"]
    return ds["name"] if ds["name"] not in ("npz", "folder") else Path(ds["path"]).stem
