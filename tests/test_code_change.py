"""A change in the code a job runs re-runs that job (its params carry the hash of its source files), and every
result records the code version that made it."""

import shutil

import pytest
from conftest import REPO, TINY, planned_jobs, snakemake, write_tiny
from test_replan import _as_if_run

from onestep import provenance
from onestep.methods import METHODS

GRID = {"name": "ablate_order", "title": "Two methods (tiny)", "baseline": {"method.name": "kd"},
        "grid": {"method.name": ["kd", "cd"]}}


def test_a_method_file_is_in_its_own_runs_hash_alone():
    kd, cd = (provenance.job_files("train", METHODS[m]) for m in ("kd", "cd"))
    own = {provenance.PKG / "methods" / "kd.py"}
    assert own <= set(kd) and not own & set(cd)
    shared = {provenance.PKG / f for f in ("methods/base.py", "diffusion.py", "nets.py", "training/loop.py")}
    assert shared <= set(kd) & set(cd)
    assert provenance.PKG / "methods" / "__init__.py" not in set(kd)  # the registry: adding a method re-runs none
    assert provenance.PKG / "tracking.py" not in set(kd)  # side channels re-run nothing
    assert provenance.job_hash("train", METHODS["kd"]) != provenance.job_hash("train", METHODS["cd"])


def test_version_names_a_commit_or_the_sources(tmp_path, monkeypatch):
    v = provenance.version()
    assert len(v["source_hash"]) == 16 and (v["commit"] is None or len(v["commit"]) == 40)
    monkeypatch.setattr(provenance, "git", lambda *a: None)  # a copy outside git
    provenance.version.cache_clear()
    try:
        assert provenance.version()["commit"] is None and provenance.label().startswith("src-")
    finally:
        provenance.version.cache_clear()


@pytest.mark.e2e
def test_editing_a_method_re_plans_its_runs_alone(tmp_path):
    """Before: after a finished ablation, an edit of one method's file planned nothing (`Nothing to be done`),
    so the folder kept the old code's results. Now the dry run plans exactly that method's training, its
    evaluation and the table; the unedited code again plans nothing."""
    write_tiny(tmp_path, TINY, {"methods": GRID})
    _as_if_run(tmp_path, "ablate_order")
    code = tmp_path / "code"  # a copy of the repository's package (its config and workflow folders linked)
    src = code / "src"
    shutil.copytree(REPO / "src" / "onestep", src / "onestep", ignore=shutil.ignore_patterns("__pycache__"))
    for d in ("config", "workflow"):
        (code / d).symlink_to(REPO / d)
    kd = src / "onestep" / "methods" / "kd.py"
    kd.write_text(kd.read_text() + "\n# a one-line edit of the method\n")
    p = snakemake(tmp_path, "-n", "ablate_order", env={"PYTHONPATH": str(src)})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    jobs = planned_jobs(p.stdout)
    assert jobs.get("train") == 1 and jobs.get("evaluate") == 1, p.stdout[-3000:]
    assert not {"teacher", "pairs", "reference", "teacher_eval"} & set(jobs), jobs
    trained = [line for line in p.stdout.splitlines() if "student.pt" in line and "output:" in line]
    assert trained and all("kd" in line and "cd_" not in line for line in trained), trained
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "ablate_order").stdout  # the code as it was
    # an edit of the shared maths re-plans both methods' trainings
    kd.write_text(kd.read_text().removesuffix("\n# a one-line edit of the method\n"))
    base = src / "onestep" / "methods" / "base.py"
    base.write_text(base.read_text() + "\n# shared\n")
    jobs = planned_jobs(snakemake(tmp_path, "-n", "ablate_order", env={"PYTHONPATH": str(src)}).stdout)
    assert jobs.get("train") == 2, jobs


def test_the_tables_csv_and_the_paper_index_name_the_code(tmp_path):
    from types import SimpleNamespace

    from onestep import paper
    from onestep.report.ablation import code_of

    code = {"label": "0123456789ab-dirty", "code_hash": "feedfacecafebeef"}
    ab = SimpleNamespace(axes=["method.name"], records=[
        {"point": {"method.name": "kd"}, "train": {"code": code}},
        {"point": {"method.name": "kd"}, "train": {"code": code}},  # another seed, the same code: once
        {"point": {"method.name": "cd"}, "train": {}}])  # recorded before the code was kept
    assert code_of(ab, {"method.name": "kd"}) == "0123456789ab-dirty train feedfacecafebeef"
    assert code_of(ab, {"method.name": "cd"}) == ""
    (tmp_path / "t.csv").write_text(f"setting,code\nkd,{code_of(ab, {'method.name': 'kd'})}\ncd,\n")
    spec = tmp_path / "paper.yaml"
    spec.write_text("tier: checkerboard\ncommand: snakemake paper\nconfig_hash: abc\nartefacts:\n"
                    "- {name: t, title: T, command: snakemake t, config_hash: def}\n")
    assert "| `0123456789ab-dirty` |" in paper.write_index(spec, tmp_path / "index.md")
