"""A table column: one metric or diagnostic as every table, figure and MLflow view shows it (leaf module).

Adding a metric to the tables is its function plus one `Column` in the registry (report/columns.py); a
method's own diagnostics (the curriculum's stage errors) come from its `columns()` hook (methods/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    key: str  # the number's key in metrics.json (a run's `metrics` or top-level key; `<key>_mean` in a summary)
    label: str  # the header a table prints
    digits: int = 4  # significant digits
    caption: str = ""  # the caption's words for it, in words, not config keys ("" = none needed)
    lower_is_better: bool = True
    bold_best: bool = False  # bold the best mean of the column
    path: tuple[str, ...] = ()  # where a run's metrics.json holds it: () is ("metrics", key); e.g. ("stages", key)

    def value(self, record: dict) -> float:
        """The number in one run's metrics.json record, NaN where it has none."""
        node = record
        for part in self.path or ("metrics", self.key):
            node = node.get(part) if isinstance(node, dict) else None
        return float("nan") if node is None else float(node)


__all__ = ["Column"]
