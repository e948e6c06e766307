"""The pinned environment: the torch/torchvision pair, and clean-fid importable with it."""

import importlib.metadata as md


def test_cleanfid_imports():
    import cleanfid.fid

    assert callable(cleanfid.fid.frechet_distance)
    assert callable(cleanfid.fid.kernel_distance)


def test_torch_pair_pinned():
    assert md.version("torch").startswith("2.11.0")
    assert md.version("torchvision").startswith("0.26.0")
