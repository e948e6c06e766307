"""The tables' stages: an ablation's table and figures (attached to its MLflow parent run), the main table,
and the paper's artefacts and index."""

from __future__ import annotations

from pathlib import Path

from onestep import outputs


def tables(cfg: dict, ablation: str, spec: Path, runs: list[Path], teachers: list[Path], reference: Path,
           out_prefix: Path, plot: Path, parent: Path | None = None) -> None:
    """An ablation's table (`out_prefix` .md/.tex/.csv) and figures (`plot`) from its runs' metrics.json, every
    input made by the current config; with `parent`, attached to the ablation's MLflow parent run."""
    from onestep.report import tables as report

    for f in [*runs, *teachers, reference]:  # every input made by the current config, or none
        outputs.check_current(f)
    summary = report.TABLES[report.load_spec(spec).get("table", "default")](
        spec, runs, teachers, reference, out_prefix, plot)
    print(summary)
    if parent:  # side channel: attach the table and figures to the ablation's parent run
        _attach(cfg, ablation, parent, out_prefix, plot, spec, runs)


def _attach(cfg: dict, ablation: str, parent: Path, out_prefix: Path, plot: Path, spec: Path, runs: list[Path]) -> None:
    """The table's files (tables/) and figures (plots/: the figure, _curves, _samples, _stages; png, pdf) into the
    ablation's parent run, with the table as its metrics (stages.tracking.summarise_parent)."""
    from onestep import tracking
    from onestep.stages.tracking import summarise_parent

    stem = str(plot)[: -len(".png")]
    with tracking.record(cfg, ablation, run_id=outputs.parent_id(parent)) as rec:
        if Path(str(out_prefix) + ".csv").is_file() and tracking.enabled(cfg):
            summarise_parent(rec, ablation, spec, Path(str(out_prefix) + ".csv"), runs)
        for ext in (".md", ".tex", ".csv", "_paper.md", "_paper.tex"):  # the full table and the compact one
            rec.artifact(str(out_prefix) + ext, "tables")
        for suffix in ("", "_curves", "_samples", "_stages"):
            for ext in (".png", ".pdf"):
                rec.artifact(stem + suffix + ext, "plots")


def main_table(tables: list[Path], out_prefix: Path, plot: Path) -> None:
    """The main table and its figure from the ablation tables' CSVs."""
    from onestep.report.main import build_main

    print(build_main(tables, out_prefix, plot))


def paper_artefact(src: list[Path], out_prefix: Path) -> None:
    """Copy one artefact's md, tex, csv and png under results/paper."""
    from onestep import paper

    print("\n".join(map(str, paper.copy_artefact(src, out_prefix))))


def paper_index(spec: Path, out: Path) -> None:
    """results/paper/<tier>/index.md from the paper spec."""
    from onestep import paper

    print(paper.write_index(spec, out))
