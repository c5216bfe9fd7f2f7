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
from scgtl.benchmark._episodes import check_k_shots, check_n_episodes, make_episodes
from scgtl.benchmark._methods import (
    FewShotTask,
    TargetData,
    check_baseline_genes,
    probabilities,
    resolve_methods,
)
from scgtl.benchmark._result import FewShotResult
from scgtl.data import align_genes, check_labels, check_units_name

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Literal

    from anndata import AnnData

    from scgtl.benchmark._episodes import Episode
    from scgtl.benchmark._methods import Method

#: Loggers that announce every Lightning ``Trainer`` a fine-tuning may create.
_NOISY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "scvi")


def score(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Balanced accuracy, macro F1 and (two classes) AUROC of class probabilities."""
    classes = list(classes)
    y_pred = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    scores = {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)
        ),
    }
    if len(classes) == 2:
        positive = np.asarray(y_true) == classes[1]
        scores["auroc"] = (
            float(roc_auc_score(positive, proba[:, 1]))
            if 0 < positive.sum() < positive.size
            else np.nan
        )
    return scores


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the per-fit gene-overlap warnings and Lightning's banners inside the loop."""
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


def _run_episode(episode: Episode, methods: list[Method], data: TargetData, advance) -> list[dict]:
    tasks = {genes: FewShotTask(episode, data, genes=genes) for genes in ("model", "target")}
    y_query = data.labels[episode.query]
    rows = []
    for method in methods:
        task = tasks[data.genes_for(method)]
        start = time.perf_counter()
        raw = method.fit_predict_proba(task, seed=episode.seed)
        seconds = time.perf_counter() - start
        proba = probabilities(raw, episode.classes, n_query=episode.query.size, name=method.name)
        rows.append(
            {
                "method": method.name,
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
        advance(f"k={episode.k} episode {episode.episode + 1} · {method.name}")
    return rows


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
    reference: str = "gtl",
    n_threads: int | None = 1,
    progress: bool | None = None,
    baseline_genes: Literal["model", "target"] = "model",
) -> FewShotResult:
    """Compare guided fine-tuning with simple baselines on seeded few-shot episodes.

    For every ``k`` in ``k_shots`` and each of ``n_episodes`` episodes, ``k`` samples of each
    class of ``target.obs[labels_key]`` form the support set and every other sample the query
    set; every method learns from the same support set and is scored on the same query set,
    with the same log-normalisation (the model's own input transform), by default over the same
    genes (the model's; see ``baseline_genes``).

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
        :data:`scgtl.benchmark.DEFAULT_METHODS`, ``("gtl", "finetune", "scratch", "logreg",
        "pca_logreg", "pca_knn")``; only the last three when ``model`` is ``None``. The
        transductive baselines ``"pca_label_spreading"`` and ``"pca_self_training"`` (fit on
        every row of the target, only the support labelled) run when named.
    layer
        Layer of ``target`` with the expression (default ``.X``).
    units
        Units of that expression (``"counts"``, ``"normalized"``, ``"log1p"``); default: the
        model's units. Required when ``model`` is ``None``.
    reference
        The method compared with each other one (paired differences, verdicts); when the
        default ``"gtl"`` does not run, the first method.
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
        the model). ``"model"`` (default): the model's genes, those missing from the target
        zero-filled, as the network sees them. ``"target"``: all of the target's own genes, what
        a user without the model would fit on; the fine-tuning methods still read the model's
        genes. The same when ``model`` is ``None`` or has exactly the target's genes.
        Recorded in ``settings["baseline_genes"]`` and ``settings["n_genes_baselines"]``.

    Returns
    -------
    The per-episode scores and their statistics; see :class:`scgtl.benchmark.FewShotResult`.

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
    names = [m.name for m in methods]
    if reference not in names:
        if reference != "gtl":
            raise ValueError(f"reference={reference!r} is not one of the methods {names}.")
        reference = names[0]

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
    with (
        global_settings.threads(n_threads),
        progress_bar(
            len(episodes) * len(methods), "few-shot benchmark", enabled=progress_enabled(progress)
        ) as advance,
        _quiet(),
    ):
        for method in methods:
            method.prepare(data)
        for episode in episodes:
            rows.extend(_run_episode(episode, methods, data, advance))
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
        "classes_left_out": left_out,
        "wall_seconds": wall,
        "n_threads": n_threads,
    }
    return FewShotResult(table=table, reference=reference, settings=settings, episodes=episodes)
