"""The table builder on hand-written metrics files: means, stds, intervals, bold, p-values against scipy."""

import json
import math

import numpy as np
import polars as pl
import pytest
import yaml
from scipy import stats

from onestep.report import ablation
from onestep.report import stats as report_stats
from onestep.report.main import build_main

SWD = {  # point -> seed -> swd
    "forward": {0: 0.050, 1: 0.052, 2: 0.051},
    "reversed": {0: 0.061, 1: 0.060, 2: 0.064},
    "random": {0: 0.049, 1: 0.050, 2: 0.053},
}


@pytest.fixture
def stored(tmp_path):
    spec = {"name": "ablate_order", "title": "Order", "baseline": {"method.ordering": "forward"},
            "caption": "Held fixed: K = 10.", "grid": {"method.ordering": list(SWD)}}
    (tmp_path / "order.yaml").write_text(yaml.safe_dump(spec))
    runs = []
    for order, seeds in SWD.items():
        for seed, swd in seeds.items():
            d = tmp_path / "runs" / f"ordering-{order}_seed-{seed}"
            d.mkdir(parents=True)
            (d / "train_log.csv").write_text("step,L_k,R_k,phase\n10,1.0,0.5,0\n20,0.5,0.4,1\n")
            m = {"point": {"method.ordering": order}, "seed": seed, "primary": "swd",
                 "metrics": {"swd": swd, "fd": 10 * swd + seed * 1e-3, "mmd": swd / 10},
                 "train": {"wall_time_s": 60.0 + seed, "teacher_evals": 1000, "steps": 4000}}
            (d / "metrics.json").write_text(json.dumps(m))
            runs.append(d / "metrics.json")
    (tmp_path / "reference.json").write_text(json.dumps({"floor": {"swd": 0.03, "fd": 0.001, "mmd": 0.0}, "num_samples": 4096}))
    teachers = []
    for steps, swd in ((1, 0.5), (50, 0.055)):
        f = tmp_path / f"teacher-{steps}.json"
        f.write_text(json.dumps({"steps": steps, "metrics": {"swd": swd, "fd": 10 * swd, "mmd": swd / 10}}))
        teachers.append(f)
    return tmp_path, runs, teachers


def test_means_stds_intervals_and_p_values_match_numpy_and_scipy(stored):
    root, runs, teachers = stored
    s = ablation.build(root / "order.yaml", runs, teachers, root / "reference.json", root / "out" / "ablate_order",
                     root / "plots" / "ablate_order.png")
    assert s["method.ordering"].to_list() == ["forward", "reversed", "random"]  # the spec's order
    base = np.array(list(SWD["forward"].values()))
    for row in s.iter_rows(named=True):
        v = np.array(list(SWD[row["method.ordering"]].values()))
        assert row["swd_mean"] == pytest.approx(v.mean()) and row["swd_std"] == pytest.approx(v.std(ddof=1))
        h = stats.t.ppf(0.975, 2) * v.std(ddof=1) / math.sqrt(3)
        assert (row["swd_ci_lo"], row["swd_ci_hi"]) == (pytest.approx(v.mean() - h), pytest.approx(v.mean() + h))
        if row["method.ordering"] == "forward":
            assert row["baseline"] and math.isnan(row["swd_p_vs_baseline"])
        else:
            assert row["swd_p_vs_baseline"] == pytest.approx(stats.ttest_rel(v, base).pvalue)
        assert row["swd_ratio_to_teacher_50"] == pytest.approx(v.mean() / 0.055)
        assert row["seeds"] == 3 and row["wall_time_s_mean"] == pytest.approx(61.0)

    md = (root / "out" / "ablate_order.md").read_text()
    rows = {r.split("|")[1].strip().strip("*"): r for r in md.splitlines() if r.startswith("| ")}
    # bold: the best mean of each metric (random on SWD and MMD, forward on FD is not best: random is)
    assert "**0.05067 ± 0.0021**" in rows["random"] and "**" not in rows["reversed"]
    assert "baseline" in rows["forward"]
    p_rev = stats.ttest_rel(np.array(list(SWD["reversed"].values())), base).pvalue
    assert f"{p_rev:.3f}" in rows["reversed"]
    assert "3 seeds" in md and "4096 one-step samples" in md and "Held fixed: K = 10." in md
    assert list(rows)[-2:] == ["teacher DDIM 1 step", "teacher DDIM 50 steps"]

    tex = (root / "out" / "ablate_order.tex").read_text()
    assert tex.count(r"\toprule") == 1 and r"\textbf{0.05067 $\pm$ 0.0021}" in tex and r"\label{tab:ablate_order}" in tex
    csv = pl.read_csv(root / "out" / "ablate_order.csv")
    assert csv.filter(pl.col("kind") == "reference")["setting"].to_list() == [
        "data vs data (floor)", "teacher DDIM 1 step", "teacher DDIM 50 steps"]
    for fig in ("ablate_order", "ablate_order_curves", "ablate_order_samples"):
        assert (root / "plots" / f"{fig}.png").stat().st_size > 0 and (root / "plots" / f"{fig}.pdf").exists()

    main = build_main([root / "out" / "ablate_order.csv"], root / "out" / "main", root / "plots" / "main.png")
    assert main["which"].to_list() == ["baseline", "best"] and main["setting"].to_list() == ["ordering=forward", "ordering=random"]
    assert "ordering=random" in (root / "out" / "main.md").read_text()


