"""Equal-effort tuning: every method declares its tunable knobs; the tuned-values file round-trips, and a
file naming an unknown method or knob, a value outside the range, or another teacher stops at parse time."""

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, REPO

from onestep.config import ConfigError, set_dotted, with_method
from onestep.methods import METHODS
from onestep.tuning import keys
from onestep.tuning import values as values_file
from onestep.tuning.space import method_space
from onestep.tuning.studies import study_configs


def test_every_method_declares_a_search_space_around_its_defaults(default_config):
    for name in METHODS:
        sp = method_space(name)
        assert 1 <= len(sp) <= 5, name  # the knobs that matter (recipe, noise range, sampler) + the student lr
        cfg = with_method({**default_config, "seed": 0}, {"name": name})
        for knob, spec in sp.items():
            node = cfg if "." in knob else cfg["method"]
            for part in knob.split("."):
                assert part in node, f"{name}: {knob} is not a config key"
                node = node[part]
            if "choices" in spec:
                assert node in spec["choices"], (name, knob)
            else:
                assert spec["low"] <= node <= spec["high"], (name, knob, node)


LR = {"low": 1e-4, "high": 3e-3, "log": True}  # the student's learning rate, every method's last knob
# every method's search space as its file wrote it before the student's knobs were written once (STUDENT_SPACE)
SPACES = {
    "curriculum": {"lambda": {"low": 1e-3, "high": 10.0, "log": True}, "replay": {"low": 0.0, "high": 0.5, "log": False},
                   "student.lr": LR},
    "kd": {"distance": {"choices": ["l2", "l1"]}, "student.lr": LR},
    "progressive": {"start_steps": {"choices": [16, 32, 64, 128, 256, 512]}, "student.lr": LR},
    "cd": {"target": {"choices": ["ema", "online"]}, "weighting": {"choices": ["uniform", "ict"]},
           "target_ema": {"low": 0.9, "high": 0.999, "log": False}, "student.lr": LR},
    "ctm": {"N": {"choices": [10, 18, 40]}, "dsm_weight": {"low": 0.0, "high": 2.0, "log": False},
            "target_ema": {"low": 0.99, "high": 0.9999, "log": False}, "student.lr": LR},
    "reflow": {"flow_weight": {"low": 0.0, "high": 2.0, "log": False}, "student.lr": LR},
    "dmd2": {"fake_updates": {"choices": [1, 2, 5, 10]}, "t_min": {"low": 0, "high": 500, "log": False},
             "t_max": {"low": 600, "high": 999, "log": False}, "sigma_max": {"low": 10.0, "high": 157.0, "log": True},
             "student.lr": LR},
    "tdm": {"fake_updates": {"choices": [1, 2, 5, 10]}, "t_min": {"low": 1, "high": 200, "log": True},
            "t_top": {"low": 500, "high": 1000, "log": False}, "student.lr": LR},
    "ct": {"p_mean": {"low": -1.5, "high": 1.5, "log": False}, "p_std": {"low": 0.5, "high": 2.5, "log": False},
           "student.lr": LR},
    "meanflow": {"ratio_r_neq_t": {"low": 0.1, "high": 0.9, "log": False},
                 "time_mean": {"low": -3.0, "high": 0.5, "log": False},
                 "time_std": {"low": 0.8, "high": 2.5, "log": False}, "student.lr": LR},
    "shortcut": {"bootstrap": {"low": 0.1, "high": 0.5, "log": False}, "max_steps": {"choices": [8, 16, 32, 128]},
                 "student.lr": LR},
    "drifting": {"student.lr": LR},
}


def test_every_methods_space_is_its_own_knobs_then_the_students():
    """The student's knobs are written once (STUDENT_SPACE) and every method's space is what its file declared
    before, in the same order (the order a study suggests its knobs in)."""
    assert set(SPACES) == set(METHODS)
    for name, space in SPACES.items():
        assert list(method_space(name).items()) == list(space.items()), name
        assert "student.lr" not in METHODS[name].search_space, name


