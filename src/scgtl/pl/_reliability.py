"""Reliability diagrams: accuracy against confidence, per confidence bin of the ECE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scgtl.pl._prediction import _cells_to_count
from scgtl.pl._utils import figure_path, finish, plot_doc

if TYPE_CHECKING:
    from pathlib import Path

    from anndata import AnnData
    from matplotlib.axes import Axes

    from scgtl.benchmark import FewShotResult
    from scgtl.pl._utils import Save

#: The label ``predict(unknown=...)`` gives novel cells: they have no class to be right about.
_UNKNOWN = "unknown"


@plot_doc.dedent
def reliability(
    data: FewShotResult | pd.DataFrame | AnnData,
    *,
    k: int | None = None,
    methods: Sequence[str] | None = None,
    labels_key: str | None = None,
    confidence_key: str = "scgtl_confidence",
    prediction_key: str = "scgtl_prediction",
    exclude_support: bool | str = True,
    counts: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: Save = None,
) -> Axes | None:
    """Reliability diagram: accuracy against confidence in each confidence bin.

    The cells are put into the 15 equal-width confidence bins of the benchmark's expected
    calibration error (ECE; :func:`~scgtl.benchmark._stats.calibration_bins`). Each non-empty
    bin is one point: its cells' mean confidence on x, the fraction of them predicted right on
    y. A calibrated classifier lies on the dashed diagonal; points below it are over-confident.

    ``data`` is either

    - a few-shot benchmark (:func:`scgtl.benchmark.few_shot`), or its calibration bins
      (:attr:`~scgtl.benchmark.FewShotResult.calibration`, e.g. ``pd.read_csv`` of the
      ``calibration.csv`` that :meth:`~scgtl.benchmark.FewShotResult.save` writes): one line per
      method at one ``k``, the query cells of all episodes pooled, each method's pooled ECE
      (:meth:`~scgtl.benchmark.FewShotResult.pooled_ece`) in the legend; or
    - an AnnData after :meth:`scgtl.GTLClassifier.predict`: one line, the confidence
      ``obs[confidence_key]`` of the prediction ``obs[prediction_key]`` against the truth
      ``obs[labels_key]``, the ECE in the title. Cells without a truth or a prediction, the
      support (see ``exclude_support``) and cells predicted or labelled ``"unknown"`` (they
      have no class to be right about) are left out.

    Parameters
    ----------
    data
        A :class:`scgtl.benchmark.FewShotResult`, its calibration bins, or an AnnData with a
        prediction.
    k
        Benchmark only: support samples per class (default: the largest ``k`` of the result).
    methods
        Benchmark only: the methods to draw, in this order (default: all of them).
    labels_key
        AnnData only, and required there: ``obs`` column of the true classes.
    confidence_key
        AnnData only: ``obs`` column of the confidence (probability of the predicted class).
    prediction_key
        AnnData only: ``obs`` column of the predicted classes.
    exclude_support
        AnnData only: leave out the cells the classifier was trained on: ``True`` reads the
        boolean column ``predict`` wrote beside the prediction (``"scgtl_is_support"`` for
        ``"scgtl_prediction"``), a string names another boolean ``obs`` column, ``False`` keeps
        every cell (as :func:`scgtl.pl.confusion_matrix`).
    counts
        Draw the fraction of cells in each bin as a step histogram along the bottom (right
        axis), one per line, in the line's colour.
    title
        Axes title (default: the ``k`` and episodes of a benchmark; the ECE and cells of an
        AnnData).
    ax
        Axes to draw into; by default a new figure.
    %(param_show_save)s

    Returns
    -------
    The Axes (``None`` when the figure is shown). One line with markers per method, in the
    order of :meth:`~scgtl.benchmark.FewShotResult.reliability` (its ``get_gid()`` the
    method's name, ``confidence_key`` for an AnnData; its label the name and the pooled ECE,
    ``"gtl (ECE 0.046)"``), its points the mean confidence and the accuracy of each non-empty
    bin; and the diagonal, a dashed line labelled ``"perfectly calibrated"``.
    """
    from anndata import AnnData

    from scgtl.benchmark import FewShotResult

    if isinstance(data, AnnData):
        _only_for("a benchmark result", k=k, methods=methods)
        if labels_key is None:
            raise ValueError("labels_key= is required for an AnnData: the obs column of truth.")
        bins = _bins_of_prediction(
            data, labels_key, confidence_key, prediction_key, exclude_support
        )
        lines = {confidence_key: bins}
        eces = {confidence_key: _ece(bins)}
        n_cells = int(bins["n_cells"].sum())
        support = ", support left out" if exclude_support is not False else ""
        default_title = f"ECE {eces[confidence_key]:.3f}, {n_cells:,} cells{support}"
    elif isinstance(data, FewShotResult | pd.DataFrame):
        _only_for("an AnnData", labels_key=labels_key)
        if isinstance(data, pd.DataFrame):
            data = _result_of_calibration(data)
        pooled = data.reliability(k=k, methods=methods)
        lines = dict(tuple(pooled.groupby("method", sort=False)))
        eces = data.pooled_ece(k=k, methods=methods).to_dict()
        n_episodes = int(pooled["n_episodes"].max())
        default_title = f"k={int(pooled['k'].iloc[0])}, {n_episodes} episodes pooled"
    else:
        raise TypeError(
            "data must be a scgtl.benchmark.FewShotResult, its calibration bins (a DataFrame) "
            f"or an AnnData with a prediction; got {type(data).__name__}."
        )
    path = figure_path(save, "reliability")
    return _draw(lines, eces, title or default_title, counts, ax, path, show)


def _only_for(kind: str, **given) -> None:
    """Refuse the options of the other kind of input."""
    wrong = [name for name, value in given.items() if value is not None]
    if wrong:
        raise ValueError(f"{', '.join(f'{w}=' for w in wrong)} applies to {kind} only.")


def _result_of_calibration(calibration: pd.DataFrame) -> FewShotResult:
    """A result holding only calibration bins, to pool them (its scores table is empty)."""
    from scgtl.benchmark import FewShotResult

    return FewShotResult(
        table=pd.DataFrame(columns=["method", "k", "episode"]),
        reference=None,
        calibration=calibration,
    )


def _bins_of_prediction(
    adata: AnnData,
    labels_key: str,
    confidence_key: str,
    prediction_key: str,
    exclude_support: bool | str,
) -> pd.DataFrame:
    """The calibration bins of the cells of ``adata`` to count (see :func:`reliability`)."""
    from scgtl.benchmark._stats import calibration_bins

    keep = _cells_to_count(
        adata, labels_key, prediction_key, exclude_support, truth_role="labels_key"
    )
    if confidence_key not in adata.obs:
        raise KeyError(
            f"confidence_key={confidence_key!r} is not a column of adata.obs (columns: "
            f"{list(adata.obs.columns)}). Run clf.predict(adata) first."
        )
    obs = adata.obs[keep]
    truth = obs[labels_key].astype(str).to_numpy()
    prediction = obs[prediction_key].astype(str).to_numpy()
    confidence = pd.to_numeric(obs[confidence_key], errors="coerce").to_numpy(dtype=float)
    known = (truth != _UNKNOWN) & (prediction != _UNKNOWN) & np.isfinite(confidence)
    if not known.any():
        raise ValueError(
            "No cell is left to draw: every counted cell is predicted or labelled 'unknown' or "
            f"has no {confidence_key!r}."
        )
    n_cells, confidence_sum, n_correct = calibration_bins(
        confidence[known], truth[known] == prediction[known]
    )
    filled = np.where(n_cells > 0, n_cells, np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(n_cells.size),
            "n_cells": n_cells,
            "confidence_sum": confidence_sum,
            "n_correct": n_correct,
            "confidence": confidence_sum / filled,
            "accuracy": n_correct / filled,
        }
    )


def _ece(bins: pd.DataFrame) -> float:
    from scgtl.benchmark._stats import binned_calibration_error

    return binned_calibration_error(bins["n_cells"], bins["confidence_sum"], bins["n_correct"])


def _draw(
    lines: dict[str, pd.DataFrame],
    eces: dict[str, float],
    title: str,
    counts: bool,
    ax: Axes | None,
    path: Path | None,
    show: bool | None,
) -> Axes | None:
    """One line per entry of ``lines`` (pooled bins), the diagonal and the optional counts."""
    import matplotlib.pyplot as plt

    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    histogram = ax.twinx() if counts else None
    edges = np.linspace(0.0, 1.0, len(next(iter(lines.values()))) + 1)
    highest = 0.0
    for name, bins in lines.items():
        shown = bins[bins["n_cells"] > 0]
        (line,) = ax.plot(
            shown["confidence"].to_numpy(),
            shown["accuracy"].to_numpy(),
            marker="o",
            markersize=4,
            label=f"{name} (ECE {eces[name]:.3f})",
        )
        line.set_gid(name)
        if histogram is not None:
            fraction = bins["n_cells"].to_numpy(dtype=float) / max(bins["n_cells"].sum(), 1)
            histogram.stairs(fraction, edges, color=line.get_color(), alpha=0.6)
            highest = max(highest, float(fraction.max()))
    if histogram is not None:
        # The counts keep to the bottom quarter, under the curves.
        histogram.set_ylim(0, 4 * (highest or 1.0))
        # Ticks where the bars are, not up to the 4x headroom.
        histogram.set_yticks([0.0, highest], ["0", f"{highest:.2f}"])
        histogram.set_ylabel("fraction of cells", fontsize="small")
        histogram.tick_params(axis="y", labelsize="small")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (mean of the bin)")
    ax.set_ylabel("accuracy (of the bin)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    return finish(ax.figure, ax, path=path, show=show, own_figure=own_figure)
