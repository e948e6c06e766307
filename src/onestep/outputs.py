"""Job outputs: the files that are the contract between rules, each written atomically (a temporary
name, then a rename), so a killed job never leaves a truncated file for the next rule to read."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from onestep.errors import OnestepError


def _tmp(path: Path, suffix: str = ".tmp") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + suffix)


def write_json(path: str | Path, obj) -> None:
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    path = Path(path)
    tmp = _tmp(path, ".tmp.npz")  # np.savez appends .npz to any other name
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_pairs(path: str | Path) -> dict:
    """Teacher pairs (z, x0) as tensors, each (N, *shape)."""
    import torch

    return {k: torch.from_numpy(v) for k, v in load_npz(path).items() if k in ("z", "x0")}


def load_states(path: str | Path, x0=None) -> dict:
    """The teacher's DDIM states (rule trajectory): xt (N, M, *shape) at the seed times trajectory_t (M,),
    and x0; with `x0` given (the pairs'), checks that the states belong to the same solves."""
    import torch

    arrays = {k: torch.from_numpy(v) for k, v in load_npz(path).items()}
    if x0 is not None and (arrays["x0"].shape != x0.shape or not torch.allclose(arrays["x0"], x0, atol=1e-4)):
        from onestep.errors import OnestepError

        raise OnestepError(f"{path}: its DDIM states are not those of the teacher pairs given (x0 differs); "
                           "rebuild it from the same pairs.npz (rule trajectory)")
    return {"xt": arrays["xt"], "trajectory_t": arrays["trajectory_t"]}


def write_csv(path: str | Path, rows: list[dict], first: str) -> None:
    """One row per dict; the columns are every key in order of first appearance (a log may add keys
    later), or just `first` when there are no rows."""
    path = Path(path)
    tmp = _tmp(path)
    keys = list(dict.fromkeys(k for r in rows for k in r)) or [first]
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def parent_id(path: str | Path | None) -> str | None:
    """The MLflow parent run id from the file `onestep parent` wrote (files are the contract)."""
    return read_json(path)["run_id"] if path else None


def write_yaml(path: str | Path, obj) -> None:
    """A config file (the rules' per-job config.yaml), keys in their given order."""
    import yaml

    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(yaml.safe_dump(obj, sort_keys=False))
    tmp.replace(path)


def read_yaml(path: str | Path):
    import yaml

    return yaml.safe_load(Path(path).read_text())


# ---------------------------------------------------------------- provenance: which config produced a file


class StaleResult(OnestepError):
    """A result file was produced by another config than the current one."""


def config_hash(cfg: dict) -> str:
    """A stable hash of a resolved config (its config file's content): sha256 of the sorted JSON."""
    import hashlib

    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance(config_file: str | Path, cfg: dict | None = None) -> dict:
    """What a result file records about the config that produced it: the config file (as the rule named
    it, relative to the workflow's folder), its hash and its content (to name differing keys later)."""
    cfg = read_yaml(config_file) if cfg is None else cfg
    return {"config_file": str(config_file), "config_hash": config_hash(cfg), "config": cfg}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def differing_keys(old: dict, new: dict) -> list[str]:
    a, b = _flat(old), _flat(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))


def check_current(path: str | Path, record: dict | None = None) -> dict:
    """The result file `path` (a JSON with `provenance`), refused unless it was produced by the current
    content of its config file: a stale result never reaches a table. Returns the record."""
    record = read_json(path) if record is None else record
    what = record.get("run") or record.get("label") or str(path)
    if "config_hash" not in record:
        raise StaleResult(f"{path} ({what}) records no config hash (written by an older onestep): delete it and "
                          "re-run the target to recompute it")
    cfg_file = Path(record["config_file"])
    if not cfg_file.is_file():
        raise StaleResult(f"{path} ({what}): its config file {cfg_file} is gone; re-run the target")
    current = read_yaml(cfg_file)
    if config_hash(current) != record["config_hash"]:
        keys = differing_keys(record.get("config") or {}, current)
        raise StaleResult(f"{path} ({what}) was produced by another config than the current {cfg_file} "
                          f"(differing keys: {', '.join(keys) or 'unknown'}); delete it and re-run the target")
    return record
