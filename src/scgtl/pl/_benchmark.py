"""The benchmark's accuracy-vs-k curves, with scanpy's ``show`` / ``save`` / ``ax``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from scgtl.pl._utils import figure_path, finish, plot_doc

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from scgtl.benchmark import FewShotResult
    from scgtl.pl._utils import Save


@plot_doc.dedent
def accuracy_vs_k(
    result: FewShotResult | pd.DataFrame,
    *,
    metric: str | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: Save = None,
) -> Axes | None:
    """Mean score against ``k`` (support samples per class), one line per method, with 95% CIs.

    The same drawing as :meth:`scgtl.benchmark.FewShotResult.plot` (this function calls it):
    transductive methods dashed and marked "(transductive)" in the legend, the y range fitted to
    the means and confidence bands, the chance level of balanced accuracy drawn when it falls in
    that range and named in the legend otherwise.

    Parameters
    ----------
    result
        The result of :func:`scgtl.benchmark.few_shot`, or its per-episode table
        (:attr:`~scgtl.benchmark.FewShotResult.table`, e.g. ``pd.read_csv("results.csv")`` of a
        saved benchmark).
    metric
        Column of the table to plot (default: the result's metric, balanced accuracy for a
        table).
    title
        Axes title, wrapped to fit the figure.
    ax
        Axes to draw into (the legend then stays inside them); by default a new figure with
        the legend beside the axes.
    %(param_show_save)s

    Returns
    -------
    The Axes (``None`` when the figure is shown): one line per method (its legend entry the
    method's name) and one confidence band per method.
    """
    from scgtl.benchmark import FewShotResult

    if isinstance(result, pd.DataFrame):
        result = FewShotResult(table=result, reference=None)
    elif not isinstance(result, FewShotResult):
        raise TypeError(
            "result must be a scgtl.benchmark.FewShotResult or its per-episode table (a "
            f"DataFrame); got {type(result).__name__}."
        )
    path = figure_path(save, "accuracy_vs_k")
    fig = result.plot(metric, title=title, ax=ax)
    drawn = ax if ax is not None else fig.axes[0]
    return finish(fig, drawn, path=path, show=show, own_figure=ax is None)
