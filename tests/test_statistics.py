"""Statistics a reviewer accepts: Holm across the points of an ablation, the image floor
at the runs' sample size against the runs' reference, the captions that say so."""

import json
import math

import numpy as np
import pytest
import yaml

from onestep import evaluate
from onestep.config import IMAGE_FLOOR
from onestep.report import ablation, stats
from onestep.report.main import build_main


def test_holm_against_a_hand_computation():
    # m = 3 non-nan: sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03; max(0.03, 2 x 0.03) = 0.06; max(0.06, 1 x 0.04) = 0.06
    assert stats.holm([0.04, math.nan, 0.01, 0.03]) == pytest.approx([0.06, math.nan, 0.03, 0.06], nan_ok=True)
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, monotone
    assert stats.holm([0.2]) == [0.2] and stats.holm([]) == []


def test_table_prints_both_p_values_and_the_main_table_says_post_hoc(tmp_path):
    swd = {"a": [0.050, 0.052, 0.051], "b": [0.061, 0.060, 0.064], "c": [0.049, 0.050, 0.053]}
    spec = {"name": "ab", "baseline": {"method.ordering": "a"}, "grid": {"method.ordering": list(swd)}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    runs = []
    for pt, vals in swd.items():
        for seed, v in enumerate(vals):
            d = tmp_path / f"{pt}-{seed}"
            d.mkdir()
            (d / "train_log.csv").write_text("step,L_k,R_k,phase\n10,1.0,0.5,0\n")
            (d / "metrics.json").write_text(json.dumps({"point": {"method.ordering": pt}, "seed": seed, "primary": "swd",
                                                        "metrics": {"swd": v}, "train": {}}))
            runs.append(d / "metrics.json")
    (tmp_path / "ref.json").write_text(json.dumps({"floor": {"swd": 0.03}, "floor_std": {"swd": 0.004},
                                                   "floor_repeats": 10, "floor_samples": 4096, "num_samples": 4096}))
    s = ablation.build(tmp_path / "s.yaml", runs, [], tmp_path / "ref.json", tmp_path / "out" / "ab", tmp_path / "ab.png")
    p = dict(zip(s["method.ordering"], s["swd_p_vs_baseline"], strict=True))
    ph = dict(zip(s["method.ordering"], s["swd_p_holm"], strict=True))
    lo, hi = sorted([p["b"], p["c"]])
    assert sorted([ph["b"], ph["c"]]) == pytest.approx([2 * lo, max(2 * lo, hi)])
    md = (tmp_path / "out" / "ab.md").read_text()
    assert "| p vs baseline | p (Holm) |" in md and f"{ph['b']:.3f}" in md.split("| b |")[1].splitlines()[0]
    assert "mean over 10 draws of 4096 data samples" in md and "std over the draws 0.004" in md
    assert "conditional on one held-out noise set" in md
    build_main([tmp_path / "out" / "ab.csv"], tmp_path / "out" / "main", tmp_path / "main.png")
    main = (tmp_path / "out" / "main.md").read_text()
    assert "selected post hoc" in main and "p (Holm)" in main


def test_image_floor_at_the_runs_sample_size(monkeypatch):
    feats = np.random.default_rng(0).normal(size=(300, 4))
    stats = (feats.mean(0), np.cov(feats, rowvar=False))
    calls = []

    def spy(a, b, st=None):
        calls.append((a.shape[0], b.shape[0], st is stats, len(np.unique(a, axis=0))))
        return {"fid": float(a.shape[0]), "kid": 0.0}

    monkeypatch.setattr(evaluate, "feature_metrics", spy)
    out = evaluate.image_floor(feats, stats, 64, 5, seed=1)
    # n = the runs' sample size, against the runs' reference and statistics; then the held-out draws
    assert [c[:3] for c in calls] == [(64, 300, True)] * 5 + [(64, 150, False)] * 5
    assert out["floor_samples"] == 64 and out["floor_repeats"] == 5 and out["floor"]["fid"] == 64.0
    assert out["floor_draws"] == IMAGE_FLOOR  # the reference rule's param: a new way to draw re-runs it
    calls.clear()
    big = evaluate.image_floor(feats, stats, 1000, 2, seed=1)  # n above the set's size: still n draws
    assert big["floor_samples"] == 1000 and all(c[0] == 1000 for c in calls)
    assert all(c[3] < 300 for c in calls[:2])  # with replacement: repeats, not the reference set itself


def test_image_floor_does_not_degenerate_when_n_covers_the_dataset():
    """Without replacement, n >= the dataset's size drew the reference itself (digits: FID 1.5e-09)."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 3))
    stats = (feats.mean(0), np.cov(feats, rowvar=False))
    out = evaluate.image_floor(feats, stats, 256, 4, seed=0)
    assert out["floor"]["fid"] > 1e-3 and out["floor_std"]["fid"] > 0
    assert out["floor_heldout"]["fid"] > out["floor"]["fid"]  # an independent sample is further than a resample
