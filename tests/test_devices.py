"""Device picking with fake device counts: CPU, SLURM allocations, GPU slots shared by local jobs."""

import subprocess
import sys
import textwrap

import pytest

from onestep import devices


@pytest.fixture(autouse=True)
def _release():
    yield
    devices.release_all()


def test_explicit_device_is_kept(tmp_path):
    env = {"ONESTEP_GPU_LOCK_DIR": str(tmp_path)}
    assert devices.pick_device("cpu", 4, env) == "cpu"
    assert devices.pick_device("cuda:3", 4, env) == "cuda:3"


def test_no_gpu_means_cpu(tmp_path):
    assert devices.pick_device("auto", 0, {"ONESTEP_GPU_LOCK_DIR": str(tmp_path)}) == "cpu"


def test_slurm_allocation_uses_its_first_gpu(tmp_path):
    env = {"SLURM_JOB_ID": "17", "CUDA_VISIBLE_DEVICES": "5", "ONESTEP_GPU_LOCK_DIR": str(tmp_path)}
    assert devices.pick_device("auto", 1, env) == "cuda:0"
    assert not list(tmp_path.iterdir())  # no lock under SLURM: the allocation is the job's own


def test_local_jobs_spread_over_gpus_then_share(tmp_path, capsys):
    env = {"ONESTEP_GPU_LOCK_DIR": str(tmp_path)}
    picked = [devices.pick_device("auto", 3, env) for _ in range(3)]
    assert picked == ["cuda:0", "cuda:1", "cuda:2"]
    assert devices.pick_device("auto", 3, env) in picked  # all taken: shares one, and says so
    assert "every GPU slot is taken" in capsys.readouterr().err
    devices.release_all()
    assert devices.pick_device("auto", 3, env) == "cuda:0"  # released slots are free again


def test_slots_are_physical_ids_of_cuda_visible_devices(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "2,5", "ONESTEP_GPU_LOCK_DIR": str(tmp_path)}
    assert devices.visible_ids(2, env) == ["2", "5"]
    assert devices.pick_device("auto", 2, env) == "cuda:0"
    assert (tmp_path / "onestep-gpu-2.lock").exists()
    # another process that sees all GPUs (no CUDA_VISIBLE_DEVICES) must skip physical GPU 2
    assert devices.pick_device("auto", 4, {"ONESTEP_GPU_LOCK_DIR": str(tmp_path)}) == "cuda:0"  # physical 0
    assert devices.pick_device("auto", 4, {"ONESTEP_GPU_LOCK_DIR": str(tmp_path)}) == "cuda:1"
    assert devices.pick_device("auto", 4, {"ONESTEP_GPU_LOCK_DIR": str(tmp_path)}) == "cuda:3"


def test_a_killed_job_frees_its_slot(tmp_path):
    """The kernel drops a flock when its process dies, even on SIGKILL: no stale slot."""
    code = textwrap.dedent(f"""
        import os, signal
        from onestep import devices
        print(devices.pick_device("auto", 2, {{"ONESTEP_GPU_LOCK_DIR": {str(tmp_path)!r}}}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "cuda:0" and p.returncode == -9
    assert devices.pick_device("auto", 2, {"ONESTEP_GPU_LOCK_DIR": str(tmp_path)}) == "cuda:0"


def test_visible_gpus_counts_without_torch(monkeypatch):
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == 2
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    assert devices.visible_gpus({}) == 0  # no driver: CPU machine
