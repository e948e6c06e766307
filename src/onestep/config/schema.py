"""Validation: the JSON schemas (workflow/schemas, the typed sections', each method's), one message per error.

`validate(cfg)` checks a config against workflow/schemas/config.schema.yaml, whose teacher, student, pairs,
evaluation and tracking entries are generated from the typed sections (config/sections.py), and the method
section against its method's dataclass; a bad value stops with one line naming the key and what is allowed.
"""

from __future__ import annotations

import functools
import math

import jsonschema
import yaml

from onestep.config.files import REPO, get_path, key_name
from onestep.config.method import method_names, method_section
from onestep.config.policy import check_gpu_tier
from onestep.config.results import NOT_IN_RESULTS, NOT_IN_RUNS
from onestep.config.sections import SECTIONS, check_headline
from onestep.data import FAMILIES  # the parametrised datasets (their own checks; `analytic`: teacher.kind analytic)
from onestep.errors import ConfigError
from onestep.methods import METHODS

SCHEMAS = REPO / "workflow" / "schemas"
BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def _describe(schema: dict) -> str:
    if "const" in schema:
        return repr(schema["const"])
    bounds = [f"{op} {schema[k]}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
              if k in schema]
    return " ".join([f"a {schema.get('type', 'value')}", *bounds])


def message(err, prefix: tuple = ()) -> str:
    """One line for a jsonschema error: the key, the value and what is allowed."""
    key, v = key_name([*prefix, *err.absolute_path]), err.validator_value
    if err.validator == "enum":
        return f"{key}: {err.instance!r} is not allowed; allowed values: {', '.join(map(str, v))}"
    if err.validator == "type":
        return f"{key}: {err.instance!r} must be of type {v if isinstance(v, str) else ' or '.join(v)}"
    if err.validator in BOUNDS:
        return f"{key}: {err.instance!r} is out of range; allowed: {BOUNDS[err.validator]} {v}"
    if err.validator == "additionalProperties":
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        return f"{key}: unknown key(s) {', '.join(extra)}; allowed keys: {allowed}"
    if err.validator == "oneOf":
        return f"{key}: {err.instance!r} is not allowed; allowed: {' or '.join(_describe(x) for x in v)}"
    return f"{key}: {err.message}"


@functools.cache
def _schema_file(name: str) -> dict:
    """workflow/schemas/<name>.schema.yaml, read once per process (a grid of 1000 runs validates 1000 configs
    against it: reading it each time was most of `snakemake -n`'s planning time). Never mutated."""
    with open(SCHEMAS / f"{name}.schema.yaml") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def config_schema() -> dict:
    """The config schema: the schema file with the typed sections' entries (sections.SECTIONS) generated."""
    schema = dict(_schema_file("config"))
    return {**schema, "properties": {**schema["properties"], **{k: s.object_schema() for k, s in SECTIONS.items()}}}


@functools.cache
def _validator(name: str, method=None):
    """The JSON-schema validator of a schema file (`name`), of the `net` definition (`$net`) or of a method's
    section (`$method`, the method's Config class): built once per process."""
    if name == "$net":
        defs = _schema_file("config")["$defs"]
        schema = {"$defs": defs, **defs["net"]}
    elif name == "$run":  # a grid run's config file: the config without the keys no run reads (run_result_config)
        schema = dict(config_schema())
        schema["required"] = [k for k in schema.get("required", []) if k not in (*NOT_IN_RESULTS, *NOT_IN_RUNS)]
    elif name == "$method":
        cls, mname = method
        schema = cls.schema(mname)
    elif name == "config":
        schema = config_schema()
    else:
        schema = _schema_file(name)
    return jsonschema.Draft202012Validator(schema)


def _raise_first(validator, instance, where: str, prefix: tuple = ()) -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{where}: {message(errors[0], prefix)}")


def _non_finite(node, path: tuple = ()):
    """The first NaN or infinite number in a config (its key path), else None."""
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
        raise ConfigError(f"{where}: {key_name(path)}: {get_path(cfg, path)} is not allowed; allowed: a finite number")


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
    _raise_first(_validator(schema), cfg, where)
    if schema not in ("config", "$run"):
        return
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


def check_semantics(cfg: dict, where: str) -> None:
    """Rules a JSON schema cannot say, outside the method section (the method's own: `Config.check`)."""
    if "tune" in cfg:  # (a grid run's config file has no tune section: NOT_IN_RUNS)
        check_tune(cfg, where)
    ds = cfg["dataset"]
    if ds["name"] in ("npz", "folder") and not ds.get("path"):
        raise ConfigError(f"{where}: dataset.path: dataset '{ds['name']}' needs a path (an .npz file or image folder)")
    if ds["name"] in FAMILIES:
        try:
            FAMILIES[ds["name"]].check(ds)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    analytic = [name for name, family in FAMILIES.items() if family.analytic]
    if cfg["teacher"].get("kind") == "analytic" and ds["name"] not in analytic:
        raise ConfigError(f"{where}: teacher.kind: analytic needs a dataset with a closed-form score; allowed "
                          f"dataset.name: {', '.join(analytic)} (dataset.name is {ds['name']!r})")
    if cfg["teacher"].get("kind") == "analytic" and cfg["teacher"].get("pretrained"):
        raise ConfigError(f"{where}: teacher.pretrained: not with teacher.kind: analytic (the teacher is the exact score)")
    if cfg["teacher"].get("kind") == "analytic" and cfg["student"].get("init_from_teacher"):
        raise ConfigError(f"{where}: student.init_from_teacher: the analytic teacher (teacher.kind: analytic) has no "
                          "network weights to start a student from; allowed: false on this tier")
    check_gpu_tier(cfg, where)
    check_headline(cfg, where)


def check_tune(cfg: dict, where: str) -> None:
    """The tune section's cross-key rules: bounds in order, a grace of two heartbeats, its own noise."""
    tc = cfg["tune"]
    if tc["lambda"] is not None:
        lo, hi = tc["lambda"]["low"], tc["lambda"]["high"]
        if lo >= hi:
            raise ConfigError(f"{where}: tune.lambda: low ({lo}) must be below high ({hi})")
    for k, spec in (tc.get("space") or {}).items():
        if "low" in spec and spec["low"] >= spec["high"]:
            raise ConfigError(f"{where}: tune.space.{k}: low ({spec['low']}) must be below high ({spec['high']})")
    beat, grace = tc["heartbeat_s"], tc["grace_s"]
    if grace < 2 * beat:
        raise ConfigError(f"{where}: tune.grace_s: {grace} is below two heartbeats (tune.heartbeat_s = {beat}); a live "
                          f"trial would be taken for dead; allowed: grace_s >= {2 * beat}")
    if tc["validation"]["noise_seed"] == cfg["evaluation"]["noise_seed"]:
        raise ConfigError(f"{where}: tune.validation.noise_seed: must differ from evaluation.noise_seed "
                          f"({cfg['evaluation']['noise_seed']}); the study must not see the evaluation noise")

