"""`snakemake --profile slurm ablate_order` for real: a single-node SLURM (munged, slurmctld, slurmd; one
fake GPU) and an MLflow server on loopback, started here and stopped by their PIDs.

Debian's slurm-wlm and munge are installed with apt-get when missing (root only); where that or the
daemons cannot work, the test is skipped with the reason. The local cluster's differences from a real
one (no accounting database, so `--slurm-status-command squeue`; fast status checks) are given on the
command line, never in the shipped profile ./slurm. Snakemake is called by its path in the venv, whose
bin is not on PATH (a fresh shell): the jobs run the CLI through Snakemake's interpreter.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import Finished
from test_e2e import GRID, TINY

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo")

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _have_slurm() -> bool:
    return all(shutil.which(d) or Path(f"/usr/sbin/{d}").exists() for d in DAEMONS)


def _install_slurm() -> str | None:
    """apt-get install slurm-wlm munge when missing; the reason it cannot, else None."""
    if _have_slurm():
        return None
    if os.geteuid() != 0:
        return "slurm-wlm and munge are not installed and installing them needs root"
    if not shutil.which("apt-get"):
        return "slurm-wlm and munge are not installed and there is no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{' '.join(cmd)} failed: {e}"
        if p.returncode != 0:
            return f"{' '.join(cmd)} failed: {(p.stdout + p.stderr)[-500:]}"
    return None if _have_slurm() else "apt-get installed slurm-wlm but its daemons are not on PATH"


def _exe(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _write_conf(d: Path) -> dict:
    host = socket.gethostname().split(".")[0]
    mem_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 - 512
    cpus = os.cpu_count() or 1
    for sub in ("state", "spool", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "slurm.conf").write_text(f"""\
ClusterName=onestep-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    (d / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/null\n")  # one fake GPU
    (d / "cgroup.conf").write_text("CgroupPlugin=autodetect\nIgnoreSystemd=yes\n")  # unused: proctrack/linuxproc
    # the jobstep plugin runs each job's command through a nested `srun` with every SLURM_* variable but
    # the job id removed, SLURM_CONF included; a real cluster's srun finds /etc/slurm/slurm.conf, ours is here
    wrappers = d / "bin"
    wrappers.mkdir(exist_ok=True)
    (wrappers / "srun").write_text(f'#!/bin/sh\nSLURM_CONF={d}/slurm.conf exec {_exe("srun")} "$@"\n')
    (wrappers / "srun").chmod(0o755)
    key = d / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    return {"SLURM_CONF": str(d / "slurm.conf"), "PATH": f"{wrappers}:{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _install_slurm()
    if reason:
        print(f"SKIP SLURM tests: {reason}")
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, **_write_conf(d)}
    procs: list[subprocess.Popen] = []
    log = open(d / "log" / "daemons.out", "w")
    cmds = [[_exe("munged"), "-F", "--force", f"--socket={d}/munge.socket", f"--key-file={d}/munge.key",
             f"--pid-file={d}/munged.pid", f"--seed-file={d}/munge.seed", f"--log-file={d}/log/munged.log"],
            [_exe("slurmctld"), "-D", "-f", str(d / "slurm.conf")],
            [_exe("slurmd"), "-D", "-f", str(d / "slurm.conf")]]
    try:
        for cmd in cmds:  # in this order: slurmctld needs munged, slurmd needs slurmctld
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
            time.sleep(1.0)
            if procs[-1].poll() is not None:
                pytest.skip(f"{cmd[0]} exited with {procs[-1].returncode}: {(d / 'log' / 'daemons.out').read_text()[-800:]}")
        deadline = time.time() + 60
        while True:
            p = subprocess.run(["sinfo", "-h", "-N", "-o", "%T %G"], capture_output=True, text=True, env=env)
            if p.returncode == 0 and p.stdout.split()[:1] == ["idle"]:
                break
            if time.time() > deadline:
                pytest.skip(f"the SLURM node never became idle: {p.stdout} {p.stderr}")
            time.sleep(0.5)
        yield env
    finally:
        for proc in reversed(procs):  # by PID, the daemons this fixture started
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}",
                             "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=open(d / "server.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (d / "server.log").read_text()[-2000:]
            assert time.time() < deadline, "mlflow server did not answer /health"
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def FINISHED(cluster, mlflow_server):  # noqa: N802 (what conftest's `finished` runs, of these fixtures)
    # gpu_per_job 1: the 2-D tier asks for no GPU by default; here the GPU request path is what is checked
    return Finished("ablate_order", {**TINY, "gpu_per_job": 1}, {"order": GRID},
                    run=lambda work, target: through_slurm(work, target, cluster, mlflow_server))


