"""Datasets: seeded 2-D toy distributions, Gaussian mixtures (gmm.py), scikit-learn's bundled 8x8 digits, and user data
(2-D points or images from a file).

Every sampler returns a float32 tensor: (N, 2) for 2-D data, (N, C, H, W) in [-1, 1] for images.
A dataset is chosen by `dataset.name` in the config; the registry `DATASETS` maps names to
loaders, so adding one is adding an entry, not a branch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from onestep import gmm
from onestep.errors import ConfigError, OnestepError


class DataError(OnestepError, ValueError):
    """Bad dataset configuration: the message names the config key."""


# ---------------------------------------------------------------- 2-D toy distributions


def checkerboard(n: int, gen: torch.Generator) -> torch.Tensor:
    """8 unit squares of a 4x4 board on [-2, 2]^2 (the alternating ones)."""
    x1 = torch.rand(n, generator=gen) * 4 - 2  # (n,)
    col = torch.floor(x1 + 2)  # 0..3
    row_offset = torch.randint(0, 2, (n,), generator=gen) * 2  # 0 or 2
    x2 = torch.rand(n, generator=gen) + row_offset + (col % 2) - 2  # (n,)
    return torch.stack([x1, x2], dim=1)


def eight_gaussians(n: int, gen: torch.Generator) -> torch.Tensor:
    """Mixture of 8 Gaussians (std 0.1) on a circle of radius 2."""
    k = torch.randint(0, 8, (n,), generator=gen)
    angle = k.float() * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (n, 2)
    return centres + 0.1 * torch.randn(n, 2, generator=gen)


def swiss_roll(n: int, gen: torch.Generator) -> torch.Tensor:
    """2-D Swiss roll scaled to about [-2, 2]^2 with small noise."""
    u = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=gen))  # (n,)
    x = torch.stack([u * torch.cos(u), u * torch.sin(u)], dim=1) / 7.5
    return x + 0.05 * torch.randn(n, 2, generator=gen)


def moons(n: int, gen: torch.Generator) -> torch.Tensor:
    """Two interleaving half circles, centred and scaled to about [-2, 2]^2."""
    upper = torch.rand(n, generator=gen) < 0.5
    theta = torch.rand(n, generator=gen) * math.pi
    x = torch.where(upper, torch.cos(theta), 1 - torch.cos(theta))
    y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
    pts = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.6
    return pts + 0.05 * torch.randn(n, 2, generator=gen)


TOY: dict[str, Callable[[int, torch.Generator], torch.Tensor]] = {
    "checkerboard": checkerboard,
    "eight_gaussians": eight_gaussians,
    "swiss_roll": swiss_roll,
    "moons": moons,
}


# ---------------------------------------------------------------- images


def _to_unit_range(x: np.ndarray, vmax: float) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float32) / vmax * 2.0 - 1.0)


def load_digits_images() -> torch.Tensor:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16) as (N, 1, 8, 8) in [-1, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images  # (1797, 8, 8), 0..16
    return _to_unit_range(images[:, None], 16.0)


def load_digits_labels() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target.astype(np.int64))


def load_npz(path: str, key: str = "dataset.path") -> torch.Tensor:
    """An .npz holding uint8 images (N, H, W, C) or (N, C, H, W) under 'x', 'images' or its first array."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{key}: file not found: {p}")
    try:
        with np.load(p) as z:
            names = list(z.files)
            name = next((n for n in ("x", "images", "data") if n in names), names[0] if names else None)
            if name is None:
                raise DataError(f"{key}: {p} holds no arrays")
            arr = z[name]
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError ...
        raise DataError(f"{key}: cannot read {p} as .npz ({type(e).__name__}: {e})") from e
    if arr.ndim != 4:
        raise DataError(f"{key}: expected images of shape (N, H, W, C) or (N, C, H, W), got {arr.shape} in {p}")
    if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    vmax = 255.0 if arr.dtype == np.uint8 or arr.max() > 1.5 else 1.0
    return _to_unit_range(arr, vmax)


def load_folder(path: str, key: str = "dataset.path") -> torch.Tensor:
    """Every .png/.jpg under a folder, same size, as (N, C, H, W) in [-1, 1]."""
    from PIL import Image

    p = Path(path)
    if not p.is_dir():
        raise DataError(f"{key}: folder not found: {p}")
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not files:
        raise DataError(f"{key}: no .png or .jpg images under {p}")
    imgs = []
    for f in files:
        try:
            imgs.append(np.asarray(Image.open(f).convert("RGB")))
        except Exception as e:
            raise DataError(f"{key}: cannot read image {f} ({e})") from e
    shapes = {im.shape for im in imgs}
    if len(shapes) != 1:
        raise DataError(f"{key}: images under {p} differ in size: {sorted(shapes)[:3]}")
    return _to_unit_range(np.stack(imgs).transpose(0, 3, 1, 2), 255.0)


IMAGES: dict[str, Callable[[dict], torch.Tensor]] = {
    "digits": lambda cfg: load_digits_images(),
    "npz": lambda cfg: load_npz(_need_path(cfg)),
    "folder": lambda cfg: load_folder(_need_path(cfg)),
}

# ---------------------------------------------------------------- user points


@lru_cache(maxsize=4)
def _points_file(path: str) -> torch.Tensor:
    """The (N, 2) float points of an .npz (under 'x', 'points', 'data' or its first array), read once per process."""
    p, key = Path(path), "dataset.path"
    if not p.is_file():
        raise DataError(f"{key}: file not found: {p}")
    try:
        with np.load(p) as z:
            name = next((n for n in ("x", "points", "data") if n in z.files), z.files[0] if z.files else None)
            arr = None if name is None else np.asarray(z[name])
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError ...
        raise DataError(f"{key}: cannot read {p} as .npz ({type(e).__name__}: {e})") from e
    if arr is None or arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{key}: dataset 'points' needs numbers of shape (N, 2), N >= 2, in {p}; got "
                        f"{'no arrays' if arr is None else f'{arr.dtype} {arr.shape}'}")
    if not np.isfinite(arr).all():
        raise DataError(f"{key}: {p} holds NaN or infinite points")
    return torch.from_numpy(arr.astype(np.float32))


