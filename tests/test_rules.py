"""The rules are thin: each has a docstring, only common.smk imports the package (onestep.workflow, the plan),
`snakemake --lint` flags only what docs/cluster.md says the project cannot fix, and the plan's hash of a run
is the one its train.json records."""

import re
import subprocess
from types import SimpleNamespace

import pytest
import yaml
from conftest import BIN, REPO

from onestep import outputs
from onestep import workflow as wf

RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk")) + [REPO / "Snakefile"]
RULE = re.compile(r"^\s*(?:local)?rule(?:\s+(\w+))?\s*:\s*$")

# What `snakemake --lint` asks that the project does not do, and why (docs/cluster.md, "The rules and the linter").
NOT_FIXABLE = {
    # every job runs the package with the interpreter that runs Snakemake: one environment, no per-rule one
    "Specify a conda environment or container for each rule.": None,
    # that interpreter (ONESTEP): its path is no parameter of a result (a moved venv re-runs nothing)
    "Shell command directly uses variable ONESTEP from outside of the rule": None,
    # the config-file writers run in Snakemake's own process and print nothing
    "No log directive defined": {"job_config", "run_config", "tune_study_config", "paper_spec"},
}


def _rules(path):
    """(line number, rule name or None, the first line of its body) of every rule of a rule file."""
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        m = RULE.match(line)
        if m:
            body = next(ln for ln in lines[i + 1:] if ln.strip())
            out.append((i + 1, m.group(1), body.strip()))
    return out


def test_every_rule_has_a_docstring():
    found = [r for f in RULE_FILES for r in _rules(f)]
    assert len(found) > 20
    missing = [(f.name, n, name) for f in RULE_FILES for n, name, body in _rules(f) if not body.startswith('"""')]
    assert not missing, missing


def test_only_common_smk_imports_and_only_the_plan():
    imports = {f.name: [ln.strip() for ln in f.read_text().splitlines() if re.match(r"\s*(from|import)\s", ln)]
               for f in RULE_FILES}
    assert imports.pop("common.smk") == ["from onestep import workflow as wf"]
    assert not any(imports.values()), imports


def test_rules_name_no_method():
    from onestep.methods import METHODS

    for f in RULE_FILES:
        text = f.read_text()
        named = [m for m in METHODS if re.search(rf"[\"']{re.escape(m)}[\"']", text)]
        assert not named, (f.name, named)


def _lints(text: str) -> dict[str, list[str]]:
    """{rule or snakefile: [lint titles]} from `snakemake --lint`'s report."""
    out, item = {}, None
    for line in text.splitlines():
        m = re.match(r"Lints for (?:rule (\w+) \(line|snakefile (\S+):)", line)
        if m:
            item = m.group(1) or m.group(2)
            out[item] = []
        elif item and (t := re.match(r"    \* (.+?):?$", line)):
            out[item].append(t.group(1))
    return out


def test_lint_flags_only_what_the_project_cannot_fix():
    p = subprocess.run([str(BIN / "snakemake"), "--lint", "-s", str(REPO / "Snakefile"), "--configfile",
                        str(REPO / "config" / "config.yaml")], cwd=REPO, capture_output=True, text=True, timeout=300)
    lints = _lints(p.stdout + p.stderr)
    assert lints, (p.stdout + p.stderr)[-3000:]  # the linter ran (the conda lint is on every shell rule)
    fixable = {(item, title) for item, titles in lints.items() for title in titles
               if title not in NOT_FIXABLE or (NOT_FIXABLE[title] is not None and item not in NOT_FIXABLE[title])}
    assert not fixable, sorted(fixable)


@pytest.fixture(scope="module")
def plan():
    """The plan of the default config (the repository's ablations)."""
    return wf.Plan.load(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), {}, REPO)


def test_the_evaluation_param_is_the_hash_train_json_records(tmp_path, plan):
    (ablation, run), _ = next(iter(plan.runs.items()))
    w = SimpleNamespace(ablation=ablation, run=run)
    written = tmp_path / "config.yaml"
    wf.write_run_config(plan.run_config_json(w), [], str(written))
    assert outputs.provenance(written)["config_hash"] == plan.run_hash(w)