def test_tuned_values_round_trip(tmp_path):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights")
    values = {"cd": {"target_ema": 0.97, "weighting": "ict"}, "kd": {"distance": "l1", "student.lr": 5e-4}}
    values_file.write(tmp_path / "tuned.yaml", teacher, values, trials=16)
    assert values_file.read(tmp_path / "tuned.yaml", teacher) == values
    cfg = values_file.apply(with_method(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), {"name": "kd"}),
                      values["kd"])
    assert cfg["method"]["distance"] == "l1" and cfg["student"]["lr"] == 5e-4


@pytest.mark.parametrize("edit,key", [
    ({"methods": {"nosuch": {"x": 1}}}, "methods.nosuch: unknown method"),
    ({"methods": {"cd": {"s0": 20}}}, "methods.cd.s0: not a tunable knob"),
    ({"methods": {"cd": {"target_ema": 9.0}}}, "methods.cd.target_ema: 9.0 is outside"),
    ({"teacher": "000000000000"}, "teacher: tuned under teacher 000000000000"),
])
def test_bad_tuned_values_name_the_file_and_key(tmp_path, edit, key):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights")
    doc = {"teacher": values_file.teacher_hash(teacher), "trials": 4, "methods": {"cd": {"target_ema": 0.95}}} | edit
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=f"tuned.yaml: {key}"):
        values_file.read(tmp_path / "tuned.yaml", teacher)


