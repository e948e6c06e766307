"""The targets a `snakemake` invocation asks for (read from its command line) and the check that each one is
a target rule or a file path, with the valid targets listed instead of Snakemake's bare MissingRuleException.

Which ablations must be valid follows from them (`strict_ablations`): `snakemake ablate_order` with a small
config checks ablate_order's grid and only warns about another ablation that config cannot run.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path


def requested(argv: list[str] | None = None) -> list[str] | None:
    """The targets on the command line of the `snakemake` process parsing the workflow; None when this process
    is no such command line (a job's own process, the API, a test) or it does not parse."""
    argv = sys.argv if argv is None else argv
    if not argv or Path(argv[0]).name not in ("snakemake", "__main__.py"):
        return None
    from snakemake.cli import get_argument_parser

    try:
        args = get_argument_parser().parse_args(argv[1:])
    except (SystemExit, Exception):  # noqa: BLE001 (any parse failure: check every ablation)
        return None
    return [str(t) for t in (args.targets or [])] if not getattr(args, "target_jobs", None) else None


def strict_ablations(targets: list[str] | None, names: set[str]) -> set[str] | None:
    """The ablations whose grids must be valid: the requested ones when every target names an ablation, else
    (no targets known, the default target, ablate_all, paper, a file) None: all of them."""
    if not targets or not all(t in names for t in targets):
        return None
    return set(targets)


def check(targets: list[str] | None, rules: dict[str, bool]) -> None:
    """Each requested target is a rule or a path; else a WorkflowError listing the targets (`rules`: rule name ->
    whether it is a target, i.e. makes no file of its own), the closest first."""
    from snakemake.exceptions import WorkflowError

    for t in targets or []:
        if t in rules or "/" in t or "." in t:
            continue
        valid = sorted(n for n, is_target in rules.items() if is_target)
        close = difflib.get_close_matches(t, valid, n=3, cutoff=0.8)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise WorkflowError(f"unknown target {t!r}: {hint}the targets are: {', '.join(valid)}")


# Scheduling: a table as soon as its runs are evaluated, an evaluation as soon as its training is done, and the
# trainings ablation by ablation (the first ablation's before the next one's), so a long target (ablate_all,
# paper) shows each ablation's table as it can exist instead of training every ablation first.
TABLE_PRIORITY, EVALUATE_PRIORITY = 100, 90


def training_priority(ablations: list[str]):
    """The `priority:` of a training (rule train): the earlier its ablation in `ablations`, the higher (1 to
    len(ablations), below every evaluation's); Snakemake calls it with the job's wildcards."""
    rank = {name: len(ablations) - i for i, name in enumerate(ablations)}
    top = min(len(ablations), EVALUATE_PRIORITY - 1)

    def priority(wildcards, input=None, attempt=1):  # noqa: A002 (Snakemake passes them by these names)
        return min(rank.get(wildcards.ablation, 0), top)

    return priority
