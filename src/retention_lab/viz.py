"""One plotting style for every stage, and the shared figure helpers.

Functions look like ``plot_*(data, *, ax=None) -> Axes``: they check their
arguments first, label the axes with units, give the figure a title, and never
call ``plt.show()``.
"""

from __future__ import annotations

import html

import matplotlib as mpl
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from retention_lab.formatting import number

PALETTE = "colorblind"


def set_theme() -> None:
    """Apply the workbench's plotting style (call once per notebook).

    Text is never parsed as mathtext: a segment named ``$x$`` or ``a$b`` is drawn as written.
    """
    sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE)
    mpl.rcParams.update(
        {
            "figure.figsize": (8, 4.5),
            "figure.dpi": 100,
            "axes.titleweight": "bold",
            "text.parse_math": False,
        }
    )


def _require_columns(frame: pd.DataFrame, columns: list[str], function: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{function}: missing columns {missing}; got {list(frame.columns)}")


def _no_data(ax: Axes, title: str) -> Axes:
    ax.text(
        0.5, 0.5, "Not available for this dataset", ha="center", va="center", transform=ax.transAxes
    )
    ax.set(title=title, xticks=[], yticks=[])
    return ax


def plot_counts(
    counts: pd.DataFrame,
    *,
    category: str,
    value: str = "count",
    hue: str | None = None,
    title: str,
    xlabel: str = "Count",
    ylabel: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Horizontal bar chart of counts (or shares) by category, largest first."""
    _require_columns(counts, [category, value] + ([hue] if hue else []), "plot_counts")
    ax = ax or plt.figure().gca()
    if counts.empty:
        return _no_data(ax, title)
    order = counts.groupby(category)[value].sum().sort_values(ascending=False).index
    sns.barplot(data=counts, y=category, x=value, hue=hue, order=order, orient="h", ax=ax)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel or category.replace("_", " ").capitalize())
    return ax


def plot_monthly(
    monthly: pd.DataFrame,
    *,
    date: str = "month",
    value: str = "count",
    hue: str | None = None,
    title: str,
    ylabel: str,
    ax: Axes | None = None,
) -> Axes:
    """Line chart of a monthly series, optionally one line per group."""
    _require_columns(monthly, [date, value] + ([hue] if hue else []), "plot_monthly")
    ax = ax or plt.figure().gca()
    if monthly.empty:
        return _no_data(ax, title)
    sns.lineplot(data=monthly, x=date, y=value, hue=hue, ax=ax)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set(title=title, xlabel="Month", ylabel=ylabel)
    return ax


def show_table(
    frame: pd.DataFrame,
    *,
    percent: list[str] = (),
    decimals: int | None = None,
    caption: str | None = None,
):
    """A table for a report: no index, thousands separators, shares as percentages.

    Floats get ``decimals`` places, or by default three significant digits
    (thousands without decimals, small numbers such as p-values readable).
    Returns a pandas ``Styler`` (renders as HTML in notebooks and reports).
    Every cell, column and index label and the caption is HTML-escaped: data
    strings (segments, ids, problem types) are text, never markup.
    """
    missing = [c for c in percent if c not in frame.columns]
    if missing:
        raise ValueError(f"show_table: no columns {missing} to format as percentages")
    formats = {}
    for column in frame.columns:
        if column in percent:
            formats[column] = "{:.1%}"
        elif pd.api.types.is_integer_dtype(frame[column]):
            formats[column] = "{:,}"
        elif pd.api.types.is_float_dtype(frame[column]):
            formats[column] = number if decimals is None else f"{{:,.{decimals}f}}"
        elif pd.api.types.is_datetime64_any_dtype(frame[column]):
            formats[column] = "{:%Y-%m-%d}"
    styler = (
        frame.style.hide(axis="index")
        .format(formats, na_rep="—", escape="html")
        .format_index(escape="html", axis="index")
        .format_index(escape="html", axis="columns")
    )
    return styler.set_caption(html.escape(caption)) if caption else styler


def show_findings(findings: list[str]):
    """Findings as a bulleted list for a report (HTML, every string escaped)."""
    from html import escape

    from IPython.display import HTML

    items = "".join(f"<li>{escape(str(line))}</li>" for line in findings)
    return HTML(f'<ul class="rl-findings">{items}</ul>')


# ------------------------------------------------------------------ axes
def money_axis(axis) -> None:
    """Tick labels of a money axis with thousands separators, never an offset or ``1e7``."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