def test_a_bad_tuned_file_stops_snakemake_at_parse_time(tmp_path):
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump({"teacher": "abc", "methods": {"cd": {"s0": 20}}}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"tuned_baselines": str(tmp_path / "tuned.yaml")}))
    p = subprocess.run([str(BIN / "snakemake"), "-n", "baselines", "-s", str(REPO / "Snakefile"), "--cores", "1",
                        "--configfile", str(REPO / "config" / "config.yaml"), str(tmp_path / "c.yaml")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "tuned.yaml: methods.cd.s0: not a tunable knob" in p.stdout + p.stderr
    assert not (tmp_path / "results").exists()


def test_a_tuned_file_without_a_tuned_runs_method_stops_at_parse_time(tmp_path, default_config):
    from onestep.config import load_workflow

    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump({"teacher": "abc", "methods": {"cd": {"target_ema": 0.95}}}))
    missing = r"tuned.yaml: methods.ct: missing; baselines_tuned .* runs ct, ctm, curriculum, .* the file has: cd"
    with pytest.raises(ConfigError, match=missing):
        load_workflow({**default_config, "out": str(tmp_path), "tuned_baselines": str(tmp_path / "tuned.yaml")},
                      read_tuned=values_file.read)


def test_set_dotted_is_pure():
    cfg = {"student": {"lr": 1e-3}}
    assert set_dotted(cfg, "student.lr", 5e-4)["student"]["lr"] == 5e-4 and cfg["student"]["lr"] == 1e-3


# ---------------------------------------------------------------- the studies (target tune_baselines)


def _workflow(default_config, **tune_baselines):
    """The shipped workflow (config/ablations) on the default config with tune_baselines overrides."""
    from onestep.config import load_workflow

    cfg = {**default_config, "tune_baselines": {**default_config["tune_baselines"], **tune_baselines}}
    return cfg, load_workflow(cfg)


@pytest.mark.parametrize("share", [1.0, 0.25])
def test_each_study_searches_exactly_its_declared_knobs_with_the_same_trials_and_budget(default_config, share):
    """One study per method of the baselines grid (the curriculum included): its space is exactly the method's
    space (method_space), its trials and its share of the method's own budget are those of every other study, and no
    point of the space changes a trial's optimiser steps (progressive's start_steps changes its rounds)."""
    import optuna

    from onestep.tuning.space import study_space, suggest

    cfg, ablations = _workflow(default_config, trials=7, budget=share)
    studies = study_configs(cfg, ablations)
    grid = [r.config for r in ablations["baselines"].runs]
    assert list(studies) == list(dict.fromkeys(c["method"]["name"] for c in grid)) and "curriculum" in studies
    assert len(studies) == len(METHODS)
    for name, study in studies.items():
        tc, method = study["tune"], METHODS[name]
        assert study_space(study) == {keys.key(k): {"key": keys.key(k), **spec} for k, spec in method_space(name).items()}
        assert (tc["n_trials"], tc["budget"]["share"], tc["pruner"], tc["defaults_first"]) == (7, share, "none", True)
        assert tc["study"] == f"tune_baselines-{name}" and study["seed"] == tc["seed"]
        default = next(c for c in grid if c["method"]["name"] == name)
        steps = method.total_steps_of(study["method"])
        assert steps == tc["budget"]["steps"]
        assert 0 <= round(share * method.total_steps_of(default["method"])) - steps < 16  # whole stages / rounds
        assert {k: v for k, v in study["method"].items() if k not in ("steps", "budget", "steps_per_round",
                "reflow_steps", "distill_steps")} == {k: v for k, v in default["method"].items() if k not in (
                "steps", "budget", "steps_per_round", "reflow_steps", "distill_steps")}  # only the budget differs
        sampled = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        for _ in range(6):
            trial = sampled.ask()
            tcfg = suggest(trial, study)
            assert set(trial.params) == set(study_space(study)), name  # exactly the declared knobs
            assert method.total_steps_of(tcfg["method"]) in range(steps - 15, steps + 1), (name, trial.params)
            for key, v in trial.params.items():
                node = tcfg
                for part in key.split("."):
                    node = node[part]
                assert node == v


def test_tuning_settings_rerun_no_ablation(default_config):
    """The runs' configs (their config.yaml, whose change re-runs them) hold no tune_baselines key: more trials, or
    the tuning in the paper, leave every ablation's runs as they are."""
    _, before = _workflow(default_config)
    _, after = _workflow(default_config, trials=3, budget=0.5, paper=True)
    for name, ab in before.items():
        assert [r.config for r in ab.runs] == [r.config for r in after[name].runs], name
        assert all("tune_baselines" not in r.config for r in ab.runs)


def test_the_lambda_study_keeps_its_space(default_config):
    from onestep.tuning.space import study_space

    assert list(study_space(default_config)) == ["lambda"]
    cfg = {**default_config, "tune": {**default_config["tune"], "space": {"method.replay": {"low": 0.0, "high": 0.5}}}}
    assert study_space(cfg)["method.replay"] == {"key": "method.replay", "low": 0.0, "high": 0.5}


def _best(folder, name, params, value, trials=3, default=1.0):
    """A study's best.yaml as tune-summary writes it."""
    doc = {"study": f"tune_baselines-{name}-checkerboard", "method": name, "metric": "validation swd", "value": value,
           "trial": 2, "params": params, "keys": {k: k for k in params}, "n_trials": trials,
           "budget": {"steps": 40, "student_forwards": 100, "student_backwards": 50, "teacher_evals": 0},
           "trials": {"complete": trials, "pruned": 0, "fail": 0}, "default": {"trial": 0, "value": default}}
    path = folder / name / "best.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_gathered_values_round_trip_into_a_tuned_runs_config(tmp_path, default_config):
    """tune-gather (the rule's CLI) writes the file from the studies' best.yaml; values_file.read gives the values back;
    resolve_run (rule run_config of baselines_tuned) applies them to the run's resolved config, records them, keeps
    its optimiser steps; the tuned run differs from its default run in exactly the tuned keys."""
    from onestep.cli import main
    from onestep.outputs import differing_keys

    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights")
    best = [_best(tmp_path, "kd", {"method.distance": "l1", "student.lr": 5e-4}, 0.04),
            _best(tmp_path, "progressive", {"method.start_steps": 32, "student.lr": 2e-3}, 0.06)]
    out = tmp_path / "tuned_baselines.yaml"
    main(["tune-gather", "--best", *map(str, best), "--teacher", str(teacher), "--out", str(out),
          "--out-prefix", str(tmp_path / "tables" / "tune_baselines"), "--plot", str(tmp_path / "tune_baselines.png")])
    values = values_file.read(out, teacher)
    assert values == {"kd": {"distance": "l1", "student.lr": 5e-4}, "progressive": {"start_steps": 32, "student.lr": 2e-3}}
    assert yaml.safe_load(out.read_text())["trials"] == 3
    md = (tmp_path / "tables" / "tune_baselines.md").read_text()
    assert "| kd | distance l1, student.lr 0.0005 | 1 | 0.04 |" in md
    assert (tmp_path / "tune_baselines.png").stat().st_size > 0

    _, ablations = _workflow(default_config)
    runs = {r.name: r.config for r in ablations["baselines_tuned"].runs}
    defaults = {r.name: r.config for r in ablations["baselines"].runs}
    for name in ("name-kd_seed-0", "name-progressive_seed-0"):
        cfg = values_file.resolve_run(runs[name], out, teacher)
        method = METHODS[cfg["method"]["name"]]
        assert cfg["run"]["tuned"] == {"file": str(out), "teacher": values_file.teacher_hash(teacher),
                                       "values": values[cfg["method"]["name"]]}
        assert abs(method.total_steps_of(cfg["method"]) - method.total_steps_of(defaults[name]["method"])) < 6
        strip = lambda c: {k: v for k, v in c.items() if k != "run"}  # noqa: E731
        changed = set(differing_keys(strip(defaults[name]), strip(cfg)))
        assert {keys.key(k) for k in values[cfg["method"]["name"]]} <= changed
        assert changed - {keys.key(k) for k in values[cfg["method"]["name"]]} <= {"method.steps_per_round"}
    assert values_file.resolve_run(runs["name-kd_seed-0"], out, teacher)["method"]["distance"] == "l1"
    with pytest.raises(ConfigError, match=r"tuned_baselines.yaml: methods.cd: missing; run baselines_tuned/name-cd_seed-0"):
        values_file.resolve_run(runs["name-cd_seed-0"], out, teacher)
    other = tmp_path / "other.pt"
    other.write_bytes(b"another teacher")
    with pytest.raises(ConfigError, match=r"tuned_baselines.yaml: teacher: tuned under teacher"):
        values_file.resolve_run(runs["name-kd_seed-0"], out, other)


def test_gather_refuses_studies_of_unequal_effort(tmp_path):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights")
    best = [_best(tmp_path, "kd", {"student.lr": 5e-4}, 0.04, trials=3),
            _best(tmp_path, "cd", {"student.lr": 5e-4}, 0.04, trials=4)]
    from onestep.stages.tuning import tune_gather as gather

    with pytest.raises(ConfigError, match="different numbers of trials"):
        gather(best, teacher, tmp_path / "t.yaml", tmp_path / "t", tmp_path / "t.png")


@pytest.mark.parametrize("edit,message", [
    ({"grid": {"method.name": ["curriculum", "kd"]}}, r"baselines_tuned.yaml: tuned: baselines_tuned's runs differ"),
    ({"fixed": {"student": {"batch_size": 32}}}, r"baselines_tuned.yaml: tuned: run name-curriculum_seed-0 differs "
                                                 r"from the same run of baselines in student.batch_size"),
    ({"tuned": "ablate_K"}, r"baselines_tuned.yaml: tuned: 'ablate_K' is not the ablation the values are tuned on"),
])
def test_a_tuned_ablation_repeats_the_default_runs(tmp_path, default_config, edit, message):
    from onestep.config import load_workflow

    adir = tmp_path / "ablations"
    adir.mkdir()
    for f in ("baselines.yaml", "K.yaml"):
        (adir / f).write_text((REPO / "config" / "ablations" / f).read_text())
    spec = yaml.safe_load((REPO / "config" / "ablations" / "baselines_tuned.yaml").read_text()) | edit
    (adir / "baselines_tuned.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=message):
        load_workflow({**default_config, "ablations_dir": str(adir)})


def test_a_tuned_run_whose_values_are_the_defaults_reuses_the_default_training(tmp_path, default_config, monkeypatch):
    """baselines_tuned repeats the baselines' runs; a method whose study kept its defaults would train the very
    same config again. onestep train --same-as (rule train of a tuned ablation) reuses the default run's training
    then: the same weights saved under the tuned run's config, train.json and the MLflow run naming the source;
    a tuned run with another value trains."""
    import json

    import mlflow
    import torch

    from onestep.cli import main
    from onestep.config import deep_merge, validate

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = deep_merge(default_config, {"teacher": {"steps": 30, "batch_size": 128, "log_every": 10, "warmup": 5},
                                       "pairs": {"num": 256, "ddim_steps": 4}, "student": {"batch_size": 32, "log_every": 5},
                                       "method": {"K": 2, "steps_per_stage": 5},
                                       "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                                    "artifacts": str(tmp_path / "mlartifacts")}})
    base = with_method({**base, "seed": 0}, {"name": "curriculum", "K": 2, "steps_per_stage": 5})

    def run(ablation: str, extra: dict | None = None) -> dict:  # a run's config.yaml, as rule run_config writes it
        cfg = {**base, "run": {"ablation": ablation, "name": "name-curriculum_seed-0",
                               "point": {"method.name": "curriculum"}, **(extra or {})}}
        validate(cfg, "$run")
        return cfg

    record = {"tuned": {"file": "tuned_baselines.yaml", "teacher": "abc", "values": {"lambda": 0.1}}}
    folders = {"baselines": run("baselines"), "same": run("baselines_tuned", record),
               "other": set_dotted(run("baselines_tuned", record), "student.lr", 0.002)}
    for name, cfg in folders.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(base))
    main(["teacher", "--config", "job.yaml", "--out", "teacher.pt"])
    main(["pairs", "--config", "job.yaml", "--teacher", "teacher.pt", "--out", "pairs.npz"])
    train = lambda name, *extra: main(["train", "--config", f"{name}/config.yaml", "--teacher", "teacher.pt",  # noqa: E731
                                       "--pairs", "pairs.npz", "--out", name, *extra])
    assert values_file.trained_alike("same/config.yaml", "baselines") is None  # not trained yet
    train("baselines")
    assert values_file.trained_alike("same/config.yaml", "baselines") == Path("baselines")
    assert values_file.trained_alike("other/config.yaml", "baselines") is None  # student.lr differs
    stale = json.loads((tmp_path / "baselines" / "train.json").read_text())  # trained from an older config of the run
    (tmp_path / "baselines" / "train.json.bak").write_text(json.dumps(stale))
    (tmp_path / "baselines" / "train.json").write_text(json.dumps(
        {**stale, "config": set_dotted(stale["config"], "method.lambda", 0.5)}))
    assert values_file.trained_alike("same/config.yaml", "baselines") is None
    (tmp_path / "baselines" / "train.json.bak").replace(tmp_path / "baselines" / "train.json")
    train("same", "--same-as", "baselines")
    train("other", "--same-as", "baselines")

    summary = {n: json.loads((tmp_path / n / "train.json").read_text()) for n in folders}
    ckpt = {n: torch.load(tmp_path / n / "student.pt", weights_only=False) for n in folders}
    assert summary["same"]["reused_from"] == "baselines" and "reused_from" not in summary["other"]
    assert summary["same"]["steps"] == summary["baselines"]["steps"] == 10
    assert summary["same"]["wall_time_s"] == summary["baselines"]["wall_time_s"]  # the result's cost: that training's
    assert summary["same"]["config_file"] == "same/config.yaml"
    assert ckpt["same"]["config"]["run"]["ablation"] == "baselines_tuned" and ckpt["same"]["config"]["run"]["tuned"]
    for k, v in ckpt["baselines"]["state_dict"].items():
        assert torch.equal(ckpt["same"]["state_dict"][k], v), k
    assert any(not torch.equal(ckpt["other"]["state_dict"][k], v) for k, v in ckpt["baselines"]["state_dict"].items())
    assert (tmp_path / "same" / "train_log.csv").read_text() == (tmp_path / "baselines" / "train_log.csv").read_text()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    reused = client.get_run(summary["same"]["mlflow_run_id"])
    assert reused.data.tags["reused_from"] == "baselines" and reused.info.status == "FINISHED"
    assert reused.data.tags["reused_mlflow_run_id"] == summary["baselines"]["mlflow_run_id"]
    assert reused.data.metrics["steps"] == 10
    curve = lambda run_id: [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")]  # noqa: E731
    assert curve(reused.info.run_id) == curve(summary["baselines"]["mlflow_run_id"]) != []  # the curves, replayed
