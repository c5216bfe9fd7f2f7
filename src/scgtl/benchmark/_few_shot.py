"""The few-shot benchmark loop."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from scgtl._progress import progress_bar, progress_enabled
from scgtl._settings import settings as global_settings
from scgtl.benchmark._builtin import resolve_methods
from scgtl.benchmark._episodes import check_k_shots, check_n_episodes, make_episodes
from scgtl.benchmark._methods import (
    FewShotTask,
    TargetData,
    check_baseline_genes,
    probabilities,
    regime_of,
)
from scgtl.benchmark._result import FewShotResult
from scgtl.benchmark._stats import (
    CALIBRATION_COLUMNS,
    calibration_bins,
    expected_calibration_error,
)
from scgtl.data import align_genes
from scgtl.data._sampling import check_labels
from scgtl.data._units import check_units_name

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Literal

    from anndata import AnnData

    from scgtl.benchmark._episodes import Episode
    from scgtl.benchmark._methods import Method

#: Loggers that announce every Lightning ``Trainer`` a fine-tuning may create.
_NOISY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "scvi")

#: The default inductive reference of :func:`few_shot`.
DEFAULT_REFERENCE = "gtl"

#: The transductive reference :func:`few_shot` picks first when it runs.
DEFAULT_TRANSDUCTIVE_REFERENCE = "gtl_transductive"


def score(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Balanced accuracy, macro F1, ECE and (two classes) AUROC of class probabilities.

    ``ece`` is the expected calibration error of the largest probability as the confidence of
    the argmax (:func:`~scgtl.benchmark._stats.expected_calibration_error`, 15 equal-width
    bins); lower is better calibrated.
    """
    classes = list(classes)
    y_pred, confidence, correct = _predicted(y_true, proba, classes)
    scores = {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)
        ),
        "ece": expected_calibration_error(confidence, correct),
    }
    if len(classes) == 2:
        positive = np.asarray(y_true) == classes[1]
        scores["auroc"] = (
            float(roc_auc_score(positive, proba[:, 1]))
            if 0 < positive.sum() < positive.size
            else np.nan
        )
    return scores


def _predicted(
    y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The argmax class of each row, its probability (the confidence) and whether it is right."""
    y_pred = np.asarray(list(classes), dtype=object)[proba.argmax(axis=1)]
    return y_pred, proba.max(axis=1), y_pred == np.asarray(y_true)


def calibration_rows(
    y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], **keys
) -> list[dict]:
    """One row per confidence bin of the ECE (:func:`~scgtl.benchmark._stats.calibration_bins`).

    ``keys`` (method, regime, k, episode) start every row; then ``bin``, ``n_cells``,
    ``confidence_sum`` and ``n_correct``.
    """
    _, confidence, correct = _predicted(y_true, proba, classes)
    sums = zip(*calibration_bins(confidence, correct), strict=True)
    return [
        {**keys, "bin": b, "n_cells": int(n), "confidence_sum": float(c), "n_correct": int(r)}
        for b, (n, c, r) in enumerate(sums)
    ]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the per-fit warnings and Lightning's banners, as the benchmark's loops do.

    Inside the context, each fit's gene-overlap warning ("Aligned query genes"), Lightning's
    data-loader and GPU notices are ignored and Lightning's loggers show warnings only; both
    are restored on exit. For a custom loop over :class:`FewShotTask` fits, whose warnings
    would otherwise repeat once per episode.

    Yields
    ------
    None
        The body runs with those messages silenced.

    Examples
    --------
    >>> with scgtl.benchmark.quiet():  # doctest: +SKIP
    ...     clf = method.fit(task, seed=0)
    """
    levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Aligned query genes", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available.*")
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def _check_target(target: AnnData, labels_key: str) -> np.ndarray:
    if labels_key not in target.obs.columns:
        raise KeyError(
            f"labels_key={labels_key!r} is not a column of target.obs; available: "
            f"{list(target.obs.columns)}."
        )
    return np.asarray(check_labels(target.obs[labels_key], labels_key=labels_key)).astype(str)


def _run_episode(
    episode: Episode, methods: list[Method], data: TargetData, advance
) -> tuple[list[dict], list[dict]]:
    """The scores of every method on one episode, and their calibration bins."""
    tasks = {genes: FewShotTask(episode, data, genes=genes) for genes in ("model", "target")}
    y_query = data.labels[episode.query]
    rows, bins = [], []
    for method in methods:
        task = tasks[data.genes_for(method)]
        start = time.perf_counter()
        raw = method.fit_predict_proba(task, seed=episode.seed)
        seconds = time.perf_counter() - start
        proba = probabilities(raw, episode.classes, n_query=episode.query.size, name=method.name)
        rows.append(
            {
                "method": method.name,
                "regime": regime_of(method),
                "k": episode.k,
                "episode": episode.episode,
                "seed": episode.seed,
                "n_classes": len(episode.classes),
                "n_support": episode.support.size,
                "n_query": episode.query.size,
                **score(y_query, proba, episode.classes),
                "fit_seconds": seconds,
            }
        )
        bins += calibration_rows(
            y_query, proba, episode.classes, method=method.name, regime=regime_of(method),
            k=episode.k, episode=episode.episode,
        )  # fmt: skip
        advance(f"k={episode.k} episode {episode.episode + 1} · {method.name}")
    return rows, bins


