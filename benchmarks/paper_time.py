"""What `snakemake paper` would take on this machine, from jobs that already ran: an estimate, not a run.

Reads the start and end time of every finished job that Snakemake recorded in `.snakemake/metadata`
of a working directory, takes the median wall time per rule (train and evaluate per ablation, since
their cost differs by grid: baselines train other methods than ablate_K), counts the jobs a from-scratch
`snakemake -n --forceall paper` plans, and prints per rule: jobs, median seconds, total seconds; then
the sum (one core) and the sum divided by the jobs that run side by side (cores / threads per job): the
estimate a researcher can set against the 3-hour goal. Jobs of a rule never measured here are listed
as such and left out of the sum (so the sum is a lower bound when any are).

    .venv/bin/python benchmarks/paper_time.py [--workdir .] [--cores 2] [--target paper] [-- --configfile config/digits.yaml]

`--target ablate_order` gives the same estimate for what `make demo` runs.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

# rules whose cost depends on the folder below the first: train / evaluate on the ablation
# (results/<data>/<ablation>/<run>/...), an Optuna worker / summary on its study (results/optuna/<study>/...:
# 16 lambda trials of the curriculum cost nothing like 3 trials of ctm)
PER_ABLATION = ("train", "evaluate", "tune_worker", "tune_summary")


def key(rule: str, path: str) -> str:
    """The rule and the folder under results/ (the dataset: a checkerboard teacher is not a digits one),
    and for the PER_ABLATION rules the folder below it too (the ablation, or the Optuna study)."""
    parts = Path(path).parts
    if rule in PER_ABLATION and len(parts) > 3:
        return f"{rule}:{parts[1]}:{parts[2]}"
    return f"{rule}:{parts[1]}" if len(parts) > 2 else rule


def measured(workdir: Path) -> dict[str, list[float]]:
    """Wall seconds of every finished job recorded in <workdir>/.snakemake/metadata, by key()."""
    import base64

    out, seen = defaultdict(list), set()
    for f in (workdir / ".snakemake" / "metadata").glob("*"):
        try:
            rec = json.loads(f.read_text())
            path = base64.b64decode(f.name.replace("@", "/")).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        if rec.get("incomplete") or not rec.get("starttime") or not rec.get("endtime") or not rec.get("shellcmd"):
            continue  # unfinished, or a config writer run inside Snakemake's process (its times are queueing)
        if rec["endtime"] - rec["starttime"] < 0.1:
            continue  # marked up to date by --touch, not run
        job = (rec["rule"], str(Path(path).parent), rec["endtime"])  # one job, several outputs: counted once
        if job not in seen:
            seen.add(job)
            out[key(rec["rule"], path)].append(rec["endtime"] - rec["starttime"])
    return out


def planned(workdir: Path, extra: list[str], target: str = "paper") -> dict[str, int]:
    """Jobs of a from-scratch `target`, by key(): the dry run's job list (rule and output per job)."""
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--nolock", "--cores", "2", target,
                        *extra], cwd=workdir, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"snakemake -n {target} failed:\n{p.stderr[-2000:]}")
    counts: dict[str, int] = defaultdict(int)
    for rule, out in re.findall(r"rule (\w+):\n\s+(?:input: [^\n]*\n\s+)?output: ([^\s,]+)", p.stdout):
        counts[key(rule, out)] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("."))
    ap.add_argument("--cores", type=int, default=2, help="cores of the machine the estimate is for")
    ap.add_argument("--threads", type=int, default=1, help="threads per job (config threads.run)")
    ap.add_argument("--target", default="paper", help="the Snakemake target to estimate (ablate_order: make demo)")
    ap.add_argument("extra", nargs="*", help="after --: more snakemake arguments (--configfile ...)")
    a = ap.parse_args()
    times, jobs = measured(a.workdir), planned(a.workdir, a.extra, a.target)
    rows, unmeasured, assumed = [], [], []
    for k, n in sorted(jobs.items()):
        ts = times.get(k)
        if ts:
            med = statistics.median(ts)
            rows.append((k, n, med, n * med, str(len(ts))))
            continue
        guess = assumption(k, times, a.workdir)
        (assumed if guess else unmeasured).append((k, n, guess))
    for k, n, guess in assumed:
        rows.append((k, n, guess[0], n * guess[0], guess[1]))
    rows.sort(key=lambda r: -r[3])
    print(f"{'rule:folder[:ablation]':48s} {'jobs':>5s} {'median s':>9s} {'total s':>9s}  measured jobs")
    for k, n, med, tot, m in rows:
        print(f"{k:48s} {n:5d} {med:9.1f} {tot:9.0f}  {m}")
    side = max(1, a.cores // a.threads)
    for label, rs in (("measured jobs only", [r for r in rows if r[4].isdigit()]), ("with the assumed rows", rows)):
        total = sum(r[3] for r in rs)
        print(f"sum of job times, {label}: {total:.0f} s = {total / 3600:.2f} h on one core; {side} jobs side by side: "
              f"about {total / side / 3600:.2f} h")
    print("(a lower bound: the DAG's serial start, teacher -> pairs -> reference rows, does not overlap)")
    if unmeasured:
        print("not measured and not assumed (left out): " + ", ".join(f"{k} ({n})" for k, n, _ in unmeasured))


def assumption(k: str, times: dict[str, list[float]], workdir: Path) -> tuple[float, str] | None:
    """A stand-in for a job kind never timed here, said as such: train / evaluate of another curriculum
    ablation of the same dataset at the median of the measured curriculum ablations' medians (not the
    baselines': other methods); the teacher from its own teacher.json (a touched teacher has no job time)."""
    parts = k.split(":")
    if parts[0] in PER_ABLATION and len(parts) == 3:
        meds = [statistics.median(v) for kk, v in times.items()
                if kk.startswith(f"{parts[0]}:{parts[1]}:ablate_")]
        return (statistics.median(meds), "assumed: median of the other ablations") if meds else None
    if parts[0] == "teacher":
        f = workdir / "results" / parts[1] / "teacher" / "teacher.json"
        if f.is_file():
            return json.loads(f.read_text())["wall_time_s"], "from teacher.json (wall_time_s, all attempts)"
    return None


if __name__ == "__main__":
    main()
