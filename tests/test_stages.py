"""Per-stage evaluation: G(z, t_k) at every stage against the seed's mean target and the
teacher's trajectory, on the exact one-point teacher (closed forms in test_target.py), and its table column
and figure."""

import json

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from conftest import DIFF, GaussEps
from test_target import MU, Closed, closed

from onestep.diffusion import ddim_trajectory, grid_times
from onestep.methods.curriculum_stages import stage_errors, timesteps
from onestep.report import ablation
from onestep.report.main import build_main


class Mean(torch.nn.Module):
    """The seed's optimum under L_k alone: G(z, t) = sqrt(abar_t) mu (the conditional mean)."""

    def __init__(self, schedule):
        super().__init__()
        self.abar = schedule.abar

    def forward(self, z, t):
        return self.abar[t.long()].sqrt().view(-1, 1) * MU.expand_as(z)


def _states(schedule, z, K):
    x0, xt = ddim_trajectory(GaussEps(schedule, MU, 0.0), z, 20, DIFF, grid_times(1000, [K]))
    return {"x0": x0.numpy(), "xt": xt.numpy(), "trajectory_t": np.array(grid_times(1000, [K])), "K": np.array(K)}


def test_stage_errors_in_closed_form(schedule):
    z = torch.randn(512, 2, generator=torch.Generator().manual_seed(3))
    K = 5
    states = _states(schedule, z, K)
    on = stage_errors(Closed(schedule), states, z, schedule, K)
    off = stage_errors(Mean(schedule), states, z, schedule, K)
    assert on["t"] == list(timesteps(1000, K)[1:]) and on["k"] == [1, 2, 3, 4, 5]
    for i, t in enumerate(on["t"]):
        gap = float(((closed(schedule, z, t) - schedule.abar[t].sqrt() * MU) ** 2).mean().sqrt())  # sqrt(1 - abar) e(z)
        assert on["err_traj"][i] < 1e-4 and on["err_mean"][i] == pytest.approx(gap, rel=1e-3, abs=1e-4)
        assert off["err_mean"][i] < 1e-5 and off["err_traj"][i] == pytest.approx(gap, rel=1e-3, abs=1e-4)
    assert on["err_mean"][-1] < 1e-4  # t_K = 0: both targets are x0
    assert off["traj_err"] == pytest.approx(np.mean(off["err_traj"])) and off["traj_err"] > 0.3


def test_table_column_and_stage_figure(tmp_path):
    spec = {"name": "ablate_order", "title": "Order", "baseline": {"method.ordering": "forward"},
            "grid": {"method.ordering": ["forward", "reversed"]}}
    (tmp_path / "order.yaml").write_text(yaml.safe_dump(spec))
    runs, traj = [], {"forward": [0.10, 0.12], "reversed": [0.30, 0.34]}
    for order, errs in traj.items():
        for seed, e in enumerate(errs):
            d = tmp_path / "runs" / f"ordering-{order}_seed-{seed}"
            d.mkdir(parents=True)
            (d / "train_log.csv").write_text("step,L_k,R_k,phase\n10,1.0,0.5,0\n")
            st = {"K": 2, "k": [1, 2], "t": [500, 0], "err_mean": [0.2, e], "err_traj": [e * 1.5, e * 0.5],
                  "traj_err": e, "mean_err": 0.1}
            (d / "metrics.json").write_text(json.dumps({
                "point": {"method.ordering": order}, "seed": seed, "primary": "swd", "stages": st,
                "metrics": {"swd": 0.05 + e / 10, "fd": 0.1, "mmd": 0.01},
                "train": {"wall_time_s": 1.0, "teacher_evals": 10, "steps": 40}}))
            runs.append(d / "metrics.json")
    (tmp_path / "reference.json").write_text(json.dumps({"floor": {"swd": 0.03, "fd": 0.001, "mmd": 0.0},
                                                         "num_samples": 256}))
    s = ablation.build(tmp_path / "order.yaml", runs, [], tmp_path / "reference.json", tmp_path / "out" / "ab",
                     tmp_path / "plots" / "ab.png")
    assert s["traj_err_mean"].to_list() == pytest.approx([0.11, 0.32])
    md = (tmp_path / "out" / "ab.md").read_text()
    header = next(r for r in md.splitlines() if r.startswith("| ordering"))
    cols = [c.strip() for c in header.split("|")[1:-1]]
    assert cols[1:8] == ["SWD", "SWD 95% CI", "p vs baseline", "p (Holm)", "TOST p (±10%)", "FD", "MMD²"]
    i = cols.index("traj. err (mean over t_k)")
    row = next(r for r in md.splitlines() if r.startswith("| reversed"))
    assert row.split("|")[i + 1].strip() == "0.32 ± 0.028"
    assert (tmp_path / "plots" / "ab_stages.png").stat().st_size > 0
    main = build_main([tmp_path / "out" / "ab.csv"], tmp_path / "out" / "main", tmp_path / "plots" / "main.png")
    assert "traj_err_mean" in main.columns and "traj. err" in (tmp_path / "out" / "main.md").read_text()
    assert pl.read_csv(tmp_path / "out" / "ab.csv")["traj_err_mean"].drop_nulls().len() == 2
