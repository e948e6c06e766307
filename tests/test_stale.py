"""No stale result: every result a table reads records the hash of the config that produced it; a
config change re-runs exactly the runs it affects; a failed training leaves no stale metrics.json."""

import json

import pytest
import yaml
from conftest import TINY, UNTRACKED, planned_jobs, snakemake, write_tiny

from onestep import outputs
from onestep.config import deep_merge

GRID = {"name": "ablate_order", "title": "Stage ordering (tiny)", "baseline": {"method.ordering": "forward"},
        "grid": {"method.ordering": ["forward", "reversed"]}}
RUNS = ("ordering-forward_seed-0", "ordering-reversed_seed-0")


def test_check_current_names_the_run_and_the_differing_keys(tmp_path):
    cfg = {"method": {"lambda": 0.1, "K": 3}, "seed": 0}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    record = {"run": "r0", **outputs.provenance(tmp_path / "config.yaml")}
    assert outputs.check_current(tmp_path / "metrics.json", record) is record
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(deep_merge(cfg, {"method": {"lambda": 0.5}})))
    with pytest.raises(outputs.StaleResult, match=r"\(r0\).*differing keys: method\.lambda\)"):
        outputs.check_current(tmp_path / "metrics.json", record)
    with pytest.raises(outputs.StaleResult, match="no config hash"):
        outputs.check_current(tmp_path / "metrics.json", {"run": "r0"})


def test_config_hash_is_stable_and_sorted():
    assert outputs.config_hash({"a": 1, "b": {"c": 2}}) == outputs.config_hash({"b": {"c": 2}, "a": 1})
    assert outputs.config_hash({"a": 1}) != outputs.config_hash({"a": 2})


@pytest.mark.e2e
def test_a_failed_training_after_a_config_change_leaves_no_stale_number(tmp_path):
    tiny = deep_merge(TINY, {"method": {"lambda": 0.1}, **UNTRACKED})
    write_tiny(tmp_path, tiny, {"order": GRID})
    p = snakemake(tmp_path, "ablate_order")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    root = tmp_path / "results" / "checkerboard" / "ablate_order"
    old = (root / RUNS[0] / "metrics.json").read_text()
    assert json.loads(old)["config"]["method"]["lambda"] == 0.1

    # the change re-plans the two runs, nothing upstream (teacher, pairs, reference, teacher rows)
    write_tiny(tmp_path, deep_merge(tiny, {"method": {"lambda": 0.5}}), {"order": GRID})
    p = snakemake(tmp_path, "ablate_order", "-n")
    assert planned_jobs(p.stdout) == {"ablate_order": 1, "evaluate": 2, "run_config": 2, "table": 1, "train": 2}

    # the forward run's training fails after training (a folder where its log CSV goes): Snakemake
    # removes its outputs; its lambda = 0.1 metrics.json must not survive
    (root / RUNS[0] / "train_log.csv").unlink()
    (root / RUNS[0] / "train_log.csv").mkdir()
    p = snakemake(tmp_path, "ablate_order", "--keep-going")
    assert p.returncode != 0
    assert not (root / RUNS[0] / "metrics.json").exists()
    (root / RUNS[0] / "train_log.csv").rmdir()

    # the next invocation trains the failed run again, and the table holds lambda = 0.5 only
    p = snakemake(tmp_path, "ablate_order")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for run in RUNS:
        m = json.loads((root / run / "metrics.json").read_text())
        assert m["config"]["method"]["lambda"] == 0.5 and (root / run / "student.pt").exists()
        assert m["config_hash"] == outputs.config_hash(yaml.safe_load((root / run / "config.yaml").read_text()))

    # an old result put back by hand: the table rule refuses it, naming the run and the key
    (root / RUNS[0] / "metrics.json").write_text(old)
    p = snakemake(tmp_path, "ablate_order")
    assert p.returncode != 0
    log = (tmp_path / "results" / "logs" / "table" / "ablate_order.log").read_text()
    assert f"({RUNS[0]})" in log and "differing keys: method.lambda" in log, log
