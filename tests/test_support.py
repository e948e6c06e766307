"""Samples outside the data's support: counted per run and teacher row, shown in the table."""

import json

import pytest
import torch
import yaml

from onestep.evaluate import out_of_support, score
from onestep.report import ablation


def test_planted_far_points_are_counted():
    data = torch.rand(1000, 2) * 4 - 2  # the box [-2, 2]^2; margin 0.25 -> [-3, 3]^2
    x = torch.rand(500, 2) * 5.8 - 2.9  # inside the widened box
    assert out_of_support(x, data) == 0
    far = torch.tensor([[38.0, 0.0], [0.0, -3.5], [-10.0, 12.0]])
    assert out_of_support(torch.cat([x, far]), data) == 3
    assert out_of_support(torch.cat([x, far]), data, margin=1.0) == 2  # [-6, 6]^2: (0, -3.5) is inside


def test_score_reports_the_count(default_config):
    cfg = {**default_config, "evaluation": {**default_config["evaluation"], "swd_projections": 8}}
    ref = {"x": (torch.rand(256, 2) * 4 - 2).numpy()}
    x = torch.cat([torch.rand(252, 2) * 4 - 2, torch.full((4, 2), 40.0)])
    out = score(x, ref, cfg)
    assert out["out_of_support"] == 4 and out["support_margin"] == 0.25


def test_table_column_for_runs_and_teacher_rows(tmp_path):
    spec = {"name": "ab", "baseline": {"method.ordering": "a"}, "grid": {"method.ordering": ["a", "b"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    runs = []
    for pt, far in (("a", [0, 2]), ("b", [5, 7])):
        for seed, n in enumerate(far):
            d = tmp_path / f"{pt}-{seed}"
            d.mkdir()
            (d / "train_log.csv").write_text("step,L_k,R_k,phase\n10,1.0,0.5,0\n")
            (d / "metrics.json").write_text(json.dumps({
                "point": {"method.ordering": pt}, "seed": seed, "primary": "swd", "metrics": {"swd": 0.05 + n / 100},
                "train": {}, "out_of_support": n, "support_margin": 0.25, "num_samples": 65536}))
            runs.append(d / "metrics.json")
    (tmp_path / "ref.json").write_text(json.dumps({"floor": {"swd": 0.01}, "num_samples": 65536}))
    (tmp_path / "t.json").write_text(json.dumps({"steps": 50, "metrics": {"swd": 0.12}, "out_of_support": 9}))
    s = ablation.build(tmp_path / "s.yaml", runs, [tmp_path / "t.json"], tmp_path / "ref.json", tmp_path / "out" / "ab",
                     tmp_path / "ab.png")
    assert s["out_of_support_mean"].to_list() == pytest.approx([1.0, 6.0])
    md = (tmp_path / "out" / "ab.md").read_text()
    lines = md.splitlines()
    cols = [c.strip() for c in next(r for r in lines if r.startswith("| ordering")).split("|")[1:-1]]
    i = cols.index("outside support (of 65536)")
    cell = lambda start: [c.strip().strip("*") for c in next(r for r in lines if r.startswith(start)).split("|")[1:-1]][i]  # noqa: E731
    assert cell("| b ") == "6 ± 1.4" and cell("| *teacher DDIM 50") == "9"
    assert "bounding box widened by 0.25" in md
