"""Budgets said and matched: the method-blind step budget of the baselines (`total_steps`, the `method.total_steps`
axis), the aux-step counter, the budget and equal-compute tables, and the targets' plans."""

import json
import math

import pytest
import torch
from conftest import TINY, context, method_of, planned_jobs, snakemake, write_tiny

from onestep.config import Student, deep_merge, merged_files
from onestep.config.grids import load_workflow
from onestep.diffusion import Schedule, Teacher
from onestep.methods import METHODS
from onestep.methods.base import MethodBase
from onestep.nets import build_net
from onestep.report.budget import build_budget
from onestep.report.compute import at_compute, build_compute
from onestep.training.loop import fit

NET = {"name": "mlp", "width": 16, "depth": 1, "temb_dim": 8}


def test_every_baseline_trains_the_curriculum_steps():
    """The default comparison: every method of `baselines` trains the curriculum's 4000 optimiser steps, whatever
    knobs hold them (stages, rounds, phases), and the tuned grid the same runs."""
    abl = load_workflow(merged_files([]))
    steps = {r.config["method"]["name"]: METHODS[r.config["method"]["name"]].total_steps_of(r.config["method"])
             for r in abl["baselines"].runs}
    assert set(steps) == set(METHODS) and steps["curriculum"] == 4000, steps
    assert all(0.99 * 4000 <= s <= 4000 for s in steps.values()), steps  # floored at most to a method's unit
    budget = abl["baselines_budget"]
    for r in budget.runs:  # the axis: each run's budget, floored at most to the method's unit
        want, got = r.point["method.total_steps"], METHODS[r.config["method"]["name"]].total_steps_of(r.config["method"])
        assert 0.9 * want < got <= want, (r.name, want, got)
    assert sorted({r.point["method.total_steps"] for r in budget.runs}) == [1000, 2000, 4000, 8000, 16000]
    assert abl["baselines_compute"].runs == [] and abl["baselines_compute"].reads == "baselines_budget"


class WithFake(MethodBase):
    """A method with its own network: 3 optimiser steps of it per training step (a fake score's updates)."""

    total_steps = 5

    def __init__(self):
        self.own = torch.nn.Linear(2, 2)
        self.opt = torch.optim.SGD(self.own.parameters(), lr=0.1)

    def aux_step(self, student, batch, step, gen):
        for _ in range(3):
            self.opt.zero_grad()
            self.own(batch.z).pow(2).mean().backward()
            self.opt.step()
        return {}

    def loss(self, student, batch, step, gen):
        return (student(batch.z, torch.full((batch.z.shape[0],), 999)) - batch.x0).pow(2).sum(1), {}


def _fit(method, ctx, steps_section=None):
    net = build_net({**NET, "times": method.times}, (2,))
    section = Student.filled({"batch_size": 8, "lr": 1e-3, "ema": 0.9, "log_every": 5, **(steps_section or {})})
    pairs = {"z": torch.randn(64, 2), "x0": torch.randn(64, 2)}
    return fit({"dataset": {"name": "checkerboard"}}, section, method, ctx, net, 0, "cpu", lambda *a, **k: None,
               pairs=pairs, progress=False)[1]


def test_aux_steps_count_the_methods_own_optimisers_only():
    summary = _fit(WithFake(), context())
    assert summary["steps"] == 5 and summary["aux_steps"] == 5 * 3  # the student's own steps are not aux steps
    assert summary["student_backwards"] == 5 * 8
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    opt.step()  # the counter is closed after the loop: a later optimiser is not counted anywhere (no error either)