def _a(regime: str) -> str:
    """``regime`` with its indefinite article: "an inductive", "a transductive"."""
    return f"an {regime}" if regime[0] in "aeiou" else f"a {regime}"


def resolve_references(
    methods: Sequence[Method], reference: str | None, transductive_reference: str | None
) -> tuple[str | None, str | None]:
    """The reference of each regime among ``methods``: ``(inductive, transductive)``.

    ``reference`` must be an inductive method that runs; the default, ``"gtl"``, falls back to
    the first inductive method that needs the model when it does not run, else to none.
    ``transductive_reference`` must be a transductive method that runs; ``None`` picks
    ``"gtl_transductive"`` if it runs, else the first transductive method that needs the model,
    else none. A regime without a reference is reported without paired differences or verdicts.
    """
    by_name = {m.name: m for m in methods}
    names = list(by_name)

    def first_network(transductive: bool) -> str | None:
        return next(
            (m.name for m in methods if m.needs_model and bool(m.transductive) == transductive),
            None,
        )

    def check(value: str, argument: str, transductive: bool) -> str:
        if value not in by_name:
            raise ValueError(f"{argument}={value!r} is not one of the methods {names}.")
        if bool(by_name[value].transductive) != transductive:
            actual = regime_of(by_name[value])
            other = "transductive_reference" if actual == "transductive" else "reference"
            raise ValueError(
                f"{argument}={value!r} is {_a(actual)} method, and each regime is compared "
                f"with a reference of its own regime; give it as {other}={value!r}."
            )
        return value

    if reference is None:
        inductive = None
    elif reference == DEFAULT_REFERENCE and reference not in by_name:
        inductive = first_network(transductive=False)
    else:
        inductive = check(reference, "reference", transductive=False)
    if transductive_reference is not None:
        transductive = check(transductive_reference, "transductive_reference", transductive=True)
    elif getattr(by_name.get(DEFAULT_TRANSDUCTIVE_REFERENCE), "transductive", False):
        transductive = DEFAULT_TRANSDUCTIVE_REFERENCE
    else:
        transductive = first_network(transductive=True)
    return inductive, transductive


