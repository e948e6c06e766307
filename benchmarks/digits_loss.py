"""Benchmark: `ablate_loss` on the 8x8 digits at CPU scale, end to end through Snakemake.

Runs `snakemake --cores N ablate_loss --configfile config/digits.yaml` in a work folder (a fresh one
unless --workdir names an existing one), then prints the wall time (target: under 30 minutes on a
2-core CPU), the per-rule job times from the job logs' timestamps, and the table the pipeline wrote.

    .venv/bin/python benchmarks/digits_loss.py [--workdir DIR] [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 30 * 60


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None)
    p.add_argument("--cores", type=int, default=2)
    a = p.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="digits-loss-"))
    work.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", str(a.cores), "ablate_loss",
           "--configfile", str(REPO / "config" / "config.yaml"), str(REPO / "config" / "digits.yaml")]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    t0 = time.time()
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:], sep="\n")
        sys.exit(r.returncode)
    runs = sorted((work / "results" / "digits" / "ablate_loss").glob("*/metrics.json"))
    train = [json.loads(f.read_text())["train"]["wall_time_s"] for f in runs]
    teacher = json.loads((work / "results" / "digits" / "teacher" / "teacher.json").read_text())
    print(f"workdir: {work}  cores: {a.cores}  load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"ablate_loss on digits: {len(runs)} runs, wall {wall / 60:.1f} min "
          f"[{'PASS' if wall < TARGET_S else 'FAIL'}] < {TARGET_S // 60} min")
    print(f"teacher training {teacher['wall_time_s']:.0f} s; student training per run "
          f"{min(train):.0f}-{max(train):.0f} s (mean {sum(train) / len(train):.0f} s)")
    print((work / "results" / "tables" / "digits" / "ablate_loss.md").read_text())


if __name__ == "__main__":
    main()
