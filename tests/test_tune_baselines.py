"""Equal-effort tuning through Snakemake: `tune_baselines` plans one study per method of the baselines grid, and a
tiny `baselines_tuned` runs the studies, gathers the tuned-values file and tables default and tuned side by side."""

import polars as pl
import pytest
import yaml
from conftest import REPO, TINY, UNTRACKED, Finished, planned_jobs, snakemake

from onestep.config import deep_merge
from onestep.methods import METHODS
from onestep.tuning import keys
from onestep.tuning import values as values_file
from onestep.tuning.space import method_space

SHIPPED = yaml.safe_load((REPO / "config" / "ablations" / "baselines.yaml").read_text())["grid"]["method.name"]


def test_tune_baselines_plans_one_study_per_method(tmp_path):
    p = snakemake(tmp_path, "-n", "tune_baselines", configs=(), timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    jobs = planned_jobs(p.stdout)
    workers = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["tune_baselines"]["workers"]
    assert len(SHIPPED) == 12 and "curriculum" in SHIPPED
    assert jobs["tune_study_config"] == 12 and jobs["tune_summary"] == 12 and jobs["tune_worker"] == 12 * workers
    assert jobs["tune_gather"] == 1 and jobs["tune_baselines"] == 1 and "train" not in jobs
    for name in SHIPPED:
        assert f"results/checkerboard/config/tune_baselines/{name}.yaml" in p.stdout
        assert f"results/optuna/tune_baselines-{name}-checkerboard/best.yaml" in p.stdout
    assert "results/checkerboard/tuned_baselines.yaml" in p.stdout


GRID = {"title": "Baselines (tiny)", "baseline": {"method.name": "curriculum"}, "table": "baselines",
        "grid": {"method.name": ["curriculum", "progressive"]}, "per_method": {"progressive": {"steps_per_round": 5}}}
TINY_TUNED = deep_merge(TINY, {**UNTRACKED,
    "evaluation": {"teacher_steps": [1], "floor_repeats": 2},
    "tune": {"startup_trials": 1, "validation": {"num_samples": 256}},
    "tune_baselines": {"trials": 3, "workers": 1, "budget": 1.0},
})
FINISHED = Finished("baselines_tuned", TINY_TUNED, {
    "baselines": {"name": "baselines", **GRID},
    "baselines_tuned": {"name": "baselines_tuned", "tuned": "baselines", **GRID}}, timeout=1800)


@pytest.mark.e2e
def test_every_study_tunes_its_declared_knobs_with_equal_trials_and_budget(finished):
    results = finished / "results"
    rounds = METHODS["progressive"].total_steps_of({"steps_per_round": 5})  # its rounds x the grid's 5 steps each
    for name, steps in (("curriculum", 30), ("progressive", rounds)):
        trials = pl.read_csv(results / "optuna" / f"tune_baselines-{name}-checkerboard" / "trials.csv")
        params = {c for c in trials.columns if c.startswith(("method.", "student."))}
        assert params == {keys.key(k) for k in method_space(name)}, name
        assert trials.height == 3 and trials["default"].to_list() == [True, False, False]
        assert (trials["state"] == "COMPLETE").all()
        # the counted budget of every trial: the same optimiser steps (whole rounds), student passes, teacher calls
        assert all(steps - 5 < s <= steps for s in trials["steps"].to_list()), trials["steps"].to_list()
        assert (trials["student_backwards"] > 0).all() and (trials["teacher_evals"] > 0).all()


@pytest.mark.e2e
def test_the_tuned_values_reach_the_runs_and_the_table_shows_both(finished):
    results = finished / "results"
    teacher = results / "checkerboard" / "teacher" / "teacher.pt"
    values = values_file.read(results / "checkerboard" / "tuned_baselines.yaml", teacher)
    assert {m: set(v) for m, v in values.items()} == {m: set(method_space(m)) for m in ("curriculum", "progressive")}
    for name in ("curriculum", "progressive"):
        cfg = yaml.safe_load((results / "checkerboard" / "baselines_tuned" / f"name-{name}_seed-0" / "config.yaml").read_text())
        assert cfg["run"]["tuned"]["values"] == values[name] and cfg["run"]["tuned"]["teacher"] == values_file.teacher_hash(teacher)
        for knob, v in values[name].items():
            node = cfg
            for part in keys.key(knob).split("."):
                node = node[part]
            assert node == v
    for name in ("curriculum", "progressive"):  # a study that kept the defaults: the default training, reused
        runs = [results / "checkerboard" / a / f"name-{name}_seed-0" for a in ("baselines", "baselines_tuned")]
        default, tuned_cfg = (yaml.safe_load((r / "config.yaml").read_text()) for r in runs)
        same = {k: v for k, v in default.items() if k != "run"} == {k: v for k, v in tuned_cfg.items() if k != "run"}
        train = yaml.safe_load((runs[1] / "train.json").read_text())
        assert train.get("reused_from") == (str(runs[0].relative_to(results.parent)) if same else None), name
    table = pl.read_csv(results / "tables" / "checkerboard" / "baselines_tuned.csv")
    assert table["method.name"].to_list() == ["curriculum", "curriculum", "progressive", "progressive"]
    assert [k.split(" ")[0] for k in table["knobs"].to_list()] == ["default", "tuned"] * 2
    assert table["steps_mean"][0] == table["steps_mean"][1] == 30  # a tuned run trains what its default run does
    md = (results / "tables" / "checkerboard" / "baselines_tuned.md").read_text()
    assert "| curriculum | default |" in md and "| curriculum | tuned (" in md
    studies = (results / "tables" / "checkerboard" / "tune_baselines.md").read_text()
    assert "3 trials each" in studies and "| progressive |" in studies
