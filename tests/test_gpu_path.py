"""The GPU path's own helpers, checked on the CPU: device requests refused at parse time, the 2-D tier
placed on CPU cores, out-of-memory named by its batch key, fused optimisers, FLOPs and utilisation."""

import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from onestep import accel, devices
from onestep.config import ConfigError, check_device, gpu_per_job, job_device, load_workflow, sections_json

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("want,count,problem", [
    ("cpu", 0, None), ("auto", 0, None), ("cuda", 1, None), ("cuda:1", 2, None),
    ("cuda", 0, "device: 'cuda' but no CUDA device was found here; allowed here: auto, cpu"),
    ("cuda:2", 2, "device: 'cuda:2' but only 2 CUDA device(s) are visible (cuda:0..cuda:1); "
                  "allowed here: auto, cpu, cuda:0, cuda:1"),
    ("mps", 0, "device: 'mps' but Apple's MPS backend is not available here; allowed here: auto, cpu"),
])
def test_device_requests_this_machine_cannot_serve(want, count, problem):
    assert devices.device_problem(want, count) == problem


def test_check_device_asks_torch_only_for_a_named_device(default_config, monkeypatch):
    monkeypatch.setattr(devices, "torch_devices", lambda: (0, False))
    check_device({**default_config, "device": "auto"})
    with pytest.raises(ConfigError, match=r"^config: device: 'cuda' but no CUDA device was found here"):
        check_device({**default_config, "device": "cuda"})
    monkeypatch.setattr(devices, "torch_devices", lambda: (1, False))
    check_device({**default_config, "device": "cuda:0"})


