"""Bad input gets one message naming the key and the allowed values, before any job starts."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onestep.config import ConfigError, deep_merge, load_workflow, plain_ddim, validate

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"method": {"ordering": "sideways"}}, r"method.ordering: 'sideways' is not allowed; allowed values: forward, reversed, random"),
        ({"dataset": {"name": "cifar"}}, r"dataset.name: 'cifar' is not allowed; allowed values: checkerboard"),
        ({"method": {"K": 0}}, r"method.K: 0 is out of range; allowed: >= 1"),
        ({"method": {"K": 1001}}, r"method.K: 1001 is out of range; allowed: 1 <= K <= diffusion.T = 1000"),
        ({"method": {"lambda": -0.5}}, r"method.lambda: -0.5 is not allowed; allowed: a number >= 0 or 'tuned'"),
        ({"seeds": [0, 1.5]}, r"seeds\[1\]: 1.5 must be of type integer"),
        ({"tune": {"lambda": {"low": 1.0, "high": 0.1}}}, r"tune.lambda: low \(1.0\) must be below high \(0.1\)"),
        ({"tune": {"validation": {"noise_seed": 12345}}}, r"tune.validation.noise_seed: must differ from evaluation.noise_seed"),
        ({"seeds": [0, "one"]}, r"seeds\[1\]: 'one' must be of type integer"),
        ({"method": {"stages": 3}}, r"method: unknown key\(s\) stages; allowed keys: .*K"),
        ({"dataset": {"name": "npz", "path": "/no/such.npz"}}, r"dataset.path: file not found: /no/such.npz"),
        ({"method": {"consistency_step": "ddpm", "anchor": "trained", "ordering": "reversed"}},
         r"method.consistency_step: 'ddpm' cannot bridge upward"),
        # accepted before, then failing late or training nonsense
        ({"method": {"lambda": float("nan")}}, r"method.lambda: nan is not allowed; allowed: a finite number"),
        ({"method": {"lambda": float("inf")}}, r"method.lambda: inf is not allowed; allowed: a finite number"),
        ({"student": {"lr": float("-inf")}}, r"student.lr: -inf is not allowed; allowed: a finite number"),
        ({"student": {"net": {"width": 0}}}, r"student.net.width: 0 is out of range; allowed: >= 1"),
        ({"teacher": {"net": {"depth": 0}}}, r"teacher.net.depth: 0 is out of range; allowed: >= 1"),
        ({"student": {"net": {"widht": 64}}},
         r"student.net: unknown key\(s\) widht; allowed keys: depth, name, temb_dim, times, width"),
        ({"method": {"adversarial": {"net": {"name": "mlp", "wdith": 8}}}},
         r"method.adversarial.net: unknown key\(s\) wdith; allowed keys: depth, name"),
        ({"method": {"K": 3, "budget": 2}}, r"method.budget: 2 is below method.K \(3\)"),
    ],
)
def test_bad_config_one_message(default_config, override, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_workflow(deep_merge(default_config, override))
    assert "\n" not in str(e.value)


def test_bad_grid_value_names_the_ablation_file(default_config, tmp_path):
    (tmp_path / "o.yaml").write_text(yaml.safe_dump({"name": "ablate_x", "grid": {"method.ordering": ["up"]}}))
    with pytest.raises(ConfigError, match=r"o.yaml \(run ordering-up_seed-0\): method.ordering: 'up' is not allowed"):
        load_workflow({**default_config, "ablations_dir": str(tmp_path)})


def test_grid_expands_to_runs(default_config):
    ab = load_workflow(default_config)["ablate_order"]
    assert len(ab.runs) == 3 * len(default_config["seeds"])
    run = ab.runs[0]
    assert run.name == "ordering-forward_seed-0"
    assert run.config["method"]["ordering"] == "forward" and run.config["seed"] == 0
    assert {r.config["method"]["ordering"] for r in ab.runs} == {"forward", "reversed", "random"}


def test_snakemake_stops_before_any_job(tmp_path):
    """A bad value passed to Snakemake fails at parse time with the one message and writes nothing."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"method": {"ordering": "sideways"}, "out": str(tmp_path / "results")}))
    snakemake = str(REPO / ".venv" / "bin" / "snakemake") if (REPO / ".venv").exists() else "snakemake"
    p = subprocess.run([snakemake, "ablate_order", "-n", "--cores", "1", "--configfile", str(bad)],
                       cwd=REPO, capture_output=True, text=True, env=_snakemake_env())
    assert p.returncode != 0
    assert "method.ordering: 'sideways' is not allowed; allowed values: forward, reversed, random" in p.stdout + p.stderr
    assert not (tmp_path / "results").exists()
    assert sys.executable  # the suite runs inside the pinned environment


