"""Cells and tables as text, through pandas: Markdown (``to_markdown``), LaTeX (``Styler.to_latex``
with booktabs rules, bold and underline) and CSV (``to_csv``).

Nothing here knows a table spec: sections hand over DataFrames of display strings (one per
cell) and, for LaTeX, a DataFrame of marks (``1`` best: bold, ``2`` second best: underlined).
"""

from __future__ import annotations

import io
import math
from typing import Iterable, Mapping

import pandas as pd

from levi_core.metrics import rank_distinct

from bench.metric_format import metric as metric_format

_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
          "±": r"$\pm$", "→": r"$\to$", "−": "-", "–": "--", "ŷ": r"$\hat{y}$", "`": ""}


def ranks(means: Mapping[str, float | None], metric: str) -> dict[str, int]:
    """row -> 1 (best) or 2 (second best) in the metric's direction, ranking the means as they
    are displayed (rounded), so equal-looking numbers share a mark."""
    shown = {k: metric_format(metric).rounded(v) for k, v in means.items()
             if v is not None and not math.isnan(v)}
    order = rank_distinct(metric, shown.values())[:2]
    return {k: order.index(v) + 1 for k, v in shown.items() if v in order}


def latex_escape(text: str) -> str:
    """LaTeX for a plain string. A text that starts with ``[`` is wrapped in braces: after
    ``\\\\`` or ``\\midrule`` LaTeX would read it as an optional length ("Illegal unit")."""
    out = "".join(_LATEX.get(ch, ch) for ch in str(text))
    return "{" + out + "}" if out.startswith("[") else out


def markdown_table(df: pd.DataFrame, marks: pd.DataFrame | None = None, align_first: str = "left",
                   align_rest: str = "right") -> str:
    """A pipe table; marked cells become ``**bold**`` (1) or ``<u>underlined</u>`` (2)."""
    if marks is not None:
        df = df.copy()
        for col in df.columns:
            df[col] = [_md_mark(text, mark) for text, mark in zip(df[col], marks[col])]
    align = (align_first,) + (align_rest,) * (len(df.columns) - 1)
    return df.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"


def _md_mark(text: str, mark) -> str:
    if not text:
        return text
    return f"**{text}**" if mark == 1 else f"<u>{text}</u>" if mark == 2 else text


def latex_table(df: pd.DataFrame, caption: str, label: str | None = None,
                marks: pd.DataFrame | None = None, column_format: str | None = None,
                rule_before: Iterable[int] = ()) -> str:
    """A booktabs ``table`` float. ``df`` holds plain strings (escaped here); ``rule_before``
    lists row positions that get a ``\\midrule`` above them (e.g. the reference rows).

    Cells are right-aligned (numbers with a fixed number of decimals then line up on their
    last digit; the first column, the row names, is left-aligned). The tabular is scaled
    down to the text width when wider, never up, so that a wide grid fits the page of any
    document (``\\usepackage{graphicx}`` provides ``\\resizebox``)."""
    body = df.map(latex_escape)
    body.columns = [_header(c, align=(column_format or "l" + "r" * len(df.columns))[i])
                    for i, c in enumerate(df.columns)]
    styler = body.style.hide(axis="index")
    if marks is not None:
        props = marks.map(lambda m: "textbf:--rwrap;" if m == 1 else
                          "underline:--rwrap;" if m == 2 else "")
        props.columns = body.columns
        styler = styler.apply(lambda _: props.set_index(body.index), axis=None)
    text = styler.to_latex(hrules=True, position="t", position_float="centering",
                           caption=latex_escape(caption),
                           label=None if label is None else f"tab:{label}",
                           column_format=column_format or "l" + "r" * (len(df.columns) - 1))
    lines = text.splitlines()
    first = lines.index(r"\midrule") + 1
    for pos in sorted(set(rule_before), reverse=True):
        if 0 < pos < len(df):
            lines.insert(first + pos, r"\midrule")
    start = next(i for i, line in enumerate(lines) if line.startswith(r"\begin{tabular}"))
    end = lines.index(r"\end{tabular}")
    lines[start:end + 1] = [FIT_WIDTH, *lines[start:end + 1], "}"]
    return "\n".join(lines) + "\n"


def _header(text: str, align: str = "r", wrap_at: int = 14) -> str:
    """A column header as LaTeX: a long one on two lines, split at the space nearest its
    middle, so that a header is not what makes a column of short numbers wide."""
    if len(text) <= wrap_at or " " not in text:
        return latex_escape(text)
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    cut = min(spaces, key=lambda i: abs(i - len(text) / 2))
    top, bottom = latex_escape(text[:cut]), latex_escape(text[cut + 1:])
    side = align if align in "lcr" else "c"
    return rf"\begin{{tabular}}[b]{{@{{}}{side}@{{}}}}{top}\\ {bottom}\end{{tabular}}"


# Shrink a box wider than the line to the line's width; leave a narrower one as it is.
FIT_WIDTH = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"


def csv_text(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n", na_rep="")
    return buf.getvalue()