def test_snakemake_refuses_cuda_without_one_before_any_job(tmp_path):
    """On this CPU machine `device: cuda` stops the local run at parse time, with one line, writing nothing."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = subprocess.run([str(REPO / ".venv/bin/snakemake"), "ablate_order", "-n", "--cores", "1", "--config",
                        "device=cuda", f"out={tmp_path / 'results'}"], cwd=REPO, capture_output=True, text=True,
                       env={"PATH": str(REPO / ".venv/bin") + ":/usr/bin:/bin"})
    assert p.returncode != 0
    assert "invalid configuration: config: device: 'cuda' but no CUDA device was found here; allowed here: auto, cpu" \
        in p.stdout + p.stderr
    assert not (tmp_path / "results").exists()


def test_two_d_jobs_request_no_gpu_and_run_on_cpu(default_config):
    points = default_config
    images = {**default_config, "dataset": {"name": "digits"}}
    assert gpu_per_job(points) == 0 and gpu_per_job(images) == 1
    assert gpu_per_job({**points, "gpu_per_job": 1}) == 1 and gpu_per_job({**images, "gpu_per_job": 0}) == 0
    assert job_device(points) == "cpu" and job_device(images) == "auto"
    assert job_device({**points, "gpu_per_job": 1}) == "auto" and job_device({**points, "device": "cuda"}) == "cuda"
    assert yaml.safe_load(sections_json(points, "pairs", "device"))["device"] == "cpu"
    runs = [r for ab in load_workflow(points, REPO).values() for r in ab.runs]
    assert runs and {r.config["device"] for r in runs} == {"cpu"}


def test_rules_request_gpus_by_tier(tmp_path):
    """The dry run's resources: no GPU for the 2-D tier's training jobs, one on images."""
    def train_resources(*extra):
        p = subprocess.run([str(REPO / ".venv/bin/snakemake"), "ablate_order", "-n", "--cores", "1",
                            "--resources", "gpu=1", "--config", f"out={tmp_path / 'r'}", *extra],
                           cwd=REPO, capture_output=True, text=True,
                           env={"PATH": str(REPO / ".venv/bin") + ":/usr/bin:/bin"})
        assert p.returncode == 0, p.stderr[-2000:]
        after = p.stdout.split("rule train:", 1)
        assert len(after) == 2, p.stdout[-2000:]
        return next(line for line in after[1].splitlines() if line.strip().startswith("resources:"))
    assert "gpu=0" in train_resources()
    assert "gpu=1" in train_resources("gpu_per_job=1")


def test_out_of_memory_names_the_batch_key():
    err = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore")
    msg = accel.oom_message(err, "train", {"student": {"batch_size": 512}})
    assert msg == ("GPU out of memory (CUDA out of memory. Tried to allocate 2 GiB); lower student.batch_size "
                   "(now 512) or raise student.grad_accum (the same global batch in slices)")
    assert "lower evaluation.noise_chunk (now None)" in accel.oom_message(err, "evaluate", {"evaluation": {}})
    assert accel.oom_message(err, "where", None) == "GPU out of memory (CUDA out of memory. Tried to allocate 2 GiB)"


def test_cli_turns_out_of_memory_into_one_line(tmp_path, monkeypatch, capfd):
    """`onestep <job>` that runs out of GPU memory exits 2 with the key to lower, no traceback."""
    from onestep import cli
    from onestep.stages import teacher

    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"pairs": {"batch_size": 4096}}))

    def boom(cfg):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")

    monkeypatch.setattr(teacher, "pairs", boom)
    with pytest.raises(SystemExit) as e:
        cli.main(["pairs", "--config", str(cfg), "--teacher", "t.pt", "--out", str(tmp_path / "p.npz")])
    assert e.value.code == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert err == ["onestep pairs: error: GPU out of memory (CUDA out of memory. Tried to allocate 9 GiB); "
                   "lower pairs.batch_size (now 4096) (noise solved per chunk)"]


def test_fused_adam_on_cuda_only():
    p = [nn.Parameter(torch.zeros(3))]
    assert not accel.adam(p, 1e-3, "cpu").defaults.get("fused")
    assert accel.adam([nn.Parameter(torch.zeros(3, device="meta"))], 1e-3, "cuda:0").defaults["fused"] is True


def test_train_flops_counts_forward_and_backward():
    """Bias-free linear layers: 2 d_in d_out FLOPs forward; backward, the weight gradient of each layer and
    the input gradient of every layer but the first (the data needs none)."""
    assert accel.train_flops(nn.Linear(16, 8, bias=False), torch.randn(4, 16)) == 4 * 16 * 8
    two = nn.Sequential(nn.Linear(16, 8, bias=False), nn.Linear(8, 4, bias=False))
    assert accel.train_flops(two, torch.randn(4, 16)) == 2 * (128 + 32) + 2 * 128 + 2 * 2 * 32
    assert accel.mfu(6e9, 1000.0, 100.0) == pytest.approx(0.06)
    assert accel.mfu(6e9, 1000.0, None) is None and accel.peak_tflops("cpu") is None


def test_compile_mode_string_is_passed_on(monkeypatch):
    seen = {}
    monkeypatch.setattr(torch, "compile", lambda net, **kw: seen.update(kw) or net)
    net = nn.Linear(2, 2)
    assert accel.maybe_compile(net, False) is net and not seen
    accel.maybe_compile(net, "reduce-overhead")
    assert seen == {"mode": "reduce-overhead"}


def test_gpu_check_script_reports_each_path(tmp_path):
    """`make gpu-check`'s script, as a CPU smoke run: one PASS line per method, tier and precision."""
    p = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                        "--no-pipeline", "--methods", "kd", "curriculum", "--precisions", "fp32"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    lines = [s for s in p.stdout.splitlines() if s.startswith(("PASS", "FAIL"))]
    assert [s.split()[:4] for s in lines] == [["PASS", m, t, "fp32"] for m in ("kd", "curriculum")
                                             for t in ("points", "images")]
    bad = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cuda:7"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    if not torch.cuda.is_available():
        assert bad.returncode != 0 and "finds no CUDA device here" in bad.stderr