def few_shot(
    model,
    target: AnnData,
    *,
    labels_key: str,
    k_shots: Sequence[int] | int = (1, 3, 5, 10),
    n_episodes: int = 20,
    seed: int = 0,
    methods: Sequence[str | Method] | None = None,
    layer: str | None = None,
    units: str | None = None,
    reference: str | None = DEFAULT_REFERENCE,
    transductive_reference: str | None = None,
    n_threads: int | None = 1,
    progress: bool | None = None,
    baseline_genes: Literal["model", "target"] = "target",
) -> FewShotResult:
    """Compare guided fine-tuning with simple baselines on seeded few-shot episodes.

    For every ``k`` in ``k_shots`` and each of ``n_episodes`` episodes, ``k`` samples of each
    class of ``target.obs[labels_key]`` form the support set and every other sample the query
    set; every method learns from the same support set and is scored on the same query set,
    with the same log-normalisation (the model's own input transform). The fine-tuning methods
    read the model's genes; by default the baselines read all of the target's own genes, what a
    user without the model would fit on (see ``baseline_genes``).

    Methods fall into two regimes (:attr:`scgtl.benchmark.Method.transductive`). Inductive
    methods learn from the support set alone; transductive ones also read the expression of the
    target's unlabelled rows, query rows included (never their labels), e.g. the PCA baselines,
    whose PCA is fit on every row. Each regime has its own reference (``reference``,
    ``transductive_reference``), compared only with the methods of that regime.

    Parameters
    ----------
    model
        A pre-trained :class:`scgtl.GTL`, or ``None`` to run the baselines alone on the
        target's own genes.
    target
        The labelled target data; it is not modified.
    labels_key
        Column of ``target.obs`` with the classes.
    k_shots
        Support samples per class. Classes with fewer than ``k + 1`` samples are left out at
        that ``k`` (with a warning); a ``k`` with fewer than two classes left is skipped.
    n_episodes
        Episodes per ``k``.
    seed
        Seed of the whole benchmark; episode ``e`` at ``k`` uses a seed derived from
        ``(seed, k, e)`` (see :func:`scgtl.benchmark.episode_seed`).
    methods
        Method names and/or :class:`scgtl.benchmark.Method` instances. Default:
        :data:`scgtl.benchmark.DEFAULT_METHODS`: ``gtl`` (inductive) and ``gtl_transductive``
        (``fine_tune(transductive=True)``), the ``finetune`` and ``scratch`` ablations,
        ``logreg``, the four PCA baselines (``pca_logreg``, ``pca_knn``,
        ``pca_label_spreading``, ``pca_self_training``: transductive) and ``celltypist``
        (where it can run; otherwise left out with a warning); only the baselines when
        ``model`` is ``None``.
    layer
        Layer of ``target`` with the expression (default ``.X``).
    units
        Units of that expression (``"counts"``, ``"normalized"``, ``"log1p"``); default: the
        model's units. Required when ``model`` is ``None``.
    reference
        The inductive reference: the inductive method compared with each other inductive method
        (paired differences, verdicts). When the default ``"gtl"`` does not run, the first
        inductive method that needs the model, else none (e.g. baselines only: the inductive
        table is reported without differences or verdicts). ``None``: no inductive reference.
        A name that does not run, or a transductive method, is an error.
    transductive_reference
        The transductive reference, compared with each other transductive method. ``None``
        (default): ``"gtl_transductive"`` if a method of that name runs, else the first
        transductive method that needs the model (e.g.
        ``FineTuneMethod("gtl_adapted", adapt={})``), else none. A name that does not run, or
        an inductive method, is an error.
    n_threads
        Threads of torch and of the BLAS/OpenMP libraries during the fits (as
        :attr:`scgtl.settings.n_threads`, restored afterwards). The few-shot fits are small, and
        on a shared machine several threads per fit mostly wait for each other; ``None`` leaves
        the thread settings alone.
    progress
        Show a progress bar (on stderr); default :attr:`scgtl.settings.progress_bar`.
    baseline_genes
        The genes of the baselines, every method that does not read the model's genes
        (:attr:`scgtl.benchmark.Method.reads_model_genes`: by default those that do not need
        the model). ``"target"`` (default): all of the target's own genes, what a user without
        the model would fit on; the fine-tuning methods still read the model's genes.
        ``"model"``: the model's genes, those missing from the target zero-filled, as the
        network sees them (every method on the same genes). The same when ``model`` is
        ``None`` or has exactly the target's genes. Recorded in ``settings["baseline_genes"]``
        and ``settings["n_genes_baselines"]``.

    Returns
    -------
    The per-episode scores (with each method's ``regime``), the confidence bins of every
    method and episode (:attr:`~scgtl.benchmark.FewShotResult.calibration`, for reliability
    diagrams) and their statistics; see :class:`scgtl.benchmark.FewShotResult`.

    Examples
    --------
    >>> res = scgtl.benchmark.few_shot(model, target, labels_key="cell_type", k_shots=(1, 5))
    >>> res.summary()
    >>> res.plot()
    """
    k_shots = check_k_shots(k_shots)
    n_episodes = check_n_episodes(n_episodes)
    baseline_genes = check_baseline_genes(baseline_genes)
    labels = _check_target(target, labels_key)
    methods = resolve_methods(methods, has_model=model is not None)
    if units is None:
        if model is None:
            raise ValueError("units= is required when model is None.")
        units = model.units
    check_units_name(units)
    genes = target.var_names if model is None else model.gene_names
    alignment = align_genes(target.var_names, genes)
    data = TargetData(
        adata=target,
        labels=labels,
        labels_key=labels_key,
        layer=layer,
        units=units,
        alignment=alignment,
        model=model,
        baseline_genes=baseline_genes,
    )
    reference, transductive_reference = resolve_references(
        methods, reference, transductive_reference
    )

    start = time.perf_counter()
    episodes = make_episodes(
        labels, k_shots=k_shots, n_episodes=n_episodes, seed=seed, labels_key=labels_key
    )
    left_out = {}
    all_classes = sorted(str(c) for c in set(labels))
    for k in k_shots:
        classes = next((e.classes for e in episodes if e.k == k), None)
        if classes is not None and len(classes) < len(all_classes):
            left_out[k] = [str(c) for c in sorted(set(all_classes) - set(classes))]

    rows: list[dict] = []
    bins: list[dict] = []
    with (
        global_settings.threads(n_threads),
        progress_bar(
            len(episodes) * len(methods), "few-shot benchmark", enabled=progress_enabled(progress)
        ) as advance,
        quiet(),
    ):
        for method in methods:
            method.prepare(data)
        for episode in episodes:
            scores, calibration = _run_episode(episode, methods, data, advance)
            rows += scores
            bins += calibration
    wall = time.perf_counter() - start

    table = pd.DataFrame(rows)
    settings = {
        "labels_key": labels_key,
        "k_shots": [k for k in k_shots if any(e.k == k for e in episodes)],
        "n_episodes": n_episodes,
        "seed": seed,
        "n_obs": target.n_obs,
        "n_classes": len(all_classes),
        "n_genes": len(genes),
        "n_genes_shared": alignment.n_overlap,
        "baseline_genes": baseline_genes,
        "n_genes_baselines": data.n_genes(baseline_genes),
        "units": units,
        "layer": layer,
        "methods": {m.name: m.description for m in methods},
        "regimes": {m.name: regime_of(m) for m in methods},
        "classes_left_out": left_out,
        "wall_seconds": wall,
        "n_threads": n_threads,
    }
    return FewShotResult(
        table=table,
        reference=reference,
        transductive_reference=transductive_reference,
        settings=settings,
        episodes=episodes,
        calibration=pd.DataFrame(bins, columns=list(CALIBRATION_COLUMNS)),
    )
