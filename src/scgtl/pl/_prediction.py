"""Plots of a prediction written to ``adata.obs`` by :meth:`scgtl.GTLClassifier.predict`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from scgtl.pl._utils import figure_path, finish, plot_doc

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

    from scgtl.pl._utils import Save

#: ``normalize`` of :func:`confusion_matrix`, as in :func:`sklearn.metrics.confusion_matrix`.
NORMALIZATIONS = ("true", "pred", "all", None)

#: What ``predict`` writes after ``key_added``: the prediction and the support flag.
_PREDICTION_SUFFIX, _SUPPORT_SUFFIX = "_prediction", "_is_support"


@plot_doc.dedent
def confusion_matrix(
    adata: AnnData,
    *,
    truth_key: str,
    prediction_key: str = "scgtl_prediction",
    normalize: Literal["true", "pred", "all"] | None = "true",
    exclude_support: bool | str = True,
    cmap: str = "Blues",
    ax: Axes | None = None,
    show: bool | None = None,
    save: Save = None,
) -> Axes | None:
    """Confusion matrix of a prediction column against a truth column of ``adata.obs``.

    Rows are the true classes, columns the predicted ones, counted (and normalised) by
    :func:`sklearn.metrics.confusion_matrix`. The classes are the truth's (in its category
    order) followed by any class only the prediction has, so the diagonal is the agreement;
    rows of classes that no shown cell truly has are left out. Cells whose truth is missing
    (NaN) are left out.

    Parameters
    ----------
    adata
        Annotated data with both columns, e.g. after :meth:`scgtl.GTLClassifier.predict`.
    truth_key
        ``obs`` column of the true classes.
    prediction_key
        ``obs`` column of the predicted classes.
    normalize
        ``"true"``: each row sums to 1 (the fraction of a true class predicted as each class;
        the diagonal is each class's recall); ``"pred"``: each column sums to 1; ``"all"``: the
        whole matrix sums to 1; ``None``: counts.
    exclude_support
        Leave out the cells the classifier was trained on, which it also predicts: ``True``
        reads the boolean column ``predict`` wrote beside the prediction
        (``"scgtl_is_support"`` for ``"scgtl_prediction"``), a string names another boolean
        ``obs`` column, ``False`` keeps every cell.
    cmap
        Colour map of the matrix.
    ax
        Axes to draw into; by default a new figure.
    %(param_show_save)s

    Returns
    -------
    The Axes (``None`` when the figure is shown): the matrix as an image (``ax.images[0]``,
    its array the values of :func:`sklearn.metrics.confusion_matrix` for the rows shown), each
    value written in its cell, true classes as y tick labels and predicted classes as x tick
    labels. The title gives the number of cells counted.
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r} is not valid; choose one of {NORMALIZATIONS}.")
    truth, prediction = _labelled_cells(adata, truth_key, prediction_key, exclude_support)
    classes = _class_order(truth, prediction)
    matrix = sklearn_confusion_matrix(
        truth.astype(str), prediction.astype(str), labels=classes, normalize=normalize
    )
    present = np.isin(classes, truth.astype(str).unique())
    matrix, rows = matrix[present], [c for c, keep in zip(classes, present, strict=True) if keep]
    path = figure_path(save, "confusion_matrix")
    own_figure = ax is None
    if own_figure:
        size = 0.55 * len(classes) + 2.0
        _, ax = plt.subplots(figsize=(size + 1.0, 0.55 * len(rows) + 1.8), layout="constrained")
    image = ax.imshow(matrix, cmap=cmap, vmin=0.0, aspect="auto")
    ax.grid(False)  # styles such as scanpy's set_figure_params draw a grid across the cells
    ax.figure.colorbar(image, ax=ax, label="count" if normalize is None else "fraction")
    _annotate(ax, matrix, counts=normalize is None)
    ax.set_xticks(np.arange(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.set_xlabel(f"predicted ({prediction_key})")
    ax.set_ylabel(f"true ({truth_key})")
    ax.set_title(f"{len(truth):,} cells" + (", support left out" if exclude_support else ""))
    return finish(ax.figure, ax, path=path, show=show, own_figure=own_figure)


def _labelled_cells(
    adata: AnnData, truth_key: str, prediction_key: str, exclude_support: bool | str
) -> tuple[pd.Series, pd.Series]:
    """Truth and prediction of the cells to count: truth known, support left out if asked."""
    keep = _cells_to_count(adata, truth_key, prediction_key, exclude_support)
    return adata.obs[truth_key][keep], adata.obs[prediction_key][keep]


def _cells_to_count(
    adata: AnnData,
    truth_key: str,
    prediction_key: str,
    exclude_support: bool | str,
    *,
    truth_role: str = "truth_key",
) -> np.ndarray:
    """Which cells have a truth and a prediction and are not support cells (if left out).

    ``truth_role`` is the argument that named ``truth_key``, for the error messages.
    """
    for role, key in ((truth_role, truth_key), ("prediction_key", prediction_key)):
        if key not in adata.obs:
            hint = " Run clf.predict(adata) first." if role == "prediction_key" else ""
            raise KeyError(
                f"{role}={key!r} is not a column of adata.obs (columns: "
                f"{list(adata.obs.columns)}).{hint}"
            )
    keep = (adata.obs[truth_key].notna() & adata.obs[prediction_key].notna()).to_numpy()
    support_key = _support_key(prediction_key, exclude_support)
    if support_key is not None:
        if support_key not in adata.obs:
            raise KeyError(
                f"exclude_support needs the boolean column {support_key!r} of adata.obs, which "
                "clf.predict(adata) writes; name another column with exclude_support=..., or "
                "pass exclude_support=False to count every cell."
            )
        keep &= ~adata.obs[support_key].to_numpy(dtype=bool)
    if not keep.any():
        raise ValueError(
            "No cell is left to count: every cell is a support cell or lacks a truth or a "
            "prediction."
        )
    return keep


def _support_key(prediction_key: str, exclude_support: bool | str) -> str | None:
    if exclude_support is False:
        return None
    if isinstance(exclude_support, str):
        return exclude_support
    stem = prediction_key.removesuffix(_PREDICTION_SUFFIX)
    return f"{stem}{_SUPPORT_SUFFIX}"


def _class_order(truth: pd.Series, prediction: pd.Series) -> list[str]:
    """The truth's classes (category order if categorical), then the prediction's others."""
    classes: list[str] = []
    for series in (truth, prediction):
        if isinstance(series.dtype, pd.CategoricalDtype):
            values = [c for c in series.cat.categories if (series == c).any()]
        else:
            values = sorted(series.dropna().unique(), key=str)
        classes += [str(c) for c in values if str(c) not in classes]
    return classes


def _annotate(ax: Axes, matrix: np.ndarray, *, counts: bool) -> None:
    """Each value in its cell, in white on the dark cells."""
    threshold = matrix.max() / 2 if matrix.size else 0.0
    for (row, col), value in np.ndenumerate(matrix):
        text = f"{value:.0f}" if counts else f"{value:.2f}"
        color = "white" if value > threshold else "black"
        ax.text(col, row, text, ha="center", va="center", color=color, fontsize="small")
