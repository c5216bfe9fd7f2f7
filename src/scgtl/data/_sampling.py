"""Seeded k-shot sampling of labelled observations."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Sequence


def check_labels(labels: pd.Series | np.ndarray, *, labels_key: str) -> pd.Categorical:
    """Return labels as a categorical with unused categories removed, rejecting bad labels."""
    labels = pd.Series(labels)
    if labels.isna().any():
        raise ValueError(
            f"obs[{labels_key!r}] has {int(labels.isna().sum())} missing labels; drop or fill them."
        )
    categorical = pd.Categorical(labels.astype(str))
    if categorical.categories.size < 2:
        raise ValueError(
            f"obs[{labels_key!r}] has {categorical.categories.size} class(es) "
            f"({categorical.categories.tolist()}); a classifier needs at least 2."
        )
    return categorical


def sample_k_shot(
    labels: pd.Categorical, k_shot: int, *, seed: int, labels_key: str = "labels"
) -> np.ndarray:
    """Pick ``k_shot`` observations per class, reproducibly from ``seed``.

    Returns
    -------
    Sorted integer positions of the support set.

    Raises
    ------
    ValueError
        If ``k_shot < 1`` or a class has fewer than ``k_shot`` observations (all such classes are
        named).
    """
    if not isinstance(k_shot, int | np.integer) or k_shot < 1:
        raise ValueError(f"k_shot={k_shot!r} is not valid; it must be an integer >= 1.")
    counts = pd.Series(labels).value_counts()
    too_small = counts[counts < k_shot]
    if not too_small.empty:
        raise ValueError(
            f"k_shot={k_shot} but these classes of obs[{labels_key!r}] have fewer samples: "
            f"{too_small.to_dict()}. Lower k_shot or drop those classes."
        )
    rng = np.random.default_rng(seed)
    codes = np.asarray(labels.codes)
    picked = [
        rng.choice(np.flatnonzero(codes == c), size=k_shot, replace=False)
        for c in range(len(labels.categories))
    ]
    return np.sort(np.concatenate(picked))


def support_rows(
    labels: pd.Series,
    *,
    k_shot: int | None,
    seed: int,
    support_indices: Sequence[int] | np.ndarray | None = None,
    labels_key: str = "labels",
) -> np.ndarray:
    """Positions of a support set: ``k_shot`` per class, every labelled row, or ``support_indices``.

    Only the support's labels need to be present; the other rows may be missing (NaN).

    Parameters
    ----------
    labels
        One label per row of the study.
    k_shot
        Rows per class to draw with ``seed``; ``None`` (without ``support_indices``): every row
        whose label is present, as in a half-annotated study where unlabelled rows are NaN.
        Ignored, with a warning, when ``support_indices`` is given.
    seed
        Seed of the draw.
    support_indices
        Integer positions to use as they are.
    labels_key
        Name of the labels column, for messages.

    Returns
    -------
    Sorted integer positions.
    """
    if support_indices is None:
        if k_shot is None:
            return labelled_rows(labels, labels_key=labels_key)
        checked = check_labels(labels, labels_key=labels_key)
        return sample_k_shot(checked, k_shot, seed=seed, labels_key=labels_key)
    support = np.asarray(support_indices)
    if support.ndim != 1 or support.size == 0 or not np.issubdtype(support.dtype, np.integer):
        raise ValueError("support_indices must be a non-empty 1-d array of integer positions.")
    if support.min() < 0 or support.max() >= len(labels):
        raise ValueError(
            f"support_indices must lie in [0, {len(labels)}); got {support.min()}..{support.max()}."
        )
    if np.unique(support).size != support.size:
        raise ValueError("support_indices has duplicates.")
    check_labels(labels.iloc[support], labels_key=labels_key)
    if k_shot is not None:
        warnings.warn("k_shot is ignored when support_indices is given.", UserWarning, stacklevel=3)
    return np.sort(support)


def labelled_rows(labels: pd.Series, *, labels_key: str = "labels") -> np.ndarray:
    """Positions of the rows whose label is present (not NaN), checked to span two classes."""
    present = np.flatnonzero(pd.Series(labels).notna().to_numpy())
    if present.size == 0:
        raise ValueError(
            f"obs[{labels_key!r}] has no label at all; label some rows (NaN marks unlabelled "
            "ones), or pass k_shot / support_indices."
        )
    check_labels(pd.Series(labels).iloc[present], labels_key=labels_key)
    return present
