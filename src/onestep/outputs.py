"""Job outputs: the files that are the contract between rules, each written atomically (a temporary
name, then a rename), so a killed job never leaves a truncated file for the next rule to read."""

from __future__ import annotations

import csv
import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from onestep.errors import OnestepError


class WriteError(OnestepError, OSError):
    """An output cannot be written (a read-only or full results folder): the path and what it needs."""


FULL = (errno.ENOSPC, errno.EDQUOT)
TORCH_WRITE = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")  # torch.save on a full disk
STORE_FULL = ("database or disk is full", "disk i/o error")  # sqlite (the MLflow store) on a full disk


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**17 else f"{n / 2**10:.1f} KB"


def free_bytes(path: str | Path) -> int | None:
    """Free bytes (for this user) on the file system of `path`'s nearest existing folder; None: unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def write_problem(path: str | Path, e: OSError, need: int | None = None) -> str:
    """The message for an output that could not be written: the path, the cause, what is needed (with `need`,
    the bytes it was writing, and the space free there)."""
    free = free_bytes(path)
    space = (f"about {_mb(need)} free there" if need and need >= 4096 else "free disk space there") + (
        f" ({_mb(free)} free now)" if free is not None else "")
    wanted = {errno.ENOSPC: f"{space} (or a larger quota)", errno.EDQUOT: f"a larger disk quota ({space})",
            errno.EROFS: "a writable file system", errno.EACCES: "write permission on that folder",
            errno.EPERM: "write permission on that folder"}.get(e.errno, "a writable folder with free space")
    return (f"cannot write {path}: {e.strerror or e}; it needs {wanted}, or set `out:` to another folder "
            "(snakemake --config out=/path)")


def _as_oserror(e: BaseException, path: Path, need: int | None) -> OSError | None:
    """`e` as the OSError it stands for: an OSError itself, or a torch writer's RuntimeError on a full disk
    (torch.save raises `[enforce fail at inline_container.cc] unexpected pos`, not an OSError)."""
    if isinstance(e, OSError):
        return e
    free = free_bytes(path)
    if isinstance(e, RuntimeError) and (any(m in str(e) for m in TORCH_WRITE) or (
            need is not None and free is not None and free < need)):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


@contextmanager
def atomic(path: str | Path, suffix: str = ".tmp", need: int | None = None):
    """Yield a temporary name beside `path`, renamed onto it when the block ends; on any failure (a full
    disk, a read-only folder, a kill by exception) the temporary file is removed and an OSError (or torch's
    writer failing on a full disk) becomes a WriteError naming `path` and the space (`need`, bytes) it needs."""
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if not isinstance(e, WriteError) and (os_e := _as_oserror(e, path, need)) is not None:
            raise WriteError(write_problem(path, os_e, need)) from e
        raise


def write_failure(e: BaseException, store: str | None = None) -> WriteError | None:
    """The WriteError a job's failure stands for, else None: a WriteError anywhere in its chain (causes and
    contexts: e.g. the MLflow store failing while it marks the run FAILED), the MLflow store (sqlite) or a
    log or stream refusing a write on a full disk or read-only folder. `store`: the tracking URI, to name it."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, WriteError):
            return e
        if any(m in str(e).lower() for m in STORE_FULL):
            where = store or "the MLflow store (tracking.uri)"
            return WriteError(f"cannot write the MLflow store {where}: the disk is full ({str(e).splitlines()[0]}); "
                              "it needs free disk space there, or another tracking.uri")
        if isinstance(e, OSError) and e.errno in (*FULL, errno.EROFS):
            return WriteError(write_problem(e.filename or "this job's log or output stream", e))
        e = e.__cause__ or e.__context__
    return None


def _tmp(path: Path, suffix: str = ".tmp") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + suffix)


def write_json(path: str | Path, obj) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    with atomic(path, need=len(text)) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------- checksums (checkpoints, .npz files)


class CorruptFile(OnestepError, ValueError):
    """A checkpoint or array file whose contents do not match the checksum stored in it, or unreadable."""