@pytest.mark.parametrize("name", ["kd", "dmd2", "tdm"])
def test_counted_budget_equals_the_loops_passes(name):
    """A real method on a tiny run: the counted aux steps equal its own optimisers' steps (counted here by
    hooks on each), the student's backward passes one per sample and optimiser step where the loss makes one."""
    sch = Schedule.from_config({"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02})
    ctx = context(Teacher(build_net(NET, (2,)), sch))
    m = method_of(name, ctx=ctx, steps=6)
    own = [o for o in vars(m).values() if isinstance(o, torch.optim.Optimizer)]
    seen = [0]
    for o in own:
        o.register_step_post_hook(lambda *a: seen.__setitem__(0, seen[0] + 1))
    summary = _fit(m, ctx)
    assert summary["steps"] == 6 and summary["aux_steps"] == seen[0]
    assert (seen[0] > 0) == (name != "kd")
    assert summary["student_backwards"] >= 6 * 8 and summary["student_forwards"] >= summary["student_backwards"]
    if name == "kd":  # G(z) once per sample and step, with gradients, nothing else
        assert summary["student_forwards"] == summary["student_backwards"] == 6 * 8


def test_at_compute_interpolates_in_log_log():
    pts = [(100.0, 1.0, 10.0), (400.0, 0.25, 40.0)]
    v, s = at_compute(pts, 200.0)
    assert math.isclose(v, 0.5) and math.isclose(s, 20.0)
    assert at_compute(pts, 50.0) is None and at_compute(pts, 800.0) is None


def _records(tmp_path):
    """Fake metrics.json of a budget grid: 2 methods x 2 budgets x 2 seeds; 'b' costs twice as much per step."""
    files = []
    for m, per_step, q in (("a", 10.0, 1.0), ("b", 20.0, 2.0)):
        for budget in (100, 400):
            for seed in (0, 1):
                rec = {"primary": "swd", "seed": seed, "point": {"method.name": m, "method.total_steps": budget},
                       "metrics": {"swd": q * 100 / budget + 0.01 * seed},
                       "train": {"steps": budget, "teacher_evals": 0.0, "student_forwards": per_step * budget / 2,
                                 "student_backwards": per_step * budget / 2}}
                f = tmp_path / f"{m}-{budget}-{seed}.json"
                f.write_text(json.dumps(rec))
                files.append(f)
    (tmp_path / "ref.json").write_text(json.dumps({"floor": {"swd": 0.01}, "num_samples": 64}))
    (tmp_path / "spec.yaml").write_text(json.dumps({"name": "bb", "baseline": {"method.name": "a",
                                                    "method.total_steps": 400},
                                                    "grid": {"method.name": ["a", "b"],
                                                             "method.total_steps": [100, 400]}}))
    return files


def test_budget_and_compute_tables(tmp_path):
    files = _records(tmp_path)
    s = build_budget(tmp_path / "spec.yaml", files, [], tmp_path / "ref.json", tmp_path / "t" / "bb",
                     tmp_path / "p" / "bb.png")
    assert s["method"].to_list() == ["a", "a", "b", "b"] and s["budget"].to_list() == [100, 400, 100, 400]
    assert s["seeds"].to_list() == [2] * 4 and (s["ci_lo"] < s["mean"]).all() and (s["mean"] < s["ci_hi"]).all()
    assert (tmp_path / "p" / "bb.png").stat().st_size > 0 and "swd" not in (tmp_path / "t" / "bb.md").read_text()[:0]
    c = build_compute(tmp_path / "spec.yaml", files, [], tmp_path / "ref.json", tmp_path / "t" / "bc",
                      tmp_path / "p" / "bc.png").to_dicts()
    a, b = c  # a at its own 400 steps (compute 4000); b reaches that compute at 200 steps
    assert math.isclose(a["steps"], 400) and math.isclose(a["mean"], 1.0 * 100 / 400 + 0.005)
    assert math.isclose(b["steps"], 200.0, rel_tol=1e-9) and b["seeds"] == 2
    assert "at equal compute" in (tmp_path / "t" / "bc.md").read_text()


def test_budget_targets_plan(tmp_path):
    """baselines_budget plans its runs (the axis in the run names); baselines_compute plans the same runs and its
    own table only; baselines trains the tier's steps for each method."""
    grid = {"method.name": ["curriculum", "kd"]}
    budget = {"name": "baselines_budget", "table": "budget", "baseline": {"method.name": "curriculum",
              "method.total_steps": 20}, "grid": {**grid, "method.total_steps": [10, 20]}}
    grids = {"baselines_budget": budget,
             "baselines_compute": {**budget, "name": "baselines_compute", "table": "compute",
                                   "reads": "baselines_budget"},
             "baselines": {"name": "baselines", "table": "baselines", "total_steps": "tier", "grid": grid}}
    write_tiny(tmp_path, deep_merge(TINY, {}), grids)
    for target, trains in (("baselines_budget", 4), ("baselines_compute", 4), ("baselines", 2)):
        p = snakemake(tmp_path, target, "-n", "--nolock", timeout=300)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        jobs = planned_jobs(p.stdout)
        assert jobs.get("train") == trains and jobs.get("table") == 1, (target, jobs)
