"""The image path on digits through the CLI: conv teacher, pairs, classifier features, FID/KID."""

import json
import os

import numpy as np
import pytest
import yaml

from onestep.cli import main
from onestep.config import deep_merge, validate

TINY_DIGITS = {
    "dataset": {"name": "digits"},
    "teacher": {"net": {"name": "convnet", "width": 16, "depth": 1, "temb_dim": 16}, "steps": 30, "batch_size": 32,
                "log_every": 10},
    "student": {"net": {"name": "convnet", "width": 16, "depth": 1, "temb_dim": 16}, "batch_size": 16, "log_every": 5},
    "pairs": {"num": 64, "ddim_steps": 2, "seed": 1},
    "method": {"K": 2, "steps_per_stage": 5},
    "evaluation": {"num_samples": 64, "feature_steps": 60, "teacher_steps": [1]},
}


@pytest.fixture
def cfg(default_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    c = deep_merge(default_config, TINY_DIGITS)
    c = {**c, "seed": 0, "run": {"ablation": "ablate_test", "name": "k-2_seed-0", "point": {"method.K": 2}}}
    validate(c)
    return c


def test_digits_pipeline_scores_fid_and_kid(cfg, tmp_path):
    js = "config.yaml"
    os.makedirs("run")
    for path in (js, "run/config.yaml"):  # what the rules' job_config / run_config write
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
    main(["init-tracking", "--config", js, "--out", "store.json"])
    main(["parent", "--config", js, "--ablation", "ablate_test", "--out", "parent.json"])
    main(["features", "--config", js, "--out", "features.pt"])
    main(["teacher", "--config", js, "--out", "teacher.pt"])
    main(["pairs", "--config", js, "--teacher", "teacher.pt", "--out", "pairs.npz"])
    with np.load("pairs.npz") as z:
        assert z["z"].shape == (64, 1, 8, 8) and z["x0"].shape == (64, 1, 8, 8)
    main(["reference", "--config", js, "--features", "features.pt", "--out", "ref.npz", "--summary", "ref.json"])
    floor = json.loads(open("ref.json").read())["floor"]
    assert set(floor) == {"fid", "kid"}
    main(["train", "--config", "run/config.yaml", "--teacher", "teacher.pt", "--pairs", "pairs.npz", "--parent", "parent.json",
          "--out", "run"])
    main(["evaluate", "--run", "run", "--teacher", "teacher.pt", "--reference", "ref.npz", "--features",
          "features.pt", "--out", "run/metrics.json", "--plot", "run/samples.png"])
    m = json.loads(open("run/metrics.json").read())
    assert m["primary"] == "fid" and m["kind"] == "images"
    # an untrained student is far from the data, further than data is from itself
    assert m["metrics"]["fid"] > floor["fid"] and np.isfinite(m["metrics"]["kid"])
    assert os.path.getsize("run/samples.png") > 0
    assert yaml.safe_load(open("run/config.yaml"))["dataset"]["name"] == "digits"


def test_missing_classifier_weights_are_named(cfg):
    from onestep.features import FeatureError, extractor

    with pytest.raises(FeatureError, match="evaluation.feature_net: classifier weights not found"):
        extractor(cfg, "nope.pt")
