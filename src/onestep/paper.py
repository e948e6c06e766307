"""`snakemake paper`: every table and figure the docs quote, per dataset tier, under results/paper/<tier>/.

Each artefact (an ablation's table, the main table, the baselines, the tuning study) is copied from where its
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
from onestep.errors import OnestepError

EXTS = (".md", ".tex", ".csv", ".png")


class PaperError(OnestepError):
    pass


def config_hash(cfg: dict, *files: str | Path) -> str:
    """12 hex digits of sha256 over the resolved config (sorted JSON; no tracking section, which no result
    depends on) and the given files' bytes (a spec)."""
    from onestep.config import result_config

    h = hashlib.sha256(json.dumps(result_config(cfg), sort_keys=True, default=str).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:12]


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


def write_index(spec_path: Path, out: Path) -> str:
    """index.md: one row per artefact of the paper spec, with its files, command and config hash."""
    spec = outputs.read_yaml(spec_path)
    rows = ["| artefact | files | command | config hash |", "|---|---|---|---|"]
    for a in spec["artefacts"]:
        files = ", ".join(f"[{a['name']}{e}]({a['name']}{e})" for e in EXTS)
        rows.append(f"| {a['title']} | {files} | `{a['command']}` | `{a['config_hash']}` |")
    text = "\n".join([f"# Paper artefacts: {spec['tier']}", "",
                      f"Made by `{spec['command']}` (config hash `{spec['config_hash']}`); each artefact's own "
                      "target rebuilds it alone. The config hash is sha256 (12 digits) of the resolved config "
                      "and, for an ablation, its grid file.", "", *rows, ""])
    out.write_text(text)
    return text
