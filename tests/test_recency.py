"""Recency / budget control and real global bridges."""

from functools import partial

import pytest
import torch
from conftest import GaussEps, LinearEps, method_of

from onestep.config import ConfigError, deep_merge, validate
from onestep.diffusion import Teacher, ddim_jump
from onestep.methods import METHODS
from onestep.methods.curriculum import CurriculumConfig
from onestep.methods.curriculum_stages import stage_at, steps_on_stage

MU = torch.tensor([1.5, -0.5])


curriculum = partial(method_of, "curriculum", **{"K": 4, "steps_per_stage": 10, "lambda": 1.0, "replay": 0.25})


def test_consolidation_is_identical_across_orderings(schedule):
    """The last N steps draw the same stages (and anchors) whatever the order; step counts per stage equal."""
    draws, counts = {}, {}
    for ordering in ("forward", "reversed", "random"):
        m = curriculum(ordering=ordering, consolidation=30)
        assert m.total_steps == 4 * 10 + 30
        gen = torch.Generator().manual_seed(5)
        ks, anchors = zip(*[m._stages(step, 64, gen) for step in range(40, 70)], strict=True)
        draws[ordering] = (torch.stack(ks), torch.stack(anchors))
        counts[ordering] = torch.bincount(draws[ordering][0].flatten(), minlength=5).tolist()
        assert all(m.schedule(s)["consolidation"] == 1.0 and m.schedule(s)["phase"] == 4 for s in (40, 69))
        assert m.schedule(39)["consolidation"] == 0.0
    for o in ("reversed", "random"):
        assert torch.equal(draws[o][0], draws["forward"][0]) and torch.equal(draws[o][1], draws["forward"][1])
        assert counts[o] == counts["forward"]
    assert torch.equal(draws["forward"][1], draws["forward"][0] - 1)  # anchor grid: k - 1
    assert counts["forward"][0] == 0 and min(counts["forward"][1:]) > 0  # every stage 1..K, no prior


def test_steps_that_trained_the_evaluated_stage_by_hand():
    c = CurriculumConfig(K=4, steps_per_stage=10, replay=0.25)
    assert steps_on_stage(c, 0) == pytest.approx(7.5)  # forward: K last, 10 x (1 - 0.25)
    assert steps_on_stage(CurriculumConfig(K=4, steps_per_stage=10, replay=0.25, ordering="reversed"), 0) == \
        pytest.approx(10 + 10 * 0.25 / 1 + 10 * 0.25 / 2 + 10 * 0.25 / 3)  # trained first, then replayed
    assert steps_on_stage(CurriculumConfig(K=4, steps_per_stage=10, replay=0.25, consolidation=40), 0) == \
        pytest.approx(7.5 + 10)
    c = CurriculumConfig.from_dict({"K": 4, "budget": 100, "consolidation": 20})
    assert c.steps_per_stage == 20  # (budget - consolidation) / K
    assert stage_at(80, c, 1000, 0).consolidation and not stage_at(79, c, 1000, 0).consolidation


def test_consolidation_outside_the_budget_stops_at_parse(default_config):
    cfg = deep_merge({**default_config, "seed": 0}, {})
    with pytest.raises(ConfigError, match=r"method.consolidation: 98 leaves fewer than K = 4 of method.budget = 100"):
        validate({**cfg, "method": {"name": "curriculum", "K": 4, "budget": 100, "consolidation": 98}})


def test_global_bridge_in_substeps(schedule):
    """n DDIM sub-steps t_j -> t_k: n teacher evaluations per draw, and the composition of n jumps."""
    teacher = Teacher(LinearEps(), schedule)
    m = curriculum(teacher, consistency="global", global_stages=1, global_substeps=3, replay=0.0)
    z = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    t = torch.full((8,), 250)
    j = torch.zeros(8, dtype=torch.long)  # from the prior t_0 = 1000
    teacher.evals = 0
    (x,) = m._targets(lambda x, t: x, z, t, [j])
    assert teacher.evals == 3 * 8
    y = z
    for s, e in ((1000, 750), (750, 500), (500, 250)):
        y = ddim_jump(teacher, y, torch.full((8,), s), torch.full((8,), e))
    torch.testing.assert_close(x, y)
    one = curriculum(teacher, consistency="global", global_stages=1, replay=0.0)
    assert not torch.allclose(one._targets(lambda x, t: x, z, t, [j])[0], y)  # one jump is another (cruder) bridge
    _, logs = m.loss(lambda x, t: x, type("B", (), {"z": z, "x0": z, "extra": {}})(), 30, torch.Generator())
    assert logs["teacher_evals_per_sample"] == 3.0


