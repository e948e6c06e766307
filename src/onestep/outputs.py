"""Job outputs: the files that are the contract between rules, each written atomically (a temporary
name, then a rename), so a killed job never leaves a truncated file for the next rule to read."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np


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
