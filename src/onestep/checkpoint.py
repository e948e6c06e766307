"""Checkpoints: the weights a job hands on (teacher.pt, student.pt), written atomically (temporary name, then
rename), and the checked torch files every writer shares (training/resume.py writes the resume checkpoint).

A weights checkpoint is {"kind", "net", "shape", "config", "state_dict"}: the network config and the
run config travel with the weights (nanoGPT style), so a loader needs nothing but the file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from onestep import outputs
from onestep.diffusion import Schedule, Teacher
from onestep.errors import OnestepError
from onestep.nets import build_net


class CheckpointError(OnestepError, RuntimeError):
    """A checkpoint is missing, unreadable, or written for another network or config."""


def save_atomic(obj: dict, path: str | Path) -> None:
    """`obj` with its SHA-256 (key `sha256`, checked by _load), written atomically: a kill mid-write leaves
    the previous file (or none), a full or read-only folder no temporary file (outputs.atomic)."""
    with outputs.atomic(path, need=_nbytes(obj) + 2**20) as tmp:  # a full disk: the space it needs, named
        torch.save({**obj, "sha256": outputs.digest(obj)}, tmp)


def _nbytes(obj) -> int:
    """The bytes of the tensors in a nested payload (about the size of its torch file)."""
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_nbytes(v) for v in obj)
    return obj.untyped_storage().nbytes() if isinstance(obj, torch.Tensor) else 0


def load_file(path: Path, what: str, what_to_do: str) -> dict:
    """torch.load of a checkpoint written by save_atomic, its SHA-256 checked; CheckpointError naming the
    file and what to do when it is unreadable or corrupt."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{what} {path} is corrupt or unreadable ({type(e).__name__}: {e}); {what_to_do}") from e
    if isinstance(obj, dict):
        stored = obj.pop("sha256", None)
        try:
            outputs.verify(path, obj, stored, what_to_do)
        except outputs.CorruptFile as e:
            raise CheckpointError(f"{what} {e}") from None
    return obj


def save_checked(path: str | Path, obj: dict) -> None:
    """Any other torch file a job hands on (the image tiers' features.pt), written as checkpoints are:
    atomically, with its SHA-256 (load_checked verifies it)."""
    save_atomic(obj, path)


def load_checked(path: str | Path, what: str) -> dict:
    """A file written by save_checked (or save_checkpoint), its SHA-256 checked: CheckpointError naming the
    file and what to do (delete it, re-run the target) when it is missing, unreadable, damaged or truncated."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    return load_file(path, what, _redo(path))


def _redo(path: Path) -> str:
    return f"delete it and re-run the target to retrain (snakemake re-runs the job that writes {path.name})"


def save_checkpoint(path: str | Path, kind: str, net_cfg: dict, shape, cfg: dict, net: nn.Module) -> None:
    """The weights with their network config, sample shape and run config (what load_checkpoint needs)."""
    save_atomic({"kind": kind, "net": net_cfg, "shape": list(shape), "config": cfg, "state_dict": net.state_dict()},
                 path)


def load_checkpoint(path: str | Path, kind: str) -> tuple[nn.Module, dict]:
    """(network with its weights, checkpoint dict); a clear error naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    ckpt = load_file(path, "checkpoint", _redo(path))
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path} is not a {kind} checkpoint")
    net = build_net(ckpt["net"], tuple(ckpt["shape"]))
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not match its network config: {e}") from e
    return net.eval(), ckpt


def load_teacher(path: str | Path, device: str = "cpu") -> Teacher:
    net, ckpt = load_checkpoint(path, "teacher")
    return Teacher(net.to(device), Schedule.from_config(ckpt["config"]["diffusion"]))


# ---------------------------------------------------------------- resume checkpoints (preemption)
