"""Config files and keys: reading a YAML file (file, line and column of an error), merging, dotted keys."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from onestep.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


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


def get_path(node, path):
    """The value at a key path (a sequence of keys and list indices)."""
    for k in path:
        node = node[k]
    return node


def get_dotted(cfg: dict, key: str):
    """The value at a dotted key (method.lambda)."""
    return get_path(cfg, key.split("."))


def set_dotted(cfg: dict, key: str, value) -> dict:
    out = copy.deepcopy(cfg)
    node = out
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return out


def key_name(path) -> str:
    """A key path as a config key: method.adversarial.net, evaluation.teacher_steps[1]."""
    s = ""
    for p in list(path):
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "<top level>"


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


def merged_files(paths: list[str | Path], defaults: str | Path | None = None) -> dict:
    """The defaults (config/config.yaml) and each file over them, as Snakemake merges `--configfile A B`
    (`onestep check-config`: Snakemake's own message names neither the file nor the line; this does)."""
    cfg = read_file(defaults or REPO / "config" / "config.yaml")
    for p in paths:
        cfg = deep_merge(cfg, read_file(p))
    return cfg
