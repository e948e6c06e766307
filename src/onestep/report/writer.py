"""The one table writer: a `Table` as Markdown, LaTeX (booktabs, escaped by pandas' Styler) and CSV files.

Every table (ablation, baselines, main, the Optuna study's trials, the tuned-vs-default studies) is built
as a `Table` and written by `write`: <prefix>.md, <prefix>.tex (for \\input{}: a table float with caption
and \\label{tab:<label>}) and, given its frame, <prefix>.csv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Characters LaTeX's text mode cannot set from a plain \input{} (no inputenc for them): math mode after
# pandas has escaped the LaTeX specials (& % $ # _ { } ~ ^ \).
MATH = {"±": r"$\pm$", "²": r"$^2$", "λ": r"$\lambda$", "<": r"$<$", ">": r"$>$", "≤": r"$\leq$", "≥": r"$\geq$",
        "×": r"$\times$", "√": r"$\surd$"}


@dataclass
class Table:
    header: list[str]
    body: list[list[tuple[str, bool]]]  # rows of (text, bold)
    caption: str
    label: str  # \label{tab:<label>}
    n_left: int  # left-aligned leading columns (the rest right-aligned)
    refs: list[list[str]] = field(default_factory=list)  # reference rows, below a rule (italic in Markdown)


def _math(s: str) -> str:
    for ch, tex in MATH.items():
        s = s.replace(ch, tex)
    return s


def _styler(rows: list[list[str]]):
    import pandas as pd

    return pd.DataFrame(rows, dtype=object).style.hide(axis="index").hide(axis="columns").format(_math, escape="latex")


def escape(text: str) -> str:
    """`text` safe in LaTeX text mode: pandas' LaTeX escaping, then math mode for MATH's characters."""
    line = _styler([[str(text)]]).to_latex().splitlines()[1]  # \begin{tabular}{l} / <cell> \\ / \end{tabular}
    return line.removesuffix(r" \\")


def markdown(t: Table) -> str:
    md = [f"**{t.caption}**", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    md += ["| " + " | ".join(f"**{c}**" if b and c else c for c, b in r) + " |" for r in t.body]
    md += ["| " + " | ".join(f"*{c}*" if c else "" for c in r) + " |" for r in t.refs]
    return "\n".join(md) + "\n"


def latex(t: Table) -> str:
    """A booktabs table float: caption, label, header, body (bold cells in \\textbf), a rule, the reference rows."""
    import pandas as pd

    rows = [t.header, *[[c for c, _ in r] for r in t.body], *t.refs]
    bold = [[False] * len(t.header), *[[b and bool(c) for c, b in r] for r in t.body], *[[False] * len(r) for r in t.refs]]
    css = pd.DataFrame([["textbf: --rwrap;" if b else "" for b in r] for r in bold], dtype=object)
    tab = _styler(rows).apply(lambda _: css, axis=None).to_latex(
        hrules=True, column_format="l" * t.n_left + "r" * (len(t.header) - t.n_left)).splitlines()
    # Styler (columns hidden): \begin{tabular}, \toprule, \midrule, rows ..., \bottomrule, \end{tabular}
    head, lines = tab[:2], tab[3:-2]
    lines = [lines[0], r"\midrule", *lines[1:1 + len(t.body)]] + ([r"\midrule", *lines[1 + len(t.body):]] if t.refs else [])
    out = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{escape(t.caption)}}}",
           f"\\label{{tab:{t.label}}}", *head, *lines, *tab[-2:], r"\end{table}"]
    return "\n".join(out) + "\n"


def write(prefix: str | Path, t: Table, frame=None) -> None:
    """<prefix>.md and <prefix>.tex of `t`; <prefix>.csv of `frame` (a polars frame) when given."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if frame is not None:
        frame.write_csv(prefix.with_suffix(".csv"))
    prefix.with_suffix(".md").write_text(markdown(t))
    prefix.with_suffix(".tex").write_text(latex(t))
