"""Accuracy against k, one line per method, with confidence bands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Methods drawn with a heavier line.
_HIGHLIGHT = {"gtl": {"linewidth": 2.6, "zorder": 5}}


def plot_accuracy_vs_k(
    summary: pd.DataFrame,
    *,
    metric: str = "balanced_accuracy",
    chance: float | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw the mean of ``metric`` against ``k`` for each method, with its confidence band.

    Parameters
    ----------
    summary
        Output of :func:`scgtl.benchmark._stats.summarize`.
    metric
        Name of the metric, for the axis label.
    chance
        Draw a dotted line at this chance level.
    title
        Axes title.
    ax
        Draw into these axes instead of a new figure.

    Returns
    -------
    The figure holding the axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.0), layout="constrained")
    else:
        fig = ax.figure
    ks = sorted(summary["k"].unique())
    for method, block in summary.groupby("method", sort=False):
        block = block.sort_values("k")
        style = _HIGHLIGHT.get(method, {"linewidth": 1.5})
        (line,) = ax.plot(block["k"], block["mean"], marker="o", label=method, **style)
        low, high = block["ci_low"].to_numpy(), block["ci_high"].to_numpy()
        if np.isfinite(low).any():
            ax.fill_between(block["k"], low, high, color=line.get_color(), alpha=0.15, lw=0)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    if len(ks) > 1 and max(ks) / min(ks) >= 5:
        ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k (support samples per class)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (mean, 95% CI)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", frameon=False)
    return fig