def test_lambda_tuned_puts_the_study_before_training(tmp_path):
    """An ablation with `method.lambda: tuned` makes the DAG run the Optuna study first."""
    from conftest import planned_jobs

    (tmp_path / "abl").mkdir()
    (tmp_path / "abl" / "t.yaml").write_text(yaml.safe_dump(
        {"name": "ablate_tuned", "fixed": {"method": {"lambda": "tuned"}}, "grid": {"method.ordering": ["forward"]}}))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"ablations_dir": str(tmp_path / "abl"), "seeds": [0], "out": str(tmp_path / "r")}))
    snakemake = str(REPO / ".venv" / "bin" / "snakemake")
    p = subprocess.run([snakemake, "ablate_tuned", "-n", "-p", "--cores", "1", "--configfile", str(cfg)],
                       cwd=REPO, capture_output=True, text=True, env=_snakemake_env())
    assert p.returncode == 0, p.stderr[-2000:]
    jobs = planned_jobs(p.stdout)
    assert jobs["tune_worker"] == 2 and jobs["tune_summary"] == 1 and jobs["train"] == 1
    assert "--tuned" in p.stdout and "best.yaml" in p.stdout


def _snakemake_env() -> dict:
    """The venv's bin on PATH and this checkout's package first (not the editable install's)."""
    return {"PATH": str(REPO / ".venv/bin") + ":/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")}


def test_config_overrides_are_read_as_yaml(tmp_path):
    """`--config 'seeds=[0]'` (Snakemake keeps list items strings) plans one seed; before, it was refused
    with "seeds[0]: '0' must be of type integer"."""
    from conftest import planned_jobs

    snakemake = str(REPO / ".venv" / "bin" / "snakemake")
    p = subprocess.run([snakemake, "ablate_order", "-n", "--cores", "1", "--config", "seeds=[0]",
                        f"out={tmp_path / 'r'}", "tune={lambda: {low: 0.01}}"],
                       cwd=REPO, capture_output=True, text=True, env=_snakemake_env())
    assert p.returncode == 0, (p.stdout + p.stderr)[-2000:]
    assert planned_jobs(p.stdout)["train"] == 3  # three orderings x one seed
    from onestep.config import yaml_values

    assert yaml_values({"seeds": ["0", "1"], "method": {"lambda": ".5", "ordering": "forward"}, "x": "null"}) == \
        {"seeds": [0, 1], "method": {"lambda": 0.5, "ordering": "forward"}, "x": None}


def test_malformed_config_file_names_file_and_line(tmp_path):
    """Snakemake reads --configfile itself ("Config file is not valid JSON or YAML", no name, no line);
    `onestep check-config` names both, and an ablation file's YAML error names its line too."""
    bad = tmp_path / "my.yaml"
    bad.write_text("out: results\nmethod:\n  K: 5\n   lambda: 0.1\n")
    p = subprocess.run([str(REPO / ".venv" / "bin" / "onestep"), "check-config", str(bad)], capture_output=True,
                       text=True, env=_snakemake_env())
    assert p.returncode == 2
    assert p.stderr.strip().startswith(f"onestep check-config: error: {bad}, line 4, column 10: not valid YAML")
    assert len(p.stderr.strip().splitlines()) == 1
    (tmp_path / "abl").mkdir()
    (tmp_path / "abl" / "x.yaml").write_text("name: ablate_x\ngrid: {method.K: [1, 2]\n")
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'abl' / 'x.yaml'}, line 3, column 1: not valid YAML"):
        load_workflow({**yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                       "ablations_dir": str(tmp_path / "abl")})


def test_parse_time_work_does_not_grow_with_the_grid(default_config, tmp_path, monkeypatch):
    """Planning a grid of 1000 runs took 96 s (`make bench`): each run's validation re-read and
    re-parsed the schema files and built new JSON-schema validators. Now each schema is read and each
    validator built once per process: the count for 40 runs equals the count for 4 (a count, not a time)."""
    import jsonschema

    from onestep.config import schema as config

    reads, builds = [], []
    real_load, real_validator = yaml.load, jsonschema.Draft202012Validator
    monkeypatch.setattr(yaml, "load", lambda *a, **k: reads.append(1) or real_load(*a, **k))
    monkeypatch.setattr(jsonschema, "Draft202012Validator", lambda *a, **k: builds.append(1) or real_validator(*a, **k))

    def work(seeds: int) -> tuple[int, int]:
        (tmp_path / str(seeds)).mkdir()
        (tmp_path / str(seeds) / "g.yaml").write_text(yaml.safe_dump(
            {"name": "ablate_g", "grid": {"method.lambda": [0.1, 0.2], "method.replay": [0.0, 0.5]},
             "seeds": list(range(seeds))}))
        config._schema_file.cache_clear()
        config._validator.cache_clear()
        reads.clear()
        builds.clear()
        ab = load_workflow({**default_config, "ablations_dir": str(tmp_path / str(seeds))})["ablate_g"]
        assert len(ab.runs) == 4 * seeds
        return len(reads), len(builds)

    assert work(1) == work(10)
    # the checks still run on every run: a bad value in one grid point is still named
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "g.yaml").write_text(yaml.safe_dump(
        {"name": "ablate_g", "grid": {"student.net.width": [8, 0]}}))
    with pytest.raises(ConfigError, match=r"run width-0_seed-0\): student.net.width: 0 is out of range"):
        load_workflow({**default_config, "ablations_dir": str(tmp_path / "bad")})