def _feed(h, obj) -> None:
    """Hash a nested payload: dicts (sorted keys), lists and tuples, tensors and arrays (dtype, shape,
    bytes), scalars and strings (repr)."""
    if isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, list | tuple):
        h.update(b"[")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype.str}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif type(obj).__module__.startswith("torch") and hasattr(obj, "untyped_storage"):  # a tensor
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(__import__("torch").uint8).numpy().tobytes())
    elif obj is None or isinstance(obj, bool | int | float | str | bytes):
        h.update(repr(obj).encode())
    else:  # an object of another kind: its type only (a repr may hold a memory address)
        h.update(type(obj).__qualname__.encode())


def digest(obj) -> str:
    """SHA-256 of a checkpoint's or array file's payload (stored in the file, checked on load)."""
    import hashlib

    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def verify(path: str | Path, payload: dict, stored: str | None, what_to_do: str) -> None:
    """CorruptFile naming `path` when `payload` does not hash to `stored` (None: a file written before
    checksums, accepted as is)."""
    if stored is not None and digest(payload) != stored:
        raise CorruptFile(f"{path} is corrupt: its contents do not match the SHA-256 stored in it (a damaged, "
                          f"partly overwritten or truncated file); {what_to_do}")


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """The arrays and their SHA-256 (entry `sha256`), written atomically."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    with atomic(path, ".tmp.npz", sum(a.nbytes for a in arrays.values())) as tmp:  # np.savez appends .npz otherwise
        np.savez(tmp, **arrays, sha256=np.array(digest(arrays)))


def load_npz(path: str | Path, what_to_do: str = "delete it and re-run the target to re-generate it") -> dict[str, np.ndarray]:
    """The arrays of an .npz file, checked against its stored SHA-256; CorruptFile naming the file."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # a truncated or damaged zip: BadZipFile, EOFError, ValueError, zlib.error ...
        raise CorruptFile(f"{path} is corrupt or truncated ({type(e).__name__}: {e}); {what_to_do}") from None
    stored = arrays.pop("sha256", None)
    verify(path, arrays, None if stored is None else str(stored), what_to_do)
    return arrays


def load_pairs(path: str | Path) -> dict:
    """Teacher pairs (z, x0) as tensors, each (N, *shape)."""
    import torch

    arrays = load_npz(path, "delete it to re-generate the teacher pairs (snakemake re-runs the pairs rule)")
    return {k: torch.from_numpy(v) for k, v in arrays.items() if k in ("z", "x0")}


def load_states(path: str | Path, z=None) -> dict:
    """The teacher's DDIM states (rule trajectory): xt (N, M, *shape) at the seed times trajectory_t (M,),
    and x0; with `z` given (the pairs' noise), checks that the states were solved from the same noises (the
    pairs' own x0 may come from another solver, pairs.solver: the endpoint a run regresses stays the pairs')."""
    import torch

    arrays = {k: torch.from_numpy(v) for k, v in load_npz(path).items()}
    if z is not None and ("z" not in arrays or arrays["z"].shape != z.shape or not torch.equal(arrays["z"], z)):
        from onestep.errors import OnestepError

        raise OnestepError(f"{path}: its DDIM states are not those of the teacher pairs given (not solved from "
                           "the pairs' noise z); rebuild it from the same pairs.npz (rule trajectory)")
    return {"xt": arrays["xt"], "trajectory_t": arrays["trajectory_t"]}


def write_csv(path: str | Path, rows: list[dict], first: str) -> None:
    """One row per dict; the columns are every key in order of first appearance (a log may add keys
    later), or just `first` when there are no rows."""
    keys = list(dict.fromkeys(k for r in rows for k in r)) or [first]
    with atomic(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def parent_id(path: str | Path | None) -> str | None:
    """The MLflow parent run id from the file `onestep parent` wrote (files are the contract)."""
    return read_json(path)["run_id"] if path else None


def write_yaml(path: str | Path, obj) -> None:
    """A config file (the rules' per-job config.yaml), keys in their given order."""
    import yaml

    text = yaml.safe_dump(obj, sort_keys=False)
    with atomic(path, need=len(text)) as tmp:
        tmp.write_text(text)


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
