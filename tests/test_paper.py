"""`snakemake paper`: every table and figure of a tier as a target, under results/paper/<tier>/, with an index."""

import re

import pytest
import yaml
from conftest import REPO, planned_jobs, snakemake

from onestep.paper import PaperError, artefact_hash, copy_artefact, write_index


def _applicable(dataset_images: bool, tuned: bool) -> set[str]:
    """Ablation targets that apply to the tier (ablate_loss needs images), the main table and the tuning study; with
    tune_baselines.paper the equal-effort tuning (its studies' table) and the ablations with `tuned:` too."""
    names = set()
    for f in (REPO / "config" / "ablations").glob("*.yaml"):
        spec = yaml.safe_load(f.read_text())
        if (spec.get("requires") == "images" and not dataset_images) or (spec.get("tuned") and not tuned):
            continue
        names.add(spec["name"])
    return names | {"main", "tune_lambda"} | ({"tune_baselines", "baselines_tuned"} if tuned else set())


@pytest.mark.parametrize("configs,tier,images,tuned", [((), "checkerboard", False, False),
                                                       (("paper_tuned.yaml",), "checkerboard", False, True),
                                                       ((REPO / "config" / "digits.yaml",), "digits", True, False)])
def test_paper_plans_every_artefact(tmp_path, configs, tier, images, tuned):
    (tmp_path / "paper_tuned.yaml").write_text(yaml.safe_dump({"tune_baselines": {"paper": True}}))
    p = snakemake(tmp_path, "-n", "paper", configs=configs)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    jobs = planned_jobs(p.stdout)
    planned = set(re.findall(rf"results/paper/{tier}/(\w+)\.png", p.stdout))
    want = _applicable(images, tuned)
    assert ("tune_gather" in jobs) == tuned and jobs.get("tune_summary") == 1 + 12 * tuned
    assert planned == want, (planned ^ want)
    assert jobs["paper_artefact"] == len(want) and jobs["paper_index"] == 1 and jobs["paper_spec"] == 1
    for name in want:  # md, tex, csv and png of each
        for ext in ("md", "tex", "csv", "png"):
            assert f"results/paper/{tier}/{name}.{ext}" in p.stdout
    assert f"results/paper/{tier}/index.md" in p.stdout


def test_copy_and_index(tmp_path):
    src = []
    for ext in ("md", "tex", "csv", "png"):
        (tmp_path / f"t.{ext}").write_text(ext)
        src.append(tmp_path / f"t.{ext}")
    made = copy_artefact(src, tmp_path / "paper" / "ablate_order")
    assert [m.read_text() for m in made] == ["md", "tex", "csv", "png"]
    with pytest.raises(PaperError, match=r"no \.png"):
        copy_artefact(src[:3], tmp_path / "paper" / "x")
    h = artefact_hash({"a": 1}, src[0])
    assert len(h) == 12 and h != artefact_hash({"a": 2}, src[0]) and h != artefact_hash({"a": 1})
    spec = {"tier": "checkerboard", "command": "snakemake --cores 2 paper", "config_hash": "abc",
            "artefacts": [{"name": "ablate_order", "title": "Stage order", "command": "snakemake --cores 2 ablate_order",
                           "config_hash": h, "sources": []}]}
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(spec))
    text = write_index(tmp_path / "paper.yaml", tmp_path / "index.md")
    assert "| Stage order | [ablate_order.md](ablate_order.md)" in text and f"`{h}`" in text
    assert "`snakemake --cores 2 ablate_order`" in text
