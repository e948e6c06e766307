"""The column registry: every metric and diagnostic a table shows, one `onestep.columns.Column` each.

Adding a metric: write its function (onestep/metrics.py, onestep/exact.py or evaluate.py, stored in
metrics.json) and add one `Column` here (the order of `METRICS` is the tables' column order after the
headline): in `METRICS` for a quality metric (a run's `metrics`), in `GENERIC` for a diagnostic every
method's runs may carry (a top-level key of metrics.json, `path` saying where), in `COST` / `TRAIN_COST` for a
training cost (train.json). A method's own numbers are not listed here: its `columns()` hook
(methods/base.py) declares them, `method_columns` collects them, and a table shows one when some run of the
table has the number. Every table (ablation, baselines, main) reads its columns from this module alone.
"""

from __future__ import annotations

from onestep.columns import Column

REPORT = "method_report"  # metrics.json key of a method's `report()`: its schedule's numbers

METRICS = {c.key: c for c in (  # in the tables' column order, after the headline
    Column("tv", "TV", digits=4, bold_best=True), Column("off_support", "off-support mass", digits=4, bold_best=True),
    Column("chi2", "χ²", digits=4, bold_best=True), Column("mode_dev", "mode dev", digits=4, bold_best=True),
    Column("swd", "SWD", bold_best=True), Column("fd", "FD", bold_best=True), Column("mmd", "MMD²", bold_best=True),
    Column("fid", "FID", bold_best=True), Column("kid", "KID", bold_best=True), *(
        # a Gaussian mixture's exact metrics (gmm_metrics.py); their floor is the null of an exact sampler
        Column("mode_chi2", "mode χ²", bold_best=True), Column("modes_missed", "modes missed", 3, bold_best=True),
        Column("trace_ratio", "tr S/Σ", lower_is_better=False), Column("mode_kl", "mode KL", bold_best=True),
        Column("off_modes", "off modes", 3, bold_best=True), Column("nll", "NLL", lower_is_better=False)))}

SUPPORT = Column("out_of_support", "outside support", digits=3, path=("out_of_support",),
                 caption="outside support: samples outside the data's bounding box widened by {margin} of its extent "
                         "on each side, mean over seeds (a few such samples decide a W2 metric at large N).")
GENERIC = (SUPPORT,)  # diagnostics of any method's runs (2-D: samples outside the data's support)


def _train(key: str, label: str, digits: int = 4) -> Column:
    return Column(key, label, digits, path=("train", key))


WALL, STEPS, EVALS = _train("wall_time_s", "train s", 0), _train("steps", "optimiser steps", 0), \
    _train("teacher_evals", "teacher evals", 3)
COST = (WALL, EVALS, STEPS)  # an ablation table's training cost (its CSV's order)
AUX_STEPS = _train("aux_steps", "aux steps", 0)  # the method's own networks' optimiser steps (fake score updates)
TRAIN_COST = (WALL, STEPS, AUX_STEPS, EVALS, _train("student_forwards", "student fwd", 3),
              _train("student_backwards", "student bwd", 3), _train("params", "params", 0))  # the baselines table's
SEEDS = Column("seeds", "seeds")


def metric_order(metrics, headline: str) -> list[str]:
    """The metrics of a table in column order: the headline first, then the registry's order."""
    order = list(METRICS)
    return sorted(metrics, key=lambda m: (m != headline, order.index(m) if m in order else len(order), m))


def label(metric: str) -> str:
    """A metric's header: 'SWD', 'MMD²'."""
    return METRICS[metric].label


def ratio_key(primary: str, steps: int) -> str:
    """The summary column of the primary metric over the teacher's DDIM row at `steps` steps."""
    return f"{primary}_ratio_to_teacher_{steps}"


def method_columns() -> tuple[Column, ...]:
    """Every method's own columns (`columns()` hooks), each key once, in the registry's order."""
    from onestep.methods import METHODS

    out: dict[str, Column] = {}
    for method in METHODS.values():
        for c in method.columns():
            out.setdefault(c.key, c)
    return tuple(out.values())


def scheduled(c: Column) -> bool:
    """A number of the method's schedule (its `report()`, the same for every seed of a config): shown as the mean
    beside the costs; otherwise a measurement of the trained student, shown as mean ± std after the headline."""
    return bool(c.path) and c.path[0] == REPORT


def measured_columns() -> tuple[Column, ...]:
    return tuple(c for c in method_columns() if not scheduled(c))


def scheduled_columns() -> tuple[Column, ...]:
    return tuple(c for c in method_columns() if scheduled(c))


def diagnostics() -> tuple[Column, ...]:
    """Every diagnostic a run may carry, in the summaries' (and CSVs') order: the methods' measurements, the
    generic ones, the methods' schedule numbers."""
    return (*measured_columns(), *GENERIC, *scheduled_columns())


def shown(c: Column) -> bool:
    """A method's column the tables print (beside the CSV, which keeps every one): one with caption words."""
    return bool(c.caption)


def short(c: Column) -> str:
    """The label without its parenthesis: the narrow main table's header."""
    return c.label.split(" (")[0]
