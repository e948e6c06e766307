"""A job whose MLflow tracking server is unreachable fails at once, naming the URI, before any work."""

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from onestep import tracking

BIN = Path(sys.executable).parent


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def server():
    """A stand-in server whose /health answers with the status in `state["code"]`."""
    state = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(state["code"] if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()


def cfg_with(uri: str) -> dict:
    return {"tracking": {"uri": uri, "artifacts": "results/mlartifacts", "experiment": "onestep"}}


def test_local_stores_need_no_server(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.check_server(cfg_with("sqlite:///results/mlflow.db"))  # no error, no network


def test_server_answers_or_fails_naming_the_uri(server, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, state = server
    tracking.check_server(cfg_with(uri))
    state["code"] = 503
    with pytest.raises(tracking.TrackingError, match=f"{uri} is unreachable .*503"):
        tracking.check_server(cfg_with(uri))
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)  # the environment wins over tracking.uri
    with pytest.raises(tracking.TrackingError, match=f"{dead} is unreachable"):
        tracking.check_server(cfg_with(uri))


def test_train_job_fails_at_once_before_training(default_config, tmp_path):
    dead = f"http://127.0.0.1:{closed_port()}"
    cfg = {**default_config, "seed": 0, "run": {"ablation": "a", "name": "r", "point": {}}}
    out = tmp_path / "run"
    env = {**os.environ, "MLFLOW_TRACKING_URI": dead, "ONESTEP_TRACKING_TIMEOUT": "3"}
    t0 = time.time()
    # teacher and pairs do not exist: the check comes before anything is loaded or written
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run([str(BIN / "onestep"), "train", "--config", str(tmp_path / "config.yaml"), "--teacher", "nope.pt",
                        "--pairs", "nope.npz", "--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    assert f"onestep train: error: MLflow tracking server {dead} is unreachable" in p.stderr
    assert "Traceback" not in p.stderr and not out.exists()
    print(f"unreachable server reported after {time.time() - t0:.1f} s (process start included)")
