"""The commands for people: check config files before a run, say where a target's results are, open the
MLflow UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def check_config(files: list[Path]) -> None:
    """Check config files (merged over config/config.yaml in order): a YAML error's file and line, a bad value's key."""
    from onestep.config import check_files
    from onestep.tuning import studies, values

    abl = check_files(files, read_tuned=values.read, check_studies=studies.study_configs)
    runs = sum(len(ab.runs) for ab in abl.values())
    print(f"config ok: {' + '.join(map(str, files)) or 'defaults'}; {len(abl)} ablations, {runs} runs")


def option_values(args: list[str], *names: str) -> list[str]:
    """The values of the options `names` in Snakemake arguments: `--opt v1 v2 ...` or `--opt=v`, in order."""
    values, taking = [], False
    for a in args:
        if a.startswith("-"):
            name, _, value = a.partition("=")
            taking = name in names
            if taking and value:
                values.append(value)
        elif taking:
            values.append(a)
    return values


def run_config(args: list[str]) -> dict:
    """The config a `snakemake ... ARGS` run reads: config/config.yaml, each --configfile over it, then --config
    key=value (values read as YAML); other arguments are snakemake's own and are ignored."""
    from onestep.config.files import deep_merge, merged_files, yaml_values

    over = dict(kv.split("=", 1) for kv in option_values(args, "--config") if "=" in kv)
    return deep_merge(merged_files(option_values(args, "--configfile", "--configfiles")),
                      {k: yaml_values(v) for k, v in over.items()})


def where(target: str, args: list[str]) -> None:
    """Where a target's table, plots, runs and MLflow records are, for the dataset of the run's config (`args`:
    snakemake's arguments), and its table; a target that is no ablation, or not finished, is an error."""
    from onestep.config import dataset_id, load_workflow
    from onestep.errors import OnestepError
    from onestep.tracking import enabled, tracking_uri

    cfg = run_config(args)
    ablations = load_workflow(cfg, read_tuned=None, targets=[target])  # the other grids checked only when run
    if target not in ablations:
        raise OnestepError(f"{target!r} is no ablation target; the targets: {', '.join(sorted(ablations))} "
                           "(and ablate_all, tables, baselines, paper: snakemake --list-target-rules)")
    ab, out, data = ablations[target], Path(cfg["out"]), dataset_id(cfg)
    if ab.skipped:
        raise OnestepError(ab.skipped)
    runs = [out / data / target / r.name for r in ab.runs]
    table = out / "tables" / data / f"{target}.md"
    done = [r for r in runs if (r / "metrics.json").is_file()]
    if not table.is_file():
        raise OnestepError(f"{target} is not finished for {data}: {len(done)} of {len(runs)} runs evaluated, no "
                           f"table {table}; run: snakemake --cores 2 {target} {' '.join(args)}".rstrip())
    plots = out / "plots" / data
    uri = tracking_uri(cfg)
    mlflow = (f"MLflow: {uri}  (artifacts in {cfg['tracking']['artifacts']})\nOpen the MLflow UI:  .venv/bin/onestep ui --uri {uri}"
              if enabled(cfg) else "MLflow: off (tracking.enabled: false); upload the runs later with "
              f"onestep sync --run {out / data / target}/*")
    print(f"""
Done: {target} ({data}, {len(runs)} runs)
  table : {table}  (also .tex, .csv)
  plots : {plots / target}.png, _curves.png, _samples.png, _stages.png  (also .pdf)
  runs  : {out / data / target}/  ({', '.join(r.name for r in runs[:3])}{', ...' * (len(runs) > 3)})
  {mlflow}
""")
    print(table.read_text())


def ui(uri: str, artifacts: Path | None, host: str, port: int, experiment: str) -> None:
    """The MLflow UI on the store (this process becomes it), after the runs table's address. A SQLite store
    whose folder moved (or was copied) has its runs' artifact locations re-rooted at `artifacts` first."""
    from onestep.tracking import tracking_uri
    from onestep.tracking_view import relocate

    uri = tracking_uri({"tracking": {"uri": os.environ.get("MLFLOW_TRACKING_URI") or uri}})
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        for old, new in relocate(db, artifacts or db.with_name("mlartifacts")):
            print(f"artifacts re-rooted: {old} -> {new}")
    argv = [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port)]
    print(" ".join(argv))
    from onestep.tracking import ui_url

    print(f"runs table (each ablation's parent run, then its runs in grid order): {ui_url(uri, experiment, host, port)}",
          flush=True)
    os.execv(argv[0], argv)


def compare(tables: list[str]) -> None:
    """Two ablation tables side by side (`tables`: two CSV paths, e.g. one ablation on two tiers, or two ablation
    names and then snakemake's arguments of the run, whose config finds their CSVs): per point the headline metric
    with its 95% interval, its ratio to the floor, Holm p and seeds, and each table's floor."""
    import polars as pl

    from onestep.config import dataset_id
    from onestep.errors import OnestepError
    from onestep.report import cells

    names = [t for t in tables[:2] if not t.startswith("-")]
    if len(names) < 2:
        raise OnestepError("compare: give two table CSVs, or two ablation names (then --configfile ... as for snakemake)")
    if all(n.endswith(".csv") for n in names):
        files = [Path(n) for n in names]
    else:
        cfg = run_config(tables[2:])
        files = [Path(cfg["out"]) / "tables" / dataset_id(cfg) / f"{n}.csv" for n in names]
    rows = ["| table | point | headline | mean | 95% CI | / floor | p (Holm) | seeds |", "|---|---|---|---|---|---|---|---|"]
    for f in files:
        if not f.is_file():
            raise OnestepError(f"compare: no table {f}; run its target first (snakemake --cores 2 <ablation>)")
        t = pl.read_csv(f, infer_schema_length=None)
        p = t["primary"][0]
        floor = t.filter(pl.col("setting").str.starts_with("data vs data"))[f"{p}_mean"]
        fl = floor[0] if len(floor) else None
        name = f"{t['ablation'][0]} ({f.parent.name})"
        for r in t.filter(pl.col("kind") == "run").iter_rows(named=True):
            m = r[f"{p}_mean"]
            rows.append(f"| {name} | {r['setting']} | {p} | {cells.num(m)} | "
                        f"{cells.interval(r[f'{p}_ci_lo'], r[f'{p}_ci_hi'])} | {f'{m / fl:.2f}' if fl else '-'} | "
                        f"{cells.p_value(r[f'{p}_p_holm'], r['baseline'])} | {r['seeds']} |")
        rows.append(f"| {name} | data vs data (floor) | {p} | {cells.num(fl) if fl else '-'} | | 1.00 | | |")
    print("\n".join(rows))
