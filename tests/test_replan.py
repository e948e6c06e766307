"""The MLflow set-up (store.json, parent files) depends on the tracking section alone: another dataset's
jobs never re-plan this dataset's, and a changed tracking URI re-plans the tracking files only."""

import os

import pytest
import yaml
from conftest import TINY, planned_jobs, snakemake, write_tiny

from onestep.config import deep_merge

GRID = {"name": "ablate_order", "title": "Stage ordering (tiny)", "baseline": {"method.ordering": "forward"},
        "grid": {"method.ordering": ["forward", "reversed"]}}
TEACHER = "results/{}/teacher/teacher.pt"
PARENT = "results/mlflow/ablate_order.parent.json"


@pytest.mark.e2e
def test_another_dataset_does_not_replan_this_one(tmp_path):
    tiny = deep_merge(TINY, {"teacher": {"steps": 20}})
    write_tiny(tmp_path, tiny, {"order": GRID})
    (tmp_path / "moons.yaml").write_text("dataset: {name: moons}\n")
    p = snakemake(tmp_path, TEACHER.format("checkerboard"), PARENT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    # a moons job (its teacher, the shared store and parent run) ...
    p = snakemake(tmp_path, TEACHER.format("moons"), PARENT, configs=("tiny.yaml", "moons.yaml"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    # ... leaves the checkerboard's teacher and the shared tracking files as they were
    p = snakemake(tmp_path, TEACHER.format("checkerboard"), PARENT, "-n")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-3000:]
    # a new tracking URI (MLFLOW_TRACKING_URI, as for a server) re-plans the tracking files alone
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'other.db'}"}
    p = snakemake(tmp_path, TEACHER.format("checkerboard"), PARENT, "-n", env=env)
    assert planned_jobs(p.stdout) == {"init_tracking": 1, "mlflow_parent": 1}, p.stdout[-3000:]


def _outputs(dry_run: str) -> list[str]:
    """Every output file a dry run lists (its `output:` lines)."""
    return sorted({f.strip() for line in dry_run.splitlines() if line.strip().startswith("output:")
                   for f in line.strip()[len("output:"):].split(",")})


def _as_if_run(work, target: str) -> None:
    """`target` as if it had run: the config-file writers and the MLflow set-up run for real (their params
    and the store matter here), every other output is an empty file, then `--touch` orders them and records
    each job's params. No training: a tracking change must plan none."""
    p = snakemake(work, "-n", target)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    outs = _outputs(p.stdout)
    real = [f for f in outs if "/config/" in f or f.endswith("/config.yaml")] + ["results/mlflow/store.json", PARENT]
    assert "results/config/tracking.yaml" not in outs  # no rule's output: written as Snakemake starts
    p = snakemake(work, *real)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for f in outs:
        path = work / f
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    p = snakemake(work, "--touch", target)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "Nothing to be done" in snakemake(work, "-n", target).stdout


def test_a_tracking_change_re_runs_no_job(tmp_path):
    """Before: tracking.required, timeout_s or the experiment were part of every run's and job's config file
    (and of the hash results record), so changing one re-planned the teacher, the pairs, every training and
    evaluation and the table (19 of 23 jobs of this tiny ablation). Now no config file holds them: jobs read
    results/config/tracking.yaml, written as Snakemake starts its jobs and no rule's input; the MLflow
    set-up re-runs when the store or the experiment changes."""
    write_tiny(tmp_path, TINY, {"order": GRID})
    _as_if_run(tmp_path, "ablate_order")
    run_cfg = tmp_path / "results/checkerboard/ablate_order/ordering-forward_seed-0/config.yaml"
    assert "tracking" not in yaml.safe_load(run_cfg.read_text())
    tracking_file = tmp_path / "results/config/tracking.yaml"
    assert yaml.safe_load(tracking_file.read_text())["tracking"]["required"] is True

    def plan(tracking: dict, *targets: str) -> dict[str, int]:
        write_tiny(tmp_path, deep_merge(TINY, {"tracking": tracking}), {"order": GRID})
        p = snakemake(tmp_path, "-n", "-p", *(targets or ["ablate_order"]))
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        return planned_jobs(p.stdout)

    # how a job behaves towards its tracking server: nothing to plan ...
    assert plan({"required": False, "timeout_s": 3}) == {}
    # ... and a job that runs reads the new values (the file is written as Snakemake starts its jobs)
    metrics = tmp_path / "results/checkerboard/ablate_order/ordering-forward_seed-0/metrics.json"
    metrics.unlink()
    p = snakemake(tmp_path, "--touch", "ablate_order")  # (--touch: no job runs, the start hook does)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    written = yaml.safe_load(tracking_file.read_text())["tracking"]
    assert (written["required"], written["timeout_s"]) == (False, 3)
    # a missing result is still planned next to a tracking change (a tracking file re-written upstream of
    # every job hid it: Snakemake skips its own checks below a job that must run)
    metrics.unlink(missing_ok=True)
    jobs = plan({"required": True, "timeout_s": 5})
    assert jobs == {"evaluate": 1, "table": 1, "ablate_order": 1}, jobs
    metrics.touch()
    assert snakemake(tmp_path, "--touch", "ablate_order").returncode == 0
    # another experiment: the store's set-up and the parent run again (and the table, which records into the
    # parent); no teacher, pairs, training or evaluation
    jobs = plan({"experiment": "other"})
    assert {"init_tracking": 1, "mlflow_parent": 1} == {k: jobs.get(k) for k in ("init_tracking", "mlflow_parent")}
    assert not set(jobs) & {"teacher", "pairs", "train", "evaluate", "teacher_eval", "reference"}, jobs


def test_config_writers_run_in_snakemakes_own_process(tmp_path):
    """Snakemake 9 spawns each `run:` job (the config-file writers) as a new Python process that parses the
    whole workflow again: ~5 s per file, 114 s for 20 of a 1000-run grid's config files (over an hour for all
    1000). The workflow profile runs them in threads (force-use-threads): one interpreter for any number of
    them. Counted with a sitecustomize that logs each Python start."""
    write_tiny(tmp_path, deep_merge(TINY, {"seeds": [0, 1]}), {"order": GRID})
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys\n"
        "with open(os.environ['ONESTEP_TEST_STARTS'], 'a') as f:\n"
        "    f.write(' '.join(sys.argv[:2]) + '\\n')\n")
    starts = tmp_path / "starts.txt"
    files = [f"results/checkerboard/ablate_order/ordering-{o}_seed-{s}/config.yaml"
             for o in ("forward", "reversed") for s in (0, 1)]
    env = {"ONESTEP_TEST_STARTS": str(starts), "PYTHONPATH": f"{hook}:{os.environ.get('PYTHONPATH', '')}"}
    p = snakemake(tmp_path, *files, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert all((tmp_path / f).is_file() for f in files)
    assert len(starts.read_text().splitlines()) == 1, starts.read_text()  # Snakemake itself, no spawned job


def test_settings_no_run_reads_re_run_no_training(tmp_path):
    """Before: a grid run's config file held the whole config, so changing the lambda study's settings
    (tune.*), the torch threads or the tuned-values path re-wrote every run's config.yaml and re-planned
    every training and evaluation; the list of seeds did the same when a seed was added. Now a run's file holds only
    what a run reads (config.NOT_IN_RUNS)."""
    write_tiny(tmp_path, TINY, {"order": GRID})
    _as_if_run(tmp_path, "ablate_order")
    run_cfg = yaml.safe_load((tmp_path / "results/checkerboard/ablate_order/ordering-forward_seed-0/config.yaml").read_text())
    assert not {"tune", "threads", "tuned_baselines", "out", "tracking"} & set(run_cfg), sorted(run_cfg)
    changed = {"tune": {"n_trials": 3, "workers": 1}, "threads": {"run": 2, "prep": 1}}
    write_tiny(tmp_path, deep_merge(TINY, changed), {"order": GRID})
    p = snakemake(tmp_path, "-n", "ablate_order")
    assert p.returncode == 0 and "Nothing to be done" in p.stdout + p.stderr, p.stdout[-3000:]
    assert "seeds" not in run_cfg and run_cfg["seed"] == 0
    # another seed trains its own runs and re-trains none of the seed already there
    write_tiny(tmp_path, deep_merge(TINY, {**changed, "seeds": [0, 1]}), {"order": GRID})
    jobs = planned_jobs(snakemake(tmp_path, "-n", "ablate_order").stdout)
    assert jobs.get("train") == 2 and jobs.get("run_config") == 2, jobs  # forward and reversed, seed 1
    # a knob a run reads still re-plans its runs
    write_tiny(tmp_path, deep_merge(TINY, {**changed, "student": {"lr": 0.003}}), {"order": GRID})
    jobs = planned_jobs(snakemake(tmp_path, "-n", "ablate_order").stdout)
    assert jobs.get("train") == 2 and jobs.get("evaluate") == 2, jobs
