"""Each method file is the one source of truth for its knobs: the dataclass `METHODS[name].Config`
gives the schema, the defaults of every run config and the method's own rules; method files share
maths through methods/common.py only, never by importing each other."""

import ast
from dataclasses import fields, is_dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from onestep.config import ConfigError, deep_merge, load_workflow, method_names, validate, with_method
from onestep.methods import METHODS, defaults
from onestep.methods.base import Knobs

METHODS_DIR = Path(__file__).resolve().parents[1] / "src" / "onestep" / "methods"
SHARED = {"base", "common", "losses"}  # what a method file may import from onestep.methods


def config_keys(cls) -> set[str]:
    return {f.metadata.get("key") or f.name for f in fields(cls)}


def nested(cls):
    """(config key, nested Knobs class) of each nested section."""
    return [(k, tp) for k, _, tp in cls.knobs() if is_dataclass(tp)]


@pytest.mark.parametrize("name", list(METHODS))
def test_schema_keys_are_the_dataclass_fields(name):
    cfg_cls = METHODS[name].Config
    assert is_dataclass(cfg_cls) and issubclass(cfg_cls, Knobs)
    sch = cfg_cls.schema(name)
    assert set(sch["properties"]) == {"name"} | config_keys(cfg_cls)
    assert sch["properties"]["name"] == {"const": name} and sch["additionalProperties"] is False
    for key, sub in nested(cfg_cls):
        assert set(sch["properties"][key]["properties"]) == config_keys(sub)
        assert sch["properties"][key]["additionalProperties"] is False
    # the defaults pass the schema, every knob present, and round-trip through the dataclass
    d = defaults(name)
    jsonschema.Draft202012Validator(sch).validate(d)
    assert set(d) == {"name"} | config_keys(cfg_cls)
    assert cfg_cls.from_dict(d) == cfg_cls()


def test_method_names_come_from_the_registry():
    assert method_names() == list(METHODS)
    assert not (METHODS_DIR.parents[2] / "workflow" / "schemas" / "methods").exists()