def test_paired_test_uses_the_seeds_both_rows_have():
    assert report_stats.paired_p({0: 1.0, 1: 2.0, 2: 3.5}, {0: 1.1, 1: 2.0}) == pytest.approx(
        stats.ttest_rel([1.0, 2.0], [1.1, 2.0]).pvalue)
    assert math.isnan(report_stats.paired_p({0: 1.0}, {0: 2.0}))  # one common seed: no test
    assert math.isnan(report_stats.ci95([0.5])[0])


def test_line_plot_for_lambda_marks_zero(stored, tmp_path):
    root, _, _ = stored
    runs = []
    for lam, base in ((0.0, 0.09), (0.01, 0.06), (0.1, 0.05), (1.0, 0.07)):
        for seed in (0, 1):
            d = tmp_path / "lam" / f"lambda-{lam}_seed-{seed}"
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps({
                "point": {"method.lambda": lam}, "seed": seed, "primary": "swd",
                "metrics": {"swd": base + seed * 1e-3, "fd": 0.1, "mmd": 0.01}, "train": {"wall_time_s": 1.0}}))
            runs.append(d / "metrics.json")
    spec = {"name": "ablate_lambda", "baseline": {"method.lambda": 0.1}, "grid": {"method.lambda": [0.0, 0.01, 0.1, 1.0]},
            "plot": {"kind": "line", "log_x": True}}
    (tmp_path / "lam.yaml").write_text(yaml.safe_dump(spec))
    s = ablation.build(tmp_path / "lam.yaml", runs, [], root / "reference.json", tmp_path / "t" / "lam", tmp_path / "p" / "lam.png")
    assert s["method.lambda"].to_list() == ["0.0", "0.01", "0.1", "1.0"]
    assert (tmp_path / "p" / "lam.png").stat().st_size > 0
    # seeds differ by a constant: the paired test has no variance -> a finite p only where differences vary
    assert s.filter(pl.col("baseline"))["method.lambda"].to_list() == ["0.1"]


def test_the_writer_escapes_every_latex_special_character():
    from onestep.report.writer import Table, escape, latex, markdown

    special = "& # $ { } ^ ~ _ % ± ² λ <"
    t = Table(["a_b", "MMD²"], [[("x & y", False), ("1 ± 2", True)]], f"cap {special}", "lab", 1, [["r", "3%"]])
    tex = latex(t)
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption{"))
    for raw, safe in (("&", r"\&"), ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("^", r"\textasciicircum"),
                      ("~", r"\textasciitilde"), ("_", r"\_"), ("%", r"\%"), ("±", r"$\pm$"), ("²", r"$^2$"),
                      ("λ", r"$\lambda$"), ("<", r"$<$")):
        assert safe in caption and safe in escape(raw), raw
    assert caption.isascii() and tex.isascii()  # nothing left for inputenc
    # no unescaped special outside the escapes: strip them and the math glyphs, nothing special remains
    bare = escape(special)
    for safe in (r"\&", r"\#", r"\$", r"\{", r"\}", r"\textasciicircum", r"\textasciitilde", r"\_", r"\%", r"\space",
                 r"$\pm$", r"$^2$", r"$\lambda$", r"$<$"):
        bare = bare.replace(safe, "")
    assert not set(bare) & set("&#${}^~_%<") and bare.strip() == ""
    assert r"a\_b & MMD$^2$ \\" in tex and r"x \& y & \textbf{1 $\pm$ 2} \\" in tex and r"r & 3\% \\" in tex
    assert tex.splitlines()[:3] == [r"\begin{table}[t]", r"\centering", r"\small"] and r"\label{tab:lab}" in tex
    assert [line for line in tex.splitlines() if "rule" in line] == [r"\toprule", r"\midrule", r"\midrule", r"\bottomrule"]
    assert markdown(t).splitlines()[2:] == ["| a_b | MMD² |", "|---|---|", "| x & y | **1 ± 2** |", "| *r* | *3%* |"]


def test_a_methods_columns_hook_adds_its_column_when_runs_carry_the_number(stored, monkeypatch):
    from onestep.columns import Column
    from onestep.methods import METHODS
    from onestep.methods.base import MethodBase

    class Widget(MethodBase):
        @classmethod
        def columns(cls):
            return (Column("widget_err", "widget err", path=("widget", "err"), caption="widget err: a test number."),)

    monkeypatch.setitem(METHODS, "widget", Widget)
    root, runs, teachers = stored

    def header(prefix):
        md = (root / "out" / f"{prefix}.md").read_text()
        return md, [c.strip() for c in next(r for r in md.splitlines() if r.startswith("| ordering")).split("|")[1:-1]]

    ablation.build(root / "order.yaml", runs, teachers, root / "reference.json", root / "out" / "without", root / "p.png")
    md, cols = header("without")
    assert "widget err" not in cols and "a test number" not in md  # no run has it: not shown
    assert pl.read_csv(root / "out" / "without.csv")["widget_err_mean"].drop_nulls().drop_nans().len() == 0  # the CSV keeps it
    for i, f in enumerate(runs):
        rec = json.loads(f.read_text())
        f.write_text(json.dumps({**rec, "widget": {"err": 0.5 + i}}))
    s = ablation.build(root / "order.yaml", runs, teachers, root / "reference.json", root / "out" / "with", root / "p.png")
    md, cols = header("with")
    i = cols.index("widget err")  # after the headline's statistics and the other metrics
    assert cols.index("TOST p (±10%)") < i and "widget err: a test number." in md
    assert s["widget_err_mean"].to_list() == pytest.approx([1.5, 4.5, 7.5])
    row = next(r for r in md.splitlines() if r.startswith("| forward"))
    assert row.split("|")[i + 1].strip() == "1.5 ± 1"
