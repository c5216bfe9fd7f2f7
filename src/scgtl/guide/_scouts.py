"""Scout problems: small few-shot classification tasks drawn from the corpus."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScoutTask:
    """One scout problem.

    Attributes
    ----------
    indices
        Positions (into the pool the groups were given for) of the scout's training samples.
    labels
        Class code ``0 .. n_way - 1`` of each sample.
    groups
        The corpus groups (labels or clusters) the classes were drawn from.
    """

    indices: np.ndarray
    labels: np.ndarray
    groups: tuple


def sample_scout_tasks(
    groups: np.ndarray,
    *,
    n_scouts: int,
    n_way: int = 2,
    k_shot: int = 5,
    seed: int = 0,
) -> list[ScoutTask]:
    """Draw ``n_scouts`` tasks of ``n_way`` random groups with ``k_shot`` samples each.

    Parameters
    ----------
    groups
        Group (label or cluster) of every pool sample.
    n_scouts
        Number of tasks.
    n_way
        Classes per task (the RNA-seq GTL paper: pairs of clusters).
    k_shot
        Samples per class, ideally the ``k`` of the user's target task.
    seed
        Seed of the draw.

    Raises
    ------
    ValueError
        When the settings are out of range or fewer than ``n_way`` groups have ``k_shot``
        samples.
    """
    for name, value, low in (("n_scouts", n_scouts, 1), ("n_way", n_way, 2), ("k_shot", k_shot, 1)):
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name}={value!r} must be an integer >= {low}.")
    names, counts = np.unique(groups, return_counts=True)
    eligible = names[counts >= k_shot]
    if eligible.size < n_way:
        raise ValueError(
            f"Only {eligible.size} corpus groups have at least k_shot={k_shot} samples "
            f"(group sizes: {dict(zip(names.tolist(), counts.tolist(), strict=True))}); "
            f"n_way={n_way} needs {n_way}. Lower k_shot or n_way, or use more clusters/labels."
        )
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_scouts):
        chosen = rng.choice(eligible, size=n_way, replace=False)
        indices = [
            rng.choice(np.flatnonzero(groups == g), size=k_shot, replace=False) for g in chosen
        ]
        tasks.append(
            ScoutTask(
                indices=np.concatenate(indices),
                labels=np.repeat(np.arange(n_way), k_shot),
                groups=tuple(chosen.tolist()),
            )
        )
    return tasks


def cluster_groups(latent: np.ndarray, *, n_clusters: int = 30, seed: int = 0) -> np.ndarray:
    """Groups for scouts on an unlabelled corpus: K-means clusters of its latent codes.

    The RNA-seq GTL paper clustered its corpus the same way (K = 30) and made each scout a
    problem between clusters.

    Parameters
    ----------
    latent
        ``(n_obs, n_latent)`` latent codes of the scouts' pool.
    n_clusters
        K; at most one cluster per observation.
    seed
        Seed of K-means.

    Returns
    -------
    Cluster index of every row.
    """
    from sklearn.cluster import KMeans  # scikit-learn is slow to import; only this needs it

    if not isinstance(n_clusters, int | np.integer) or n_clusters < 2:
        raise ValueError(f"n_clusters={n_clusters!r} must be an integer >= 2.")
    n_clusters = min(n_clusters, latent.shape[0])
    return KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit_predict(latent)
