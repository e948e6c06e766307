"""The MLflow store's own commands: create the store, an ablation's parent run, upload finished runs."""

from __future__ import annotations

import json
from pathlib import Path

from onestep import outputs


def init_tracking(cfg: dict, out: Path) -> None:
    """Create the MLflow store and experiment once; `out` (store.json) names them (no experiment: untracked)."""
    from onestep import tracking

    exp = tracking.init_store(cfg) if tracking.enabled(cfg) else None  # None: untracked (tracking.required: false)
    outputs.write_json(out, {"tracking_uri": tracking.tracking_uri(cfg), "experiment_id": exp})
    state = "ready" if exp is not None else "unreachable: jobs run untracked"
    print(f"MLflow store {state}: {tracking.tracking_uri(cfg)} (experiment {tracking.experiment_name(cfg)})")


def parent(cfg: dict, ablation: str, kind: str, out: Path) -> None:
    """Create the MLflow parent run of an ablation (or study); `out` holds its run id."""
    from onestep import tracking

    run_id = tracking.start_parent(cfg, ablation, kind)
    outputs.write_json(out, {"run_id": run_id, "ablation": ablation})
    print(f"parent run {run_id or '(untracked)'} for {ablation}")


def sync(run: list[Path], tracking: Path | None = None) -> None:
    """Upload finished run folders into the current MLflow store; the tracking section from `tracking`, else
    <out>/config/tracking.yaml next to the run folders."""
    from onestep import jobs
    from onestep.tracking import tracking_uri
    from onestep.tracking_sync import sync_run

    for folder in run:
        cfg = outputs.read_yaml(folder / "config.yaml")
        up = folder.resolve().parents
        shared = up[2] / "config" / "tracking.yaml" if len(up) > 2 else None  # <out>/<dataset>/<ablation>/<run>
        given = tracking or (shared if "tracking" not in cfg and shared and shared.is_file() else None)
        cfg = jobs.with_tracking(cfg, given, folder / "config.yaml")
        cfg["tracking"] = {**cfg["tracking"], "enabled": True}  # an asked-for upload: tracking.enabled is the jobs' switch
        run_id = sync_run(folder, cfg)
        print(f"{folder}: MLflow run {run_id} in {tracking_uri(cfg)}")


def summarise_parent(rec, ablation: str, spec_file: Path, table_csv: Path, run_files: list[Path]) -> None:
    """The ablation's parent run as its table's summary: the grid and fixed keys as params, a description,
    the headline metric per point (mean, 95% CI, Holm p) and the best point as metrics; and its runs' final
    places in the view (the tag onestep.order: grid point, then seed)."""
    import polars as pl
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    from onestep.report.records import load_spec
    from onestep.tracking import flatten
    from onestep.tracking_view import order_key

    spec = load_spec(spec_file)
    params = {**{f"grid.{k}": json.dumps(v) for k, v in (spec.get("grid") or {}).items()},
              **{f"fixed.{k}": str(v) for k, v in flatten(spec.get("fixed") or {}).items()},
              "baseline": json.dumps(spec.get("baseline") or {}), "points": str(len(spec["points"]))}
    try:
        rec.client.log_batch(rec.run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
    except MlflowException:  # a changed ablation file: params are written once; the new values as tags
        for k, v in params.items():
            rec.tag(f"spec.{k}", v[:5000])
    table = pl.read_csv(table_csv, infer_schema_length=None)
    if not {"kind", "setting", "primary", "seeds"} <= set(table.columns):  # another table kind (baselines)
        return
    runs = table.filter(pl.col("kind") == "run")
    p = runs["primary"][0]
    values = {}
    for r in runs.iter_rows(named=True):
        where = r["setting"].replace("=", ": ").replace(",", "")
        for key, col in (("", "mean"), (" ci_lo", "ci_lo"), (" ci_hi", "ci_hi"), (" p_holm", "p_holm")):
            if r.get(f"{p}_{col}") is not None and r[f"{p}_{col}"] == r[f"{p}_{col}"]:  # no NaN (one seed)
                values[f"table/{p}{key} {where}"] = r[f"{p}_{col}"]
    best = runs.sort(f"{p}_mean").row(0, named=True)
    rec.metrics(values | {f"best_{p}": best[f"{p}_mean"]})
    rec.tag("best_point", best["setting"])
    rec.tag("mlflow.note.content", f"{spec.get('title', ablation)}. Headline metric {p} (lower is better): best "
            f"{best['setting']} with {best[f'{p}_mean']:.4g} over {best['seeds']} seed(s). {spec.get('caption', '')}"
            "\n\nThe table, its figures and the runs' files are this run's artifacts; its runs are nested below.")
    points = [tuple(str(pt[a]) for a in spec["axes"]) for pt in spec["points"]]
    for f in run_files:
        m = outputs.read_json(f)
        run_id = (m.get("train") or {}).get("mlflow_run_id")
        key = tuple(str(m["point"][a]) for a in spec["axes"])
        if run_id and key in points:
            try:
                rec.client.set_tag(run_id, "onestep.order", order_key(ablation, points.index(key), m["seed"]))
            except MlflowException:  # a run of another store
                pass