def module_imports(path: Path) -> set[str]:
    """onestep.methods submodules a file imports (absolute or relative), by name."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names if a.name.startswith("onestep.methods.")}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # from . import x / from .x import y
                out |= {mod.split(".")[0]} if mod else {a.name for a in node.names}
            elif mod.startswith("onestep.methods."):
                out.add(mod.split(".")[2])
            elif mod == "onestep.methods":
                out |= {a.name for a in node.names}
    return out


@pytest.mark.parametrize("path", sorted(p for p in METHODS_DIR.glob("*.py") if p.stem != "__init__"), ids=lambda p: p.stem)
def test_no_method_file_imports_another_method(path):
    imported = module_imports(path)
    if path.stem in SHARED:  # the shared modules import no method either
        assert imported <= SHARED, imported
    else:
        own = {m for m in imported if m.startswith(f"{path.stem}_")}  # its own parts (curriculum_stages.py)
        assert imported - own <= SHARED, f"{path.name} imports {sorted(imported - SHARED)}; share maths through common.py"


def test_import_check_catches_a_sibling_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from onestep.methods.ct import CT\nfrom .dmd2 import fake_score\nfrom onestep.methods.common import expand\n")
    assert module_imports(bad) == {"ct", "dmd2", "common"}


def test_a_run_config_holds_every_knob(default_config):
    """config.yaml names only `method.name`; each resolved run config holds every knob of its method."""
    assert default_config["method"] == {"name": "curriculum"} and "methods" not in default_config
    abl = load_workflow(default_config)
    for ab in abl.values():
        for run in ab.runs:
            m = run.config["method"]
            assert set(m) == set(defaults(m["name"])), (ab.name, run.name)
    base = abl["baselines"].runs
    assert {r.config["method"]["name"] for r in base} == {p["method.name"] for p in abl["baselines"].points}
    kd = next(r.config["method"] for r in base if r.config["method"]["name"] == "kd")
    assert kd == defaults("kd")  # switching method starts from the new method's own defaults


def test_with_method_starts_from_the_dataclass_defaults(default_config):
    cfg = {**default_config, "seed": 0}
    c = with_method(cfg, {"name": "ctm", "N": 4})
    assert c["method"] == {**defaults("ctm"), "N": 4}
    c = with_method(cfg, {"adversarial": {"weight": 0.5}})  # same method: nested keys merge over the defaults
    assert c["method"]["adversarial"] == {**defaults("curriculum")["adversarial"], "weight": 0.5}
    assert c["method"]["lambda"] == 0.1


@pytest.mark.parametrize(
    "section, message",
    [
        ({"name": "ctm", "N": 1}, r"method.N: 1 is out of range; allowed: >= 2"),
        ({"name": "progressive", "start_steps": 3}, r"method.start_steps: 3 is not allowed; allowed values: 1, 2, 4, 8"),
        ({"name": "cd", "huber_c": -1.0}, r"method.huber_c: -1.0 is not allowed; allowed: a number > 0 or a null"),
        ({"name": "tdm", "huber_c": -1.0}, r"method.huber_c: -1.0 is out of range; allowed: > 0"),
        ({"name": "tdm", "t_top": 1001}, r"method.t_top: 1001 is out of range; allowed: 1..diffusion.T = 1000"),
        ({"name": "tdm", "ks": [1, 0]}, r"method.ks\[1\]: 0 is out of range; allowed: >= 1"),
        ({"name": "tdm", "ks": [1, 2000]}, r"method.ks: \[1, 2000\] is out of range; allowed: step counts 1..method.t_top = 900"),
        ({"name": "cd", "solver": "rk4"}, r"method.solver: 'rk4' is not allowed; allowed values: heun, euler"),
        ({"name": "cd", "s0": 20, "s1": 10}, r"method.s1: 10 is below method.s0 = 20; allowed: s1 >= s0"),
        ({"name": "ct", "s0": 20, "s1": 10}, r"method.s1: 10 is below method.s0 = 20"),
        ({"name": "dmd2", "t_min": 500, "t_max": 100}, r"method.t_max: 100 is out of range; allowed: method.t_min = 500"),
        ({"name": "drifting", "taus": []}, r"method.taus: \[\] should be non-empty|method.taus: \[\] is too short"),
        ({"name": "kd", "K": 3}, r"method: unknown key\(s\) K; allowed keys: distance, name, steps"),
        ({"name": "curriculum", "adversarial": {"betas": [0.5, 1.0]}}, r"method.adversarial.betas\[1\]: 1.0 is out of range"),
        ({"name": "curriculum", "perceptual": {"backbone": "vgg"}}, r"method.perceptual.backbone: 'vgg' is not allowed"),
    ],
)
def test_bad_knob_one_message(default_config, section, message):
    cfg = deep_merge({**default_config, "seed": 0}, {})
    with pytest.raises(ConfigError, match=message) as e:
        validate({**cfg, "method": section})
    assert "\n" not in str(e.value)


def test_per_method_knobs_of_an_ablation(default_config, tmp_path):
    """An ablation over method.name sets each method's own knobs (`per_method`), checked like any run."""
    spec = {"name": "ab", "grid": {"method.name": ["curriculum", "kd"]}, "per_method": {"kd": {"steps": 20}}}
    (tmp_path / "ab.yaml").write_text(yaml.safe_dump(spec))
    runs = load_workflow({**default_config, "ablations_dir": str(tmp_path)})["ab"].runs
    kd = [r.config["method"] for r in runs if r.config["method"]["name"] == "kd"]
    assert kd and all(m == {**defaults("kd"), "steps": 20} for m in kd)
    (tmp_path / "ab.yaml").write_text(yaml.safe_dump({**spec, "per_method": {"kd": {"steps": 0}}}))
    with pytest.raises(ConfigError, match=r"ab.yaml \(run name-kd_seed-0\): method.steps: 0 is out of range"):
        load_workflow({**default_config, "ablations_dir": str(tmp_path)})
    (tmp_path / "ab.yaml").write_text(yaml.safe_dump({**spec, "per_method": {"kdd": {}}}))
    with pytest.raises(ConfigError, match=r"per_method: unknown method\(s\) kdd"):
        load_workflow({**default_config, "ablations_dir": str(tmp_path)})
