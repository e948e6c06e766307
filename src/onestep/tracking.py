"""MLflow as a side channel: every job records a run; no job reads results back from MLflow.

Store: `tracking.uri` (default sqlite:///results/mlflow.db, artifacts under `tracking.artifacts`)
unless MLFLOW_TRACKING_URI is set. A fresh SQLite store races when several processes create it,
so `init_store` (its own rule) creates the store and the experiment once before jobs fan out.
Metrics are buffered and written in batches, never once per optimiser step.

No job needs MLflow to write its files: a run id from a file (train.json, a parent file) that the
current store does not hold (another MLFLOW_TRACKING_URI, a cleaned store) gets a new run instead,
and with `tracking.required: false` an unreachable server costs one warning line and the job goes
on untracked (default true: it fails at once, naming the URI).
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from onestep import provenance
from onestep.config.sections import Tracking
from onestep.errors import OnestepError
from onestep.tracking_view import VIEW, relocate, retire_default, source_tags


def tracking_uri(cfg: dict) -> str:
    """MLFLOW_TRACKING_URI, else `tracking.uri`; a relative SQLite path is made absolute against the
    job's working directory, so one process never confuses two stores of the same relative name."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg["tracking"]["uri"]
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


class TrackingError(OnestepError, RuntimeError):
    """The MLflow tracking server cannot be reached."""


_OFF: set[str] = set()  # tracking URIs this process goes on without (unreachable, tracking.required: false)


def enabled(cfg: dict) -> bool:
    """False with `tracking.enabled: false`, or once this process went on without an unreachable server."""
    return cfg["tracking"].get("enabled", True) and tracking_uri(cfg) not in _OFF


def check_server(cfg: dict, timeout: float | None = None) -> None:
    """For an http(s) tracking URI: fail at once, naming the URI, when the server does not answer its
    /health endpoint within `timeout` seconds (ONESTEP_TRACKING_TIMEOUT, else tracking.timeout_s, default 10), so a job never
    trains for an hour and then loses its record. Local stores (SQLite, files) need no check."""
    import urllib.error
    import urllib.request

    uri = tracking_uri(cfg)
    if not enabled(cfg) or not uri.startswith(("http://", "https://")):
        return
    if timeout is None:
        timeout = float(os.environ.get("ONESTEP_TRACKING_TIMEOUT") or Tracking.of(cfg).timeout_s)
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status == 200:
                return
            reason = f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = str(getattr(e, "reason", e))
    message = (f"MLflow tracking server {uri} is unreachable ({reason}); start it (make mlflow-server) "
               "or point MLFLOW_TRACKING_URI / tracking.uri at a running one")
    if Tracking.of(cfg).required:
        raise TrackingError(message + ", or set tracking.required: false to run untracked")
    print(f"warning: {message}; tracking.required is false: this job runs without MLflow", file=sys.stderr, flush=True)
    _OFF.add(uri)


def experiment_name(cfg: dict) -> str:
    return cfg["tracking"]["experiment"]

def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list | tuple) else str(v)
    return out


