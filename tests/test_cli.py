"""`onestep` itself: the help speaks to a user (the commands for people apart from the rule internals), a
--version, and cli.py only parses and dispatches: every command's work is a stage in onestep.stages that
receives every argument its command parses."""

import argparse
import inspect
import subprocess
import sys

import pytest

import onestep
from onestep import cli

PEOPLE = ("where", "compare", "ui", "check-config", "preflight", "sync")


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_help_lists_the_commands_for_people_apart_from_the_internals():
    p = subprocess.run([sys.executable, "-m", "onestep", "--help"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    people, internals = p.stdout.split("commands for people:")[1].split("rule internals")
    listed = lambda text: {line.split()[0] for line in text.splitlines() if line.startswith("  ")}  # noqa: E731
    assert listed(people) == set(PEOPLE)
    assert listed(internals.split("options:")[0]) == set(_commands()) - set(PEOPLE)
    assert "Snakemake rules call" not in p.stdout  # not the developers' module docstring


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"onestep {onestep.__version__}"


def test_every_command_is_a_stage_that_takes_what_its_command_parses():
    for name, sub in _commands().items():
        fn = sub.get_default("fn")
        assert fn.__module__.startswith("onestep.stages."), (name, fn.__module__)
        params = set(inspect.signature(fn).parameters)
        if sub.get_default("load"):  # the job's config (read by the CLI) comes as `cfg`, its tracking file with it
            assert "cfg" in params, name
            params |= {"tracking"}
        parsed = {a.dest for a in sub._actions if a.dest not in ("help", "log", "threads")}  # the job options
        assert parsed - {"config"} <= params, (name, parsed - params)  # no option is dropped on the way


def test_cli_holds_no_command_bodies():
    assert not [n for n in vars(cli) if n.startswith("cmd_")]
    assert len(inspect.getsource(cli).splitlines()) < 200


def test_the_cli_starts_without_torch():
    """`onestep <command>` parses and checks the tracking server before any heavy import: importing the CLI
    and building its parser loads no torch (a job that cannot reach its server fails in a fraction of a second)."""
    import subprocess
    import sys

    code = "import sys, onestep.cli; onestep.cli.parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_where_checks_the_target_and_prints_the_configs_real_paths(tmp_path, capfd):
    import yaml

    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "order.yaml").write_text(yaml.safe_dump(
        {"name": "ablate_order", "baseline": {"method.ordering": "forward"}, "grid": {"method.ordering": ["forward"]}}))
    cfg = tmp_path / "my.yaml"
    cfg.write_text(yaml.safe_dump({"out": str(tmp_path / "res"), "ablations_dir": str(tmp_path / "ab"),
                                   "dataset": {"name": "digits"}}))
    args = ["--cores", "2", "--configfile", str(cfg), "--config", "seeds=[3]"]
    with pytest.raises(SystemExit) as e:
        cli.main(["where", "ablate_ordr", *args])
    assert e.value.code == 2 and "the targets: ablate_order" in capfd.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["where", "ablate_order", *args])
    assert e.value.code == 2 and "not finished for digits: 0 of 1 runs" in capfd.readouterr().err
    table = tmp_path / "res" / "tables" / "digits" / "ablate_order.md"
    table.parent.mkdir(parents=True)
    table.write_text("| the table |\n")
    cli.main(["where", "ablate_order", *args])
    out = capfd.readouterr().out
    assert f"table : {table}" in out and str(tmp_path / "res" / "digits" / "ablate_order") in out
    assert "ordering-forward_seed-3" in out and "<dataset>" not in out and "| the table |" in out
    assert "onestep ui --uri sqlite:///" in out
    cli.main(["where", "ablate_order", *args[:-1], "seeds=[3]", "tracking={enabled: false}"])
    out = capfd.readouterr().out
    assert "MLflow: off (tracking.enabled: false)" in out and "onestep ui" not in out
    assert f"onestep sync --run {tmp_path / 'res' / 'digits' / 'ablate_order'}/*" in out


def test_compare_puts_two_tables_side_by_side(tmp_path, capfd):
    import polars as pl

    for tier, (m, lo, hi) in {"checkerboard": (0.05, 0.04, 0.06), "digits": (12.0, 11.0, 13.0)}.items():
        (tmp_path / tier).mkdir()
        p = "swd" if tier == "checkerboard" else "fid"
        pl.DataFrame([{"kind": "run", "ablation": "ablate_order", "setting": "ordering=forward", "primary": p,
                       f"{p}_mean": m, f"{p}_ci_lo": lo, f"{p}_ci_hi": hi, f"{p}_p_holm": None, "baseline": True,
                       "seeds": 3},
                      {"kind": "reference", "ablation": "ablate_order", "setting": "data vs data (floor)", "primary": p,
                       f"{p}_mean": m / 4}]).write_csv(tmp_path / tier / "ablate_order.csv")
    cli.main(["compare", str(tmp_path / "checkerboard" / "ablate_order.csv"), str(tmp_path / "digits" / "ablate_order.csv")])
    out = capfd.readouterr().out.splitlines()
    assert "| ablate_order (checkerboard) | ordering=forward | swd | 0.05 | [0.04, 0.06] | 4.00 | baseline | 3 |" in out
    assert "| ablate_order (digits) | ordering=forward | fid | 12 | [11, 13] | 4.00 | baseline | 3 |" in out
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", str(tmp_path / "nowhere.csv"), str(tmp_path / "digits" / "ablate_order.csv")])
    assert e.value.code == 2 and "no table" in capfd.readouterr().err
