"""Metrics: data against data sits near the floor, data against noise is far above it."""

import numpy as np
import pytest
import torch

from onestep import data
from onestep.features import FeatureNet
from onestep.metrics import feature_metrics, image_features, mmd2, points_metrics, sliced_wasserstein

CFG = {"swd_projections": 128, "mmd_bandwidths": [0.1, 0.3, 1.0]}
DS = {"name": "checkerboard"}


def test_points_metrics_separate_data_from_noise():
    a, b = data.sample(DS, 2000, 1), data.sample(DS, 2000, 2)
    noise = torch.randn(2000, 2)
    same, far = points_metrics(a, b, CFG), points_metrics(a, noise, CFG)
    assert same["swd"] < 0.06 and same["fd"] < 0.01 and abs(same["mmd"]) < 2e-3
    for k in ("swd", "fd", "mmd"):
        assert far[k] > 4 * abs(same[k]), k


def test_sliced_wasserstein_of_a_shift():
    x = torch.randn(4000, 2)
    shift = torch.tensor([0.5, 0.0])
    # every 1-D projection moves by <theta, shift>; E[cos^2] = 1/2 -> SW_2 = 0.5 / sqrt(2)
    assert sliced_wasserstein(x, x + shift, 2000) == pytest.approx(0.5 / 2**0.5, rel=0.05)
    assert sliced_wasserstein(x, x, 64) == 0.0


def test_mmd_unbiased_near_zero_for_same_distribution():
    a, b = torch.randn(1000, 2), torch.randn(1000, 2)
    assert abs(mmd2(a, b)) < 5e-3
    assert mmd2(a, b + 1.0) > 0.05


def test_image_features_go_through_cleanfid():
    net = FeatureNet((1, 8, 8))
    imgs = torch.rand(64, 1, 8, 8) * 2 - 1
    f = image_features(imgs, net.eval().as_extractor())
    assert f.shape == (64, 64) and np.isfinite(f).all()
    m = feature_metrics(f, image_features(-imgs, net.as_extractor()))
    assert m["fid"] > 0 and np.isfinite(m["kid"])
