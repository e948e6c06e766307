"""Equal-effort tuning: every method declares its tunable knobs; the tuned-values file round-trips, and a
file naming an unknown method or knob, a value outside the range, or another teacher stops at parse time."""

import subprocess

import pytest
import yaml
from conftest import BIN, REPO

from onestep import tuned
from onestep.config import ConfigError, set_dotted, with_method
from onestep.methods import METHODS


def test_every_method_declares_a_search_space_around_its_defaults(default_config):
    for name, m in METHODS.items():
        sp = m.search_space
        assert 1 <= len(sp) <= 3, name
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


def test_tuned_values_round_trip(tmp_path):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights")
    values = {"cd": {"p_mean": 0.3, "p_std": 1.4}, "kd": {"distance": "l1", "student.lr": 5e-4}}
    tuned.write(tmp_path / "tuned.yaml", teacher, values, trials=16)
    assert tuned.read(tmp_path / "tuned.yaml", teacher) == values
    cfg = tuned.apply(with_method(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), {"name": "kd"}),
                      values["kd"])
    assert cfg["method"]["distance"] == "l1" and cfg["student"]["lr"] == 5e-4


@pytest.mark.parametrize("edit,key", [
    ({"methods": {"nosuch": {"x": 1}}}, "methods.nosuch: unknown method"),
    ({"methods": {"cd": {"s0": 20}}}, "methods.cd.s0: not a tunable knob"),
    ({"methods": {"cd": {"p_mean": 9.0}}}, "methods.cd.p_mean: 9.0 is outside"),
    ({"teacher": "000000000000"}, "teacher: tuned under teacher 000000000000"),
])
def test_bad_tuned_values_name_the_file_and_key(tmp_path, edit, key):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights")
    doc = {"teacher": tuned.teacher_hash(teacher), "trials": 4, "methods": {"cd": {"p_mean": 0.0}}} | edit
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=f"tuned.yaml: {key}"):
        tuned.read(tmp_path / "tuned.yaml", teacher)


def test_a_bad_tuned_file_stops_snakemake_at_parse_time(tmp_path):
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump({"teacher": "abc", "methods": {"cd": {"s0": 20}}}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"tuned_baselines": str(tmp_path / "tuned.yaml")}))
    p = subprocess.run([str(BIN / "snakemake"), "-n", "baselines", "-s", str(REPO / "Snakefile"), "--cores", "1",
                        "--configfile", str(REPO / "config" / "config.yaml"), str(tmp_path / "c.yaml")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "tuned.yaml: methods.cd.s0: not a tunable knob" in p.stdout + p.stderr
    assert not (tmp_path / "results").exists()


def test_set_dotted_is_pure():
    cfg = {"student": {"lr": 1e-3}}
    assert set_dotted(cfg, "student.lr", 5e-4)["student"]["lr"] == 5e-4 and cfg["student"]["lr"] == 1e-3