def _client(cfg: dict):
    """A client bound to the store (no global mlflow.set_tracking_uri, which also rewrites the environment)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri(cfg))


def _local_store(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri

def close_run(cfg: dict, run_id: str, status: str = "KILLED", reason: str | None = None) -> None:
    """End a run another process left RUNNING (a tuning worker killed mid-trial) with `status`."""
    client = _client(cfg)
    if reason:
        client.set_tag(run_id, "fail_reason", reason)
    client.set_terminated(run_id, status=status)


def init_store(cfg: dict) -> str:
    """Create the store and the experiment (idempotent); returns the experiment id."""
    client = _client(cfg)
    name = experiment_name(cfg)
    exp = client.get_experiment_by_name(name)
    uri = tracking_uri(cfg)
    if exp is not None:
        if uri.startswith("sqlite:///") and exp.artifact_location != _artifacts(cfg):  # a moved results folder
            relocate(Path(uri[len("sqlite:///"):]), Path(cfg["tracking"]["artifacts"]))
        return exp.experiment_id
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)  # absolute after tracking_uri
    exp_id = client.create_experiment(name, artifact_location=_artifacts(cfg) if _local_store(uri) else None)
    retire_default(client, keep=exp_id)
    from onestep.tracking_view import add_view_columns

    add_view_columns(client, exp_id, [])  # the headline metrics first, sorted in grid order
    return exp_id


def _artifacts(cfg: dict) -> str:
    return Path(cfg["tracking"]["artifacts"]).resolve().as_uri()


def ui_url(uri: str, experiment: str = "onestep", host: str = "127.0.0.1", port: int = 5000) -> str:
    """The address of `experiment`'s runs table in `mlflow ui --backend-store-uri uri` on host:port.

    MLflow 3's UI opens an experiment on its GenAI overview (traces, token usage) unless the browser's
    workflow type is "machine_learning": the sidebar switch keeps it in the browser (localStorage
    `mlflow.workflowType`, default "genai") and the `workflowType` query parameter overrides it; the
    experiment tag `mlflow.experimentKind` is not consulted by MLflow 3.17's UI. The runs table, with
    each ablation's parent run and its runs nested under it, is `#/experiments/<id>/runs`. The id is
    looked up in a local SQLite store without writing to it; `viewStateShareKey` opens the experiment's own
    view (tracking_view: the headline metrics and grid keys as columns, runs in grid order); with no such store (or another kind of
    store) or no such experiment yet the address is the experiment list."""
    base = f"http://{host}:{port}/"
    uri = tracking_uri({"tracking": {"uri": uri}})
    if not uri.startswith("sqlite:///") or not Path(uri[len("sqlite:///"):]).exists():
        return base + "#/experiments"  # no local store: opening a client would create one (or wait on a server)
    import mlflow

    exp = mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    if exp is None:
        return base + "#/experiments"
    return f"{base}#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW}"


def start_parent(cfg: dict, ablation: str, kind: str = "ablation") -> str:
    """Create the ablation's (or study's) parent run; its id goes to a file that child jobs read."""
    if not enabled(cfg):
        return None
    client = _client(cfg)
    exp_id = init_store(cfg)
    tags = {**source_tags(), "ablation": ablation, "kind": kind, "onestep.order": ablation,
            "dataset": cfg.get("dataset", {}).get("name", "")}
    run = client.create_run(exp_id, run_name=ablation, tags=tags)
    return run.info.run_id


def show_grid(cfg: dict, keys) -> None:
    """Add an ablation's grid keys to the experiment's view (tracking_view), as params columns."""
    if enabled(cfg):
        from onestep.tracking_view import add_view_columns

        add_view_columns(_client(cfg), init_store(cfg), list(keys))


class Recorder:
    """Buffered metric logging into one MLflow run."""

    def __init__(self, client, run_id: str, flush_every: int = 200):
        self.client, self.run_id, self.flush_every = client, run_id, flush_every
        self.buffer: list = []

    def metrics(self, values: dict[str, float], step: int = 0, series: str = "step") -> None:
        """Buffer values at `step`; `series` (step or phase) only says which axis `step` counts.
        A string value (e.g. the resolved precision) is a label: it becomes a tag."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for k, v in values.items():
            if isinstance(v, str):
                self.tag(k, v)
        self.buffer += [Metric(k, float(v), ts, step) for k, v in values.items() if not isinstance(v, str)]
        if len(self.buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self.buffer), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=self.buffer[i:i + 1000])
        self.buffer = []

    def params(self, cfg: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in flatten(cfg).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def tag(self, key: str, value) -> None:
        self.client.set_tag(self.run_id, key, str(value))

    def artifact(self, path: str | Path | None, subdir: str | None = None) -> None:
        if path is not None and Path(path).exists():
            self.client.log_artifact(self.run_id, str(path), subdir)


def system_monitor(cfg: dict, run_id: str):
    """MLflow's system metrics (CPU, memory, GPU via nvidia-ml-py) for this run, sampled every
    `tracking.system_metrics_s` seconds; None when that key is unset or 0."""
    every = Tracking.of(cfg).system_metrics_s
    if not every:
        return None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=every, tracking_uri=tracking_uri(cfg))
    monitor.start()
    return monitor


class Untracked(Recorder):
    """The Recorder of a job that runs without MLflow (tracking.enabled: false; tracking.required: false and the
    server unreachable): every call does nothing and never imports mlflow (2 s of a job's start)."""

    def __init__(self):
        super().__init__(None, None)

    def metrics(self, *args, **kwargs) -> None:
        pass

    flush = params = tag = artifact = metrics


def interrupted(e: BaseException) -> bool:
    """Ctrl-C, SIGTERM (raised as SystemExit by the CLI) or a preemption: the run is KILLED, not FAILED."""
    return isinstance(e, KeyboardInterrupt | SystemExit) or type(e).__name__ == "Preempted"