def test_config_file_errors_as_documented(tmp_path):
    """A malformed or missing --configfile fails inside Snakemake, before the workflow runs: what it prints is
    pinned here as docs/config.md quotes it (a Snakemake upgrade that changes it fails this test), and
    `onestep check-config`, which the docs send the user to, names the file (and line) in one line."""
    bad, gone = tmp_path / "my.yaml", tmp_path / "gone.yaml"
    bad.write_text("out: results\nmethod:\n  K: 5\n   lambda: 0.1\n")
    snakemake = str(REPO / ".venv" / "bin" / "snakemake")
    docs = (REPO / "docs" / "config.md").read_text()
    p = subprocess.run([snakemake, "-n", "--cores", "1", "--configfile", str(bad)], cwd=REPO, capture_output=True,
                       text=True, env=_snakemake_env())
    said = "Config file is not valid JSON or YAML. In case of YAML, make sure to not mix whitespace and tab indentation."
    assert p.returncode == 1 and said in p.stdout and said in docs
    p = subprocess.run([snakemake, "-n", "--cores", "1", "--configfile", str(gone)], cwd=REPO, capture_output=True,
                       text=True, env=_snakemake_env())
    last = p.stdout.strip().splitlines()[-1]  # (Snakemake prints its errors to stdout)
    assert p.returncode == 1 and last == f"FileNotFoundError: [Errno 2] No such file or directory: '{gone}'"
    assert "FileNotFoundError: [Errno 2] No such file or directory: 'my.yaml'" in docs
    onestep = str(REPO / ".venv" / "bin" / "onestep")
    for f, message in ((bad, f"{bad}, line 4, column 10: not valid YAML"),
                       (gone, f"{gone}: cannot read config file (No such file or directory)")):
        p = subprocess.run([onestep, "check-config", str(f)], capture_output=True, text=True, env=_snakemake_env())
        assert p.returncode == 2 and p.stderr.strip() == p.stderr.strip().splitlines()[0], p.stderr
        assert p.stderr.startswith(f"onestep check-config: error: {message}"), p.stderr
        assert "onestep check-config A B" in docs


@pytest.mark.parametrize("section", ["teacher", "student", "pairs", "evaluation", "tracking"])
def test_a_typed_section_holds_every_key_with_its_defaults_written_once(section, default_config):
    """A typed section read from its required keys alone equals the dataclass's defaults; the schema the
    config is checked with is the dataclass's (each key, each default in one place); an unknown key is
    refused naming <section>.<key>."""
    from dataclasses import MISSING, fields

    from onestep.config import SECTIONS
    from onestep.config.schema import config_schema

    cls = SECTIONS[section]
    required = {k: default_config[section][k] for k in cls.required_keys()}
    parsed = cls.parse(required)
    for f in fields(cls):
        if f.name not in required:
            want = f.default if f.default is not MISSING else f.default_factory()
            assert getattr(parsed, f.name) == want, f.name
    assert parsed.as_dict() == {**cls.defaults(), **required}
    assert cls.of(default_config).as_dict() == {**cls.defaults(), **default_config[section]}
    assert config_schema()["properties"][section] == cls.object_schema()
    assert sorted(config_schema()["properties"][section]["properties"]) == sorted(k for k, _, _ in cls.knobs())
    with pytest.raises(ConfigError, match=rf"^{section}\.bogus: unknown key; allowed keys: "):
        cls.parse({**required, "bogus": 1})
    if required:
        first = cls.required_keys()[0]
        with pytest.raises(ConfigError, match=rf"^{section}\.{first}: missing"):
            cls.parse({k: v for k, v in required.items() if k != first})
    with pytest.raises(ConfigError, match=rf"config: {section}: unknown key\(s\) bogus; allowed keys: "):
        validate(deep_merge(default_config, {section: {"bogus": 1}}))


def test_section_defaults_are_filled_when_read_not_written():
    """Reading a section fills its defaults; the config itself (what job and run files hold) is not changed."""
    from onestep.config import Pairs, Student, Tracking

    cfg = {"pairs": {"num": 8, "ddim_steps": 2, "seed": 1}}
    pairs = Pairs.of(cfg)
    assert (pairs.batch_size, pairs.solver, pairs.clip_x0) == (4096, "ddim", None) and plain_ddim(pairs.solver, pairs.clip_x0)
    assert cfg == {"pairs": {"num": 8, "ddim_steps": 2, "seed": 1}}
    assert plain_ddim(None, None) and not plain_ddim("dpm++", None) and not plain_ddim(None, 1.0)
    student = Student.parse({"net": {"name": "mlp"}, "batch_size": 4, "lr": 1e-3, "ema": 0.9, "log_every": 1})
    assert (student.warmup, student.lr_schedule, student.grad_accum, student.checkpoint_every) == (0, "constant", 1, 0)
    assert Tracking.defaults() == {"system_metrics_s": None, "enabled": True, "required": True, "timeout_s": 10.0}