def _points_sample(cfg: dict, n: int, gen: torch.Generator) -> torch.Tensor:
    """n points drawn with replacement from the file: its empirical distribution."""
    x = _points_file(_need_path(cfg))
    return x[torch.randint(0, x.shape[0], (n,), generator=gen)]


def _points_check(cfg: dict) -> None:
    try:
        _points_file(_need_path(cfg))
    except DataError as e:
        raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class Family:
    """A parametrised point dataset: samples of its section (cfg, n, gen), its sample shape, and its section's check
    (raising ConfigError naming the key)."""

    sample: Callable[[dict, int, torch.Generator], torch.Tensor]
    shape: Callable[[dict], tuple[int, ...]]
    check: Callable[[dict], object]
    id: Callable[[dict], str]  # its name in output paths (config.results.dataset_id)
    analytic: bool = False  # a closed-form density and score (teacher.kind: analytic)


FAMILIES: dict[str, Family] = {  # name -> its family
    "gmm": Family(gmm.sample, gmm.shape, gmm.settings, gmm.dataset_id, analytic=True),
    "points": Family(_points_sample, lambda cfg: (2,), _points_check, lambda cfg: Path(_need_path(cfg)).stem),
}

DATASETS = sorted([*TOY, *IMAGES, *FAMILIES])


def _need_path(cfg: dict) -> str:
    path = cfg.get("path")
    if not path:
        raise DataError(f"dataset.path: dataset '{cfg['name']}' needs a path (an .npz file or image folder)")
    return str(path)


def is_image(cfg: dict) -> bool:
    return cfg["name"] in IMAGES


def check(cfg: dict) -> None:
    """Fail early with a message naming the key: unknown name, missing or unreadable path."""
    name = cfg.get("name")
    if name in FAMILIES:
        try:
            FAMILIES[name].check(cfg)
        except ConfigError as e:
            raise DataError(str(e)) from None
        return
    if name not in TOY and name not in IMAGES:
        raise DataError(f"dataset.name: unknown dataset '{name}'; allowed: {', '.join(DATASETS)}")
    if name in ("npz", "folder"):
        path = Path(_need_path(cfg))
        exists = path.is_file() if name == "npz" else path.is_dir()
        if not exists:
            raise DataError(f"dataset.path: {'file' if name == 'npz' else 'folder'} not found: {path}")


def sample(cfg: dict, n: int, seed: int) -> torch.Tensor:
    """n training samples, reproducible from `seed`.

    Toy data are drawn fresh; images are drawn (with replacement when n exceeds the set) from
    the dataset, so the same call gives the same batch.
    """
    check(cfg)
    gen = torch.Generator().manual_seed(seed)
    if cfg["name"] in FAMILIES:
        return FAMILIES[cfg["name"]].sample(cfg, n, gen)
    if cfg["name"] in TOY:
        return TOY[cfg["name"]](n, gen)
    data = IMAGES[cfg["name"]](cfg)  # (N, C, H, W)
    idx = torch.randint(0, data.shape[0], (n,), generator=gen) if n > data.shape[0] else torch.randperm(
        data.shape[0], generator=gen
    )[:n]
    return data[idx]


def full(cfg: dict) -> torch.Tensor:
    """The whole dataset for images; for toy data a large fixed sample (seed 0)."""
    check(cfg)
    if cfg["name"] in FAMILIES:
        return FAMILIES[cfg["name"]].sample(cfg, int(cfg.get("num_train", 65536)), torch.Generator().manual_seed(0))
    if cfg["name"] in TOY:
        return TOY[cfg["name"]](int(cfg.get("num_train", 65536)), torch.Generator().manual_seed(0))
    return IMAGES[cfg["name"]](cfg)


def shape(cfg: dict) -> tuple[int, ...]:
    """Shape of one sample."""
    if cfg["name"] in FAMILIES:
        return FAMILIES[cfg["name"]].shape(cfg)
    if cfg["name"] in TOY:
        return (2,)
    got = tuple(full(cfg).shape[1:])
    if cfg.get("shape") and tuple(cfg["shape"]) != got:
        raise DataError(f"dataset.shape: expected {tuple(cfg['shape'])} but the images in {cfg.get('path')} are {got}")
    return got


def std(cfg: dict) -> float:
    """The data's standard deviation over every element of `full(cfg)` (EDM's sigma_data): deterministic, so
    training and evaluation resolve the same value."""
    return _stats(json.dumps(cfg, sort_keys=True, default=str))[0]


def bound(cfg: dict) -> float:
    """The data's largest |coordinate| over `full(cfg)` (1.0 for images in [-1, 1]): `pairs.clip_x0: auto`."""
    return _stats(json.dumps(cfg, sort_keys=True, default=str))[1]


@lru_cache
def _stats(key: str) -> tuple[float, float]:
    """(std, max |x|) of the dataset config `key` (JSON): the data loaded once per process and config."""
    x = full(json.loads(key)).double()
    return float(x.std()), float(x.abs().max())


def clip_x0(value, cfg: dict) -> float | None:
    """`pairs.clip_x0` as a number: null (off), a number, or auto (the data's bound, `bound`)."""
    return bound(cfg) if value == "auto" else (None if value is None else float(value))
