"""The `baselines` target: a tiny run through Snakemake (curriculum + kd, progressive, cd, ct, ctm, one
seed, a few steps each) and dry runs of the real grid on checkerboard and on digits."""

import json

import polars as pl
import pytest
import yaml
from conftest import REPO, TINY, UNTRACKED, Finished, planned_jobs, snakemake

from onestep.config import deep_merge

METHODS_A = ["curriculum", "kd", "progressive", "cd", "ct", "ctm"]
TINY_BASELINES = deep_merge(TINY, {**UNTRACKED,  # one teacher row; each method's tiny budget is the grid's per_method
    "student": {"log_every": 5},
    "evaluation": {"teacher_steps": [1], "floor_repeats": 2},
})
GRID = {"name": "baselines", "title": "Baselines (tiny)", "baseline": {"method.name": "curriculum"},
        "table": "baselines", "grid": {"method.name": METHODS_A},
        "per_method": {"kd": {"steps": 20},
                       "progressive": {"start_steps": 2, "steps_per_round": 10}, "cd": {"steps": 20, "s0": 2, "s1": 4},
                       "ct": {"steps": 20, "s0": 2, "s1": 4}, "ctm": {"steps": 20, "N": 6}}}


FINISHED = Finished("baselines", TINY_BASELINES, {"baselines": GRID})


@pytest.mark.e2e
def test_baselines_table_has_a_row_per_method_and_the_costs(finished):
    r = finished / "results"
    csv = pl.read_csv(r / "tables" / "checkerboard" / "baselines.csv")
    assert csv["method.name"].to_list() == METHODS_A and (csv["seeds"] == 1).all()
    for col in ("tv_mean", "swd_mean", "tv@2_mean", "tv@4_mean", "wall_time_s_mean", "steps_mean",  # tv: the headline
                "teacher_evals_mean", "params_mean", "tv_ratio_to_teacher_1"):
        assert col in csv.columns, col
    row = {m: csv.row(i, named=True) for i, m in enumerate(METHODS_A)}
    assert [row[m]["steps_mean"] for m in METHODS_A] == [30, 20, 20, 20, 20, 20]  # each method's own budget
    assert row["kd"]["teacher_evals_mean"] == 0 and row["ct"]["teacher_evals_mean"] == 0  # pairs / data only
    assert row["cd"]["teacher_evals_mean"] == 2 * 64 * 20  # one Heun step (two evaluations) per sample and step
    assert row["ctm"]["params_mean"] > row["kd"]["params_mean"]  # its two-time student
    assert row["kd"]["tv@2_mean"] is None and row["progressive"]["tv@2_mean"] > 0  # few steps where sampled so
    md = (r / "tables" / "checkerboard" / "baselines.md").read_text()
    labels = [line.split("|")[1].strip().strip("*") for line in md.splitlines() if line.startswith("| ")][1:]
    assert labels == [*METHODS_A, "data vs data (floor)", "teacher DDIM 1 step",
                      "teacher pairs: dpm++ 10 steps, x0 clipped to +-2"]  # the pairs' own solver
    for col in ("student_forwards_mean", "student_backwards_mean"):  # budgets counted
        assert (csv[col] > 0).all(), col
    assert "teacher evals" in md and "optimiser steps" in md and "params" in md
    plots = r / "plots" / "checkerboard"
    assert (plots / "baselines.png").stat().st_size > 0 and (plots / "baselines.pdf").exists()
    m = json.loads((r / "checkerboard" / "baselines" / "name-ctm_seed-0" / "metrics.json").read_text())
    assert set(m["multistep"]) >= {"swd@2", "swd@4"} and m["method"] == "ctm"


def _grid_runs() -> int:
    spec = yaml.safe_load((REPO / "config" / "ablations" / "baselines.yaml").read_text())
    seeds = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["seeds"]
    return len(spec["grid"]["method.name"]) * len(spec.get("seeds", seeds))


@pytest.mark.e2e
def test_baselines_dry_run(tmp_path):
    p = snakemake(tmp_path, "-n", "baselines", configs=())
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    jobs = planned_jobs(p.stdout)
    assert jobs["train"] == jobs["evaluate"] == _grid_runs() and jobs["table"] == 1


@pytest.mark.e2e
def test_baselines_dry_run_on_digits(tmp_path):
    """config/digits.yaml when it exists; else the digits overrides tests/test_images.py uses."""
    digits = REPO / "config" / "digits.yaml"
    if not digits.exists():
        net = {"name": "convnet", "width": 16, "depth": 1, "temb_dim": 16}
        digits = tmp_path / "digits.yaml"
        digits.write_text(yaml.safe_dump({"dataset": {"name": "digits"}, "teacher": {"net": net}, "student": {"net": net}}))
    p = snakemake(tmp_path, "-n", "baselines", configs=(digits,))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "results/digits/baselines/name-ctm_seed-0/metrics.json" in p.stdout
    assert planned_jobs(p.stdout)["train"] == _grid_runs()