def _exists(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
        return True
    except MlflowException:
        return False


def _close_orphan(client, marker: Path | None) -> None:
    """A previous attempt killed outright (SIGKILL, out of memory) left its run RUNNING: mark it KILLED."""
    if marker is None or not marker.is_file():
        return
    from mlflow.exceptions import MlflowException

    try:
        old = client.get_run(marker.read_text().strip())
        if old.info.status == "RUNNING":
            client.set_terminated(old.info.run_id, status="KILLED")
    except MlflowException:
        pass
    marker.unlink(missing_ok=True)


@contextmanager
def record(cfg: dict, name: str, tags: dict[str, str] | None = None, parent_id: str | None = None,
           run_id: str | None = None, status_for=None, system_metrics: bool = False, marker: Path | None = None):
    """Open a new run (or reopen `run_id`, or a new run when the store does not hold it), yield a
    Recorder; FINISHED on success, KILLED when interrupted (Ctrl-C, SIGTERM), FAILED on error (or
    `status_for(exception)`, e.g. KILLED for a pruned Optuna trial). `system_metrics`: sample MLflow
    system metrics while the run is open (when `tracking.system_metrics_s` is set). `marker`: a file
    holding the open run's id, so the next attempt of a job killed outright closes the run as KILLED."""
    if not enabled(cfg):
        yield Untracked()
        return
    client = _client(cfg)
    if run_id is not None and _exists(client, run_id):
        client.update_run(run_id, status="RUNNING")
    else:
        _close_orphan(client, marker)
        exp_id = init_store(cfg)
        tags = {**source_tags(), "onestep.code": provenance.label(), "dataset": cfg.get("dataset", {}).get("name", ""), **(tags or {})}
        if run_id is not None:  # a run of another store (or a cleaned one): this job records into a run of its own
            tags["onestep.missing_run_id"] = run_id
        if parent_id:  # kept even when this store lacks it: the tag still groups the runs of one ablation
            tags["mlflow.parentRunId"] = parent_id
        run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(run_id)
    rec = Recorder(client, run_id)
    monitor = system_monitor(cfg, run_id) if system_metrics else None
    try:
        yield rec
    except BaseException as e:
        if monitor is not None:
            monitor.finish()
        status = "KILLED" if interrupted(e) else status_for(e) if status_for else "FAILED"
        try:
            rec.flush()
            client.set_terminated(run_id, status=status)
        except Exception:  # the store cannot take it (a full disk): left RUNNING, its marker kept for the next attempt
            marker = None
        raise
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)
    rec.flush()
    if monitor is not None:
        monitor.finish()
    client.set_terminated(run_id, status="FINISHED")


@contextmanager
def log_into(cfg: dict, run_id: str | None, name: str, tags: dict[str, str] | None = None):
    """A Recorder into the finished run `run_id` that leaves its status and lifetime as they are (an evaluation's
    numbers in its training's run: Duration stays the training's wall time); a run this store does not hold
    gets a run of its own instead (`record`)."""
    if not enabled(cfg):
        yield Untracked()
        return
    client = _client(cfg)
    if run_id is None or not _exists(client, run_id):
        with record(cfg, name, tags, run_id=run_id) as rec:
            yield rec
        return
    rec = Recorder(client, run_id)
    try:
        yield rec
    finally:
        rec.flush()


def attach_logs(cfg: dict, run_id: str | None, path: Path, stage: str) -> list[Path]:
    """Attach a job's log files to its run under logs/<stage>/ (train and evaluate logs of one run share a file
    name: each stage has its folder): `path` and its siblings of the same stem (a retried job's earlier attempts,
    `<name>.<n>.log` or `<name>.log.<n>`). Returns the files attached."""
    if run_id is None or not enabled(cfg) or path is None:
        return []
    files = sorted(f for f in path.parent.glob(f"{path.stem}.*") if f.is_file() and (
        f.name == path.name or f.name.startswith(path.name + ".") or f.suffix == path.suffix))
    client = _client(cfg)
    for f in files:
        client.log_artifact(run_id, str(f), f"logs/{stage}")
    return files


def shared_parent(cfg: dict) -> str | None:
    """The parent run of a dataset's shared runs (teacher, reference rows): `shared <dataset>`, made once (a lock
    next to a SQLite store keeps two jobs from making two), FINISHED at once."""
    if not enabled(cfg):
        return None
    client, data = _client(cfg), cfg.get("dataset", {}).get("name", "")
    exp_id = init_store(cfg)
    uri = tracking_uri(cfg)
    lock = Path(uri[len("sqlite:///"):]).with_suffix(".shared.lock") if uri.startswith("sqlite:///") else None
    with _locked(lock):
        found = client.search_runs([exp_id], f"tags.kind = 'shared' and tags.dataset = '{data}'", max_results=1)
        if found:
            return found[0].info.run_id
        tags = {**source_tags(), "kind": "shared", "dataset": data, "onestep.order": f"~shared {data}",
                "mlflow.note.content": f"The {data} runs every ablation shares: the teacher and its reference rows."}
        run_id = client.create_run(exp_id, run_name=f"shared {data}", tags=tags).info.run_id
        client.set_terminated(run_id, "FINISHED")
        return run_id


@contextmanager
def _locked(path: Path | None):
    if path is None:
        yield
        return
    import fcntl

    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def eval_metrics(values: dict) -> dict:
    """An evaluation's numbers under their MLflow names: eval_<key>, a few-step key's @ as _at (swd@2: eval_swd_at2)."""
    return {f"eval_{k.replace('@', '_at')}": v for k, v in values.items()}
