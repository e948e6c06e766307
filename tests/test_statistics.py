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


def _grid_files(tmp_path, spec: dict, values: dict, record, log: str = "step,L_k,R_k,phase\n10,1.0,0.5,0\n") -> list:
    """The ablation file s.yaml and one run folder per (point, seed) of `values`: its training log and its
    metrics.json, record(point, seed, value); the metrics files, in grid order."""
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    runs = []
    for pt, vals in values.items():
        for seed, v in enumerate(vals):
            d = tmp_path / f"{pt}-{seed}"
            d.mkdir()
            (d / "train_log.csv").write_text(log)
            (d / "metrics.json").write_text(json.dumps(record(pt, seed, v)))
            runs.append(d / "metrics.json")
    return runs


def test_table_prints_both_p_values_and_the_main_table_says_post_hoc(tmp_path):
    swd = {"a": [0.050, 0.052, 0.051], "b": [0.061, 0.060, 0.064], "c": [0.049, 0.050, 0.053]}
    spec = {"name": "ab", "baseline": {"method.ordering": "a"}, "grid": {"method.ordering": list(swd)}}
    runs = _grid_files(tmp_path, spec, swd, lambda pt, seed, v: {
        "point": {"method.ordering": pt}, "seed": seed, "primary": "swd", "metrics": {"swd": v}, "train": {}})
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


def test_tost_shows_equivalence_only_within_its_margin():
    a = {0: 1.00, 1: 1.02, 2: 0.99, 3: 1.01, 4: 1.00}
    b = {0: 1.01, 1: 1.01, 2: 1.00, 3: 1.00, 4: 1.01}
    assert stats.tost_p(a, b, margin=0.1) < 0.01  # differences ~0.01 against a margin of 0.1: equivalent
    assert stats.tost_p(a, b, margin=0.001) > 0.3  # the same differences cannot show a margin of 0.001
    far = {s: v + 0.5 for s, v in a.items()}
    assert stats.tost_p(far, b, margin=0.1) > 0.99 and stats.paired_p(far, b) < 1e-4
    assert math.isnan(stats.tost_p({0: 1.0}, {0: 1.0}, 0.1))


def test_evaluation_variance_widens_intervals_and_weakens_tests():
    vals = [0.050, 0.052, 0.051]
    lo0, hi0 = stats.ci95(vals)
    lo1, hi1 = stats.ci95(vals, [1e-5] * 3)  # evaluation sd 0.0032 per run, about 3x the seeds' sd
    se = math.sqrt((np.var(vals, ddof=1) + 1e-5) / 3)
    assert hi1 - lo1 == pytest.approx(2 * 4.302653 * se, rel=1e-4) and hi1 - lo1 > 3 * (hi0 - lo0)
    a, b = {0: 0.050, 1: 0.052, 2: 0.051}, {0: 0.055, 1: 0.056, 2: 0.057}
    ev = {s: 1e-5 for s in a}
    assert stats.paired_p(a, b, ev, ev) > 5 * stats.paired_p(a, b)


def test_table_caption_says_intervals_combine_seed_and_evaluation_variance(tmp_path):
    tv = {"a": [0.050, 0.052, 0.051], "b": [0.061, 0.060, 0.064]}
    spec = {"name": "ab", "baseline": {"method.ordering": "a"}, "grid": {"method.ordering": list(tv)}}
    runs = _grid_files(tmp_path, spec, tv, lambda pt, seed, v: {
        "point": {"method.ordering": pt}, "seed": seed, "primary": "tv", "train": {},
        "metrics": {"tv": v, "off_support": v / 2, "swd": 0.01}, "eval_sd": {"tv": 0.003, "swd": 0.001}})
    (tmp_path / "ref.json").write_text(json.dumps({"floor": {"tv": 0.009, "off_support": 0.0, "swd": 0.009},
                                                   "floor_std": {"tv": 0.0003, "off_support": 0.0, "swd": 0.002},
                                                   "floor_repeats": 10, "floor_samples": 4096, "num_samples": 4096}))
    s = ablation.build(tmp_path / "s.yaml", runs, [], tmp_path / "ref.json", tmp_path / "out" / "ab", tmp_path / "ab.png")
    md = (tmp_path / "out" / "ab.md").read_text()
    assert "combine seed and evaluation variance" in md and "TOST p (±10%)" in md
    header = next(r for r in md.splitlines() if r.startswith("| ordering"))
    cols = [c.strip() for c in header.split("|")[1:-1]]
    assert cols[1] == "TV" and cols.index("off-support mass") < cols.index("SWD")
    assert s["tv_eval_sd"].to_list() == pytest.approx([0.003, 0.003])
    lo, hi = s.filter(s["method.ordering"] == "a")[["tv_ci_lo", "tv_ci_hi"]].row(0)
    assert hi - lo == pytest.approx(2 * 4.302653 * math.sqrt((np.var(tv["a"], ddof=1) + 0.003 ** 2) / 3), rel=1e-4)


def test_baselines_table_tests_every_method_against_the_baseline_with_holm(tmp_path):
    from onestep.report.baselines import build_baselines

    tv = {"curriculum": [0.050, 0.052, 0.051], "kd": [0.061, 0.060, 0.064], "cd": [0.049, 0.050, 0.053]}
    spec = {"name": "baselines", "baseline": {"method.name": "curriculum"}, "table": "baselines",
            "grid": {"method.name": list(tv)}}
    runs = _grid_files(tmp_path, spec, tv, lambda pt, seed, v: {
        "point": {"method.name": pt}, "seed": seed, "primary": "tv", "ablation": "baselines",
        "metrics": {"tv": v, "swd": 0.01}, "eval_sd": {"tv": 0.001},
        "train": {"wall_time_s": 1.0, "steps": 10, "teacher_evals": 1.0}}, log="step,loss\n10,1.0\n")
    (tmp_path / "ref.json").write_text(json.dumps({"floor": {"tv": 0.009, "swd": 0.009}, "num_samples": 4096}))
    s = build_baselines(tmp_path / "s.yaml", runs, [], tmp_path / "ref.json", tmp_path / "out" / "b", tmp_path / "b.png")
    p = dict(zip(s["method.name"], s["tv_p_vs_baseline"], strict=True))
    ph = dict(zip(s["method.name"], s["tv_p_holm"], strict=True))
    assert math.isnan(p["curriculum"]) and p["kd"] < 0.05
    ev = {k: 0.001 ** 2 for k in range(3)}
    assert p["kd"] == pytest.approx(stats.paired_p(dict(enumerate(tv["kd"])), dict(enumerate(tv["curriculum"])), ev, ev))
    assert sorted([ph["kd"], ph["cd"]]) == pytest.approx(stats.holm([p["kd"], p["cd"]]) if p["kd"] < p["cd"]
                                                         else sorted(stats.holm([p["kd"], p["cd"]])))
    md = (tmp_path / "out" / "b.md").read_text()
    assert "p (Holm)" in md and "Holm-corrected across the table's methods" in md and "TOST p" in md
