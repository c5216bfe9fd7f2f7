"""Few-shot episodes: seeded support sets and the query sets they leave."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scgtl.data import sample_k_shot

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class Episode:
    """One few-shot episode of a benchmark.

    Attributes
    ----------
    k
        Support samples per class.
    episode
        Index of the episode within its ``k`` (0-based).
    seed
        The seed the support set was drawn with (derived from the benchmark's seed, ``k`` and
        ``episode``).
    classes
        The classes evaluated in this episode, sorted; classes with fewer than ``k + 1``
        samples are left out.
    support
        Sorted integer positions (rows of the target) of the support set.
    query
        Sorted integer positions of the query set: every other row of the evaluated classes.
    """

    k: int
    episode: int
    seed: int
    classes: tuple[str, ...]
    support: np.ndarray
    query: np.ndarray


def episode_seed(seed: int, k: int, episode: int) -> int:
    """Seed of episode ``episode`` at ``k``, derived reproducibly from the benchmark's ``seed``.

    It depends only on ``(seed, k, episode)``, so an episode is the same whichever other ``k``
    values or how many episodes a run asks for.
    """
    return int(np.random.SeedSequence([int(seed), int(k), int(episode)]).generate_state(1)[0])


def check_k_shots(k_shots: Sequence[int] | int) -> tuple[int, ...]:
    """Validate ``k_shots``: a non-empty collection of integers >= 1, returned sorted, unique."""
    if isinstance(k_shots, int | np.integer):
        k_shots = (int(k_shots),)
    k_shots = tuple(k_shots)
    if len(k_shots) == 0:
        raise ValueError("k_shots is empty; give at least one k, e.g. k_shots=(1, 5).")
    for k in k_shots:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k_shots contains {k!r}; every k must be an integer >= 1.")
    return tuple(sorted({int(k) for k in k_shots}))


def check_n_episodes(n_episodes: int) -> int:
    """Validate ``n_episodes``: an integer >= 1."""
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int | np.integer):
        raise ValueError(f"n_episodes={n_episodes!r} is not valid; it must be an integer >= 1.")
    if n_episodes < 1:
        raise ValueError(f"n_episodes={n_episodes!r} is not valid; it must be an integer >= 1.")
    return int(n_episodes)


def evaluable_classes(
    labels: pd.Categorical, k: int, *, labels_key: str = "labels"
) -> tuple[str, ...]:
    """Classes with at least ``k + 1`` samples (``k`` to learn from, one or more to test on).

    Warns, naming them, when classes have to be left out at this ``k``.
    """
    counts = pd.Series(labels).value_counts()
    keep = counts.index[counts >= k + 1]
    dropped = counts[counts < k + 1]
    if not dropped.empty:
        warnings.warn(
            f"k={k}: classes of obs[{labels_key!r}] with fewer than {k + 1} samples cannot be "
            f"evaluated and are left out at this k: {dropped.to_dict()}.",
            UserWarning,
            stacklevel=3,
        )
    return tuple(sorted(str(c) for c in keep))


def make_episodes(
    labels: pd.Categorical | pd.Series | np.ndarray,
    *,
    k_shots: Sequence[int] | int,
    n_episodes: int,
    seed: int = 0,
    labels_key: str = "labels",
) -> list[Episode]:
    """Build the seeded episodes of a few-shot benchmark.

    For each ``k`` and episode, ``k`` samples of every evaluable class form the support set and
    every other sample of those classes the query set. A ``k`` at which fewer than two classes
    are evaluable is skipped with a warning.

    Parameters
    ----------
    labels
        One label per row of the target.
    k_shots
        Support samples per class to evaluate.
    n_episodes
        Episodes per ``k``.
    seed
        Benchmark seed; each episode's seed is :func:`episode_seed` ``(seed, k, episode)``.
    labels_key
        Name of the labels, for messages.

    Returns
    -------
    The episodes, ordered by ``k`` then episode.
    """
    k_shots = check_k_shots(k_shots)
    n_episodes = check_n_episodes(n_episodes)
    labels = pd.Categorical(pd.Series(labels).astype(str).to_numpy())
    episodes: list[Episode] = []
    for k in k_shots:
        classes = evaluable_classes(labels, k, labels_key=labels_key)
        if len(classes) < 2:
            warnings.warn(
                f"k={k} is skipped: fewer than two classes of obs[{labels_key!r}] have "
                f"{k + 1} or more samples.",
                UserWarning,
                stacklevel=2,
            )
            continue
        rows = np.flatnonzero(np.isin(np.asarray(labels), classes))
        sub = pd.Categorical(np.asarray(labels)[rows], categories=list(classes))
        for e in range(n_episodes):
            s = episode_seed(seed, k, e)
            picked = rows[sample_k_shot(sub, k, seed=s, labels_key=labels_key)]
            support = np.sort(picked)
            query = np.setdiff1d(rows, support, assume_unique=True)
            episodes.append(Episode(k, e, s, classes, support, query))
    if not episodes:
        raise ValueError(
            f"No k in {list(k_shots)} can be evaluated: fewer than two classes of "
            f"obs[{labels_key!r}] have more than k samples. Class sizes: "
            f"{pd.Series(labels).value_counts().to_dict()}."
        )
    return episodes