def test_plan_inputs_of_a_run(plan):
    w = SimpleNamespace(ablation="ablate_order", run=next(r for a, r in plan.runs if a == "ablate_order"))
    assert plan.run_config(w) == f"results/checkerboard/ablate_order/{w.run}/config.yaml"
    assert plan.same_as(w) == [] and plan.tuned_values(w) == []
    states = plan.stage_states(w)  # these runs' method evaluates on the teacher's states at its grid
    assert len(states) == 1 and states[0].startswith(f"{plan.root}/teacher/trajectory/eval-")
    assert states[0][len(f"{plan.root}/teacher/trajectory/eval-"):-len(".npz")] in plan.state_grids
    assert plan.stage_states_arg(w) == f"--trajectory {states[0]}"
    assert set(plan.paper) >= {"main", "tune_lambda", "ablate_order"}
    assert all(len(a["config_hash"]) == 12 for a in plan.paper.values())


def test_every_table_figure_and_run_file_is_marked_for_the_report():
    """`snakemake <target> --report report.html` shows what the target made: each output of the table rule
    but the .tex, and each run's metrics and samples, under a category named after the ablation."""
    for name, outputs_ in (("tables.smk", ("md", "csv", "plot", "curves", "samples")), ("evaluate.smk", ("metrics", "plot"))):
        text = (REPO / "workflow" / "rules" / name).read_text()
        for out in outputs_:
            assert re.search(rf"^\s+{out}=report\(.*category=\"\{{ablation\}}\"", text, re.M | re.S), (name, out)


def test_tables_and_evaluations_come_before_further_trainings():
    from onestep import targets

    prio = targets.training_priority(["ablate_K", "ablate_order", "baselines"])
    ranks = [prio(SimpleNamespace(ablation=a)) for a in ("ablate_K", "ablate_order", "baselines")]
    assert ranks == sorted(ranks, reverse=True) and len(set(ranks)) == 3  # the first ablation's trainings first
    assert max(ranks) < targets.EVALUATE_PRIORITY < targets.TABLE_PRIORITY
    rules = {f.name: f.read_text() for f in RULE_FILES}
    assert "priority: wf.targets.TABLE_PRIORITY" in rules["tables.smk"]
    assert "priority: wf.targets.EVALUATE_PRIORITY" in rules["evaluate.smk"]
    assert "priority: wf.targets.training_priority(list(P.ablations))" in rules["train.smk"]


def test_a_mistyped_target_lists_the_valid_ones():
    from snakemake.exceptions import WorkflowError

    from onestep import targets

    argv = ["snakemake", "-n", "ablate_ordr", "--cores", "2", "--configfile", "a.yaml", "b.yaml"]
    assert targets.requested(argv) == ["ablate_ordr"] and targets.requested(["pytest"]) is None
    rules = {"ablate_order": True, "ablate_all": True, "train": False}
    targets.check(["ablate_order", "results/tables/x.md"], rules)  # a rule, a file: fine
    with pytest.raises(WorkflowError, match=r"unknown target 'ablate_ordr': did you mean ablate_order\? the "
                                            r"targets are: ablate_all, ablate_order$"):
        targets.check(["ablate_ordr"], rules)


def test_a_small_config_runs_one_target_without_the_grids_of_others(capsys):
    """The tests' tiny budget (K 3, 10 steps per stage) cannot run ablate_K's K = 50: asked for ablate_order,
    the workflow warns naming ablate_K and goes on; asked for everything, it stops naming the key."""
    from conftest import TINY

    from onestep.config import ConfigError, deep_merge, load_workflow

    cfg = deep_merge(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), TINY)
    abl = load_workflow(cfg, REPO, targets=["ablate_order"])
    assert not abl["ablate_order"].skipped and "is not valid with this config" in abl["ablate_K"].skipped
    assert "warning: ablate_K left out (not a requested target)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="method.budget"):
        load_workflow(cfg, REPO, targets=["ablate_all"])
