"""Datasets: seeded toy samplers, digits in [-1, 1], user .npz/folders, clear errors naming the key."""

import numpy as np
import pytest
import torch

from onestep import data


@pytest.mark.parametrize("name", sorted(data.TOY))
def test_toy_samplers_are_seeded(name):
    a = data.sample({"name": name}, 500, 3)
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, data.sample({"name": name}, 500, 3))
    assert not torch.equal(a, data.sample({"name": name}, 500, 4))
    assert a.abs().max() < 4


def test_checkerboard_fills_alternate_cells():
    x = data.sample({"name": "checkerboard"}, 4000, 0)
    cells = (torch.floor(x[:, 0] + 2) + torch.floor(x[:, 1] + 2)) % 2
    assert torch.all(cells == 0)  # only the cells of one colour
    assert x.min() >= -2 and x.max() <= 2


def test_digits_are_scaled_to_unit_range():
    x = data.full({"name": "digits"})
    assert x.shape == (1797, 1, 8, 8)
    assert x.min() == -1.0 and x.max() == 1.0


def test_npz_loader(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", x=imgs)
    x = data.sample({"name": "npz", "path": str(tmp_path / "c.npz")}, 4, 0)
    assert x.shape == (4, 3, 32, 32) and -1 <= x.min() and x.max() <= 1


def test_folder_loader(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    x = data.full({"name": "folder", "path": str(tmp_path)})
    assert x.shape == (3, 3, 16, 16)


def test_errors_name_the_key(tmp_path):
    with pytest.raises(data.DataError, match=r"dataset.name: unknown dataset 'cifar'.*allowed: .*checkerboard"):
        data.check({"name": "cifar"})
    with pytest.raises(data.DataError, match=r"dataset.path: file not found"):
        data.check({"name": "npz", "path": str(tmp_path / "missing.npz")})
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(data.DataError, match=r"dataset.path: cannot read .*bad.npz"):
        data.full({"name": "npz", "path": str(bad)})
    with pytest.raises(data.DataError, match=r"dataset.path: folder not found"):
        data.full({"name": "folder", "path": str(tmp_path / "nope")})


def test_points_from_an_npz_are_a_2d_dataset_without_code(tmp_path, default_config):
    """`dataset.name: points`: the file's (N, 2) points, drawn with replacement, planned like any 2-D tier."""
    from onestep.config import ConfigError, deep_merge, load_workflow
    from onestep.config.results import dataset_id

    pts = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32) + np.array([3.0, -1.0], np.float32)
    np.savez(tmp_path / "mine.npz", points=pts)
    ds = {"name": "points", "path": str(tmp_path / "mine.npz")}
    x = data.sample(ds, 1000, 0)
    assert x.shape == (1000, 2) and data.shape(ds) == (2,) and not data.is_image(ds)
    assert torch.equal(x, data.sample(ds, 1000, 0))
    rows = {tuple(r) for r in pts.tolist()}
    assert all(tuple(r) in rows for r in x.tolist())  # every sample is one of the file's points
    assert abs(data.bound(ds) - float(np.abs(pts).max())) < 1e-6
    cfg = deep_merge(default_config, {"dataset": ds})
    assert dataset_id(cfg) == "mine" and load_workflow(cfg)["ablate_order"].runs
    np.savez(tmp_path / "bad.npz", x=np.zeros((10, 3)))
    with pytest.raises(ConfigError, match=r"dataset.path: dataset 'points' needs numbers of shape \(N, 2\).*\(10, 3\)"):
        load_workflow(deep_merge(default_config, {"dataset": {"name": "points", "path": str(tmp_path / "bad.npz")}}))
    with pytest.raises(ConfigError, match=r"dataset.path: file not found"):
        load_workflow(deep_merge(default_config, {"dataset": {"name": "points", "path": str(tmp_path / "no.npz")}}))
