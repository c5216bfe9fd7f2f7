"""Seeded k-shot sampling of labelled observations."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
