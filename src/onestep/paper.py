"""`snakemake paper`: every table and figure the docs quote, per dataset tier, under results/paper/<tier>/.

The workflow's plan lists the artefacts (`artefacts`) and writes them as the paper spec (`spec_json`). Each
artefact (an ablation's table, the main table, the baselines, the tuning study) is copied from where its
own target wrote it to <tier>/<name>.{md,tex,csv,png} (`copy_artefact`), and `index.md` lists each with the
command that made it and its config hash (`write_index`) from the paper spec `paper.yaml` (what the
workflow's `paper_spec` local rule writes: name, title, command, config hash, files, per artefact).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from onestep import outputs
from onestep.config import result_config
from onestep.errors import OnestepError

EXTS = (".md", ".tex", ".csv", ".png")


class PaperError(OnestepError):
    pass


def artefact_hash(cfg: dict, *files: str | Path) -> str:
    """12 hex digits of sha256 over the config's hash (outputs.config_hash of the resolved config without the
    sections no result depends on: tracking) and the given files' bytes (a grid file)."""
    h = hashlib.sha256(outputs.config_hash(result_config(cfg)).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:12]


def command(target: str, configfiles) -> str:
    """The command that makes `target` on this tier: the config files the workflow was started with, after
    the default config/config.yaml."""
    tier = " ".join(f"--configfile {f}" for f in configfiles
                    if Path(f).name != "config.yaml" or Path(f).parent.name != "config")
    return " ".join(["snakemake --cores 2", target, tier]).strip()


def _artefact(title: str, sources: list[str], target: str, configfiles, cfg: dict, *files) -> dict:
    return {"title": title, "sources": sources, "command": command(target, configfiles),
            "config_hash": artefact_hash(cfg, *files)}


def artefacts(cfg: dict, ablations: dict, with_studies: bool, folders: tuple[str, str], study_dir: str,
              configfiles) -> dict[str, dict]:
    """name -> {title, sources, command, config_hash} of every artefact of the tier: each ablation that applies
    to it, the main table and the lambda study. Equal-effort tuning (a study per baseline method, then
    baselines_tuned) only with tune_baselines.paper: it trains methods x trials runs, more than the rest of the
    tier together. `folders`: (tables, plots) of the tier; `with_studies`: tune_baselines has studies here."""
    tables, plots = folders

    def sources(name):
        return [f"{tables}/{name}.md", f"{tables}/{name}.tex", f"{tables}/{name}.csv", f"{plots}/{name}.png"]

    tuned_in_paper = cfg["tune_baselines"]["paper"]
    out = {name: _artefact(ab.title, sources(name), name, configfiles, cfg, ab.file) for name, ab in ablations.items()
           if not ab.skipped and (tuned_in_paper or not ab.tuned)}
    if tuned_in_paper and with_studies:
        out["tune_baselines"] = _artefact("Equal-effort tuning: a study per method (defaults vs tuned, validation metric)",
                                          sources("tune_baselines"), "tune_baselines", configfiles, cfg,
                                          ablations[cfg["tune_baselines"]["grid"]].file)
    out["main"] = _artefact("Main table: baseline and best point of every ablation", sources("main"), "ablate_all",
                            configfiles, cfg)
    out["tune_lambda"] = _artefact("The tuning study over lambda (Optuna trials)",
                                   [f"{study_dir}/trials.{e}" for e in ("md", "tex", "csv")] + [f"{study_dir}/history.png"],
                                   "tune_lambda", configfiles, cfg)
    return out


def spec_json(tier: str, cfg: dict, arts: dict[str, dict], configfiles) -> str:
    """The paper spec (paper.yaml, rule paper_spec's param): the tier, its command and hash, every artefact."""
    return json.dumps({"tier": tier, "command": command("paper", configfiles), "config_hash": artefact_hash(cfg),
                       "artefacts": [{"name": n, **a} for n, a in arts.items()]}, sort_keys=True)


def copy_artefact(sources: list[Path], out_prefix: Path) -> list[Path]:
    """The artefact's .md, .tex, .csv and .png (one source each, told apart by suffix) as <out_prefix>.<ext>."""
    by_ext = {Path(s).suffix: Path(s) for s in sources}
    missing = [e for e in EXTS if e not in by_ext]
    if missing:
        raise PaperError(f"--src: no {', '.join(missing)} file among {', '.join(map(str, sources))}; "
                         f"allowed: one each of {', '.join(EXTS)}")
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    made = []
    for ext in EXTS:
        dst = Path(str(out_prefix) + ext)
        shutil.copyfile(by_ext[ext], dst)
        made.append(dst)
    return made


def _code(prefix: Path) -> str:
    """The code versions behind an artefact: the distinct `code` labels of its CSV's rows (report.ablation)."""
    import csv

    try:
        with open(prefix.with_suffix(".csv"), newline="") as f:
            labels = {c.split(" train ")[0] for r in csv.DictReader(f) for c in (r.get("code") or "").split("; ") if c}
    except OSError:
        return ""
    return ", ".join(f"`{c}`" for c in sorted(labels))


def write_index(spec_path: Path, out: Path) -> str:
    """index.md: one row per artefact of the paper spec, with its files, command and config hash."""
    spec = outputs.read_yaml(spec_path)
    rows = ["| artefact | files | command | config hash | code |", "|---|---|---|---|---|"]
    for a in spec["artefacts"]:
        files = ", ".join(f"[{a['name']}{e}]({a['name']}{e})" for e in EXTS)
        rows.append(f"| {a['title']} | {files} | `{a['command']}` | `{a['config_hash']}` | {_code(out.parent / a['name'])} |")
    text = "\n".join([f"# Paper artefacts: {spec['tier']}", "",
                      f"Made by `{spec['command']}` (config hash `{spec['config_hash']}`); each artefact's own "
                      "target rebuilds it alone. The config hash is sha256 (12 digits) of the resolved config's hash "
                      "and, for an ablation, its grid file.", "", *rows, ""])
    out.write_text(text)
    return text
