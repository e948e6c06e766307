"""A table cell's text: a number to its digits, mean ± std, a p-value, an interval ('-' where there is none)."""

from __future__ import annotations

import math


def missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def num(v: float, digits: int = 4) -> str:
    return "-" if missing(v) else f"{v:.{digits}g}"


def mean_std(mean: float, std: float | None, digits: int = 4) -> str:
    s = num(mean, digits)
    return s if s == "-" or std is None or math.isnan(std) else f"{s} ± {std:.2g}"


def p_value(p: float, baseline: bool) -> str:
    return "baseline" if baseline else ("-" if missing(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001"))


def interval(lo: float, hi: float) -> str:
    return f"[{num(lo)}, {num(hi)}]"


def plain(v) -> str:
    """Any value as a study table shows it: '' for none, 4 significant digits for a float."""
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def dash(v) -> str:
    """Any value with '-' for none, 4 significant digits for a float."""
    return "-" if v is None else plain(v)
