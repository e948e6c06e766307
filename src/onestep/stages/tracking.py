"""The MLflow store's own commands: create the store, an ablation's parent run, upload finished runs."""

from __future__ import annotations

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
    from onestep.tracking import sync_run, tracking_uri

    for folder in run:
        cfg = outputs.read_yaml(folder / "config.yaml")
        up = folder.resolve().parents
        shared = up[2] / "config" / "tracking.yaml" if len(up) > 2 else None  # <out>/<dataset>/<ablation>/<run>
        given = tracking or (shared if "tracking" not in cfg and shared and shared.is_file() else None)
        cfg = jobs.with_tracking(cfg, given, folder / "config.yaml")
        run_id = sync_run(folder, cfg)
        print(f"{folder}: MLflow run {run_id} in {tracking_uri(cfg)}")