def test_baselines_table_from_files(tmp_path):
    """The table builder alone on hand-written metrics.json files: means over seeds, '-' where a method
    has no few-step sampler, ratios to the teacher's DDIM, the cost columns, teacher rows."""
    from onestep.report import baselines

    def run(name, seed, swd, few, evals):
        m = {"point": {"method.name": name}, "seed": seed, "method": name, "primary": "swd",
             "metrics": {"swd": swd, "mmd": 0.01}, "multistep": few,
             "train": {"wall_time_s": 10.0 + seed, "samples_per_s": 1.0, "steps": 4000, "teacher_evals": evals,
                       "params": 1000}}
        f = tmp_path / f"{name}-{seed}.json"
        f.write_text(json.dumps(m))
        return f

    runs = [run("kd", 0, 0.02, {}, 0), run("kd", 1, 0.04, {}, 0),
            run("cd", 0, 0.05, {"swd@2": 0.03, "mmd@2": 0.0, "swd@4": 0.02, "mmd@4": 0.0}, 512)]
    teachers = []
    for n, v in ((1, 0.5), (50, 0.025)):
        teachers.append(tmp_path / f"t{n}.json")
        teachers[-1].write_text(json.dumps({"steps": n, "metrics": {"swd": v, "mmd": 0.1}}))
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"floor": {"swd": 0.01, "mmd": 0.001}, "num_samples": 4096}))
    s = baselines.baselines(runs, teachers, ref, ["method.name"], "t", tmp_path / "out" / "b", tmp_path / "b.png")
    kd, cd = s.row(0, named=True), s.row(1, named=True)
    assert kd["seeds"] == 2 and kd["swd_mean"] == pytest.approx(0.03) and kd["swd@2_mean"] is None
    assert kd["swd_ratio_to_teacher_1"] == pytest.approx(0.06) and kd["swd_ratio_to_teacher_50"] == pytest.approx(1.2)
    assert cd["swd@4_mean"] == pytest.approx(0.02) and cd["teacher_evals_mean"] == 512 and kd["wall_time_s_mean"] == 10.5
    md = (tmp_path / "out" / "b.md").read_text()
    assert "| method | SWD | MMD² | SWD 2 steps | SWD 4 steps | SWD / DDIM-1 | SWD / DDIM-50 | train s |" in md
    # one cell per header column: the counted aux steps and passes ('-' where a run has none)
    assert ("| train s | optimiser steps | aux steps | teacher evals | student fwd | student bwd | params | seeds |") in md
    assert "| kd | **0.03 ± 0.014** | **0.01 ± 0** | - | - | 0.06 | 1.2 | 10 | 4000 | - | 0 | - | - | 1000 | 2 |" in md
    assert len({line.count("|") for line in md.splitlines() if line.startswith("|")}) == 1
    assert "*teacher DDIM 50 steps*" in md and (tmp_path / "b.pdf").exists()


def test_baselines_table_counts_samples_outside_the_support(tmp_path, monkeypatch):
    """Issue 13, item 7: every run and teacher row reports its samples outside the data's support; the
    baselines table too (a mean over seeds; the teacher's DDIM-50 with its far-off samples)."""
    from onestep.report import baselines

    runs = []
    for name, seed, far in (("kd", 0, 2), ("kd", 1, 0), ("cd", 0, 5)):
        runs.append(tmp_path / f"{name}-{seed}.json")
        runs[-1].write_text(json.dumps({
            "point": {"method.name": name}, "seed": seed, "method": name, "primary": "swd", "out_of_support": far,
            "metrics": {"swd": 0.02 + seed / 100, "mmd": 0.01}, "multistep": {},
            "train": {"wall_time_s": 1.0, "steps": 10, "teacher_evals": 100 * seed, "params": 10,
                      "student_forwards": 20, "student_backwards": 10}}))
    teachers = []
    for n, far in ((1, 0), (50, 8)):
        teachers.append(tmp_path / f"t{n}.json")
        teachers[-1].write_text(json.dumps({"steps": n, "metrics": {"swd": 0.1, "mmd": 0.1}, "out_of_support": far}))
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"floor": {"swd": 0.01, "mmd": 0.001}, "num_samples": 4096}))
    plotted = []
    monkeypatch.setattr(baselines.figures, "quality_vs_cost", lambda points, *a: plotted.extend(points))
    baselines.baselines(runs, teachers, ref, ["method.name"], "t", tmp_path / "out" / "b", tmp_path / "b.png")
    # the plot's x: teacher evaluations + student forward and backward passes (kd: mean of 0 and 100, + 30)
    assert {p["label"]: p["compute"] for p in plotted} == {"kd": 80.0, "cd": 30.0}
    md = (tmp_path / "out" / "b.md").read_text()
    assert "| SWD / DDIM-50 | outside support (of 4096) | train s |" in md
    rows = {line.split(" | ")[0].strip("| *"): line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    col = rows["method"].index("outside support (of 4096)")
    assert rows["kd"][col] == "1" and rows["cd"][col] == "5" and rows["teacher DDIM 50 steps"][col] == "*8*"
    assert len({line.count("|") for line in md.splitlines() if line.startswith("|")}) == 1
