"""Every target: a dry run on the shipped config, and one tiny real run per ablation grid.

2-D (tiny checkerboard): ablate_K, ablate_lambda, ablate_consistency and the main table through
`ablate_all`, two seeds (so the paired tests have something to pair), then `tables` re-runs nothing.
Images (tiny digits): ablate_loss with all four late-stage losses.
"""

import json

import polars as pl
import pytest
import yaml
from conftest import REPO, TINY, TINY_DIGITS, UNTRACKED, Finished, planned_jobs, snakemake, write_tiny

from onestep.config import deep_merge

SPECS = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "config" / "ablations").glob("*.yaml"))]
SHIPPED = sorted(s["name"] for s in SPECS)
IMAGES_ONLY = {s["name"] for s in SPECS if s.get("requires") == "images"}  # ablate_loss, ablate_budget
TINY_2SEEDS = deep_merge(TINY, {"seeds": [0, 1], **UNTRACKED})  # two seeds: the paired tests have something to pair
GRIDS = {  # the shipped grids, shrunk
    "K": {"name": "ablate_K", "baseline": {"method.K": 2}, "fixed": {"method": {"budget": 24}},
          "caption": "Fixed budget of 24 steps.", "grid": {"method.K": [2, 4]}, "plot": {"kind": "line", "log_x": True}},
    "lambda": {"name": "ablate_lambda", "baseline": {"method.lambda": 0.1}, "grid": {"method.lambda": [0.0, 0.1, 1.0]},
               "plot": {"kind": "line", "log_x": True}},
    "consistency": {"name": "ablate_consistency", "baseline": {"method.consistency": "adjacent", "method.consistency_step": "ddim"},
                    "points": [{"method.consistency": "adjacent", "method.consistency_step": "ddpm"},
                               {"method.consistency": "adjacent", "method.consistency_step": "ddim"},
                               {"method.consistency": "global", "method.consistency_step": "ddim"}]},
}


def shipped(tmp_path, *args: str, configs=()):
    """A dry run on the shipped config files (config/<name> for each of `configs`)."""
    return snakemake(tmp_path, *args, configs=[REPO / "config" / c for c in configs], timeout=300)


def test_every_target_plans_on_the_default_config(tmp_path):
    targets = [*[t for t in SHIPPED if t not in IMAGES_ONLY], "ablate_all", "all", "tune_lambda", "tune_baselines"]
    p = shipped(tmp_path, "-n", *targets)
    assert p.returncode == 0, p.stderr[-2000:]
    jobs = planned_jobs(p.stdout)
    assert jobs.get("teacher") == 1 and all(jobs.get(t) == 1 for t in targets), jobs
    assert jobs["main_table"] == 1 and jobs["tune_summary"] == 1 + 12  # tune_lambda's, one per baseline method


def test_digits_targets_plan_and_loss_needs_images(tmp_path):
    p = shipped(tmp_path, "-n", "ablate_loss", configs=("digits.yaml",))
    assert p.returncode == 0, p.stderr[-2000:]
    assert planned_jobs(p.stdout)["train"] == 12 and planned_jobs(p.stdout)["features"] == 1
    p = shipped(tmp_path, "-n", "ablate_all", configs=("digits.yaml",))
    assert p.returncode == 0 and planned_jobs(p.stdout)["main_table"] == 1
    p = shipped(tmp_path, "-n", "ablate_loss")
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "ablate_loss" in out and "runs on images only" in out
    assert "--configfile config/digits.yaml" in out
    p = shipped(tmp_path, "-n", "tables")
    assert p.returncode != 0 and "no finished ablation" in p.stdout + p.stderr


# 71 jobs (the per-stage trajectory states among them) on a shared CPU
FINISHED = Finished("ablate_all", TINY_2SEEDS, GRIDS, timeout=1800)


@pytest.mark.e2e
def test_grids_run_with_paired_tables(finished):
    t = finished / "results" / "tables" / "checkerboard"
    K = pl.read_csv(t / "ablate_K.csv").filter(pl.col("kind") == "run")
    assert K["method.K"].to_list() == [2, 4] and K["steps_mean"].to_list() == [24.0, 24.0]  # equal budgets
    assert "Fixed budget of 24 steps." in (t / "ablate_K.md").read_text()
    lam = pl.read_csv(t / "ablate_lambda.csv").filter(pl.col("kind") == "run")
    assert lam["method.lambda"].to_list() == [0.0, 0.1, 1.0] and (lam["seeds"] == 2).all()
    assert lam.filter(~pl.col("baseline"))["tv_p_vs_baseline"].is_not_null().all()
    con = pl.read_csv(t / "ablate_consistency.csv").filter(pl.col("kind") == "run")
    assert con["setting"].to_list() == ["consistency=adjacent, consistency_step=ddpm",
                                        "consistency=adjacent, consistency_step=ddim",
                                        "consistency=global, consistency_step=ddim"]
    evals = dict(zip(con["setting"], con["teacher_evals_mean"], strict=True))
    assert evals["consistency=global, consistency_step=ddim"] > evals["consistency=adjacent, consistency_step=ddim"]
    assert not (finished / "results" / "mlflow.db").exists()  # tracking.enabled: false opened no store
    main = (t / "main.md").read_text()
    assert all(name in main for name in ("ablate_K", "ablate_lambda", "ablate_consistency"))
    plots = finished / "results" / "plots" / "checkerboard"
    for name in ("ablate_K", "ablate_lambda", "ablate_consistency", "main"):
        assert (plots / f"{name}.png").stat().st_size > 0 and (plots / f"{name}.pdf").exists()
    run = finished / "results" / "checkerboard" / "ablate_consistency" / "consistency-global_consistency_step-ddim_seed-0"
    assert "teacher_evals_per_sample" in (run / "train_log.csv").read_text().splitlines()[0]


@pytest.mark.e2e
def test_tables_rebuild_from_stored_metrics_alone(finished):
    t = finished / "results" / "tables" / "checkerboard"
    p = snakemake(finished, "tables", "-n")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]
    (t / "ablate_lambda.md").unlink()
    p = snakemake(finished, "tables", "-n")
    assert planned_jobs(p.stdout) == {"main_table": 1, "table": 1, "tables": 1}
    run = finished / "results" / "checkerboard" / "ablate_K" / "K-4_seed-1"
    (run / "metrics.json").unlink()
    p = snakemake(finished, "ablate_K", "-n")
    assert planned_jobs(p.stdout) == {"ablate_K": 1, "evaluate": 1, "table": 1}


@pytest.mark.e2e
def test_loss_ablation_on_digits(tmp_path):
    spec = yaml.safe_load((REPO / "config" / "ablations" / "loss.yaml").read_text())
    write_tiny(tmp_path, deep_merge(TINY_DIGITS, UNTRACKED), {"loss": spec})
    p = snakemake(tmp_path, "ablate_loss", configs=("tiny.yaml",))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    csv = pl.read_csv(tmp_path / "results" / "tables" / "digits" / "ablate_loss.csv").filter(pl.col("kind") == "run")
    assert csv["method.loss"].to_list() == ["l2", "pseudo_huber", "perceptual", "adversarial"]
    assert (csv["fid_mean"] > 0).all()
    runs = tmp_path / "results" / "digits" / "ablate_loss"
    adv = (runs / "loss-adversarial_seed-0" / "train_log.csv").read_text().splitlines()[0]
    assert "adv_d" in adv and "adv_g" in adv
    cfg = json.loads(json.dumps(yaml.safe_load((runs / "loss-perceptual_seed-0" / "config.yaml").read_text())))
    assert cfg["method"]["perceptual"]["backbone"] == "features"
