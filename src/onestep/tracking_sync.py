"""Upload a finished run folder into the MLflow store after the fact (a job that ran untracked, a cleaned or
moved store, a tuned run that reused its default run's training)."""

from __future__ import annotations

import csv
from pathlib import Path

from onestep import outputs
from onestep.tracking import _client, _exists, enabled, eval_metrics, record
from onestep.tracking_view import run_label


def sync_run(folder: str | Path, cfg: dict | None = None, tags: dict | None = None,
             parent_id: str | None = None) -> str | None:
    """Upload a finished run's files into the current store after the fact (a job that ran untracked, or
    a store that was cleaned or moved; a tuned run that reused its default run's training): its config as
    params, train.json's and metrics.json's numbers, train_log.csv and stages.csv as metric histories, and
    the files as artifacts. The run recorded in train.json is reused when the store holds it; else a new one
    is made (tag onestep.synced_from, and `tags`, under `parent_id`). Returns the run id (None untracked).
    Reads files only: never changes them. `cfg`: the run's config.yaml with a tracking section (the CLI
    adds results/config/tracking.yaml's); default: config.yaml as it is."""
    folder = Path(folder)
    cfg = outputs.read_yaml(folder / "config.yaml") if cfg is None else cfg
    train = outputs.read_json(folder / "train.json") if (folder / "train.json").is_file() else {}
    result = outputs.read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    run = cfg.get("run", {})
    tags = {"kind": "run", "ablation": run.get("ablation", ""), "run": run.get("name", folder.name),
            "seed": str(cfg.get("seed")), "method": cfg.get("method", {}).get("name", ""),
            "onestep.synced_from": str(folder.resolve()), **(tags or {})}
    old = train.get("mlflow_run_id")
    reuse = old is not None and enabled(cfg) and _exists(_client(cfg), old)
    name = run_label(run["point"], cfg.get("seed")) if "point" in run else folder.name
    with record(cfg, name, tags, parent_id=parent_id, run_id=old if reuse else None) as rec:
        if not reuse:
            rec.params(cfg)
        rec.metrics({k: v for k, v in train.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        rec.metrics(eval_metrics(result.get("metrics", {})))
        rec.metrics(eval_metrics(result.get("multistep") or {}))
        for name, series in (("train_log.csv", "step"), ("stages.csv", "phase")):
            if (folder / name).is_file() and not reuse:  # a reused run already holds its histories
                with open(folder / name) as f:
                    for row in csv.DictReader(f):
                        step = int(float(row.pop(series)))
                        rec.metrics({k: float(v) for k, v in row.items() if v not in ("", None)}, step)
        for name in ("config.yaml", "train.json", "metrics.json", "train_log.csv", "stages.csv", "curves.png",
                     "samples.png", "student.pt"):
            rec.artifact(folder / name)
        return rec.run_id
