"""Accuracy against k, one line per method, with confidence bands."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Methods drawn with a heavier line.
_HIGHLIGHT = {"gtl": {"linewidth": 2.6, "zorder": 5}}

#: Line style of the transductive methods, and what their legend entries say.
TRANSDUCTIVE_STYLE = "--"
TRANSDUCTIVE_LABEL = "{method} (transductive)"

#: Size of a new figure, in inches (the legend sits to the right of the axes).
FIGSIZE = (7.0, 4.2)

#: Space left above and below the data, as a fraction of its range.
Y_MARGIN = 0.08


def y_limits(summary: pd.DataFrame, *, margin: float = Y_MARGIN) -> tuple[float, float]:
    """The y range of the plot: every mean and confidence bound, with a margin.

    The range follows the data, not zero or chance, so that methods a few points apart are
    told apart. Metrics that lie in ``[0, 1]`` (balanced accuracy, F1, AUROC) are not given a
    range beyond it.
    """
    values = summary[["mean", "ci_low", "ci_high"]].to_numpy(dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    pad = max(margin * (high - low), 0.01)
    bottom, top = low - pad, high + pad
    if low >= 0.0 and high <= 1.0:
        bottom, top = max(bottom, 0.0), min(top, 1.0)
    return bottom, top


def _balanced_wrap(title: str, n_lines: int) -> str:
    """``title`` on at most ``n_lines`` lines of about equal length (words kept whole)."""
    width = max(1, -(-len(title) // n_lines))
    while len(textwrap.wrap(title, width=width, break_long_words=False)) > n_lines:
        width += 1
    return textwrap.fill(title, width=width, break_long_words=False)


def _fit_title(fig: Figure, ax: Axes, title: str, *, pad: float = 4.0) -> None:
    """Set ``title`` on ``ax``, on as few balanced lines as let it fit inside ``fig``.

    The title is centred over the axes, so it must fit between the axes' centre and the nearer
    figure edge on both sides. It is wrapped onto one, two, three... lines of about equal
    length until, after a layout pass (as when saving), its extent lies within the figure.
    """
    text = ax.set_title(title)
    fig_width = fig.get_window_extent().width
    for n_lines in range(1, len(title.split()) + 1):
        text.set_text(_balanced_wrap(title, n_lines))
        fig.draw_without_rendering()  # runs the layout engine, as saving the figure does
        box = text.get_window_extent()
        if box.x0 >= pad and box.x1 <= fig_width - pad:
            return


def plot_accuracy_vs_k(
    summary: pd.DataFrame,
    *,
    metric: str = "balanced_accuracy",
    chance: float | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw the mean of ``metric`` against ``k`` for each method, with its confidence band.

    The y range is taken from the plotted means and confidence bounds, with a margin (see
    :func:`y_limits`), so that close methods stay apart; the chance line is drawn only when it
    falls inside that range (otherwise the legend says where chance lies). A long title is
    wrapped onto several lines so that it fits inside the figure. In a new figure (constrained
    layout) the legend sits beside the axes; in axes given as ``ax`` it stays inside them, and
    the figure's layout is left as it is. Transductive methods (``regime`` column) are drawn
    with dashed lines, and their legend entries say "(transductive)".

    Parameters
    ----------
    summary
        Output of :func:`scgtl.benchmark._stats.summarize`, optionally with a ``regime``
        column (``"inductive"`` / ``"transductive"``; without it, every line is solid).
    metric
        Name of the metric, for the axis label.
    chance
        Draw a dashed line at this chance level if it is inside the y range; otherwise the
        legend gives its value.
    title
        Axes title (wrapped to fit the figure).
    ax
        Draw into these axes instead of a new figure.

    Returns
    -------
    The figure holding the axes.
    """
    import matplotlib.pyplot as plt

    own_figure = ax is None
    if own_figure:
        fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    else:
        fig = ax.figure
    ks = sorted(summary["k"].unique())
    for method, block in summary.groupby("method", sort=False):
        block = block.sort_values("k")
        style = dict(_HIGHLIGHT.get(method, {"linewidth": 1.5}))
        label = method
        if "regime" in block.columns and (block["regime"] == "transductive").any():
            style["linestyle"] = TRANSDUCTIVE_STYLE
            label = TRANSDUCTIVE_LABEL.format(method=method)
        (line,) = ax.plot(block["k"], block["mean"], marker="o", label=label, **style)
        low, high = block["ci_low"].to_numpy(), block["ci_high"].to_numpy()
        if np.isfinite(low).any():
            ax.fill_between(block["k"], low, high, color=line.get_color(), alpha=0.15, lw=0)
    bottom, top = y_limits(summary)
    ax.set_ylim(bottom, top)
    if chance is not None and bottom <= chance <= top:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    elif chance is not None:
        # Say where chance is, without stretching the axis down to it.
        where = "below" if chance < bottom else "above"
        ax.plot([], [], color="grey", linestyle="--", linewidth=1,
                label=f"chance {chance:.2g}, {where} axis")  # fmt: skip
    if len(ks) > 1 and max(ks) / min(ks) >= 5:
        ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k (support samples per class)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (mean, 95% CI)")
    ax.grid(alpha=0.3)
    if own_figure:
        # Beside the axes: with the y range fitted to the data, lines fill the whole axes.
        ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        # In someone else's figure, stay inside the axes rather than over a neighbour.
        ax.legend(fontsize="small", frameon=False, loc="best")
    if title:
        _fit_title(fig, ax, title)
    return fig