def through_slurm(work: Path, target: str, cluster: dict, mlflow_server: str) -> subprocess.CompletedProcess:
    """`target` through the shipped SLURM profile from a fresh shell's PATH, tracked on the MLflow server."""
    (work / "slurm").symlink_to(REPO / "slurm")  # `--profile slurm` resolves ./slurm, as from the repository root
    path = ":".join(d for d in cluster["PATH"].split(":") if Path(d) != BIN)  # no venv bin, as in a fresh shell
    env = {**cluster, "PATH": path, "MLFLOW_TRACKING_URI": mlflow_server,
           "ONESTEP_SLURM_PARTITION": "debug"}  # the shipped profile reads the partition from here
    cmd = [str(BIN / "snakemake"), "--profile", "slurm", target, "-s", str(REPO / "Snakefile"),
           "--configfile", str(REPO / "config" / "config.yaml"), str(work / "tiny.yaml"),
           # this cluster's differences: no accounting database, a tiny node, impatient status checks
           "--slurm-status-command", "squeue", "--slurm-keep-successful-logs",
           "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
           "--latency-wait", "5", "--retries", "0"]
    t0 = time.time()
    p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=1500)
    print(f"snakemake --profile slurm {target}: {time.time() - t0:.0f} s")
    return p


def test_jobs_went_through_sbatch(finished, cluster):
    work, out = finished, (finished / "snakemake.out").read_text()
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
    # everything but the local rules (init_tracking, mlflow_parent, table) and the target is a SLURM job
    # teacher, pairs, reference, 2 teacher_eval, the pairs' solver row, the evaluation trajectory, 2 train, 2 evaluate
    assert len(submitted) == 11, out[-3000:]
    logs = list((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {p.stem for p in logs} >= set(submitted.values())  # one SLURM log per job, named by its id
    train_logs = [p for p in logs if "rule_train" in p.parts]
    assert len(train_logs) == 2
    # GPU rules asked for one GPU, CPU rules for none (scontrol remembers finished jobs for MinJobAge)
    by_rule: dict[str, list[str]] = {}
    for log in logs:
        rule = next(part[len("rule_"):] for part in log.parts if part.startswith("rule_"))
        info = subprocess.run(["scontrol", "show", "job", log.stem], capture_output=True, text=True, env=cluster).stdout
        assert "JobState=COMPLETED" in info and "Partition=debug" in info, info
        by_rule.setdefault(rule, []).append(re.search(r"TresPerJob=(\S+)", info)[1] if "TresPerJob=" in info else "")
    gpu_rules = ("teacher", "pairs", "teacher_eval", "teacher_eval_pairs", "trajectory", "train", "evaluate")
    assert all("gpu:1" in tres for rule in gpu_rules for tres in by_rule[rule]), by_rule
    assert by_rule["reference"] == [""], by_rule


def test_outputs_exist(finished):
    work = finished
    r = work / "results"
    assert (r / "tables" / "checkerboard" / "ablate_order.md").stat().st_size > 0
    for order in ("forward", "reversed"):
        run = r / "checkerboard" / "ablate_order" / f"ordering-{order}_seed-0"
        m = json.loads((run / "metrics.json").read_text())
        assert m["metrics"]["swd"] > 0 and (run / "student.pt").exists()
        assert not (run / "resume.pt").exists()  # finished runs leave no resume checkpoint


def test_mlflow_server_holds_the_runs(finished, mlflow_server):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("onestep")
    by_kind: dict = {}
    for run in client.search_runs([exp.experiment_id]):
        by_kind.setdefault(run.data.tags.get("kind"), []).append(run)
    # reference rows: teacher DDIM 1 and 10, and the pairs' own solver
    assert len(by_kind["teacher"]) == 1 and len(by_kind["reference"]) == 3 and len(by_kind["ablation"]) == 1
    assert len(by_kind["run"]) == 2
    for run in by_kind["run"]:
        assert run.info.status == "FINISHED" and "eval_swd" in run.data.metrics
        arts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "student.pt" in arts  # artifacts went over HTTP to the server's --artifacts-destination