def test_exact_teacher_makes_substeps_agree(schedule):
    """On the one-point teacher every DDIM jump is exact: 1 and 4 sub-steps give the same bridge."""
    teacher = Teacher(GaussEps(schedule, MU, 0.0), schedule)
    z = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    t, j = torch.full((8,), 250), torch.zeros(8, dtype=torch.long)
    a = curriculum(teacher, consistency="global", global_substeps=1)._targets(lambda x, t: x, z, t, [j])[0]
    b = curriculum(teacher, consistency="global", global_substeps=4)._targets(lambda x, t: x, z, t, [j])[0]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_table_column_of_steps_on_the_evaluated_stage(tmp_path):
    import json

    import yaml

    from onestep.report import ablation

    spec = {"name": "ab", "baseline": {"method.ordering": "forward"}, "grid": {"method.ordering": ["forward", "reversed"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    runs = []
    for o in ("forward", "reversed"):
        c = CurriculumConfig(K=4, steps_per_stage=10, ordering=o)
        d = tmp_path / o
        d.mkdir()
        (d / "train_log.csv").write_text("step,L_k,R_k,phase\n10,1.0,0.5,0\n")
        (d / "metrics.json").write_text(json.dumps({"point": {"method.ordering": o}, "seed": 0, "primary": "swd",
                                                    "metrics": {"swd": 0.1}, "train": {},
                                                    "method_report": {"evaluated_stage_steps": steps_on_stage(c, 0)}}))
        runs.append(d / "metrics.json")
    (tmp_path / "ref.json").write_text(json.dumps({"floor": {"swd": 0.01}, "num_samples": 256}))
    ablation.build(tmp_path / "s.yaml", runs, [], tmp_path / "ref.json", tmp_path / "out" / "ab", tmp_path / "ab.png")
    md = (tmp_path / "out" / "ab.md").read_text().splitlines()
    cols = [c.strip() for c in next(r for r in md if r.startswith("| ordering")).split("|")[1:-1]]
    i = cols.index("optimiser steps that trained the evaluated stage")
    rev = [c.strip() for c in next(r for r in md if r.startswith("| reversed")).split("|")[1:-1]]
    assert rev[i] == "14.58"  # 10 + 2.5 + 1.25 + 0.833


def test_consolidated_ablations_follow_the_tier():
    """The control's budget is the tier's own (checkerboard 4000 = 10 x 400; a tier of 10 x 100 gets 1000),
    its consolidation a quarter of it: not the checkerboard's 4000 / 1000 copied onto every tier."""
    from onestep.config import REPO, ConfigError, deep_merge, load_ablation, read_file, tier_relative

    base = read_file(REPO / "config" / "config.yaml")
    for sps, budget in ((400, 4000), (100, 1000)):
        cfg = deep_merge(base, {"method": {"steps_per_stage": sps}})
        for name in ("order_consolidated", "K_consolidated") if sps == 400 else ("order_consolidated",):
            ab = load_ablation(REPO / "config" / "ablations" / f"{name}.yaml", cfg)
            got = {(r.config["method"]["budget"], r.config["method"]["consolidation"]) for r in ab.runs}
            assert got == {(budget, budget // 4)}, (name, got)
    # K = 1000 stages cannot share 750 steps: said at parse time, naming the file and the run
    with pytest.raises(ConfigError, match=r"K_consolidated.yaml \(run K-1000_seed-0\): method.consolidation: 250"):
        load_ablation(REPO / "config" / "ablations" / "K_consolidated.yaml", cfg)
    assert tier_relative({"budget": "tier"}, {"budget": 700, "K": 10, "steps_per_stage": 400}, "f") == {"budget": 700}
    with pytest.raises(ConfigError, match=r"f: fixed.method.consolidation: '25%' is a share of the budget"):
        tier_relative({"consolidation": "25%"}, {"budget": None, "K": 10, "steps_per_stage": 400}, "f")


def test_a_budget_grid_in_multiples_of_the_tier_follows_the_tier():
    """ablate_budget's grid values '1x', '2x', '4x' are multiples of the tier's own budget (digits 4000 steps,
    a tier of 10 x 2000 gets 20000 ...): not one tier's numbers copied to another; a bad value is named."""
    from onestep.config import REPO, load_ablation, read_file, tier_relative

    base = read_file(REPO / "config" / "config.yaml")
    for sps in (400, 2000):
        cfg = deep_merge(base, {"dataset": {"name": "digits"}, "method": {"steps_per_stage": sps}})
        ab = load_ablation(REPO / "config" / "ablations" / "budget.yaml", cfg)
        got = {r.point["method.budget"]: (r.config["method"]["budget"], METHODS["curriculum"].total_steps_of(
            r.config["method"])) for r in ab.runs}
        assert got == {"1x": (10 * sps,) * 2, "2x": (20 * sps,) * 2, "4x": (40 * sps,) * 2}, got
        assert {r.name for r in ab.runs} >= {"budget-2x_seed-0", "budget-4x_seed-2"}
    assert load_ablation(REPO / "config" / "ablations" / "budget.yaml", base).skipped  # images only
    assert tier_relative({"budget": "0.5x"}, {"budget": None, "K": 10, "steps_per_stage": 400}, "f") == {"budget": 2000}
    with pytest.raises(ConfigError, match=r"f: method.budget: 'double' is not a budget; allowed: optimiser steps, "
                                          r"'tier' \(the tier's 4000\) or 'Nx'"):
        tier_relative({"budget": "double"}, {"budget": None, "K": 10, "steps_per_stage": 400}, "f")
