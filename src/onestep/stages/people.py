"""The commands for people: check config files before a run, say where a target's results are, open the
MLflow UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def check_config(files: list[Path]) -> None:
    """Check config files (merged over config/config.yaml in order): a YAML error's file and line, a bad value's key."""
    from onestep.config import check_files
    from onestep.tuning import studies, values

    abl = check_files(files, read_tuned=values.read, check_studies=studies.study_configs)
    runs = sum(len(ab.runs) for ab in abl.values())
    print(f"config ok: {' + '.join(map(str, files)) or 'defaults'}; {len(abl)} ablations, {runs} runs")


def where(target: str, out: str, dataset: str, uri: str, artifacts: str) -> None:
    """Where a target's table, plots, runs and MLflow records are, and its table."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or uri
    print(f"""
Done: {target}
  table : {out}/tables/{dataset}/{target}.md  (also .tex, .csv)
  plots : {out}/plots/{dataset}/{target}.png, _curves.png, _samples.png  (also .pdf)
  runs  : {out}/<dataset>/{target}/<run>/  (metrics.json, samples.png, curves.png)
  MLflow: {uri}  (artifacts in {artifacts})
Open the MLflow UI:  make ui   (or: .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000)
""")
    table = Path(out) / "tables" / dataset / f"{target}.md"
    if table.is_file():
        print(table.read_text())


def ui(uri: str, host: str, port: int, experiment: str) -> None:
    """The MLflow UI on the store (this process becomes it), after the runs table's address."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or uri
    argv = [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port)]
    print(" ".join(argv))
    from onestep.tracking import ui_url

    print(f"runs table (ablation parents, runs nested under them): {ui_url(uri, experiment, host, port)}",
          flush=True)
    os.execv(argv[0], argv)
