"""How the MLflow runs table shows the records: MLflow's own source tags, run names that read as the grid
point, the experiment's default view (columns, grid order), and a store whose folder moved.

MLflow 3's UI keeps its column choice in the browser; a view saved on the experiment (a "shared view": the
tag `mlflow.sharedViewState.<key>`, opened with `?viewStateShareKey=<key>`) sets the columns and the sort a
first visit shows. `onestep ui` prints that address. The view names the headline metrics (eval_tv,
eval_off_support, eval_swd, eval_fid), the seed and the grid keys of every ablation recorded so far (each parent
run adds its own), and sorts by the tag `onestep.order`, so each ablation's runs come in grid order under their parent.

It imports only onestep.provenance (the package's version); onestep.tracking builds on it.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import sys
from pathlib import Path

from onestep.provenance import git, version  # the package's git commit, read once per process

VIEW = "onestep"  # the share key of the experiment's view
VIEW_TAG = f"mlflow.sharedViewState.{VIEW}"
ORDER_TAG = "onestep.order"  # what the view sorts by: the ablation, then the grid point, then the seed
HEADLINES = ("tv", "off_support", "swd", "fid")  # the headline metrics of the tiers (2-D exact, 2-D, images)
FIRST = [f"metrics.`eval_{m}`" for m in HEADLINES] + ["params.`seed`"]


def column(kind: str, key: str) -> str:
    """A column id of MLflow's runs table (kind: attributes, params, metrics, tags)."""
    return f"{kind}.`{key}`"


def source_tags() -> dict[str, str]:
    """MLflow's own tags of where a run comes from (the Source, Version and User columns): the command, the
    git commit and branch of the package's checkout, the user."""
    command = " ".join(["onestep", *sys.argv[1:2]]) if sys.argv and sys.argv[0].endswith(("onestep", "__main__.py")) \
        else Path(sys.argv[0] if sys.argv else "python").name
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": command, "mlflow.source.git.commit": version()["commit"] or "unknown"}
    if branch := git("rev-parse", "--abbrev-ref", "HEAD"):
        tags["mlflow.source.git.branch"] = branch
    if remote := git("config", "--get", "remote.origin.url"):
        tags["mlflow.source.git.repoURL"] = remote
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no user name (a container without a passwd entry)
        tags["mlflow.user"] = os.environ.get("USER", "unknown")
    return tags


def point_label(point: dict) -> str:
    """A grid point as the table reads it: `ordering=forward`, keys by their last part, comma-separated."""
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in point.items()) or "baseline"


def run_label(point: dict, seed) -> str:
    """A run's name in MLflow: its grid point and seed (`ordering=forward, seed 0`)."""
    return f"{point_label(point)}, seed {seed}"


def order_key(ablation: str, index: int | None = None, seed: int | None = None) -> str:
    """The sort key of a run (its ablation, the grid point's index, the seed) or of its parent (no index)."""
    if index is None:
        return f"{ablation}"
    return f"{ablation}/{index:04d}/{int(seed):04d}"


def view_state(columns: list[str]) -> dict:
    """The experiment's view: these columns after the source, sorted by the order tag (children in grid order)."""
    return {"searchFilter": "", "orderByKey": column("tags", ORDER_TAG), "orderByAsc": True, "startTime": "ALL",
            "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
            "selectedColumns": [column("attributes", "Source"), *columns], "runsHiddenMode": "SHOW_ALL"}


def add_view_columns(client, exp_id: str, keys: list[str]) -> None:
    """Add the params `keys` (an ablation's grid keys) to the experiment's view, after the headline metrics."""
    exp = client.get_experiment(exp_id)
    have = json.loads(exp.tags[VIEW_TAG]).get("selectedColumns", [])[1:] if VIEW_TAG in exp.tags else list(FIRST)
    wanted = have + [c for c in (column("params", k) for k in keys) if c not in have]
    if VIEW_TAG not in exp.tags or wanted != have:
        client.set_experiment_tag(exp_id, VIEW_TAG, json.dumps(view_state(wanted)))


def retire_default(client, keep: str | None = None) -> bool:
    """Delete MLflow's "Default" experiment (id 0) when it holds no runs; True when it was deleted.

    MLflow's SQL store inserts experiment 0, named Default, whenever it opens a store without one, with
    an artifact location relative to the working directory of the process that opened it (./mlruns/0).
    No job logs there, so it only shows up in the UI as an empty experiment next to ours. A deleted
    experiment still exists (lifecycle stage "deleted"), so the store does not recreate it; a permanent
    delete would bring it back the next time a process opens the store."""
    from mlflow.exceptions import MlflowException

    try:
        default = client.get_experiment("0")
    except MlflowException:
        return False
    if default is None or default.lifecycle_stage != "active" or default.experiment_id == keep:
        return False
    if client.search_runs(["0"], max_results=1, run_view_type=3):  # 3: ViewType.ALL
        return False
    try:
        client.delete_experiment("0")
    except MlflowException:  # another process deleted it first
        return False
    return True


def relocate(db: Path, artifacts: Path) -> list[tuple[str, str]]:
    """A moved or copied SQLite store: point the artifact locations it recorded (absolute file URIs of the old
    folder) at `artifacts` (the store's artifact folder now). An experiment whose location is `artifacts`
    already, or is no local folder, is left alone. Returns the (old, new) roots rewritten."""
    if not db.is_file():
        return []
    new = artifacts.resolve().as_uri()
    done = []
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall()
        for exp_id, old in rows:
            if not old or not old.startswith("file:") or str(exp_id) == "0":
                continue
            mine, old = new, old.rstrip("/")
            if old == mine or not artifacts.is_dir():
                continue
            con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (mine, exp_id))
            con.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE experiment_id = ? AND "
                        "substr(artifact_uri, 1, ?) = ?", (mine, len(old) + 1, exp_id, len(old), old))
            done.append((old, mine))
    return done
