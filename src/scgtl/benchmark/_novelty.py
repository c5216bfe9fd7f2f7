"""The novelty protocol: a class left out of the support, and how the query's cells of it fare.

A user labels a few cells of the types they know; the study holds others. In each episode of
:func:`novelty` one class is left out of the support set, GTL is fine-tuned on the others, and
the query (every other row, the left-out class's included) is scored: does the novelty score
rank the left-out class's cells above the known classes' (AUROC), how accurate the known
classes stay with ``predict(unknown="auto")``, and what fraction of the left-out cells is
called ``"unknown"``. Logistic regression on PCA, the benchmark's ``pca_logreg`` baseline, is
scored the same way with ``1 - max probability`` as its novelty.
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from scgtl._progress import progress_bar, progress_enabled
from scgtl._settings import settings as global_settings
from scgtl.benchmark._builtin import builtin_methods
from scgtl.benchmark._episodes import Episode, check_n_episodes, make_episodes
from scgtl.benchmark._few_shot import _check_target, quiet
from scgtl.benchmark._methods import FewShotTask, TargetData
from scgtl.benchmark._stats import conformal_quantile, expected_calibration_error
from scgtl.data import align_genes
from scgtl.data._units import check_units_name

if TYPE_CHECKING:
    from anndata import AnnData

#: The methods :func:`novelty` scores.
NOVELTY_METHODS: tuple[str, ...] = ("gtl", "gtl_transductive", "pca_logreg")

#: Label of the cells called novel, as :meth:`scgtl.GTLClassifier.predict` writes it.
UNKNOWN = "unknown"

#: Level of the baseline's conformal threshold: the level ``predict(unknown="auto")`` uses.
BASELINE_UNKNOWN_LEVEL = 0.95

#: Columns of the table :func:`novelty` returns, in order.
NOVELTY_COLUMNS: tuple[str, ...] = (
    "method", "episode", "seed", "left_out", "k", "n_known_classes", "n_support",
    "n_query_known", "n_query_novel", "auroc", "balanced_accuracy",
    "balanced_accuracy_unknown", "known_unknown_fraction", "novel_unknown_fraction",
    "threshold", "ece", "fit_seconds",
)  # fmt: skip


def left_out_episodes(episodes: list[Episode], labels: np.ndarray) -> list[tuple[Episode, str]]:
    """Each episode with one class left out of its support: class ``episode % n_classes``.

    The classes are taken in sorted order, so ``n_episodes`` a multiple of the number of
    classes leaves each class out equally often. The support keeps the other classes' ``k``
    cells; the query is every other row of the evaluable classes, the left-out class's support
    draw included (those cells are new to the classifier). These are the episodes of
    :func:`novelty`, for a custom loop over the same fits.

    Parameters
    ----------
    episodes
        Episodes of :func:`make_episodes` on ``labels``.
    labels
        The target's labels, one string per row.

    Returns
    -------
    ``(episode, left_out)`` pairs: the episode without the left-out class in its support or
    its classes, and the name of that class.
    """
    out = []
    for episode in episodes:
        left = episode.classes[episode.episode % len(episode.classes)]
        support = episode.support[labels[episode.support] != left]
        rows = np.flatnonzero(np.isin(labels, episode.classes))
        query = np.setdiff1d(rows, support, assume_unique=True)
        known = tuple(c for c in episode.classes if c != left)
        out.append((Episode(episode.k, episode.episode, episode.seed, known, support, query), left))
    return out


def _scores(
    y_query: np.ndarray,
    novel: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    novelty_score: np.ndarray,
    threshold: float,
) -> dict[str, float]:
    """The figures of one method in one episode (see :func:`novelty`)."""
    known = ~novel
    flagged = novelty_score > threshold
    with_unknown = np.where(flagged, UNKNOWN, predicted)
    with warnings.catch_warnings():
        # "unknown" is predicted but never true: balanced accuracy averages the recall of the
        # true classes, which is what is meant; scikit-learn warns about the extra class.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        accuracy_unknown = balanced_accuracy_score(y_query[known], with_unknown[known])
    return {
        "auroc": float(roc_auc_score(novel, novelty_score)),
        "balanced_accuracy": float(balanced_accuracy_score(y_query[known], predicted[known])),
        "balanced_accuracy_unknown": float(accuracy_unknown),
        "known_unknown_fraction": float(flagged[known].mean()),
        "novel_unknown_fraction": float(flagged[novel].mean()),
        "threshold": float(threshold),
        "ece": expected_calibration_error(confidence[known], predicted[known] == y_query[known]),
    }


def _gtl(
    task: FewShotTask, *, seed: int, method: str = "gtl"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """GTL's prediction, confidence and novelty of the query rows, and its "auto" threshold.

    ``method`` is the benchmark's ``"gtl"`` (the support alone) or ``"gtl_transductive"``
    (``fine_tune``'s default: the study's other rows read too).
    """
    classifier = builtin_methods()[method].fit(task, seed=seed)
    study = task.data.unlabelled()
    # "auto" calibrates on held-out support cells: none at k = 1.
    unknown = "auto" if task.episode.k >= 2 else np.inf
    classifier.predict(study, layer=task.data.layer, unknown=unknown, key_added="novelty")
    query = task.query_indices
    obs = study.obs.iloc[query]
    # The argmax class, also for cells called unknown: the "without unknown" figures need it.
    proba = study.obsm["novelty_proba"].to_numpy()[query]
    predicted = np.asarray(classifier.classes_, dtype=object)[proba.argmax(1)]
    threshold = study.uns["novelty"]["unknown_threshold"]
    return (
        predicted,
        obs["novelty_confidence"].to_numpy(),
        obs["novelty_novelty"].to_numpy(),
        threshold,
    )


def _pca_logreg(task: FewShotTask, *, seed: int):
    """``pca_logreg``'s prediction, confidence and ``1 - max p`` of the query rows, and a threshold.

    The threshold is calibrated as GTL's "auto": the conformal quantile of out-of-fold support
    scores.
    """
    x, y = task.X_pca_support, task.y_support
    regression = LogisticRegression(max_iter=1000).fit(x, y)
    proba = regression.predict_proba(task.X_pca_query)
    predicted = regression.classes_[proba.argmax(1)].astype(object)
    n_folds = min(int(pd.Series(y).value_counts().min()), 5)
    if n_folds < 2:
        threshold = np.inf
    else:
        held_out = np.zeros(len(y))
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed % 2**32)
        for train, test in folds.split(x, y):
            fold = LogisticRegression(max_iter=1000).fit(x[train], y[train])
            held_out[test] = 1 - fold.predict_proba(x[test]).max(1)
        threshold = conformal_quantile(held_out, BASELINE_UNKNOWN_LEVEL)
    confidence = proba.max(1)
    return predicted, confidence, 1 - confidence, threshold


def novelty(
    model,
    target: AnnData,
    *,
    labels_key: str,
    k_shot: int = 5,
    n_episodes: int = 20,
    seed: int = 0,
    layer: str | None = None,
    units: str | None = None,
    n_threads: int | None = 1,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Novel-type detection with one class left out of the support, GTL beside ``pca_logreg``.

    The episodes are :func:`scgtl.benchmark.few_shot`'s at ``k = k_shot`` with the same seed;
    episode ``e`` leaves out class ``e % n_classes`` (classes sorted), so ``n_episodes`` a
    multiple of the number of classes leaves each out equally often. Each method learns from
    the other classes' ``k_shot`` cells and scores every other row (the query):

    ``gtl``
        ``model.fine_tune(transductive=False)`` (the benchmark's ``gtl``: the support alone),
        then ``predict(unknown="auto")``: the
        novelty score ``obs["*_novelty"]`` and the threshold calibrated on the support.
    ``gtl_transductive``
        The same with ``fine_tune``'s default, which also reads the study's other rows (the
        benchmark's ``gtl_transductive``; the model is adapted to the target once).
    ``pca_logreg``
        Logistic regression on 50 principal components of all of the target's own genes (the
        benchmark's baseline; the PCA is fit on every row, so it is transductive), novelty
        ``1 - max probability``; its "auto" threshold is the same conformal quantile (level
        0.95) of the support cells' out-of-fold scores (up to 5 stratified folds).

    Parameters
    ----------
    model
        A pre-trained :class:`scgtl.GTL`.
    target
        The labelled target; it is not modified.
    labels_key
        Column of ``target.obs`` with the classes.
    k_shot
        Support cells per known class. Classes with fewer than ``k_shot + 1`` cells are left
        out of the episodes (with a warning).
    n_episodes
        Episodes (each leaves one class out).
    seed
        Seed of the episodes (as :func:`scgtl.benchmark.few_shot`'s).
    layer, units
        Where the expression is and its units (default: the model's units).
    n_threads
        Threads during the fits (see :func:`scgtl.benchmark.few_shot`).
    progress
        Show a progress bar; default :attr:`scgtl.settings.progress_bar`.

    Returns
    -------
    One row per method and episode, columns :data:`NOVELTY_COLUMNS`:

    ``method``, ``episode``, ``seed``, ``left_out`` (the class left out), ``k``,
    ``n_known_classes``, ``n_support``, ``n_query_known``, ``n_query_novel``
        What the episode was.
    ``auroc``
        AUROC of the novelty score, left-out class's cells (positive) against the known
        classes' query cells.
    ``balanced_accuracy``
        On the known classes' query cells, every cell given a known class (no ``unknown``).
    ``balanced_accuracy_unknown``
        The same with the "auto" threshold: a known cell called unknown counts as wrong.
    ``known_unknown_fraction``, ``novel_unknown_fraction``
        Fractions of the known classes' and of the left-out class's query cells called unknown.
    ``threshold``
        The "auto" novelty threshold of the episode.
    ``ece``
        Expected calibration error (15 equal-width bins) of the confidence on the known
        classes' query cells.
    ``fit_seconds``
        Fitting and predicting.
    """
    if model is None:
        raise ValueError("novelty() needs a pre-trained model; model=None was given.")
    n_episodes = check_n_episodes(n_episodes)
    labels = _check_target(target, labels_key)
    units = model.units if units is None else units
    check_units_name(units)
    data = TargetData(
        adata=target,
        labels=labels,
        labels_key=labels_key,
        layer=layer,
        units=units,
        alignment=align_genes(target.var_names, model.gene_names),
        model=model,
        baseline_genes="target",
    )
    episodes = make_episodes(
        labels, k_shots=k_shot, n_episodes=n_episodes, seed=seed, labels_key=labels_key
    )
    fits = {
        "gtl": (_gtl, "model"),
        "gtl_transductive": (functools.partial(_gtl, method="gtl_transductive"), "model"),
        "pca_logreg": (_pca_logreg, "target"),
    }
    rows = []
    with (
        global_settings.threads(n_threads),
        progress_bar(
            len(episodes) * len(fits), "novelty benchmark", enabled=progress_enabled(progress)
        ) as advance,
        quiet(),
    ):
        for episode, left in left_out_episodes(episodes, labels):
            y_query = labels[episode.query].astype(object)
            novel = y_query == left
            for name, (fit, genes) in fits.items():
                start = time.perf_counter()
                outputs = fit(FewShotTask(episode, data, genes=genes), seed=episode.seed)
                seconds = time.perf_counter() - start
                rows.append(
                    {
                        "method": name,
                        "episode": episode.episode,
                        "seed": episode.seed,
                        "left_out": left,
                        "k": episode.k,
                        "n_known_classes": len(episode.classes),
                        "n_support": episode.support.size,
                        "n_query_known": int((~novel).sum()),
                        "n_query_novel": int(novel.sum()),
                        **_scores(y_query, novel, *outputs),
                        "fit_seconds": seconds,
                    }
                )
                advance(f"episode {episode.episode + 1} · {name} · {left} left out")
    return pd.DataFrame(rows, columns=list(NOVELTY_COLUMNS))


def summarize_novelty(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's figures averaged over left-out classes (each class's episodes first).

    Returns
    -------
    One row per method: ``n_episodes``, ``n_left_out_classes`` and the mean of ``auroc``,
    ``balanced_accuracy``, ``balanced_accuracy_unknown``, ``known_unknown_fraction``,
    ``novel_unknown_fraction`` and ``ece``.
    """
    figures = [
        "auroc",
        "balanced_accuracy",
        "balanced_accuracy_unknown",
        "known_unknown_fraction",
        "novel_unknown_fraction",
        "ece",
    ]
    per_class = table.groupby(["method", "left_out"], sort=False)[figures].mean()
    summary = per_class.groupby(level="method", sort=False).mean()
    summary.insert(0, "n_left_out_classes", per_class.groupby(level="method").size())
    summary.insert(0, "n_episodes", table.groupby("method", sort=False).size())
    return summary.reset_index()
