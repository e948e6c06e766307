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
