"""The embedded default: scanpy's ``pbmc68k_reduced``, no files needed.

The main job (:func:`run_default`, ``scgtl benchmark`` without arguments) starts from the shipped
model (:mod:`scgtl.models`, no pre-training) and benchmarks it on all 700 cells and 10
``bulk_labels`` of the study, which is in no corpus of it.

The developer target of the same name (:func:`default_task`, :func:`pretrain_default`) splits
the cells by type instead: a model is pre-trained on six types and scored on the four held-out
ones, which it never saw. The held-out types are the four with at least 31 cells that are not
needed as pre-training material, so every held-out class keeps at least 21 query cells at
``k=10``; the tiny classes (8, 13, 19 cells) stay in pre-training, where scouts only need 5 per
class.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from anndata import AnnData

if TYPE_CHECKING:
    from collections.abc import Sequence

    from scgtl.benchmark._methods import Method
    from scgtl.benchmark._result import FewShotResult

#: Which ``bulk_labels`` of ``pbmc68k_reduced`` pre-train the model and which are held out.
DEFAULT_SPLIT: dict[str, tuple[str, ...]] = {
    "pretrain": (
        "Dendritic",
        "CD4+/CD25 T Reg",
        "CD8+/CD45RA+ Naive Cytotoxic",
        "CD4+/CD45RO+ Memory",
        "CD34+",
        "CD4+/CD45RA+/CD25- Naive T",
    ),
    "held_out": ("CD14+ Monocyte", "CD19+ B", "CD8+ Cytotoxic T", "CD56+ NK"),
}

#: ``obs`` column of the labels in the embedded default.
DEFAULT_LABELS_KEY = "bulk_labels"

#: Pre-training settings of the embedded default (small: it must run in minutes on 2 cores).
DEFAULT_TRAIN_KWARGS: dict = {"max_epochs": 60, "batch_size": 128}


def embedded_study() -> AnnData:
    """The study of the main job: every cell of ``pbmc68k_reduced`` with its ``bulk_labels``.

    Returns
    -------
    700 cells x 765 genes of log-normalised values (its ``.raw``, ``units="log1p"``), with
    ``obs["bulk_labels"]`` (10 types).
    """
    from scgtl.datasets import pbmc68k_reduced

    adata = pbmc68k_reduced(use_raw=True)
    return AnnData(X=adata.X, obs=adata.obs[[DEFAULT_LABELS_KEY]].copy(), var=adata.var.copy())


def default_task() -> tuple[AnnData, AnnData]:
    """The corpus and the target of the embedded default.

    Returns
    -------
    ``(corpus, target)``: the log-normalised values of ``pbmc68k_reduced`` (its ``.raw``, 765
    genes, ``units="log1p"``), the cells of the pre-training types and of the held-out types,
    with their ``obs["bulk_labels"]`` (unused categories removed).
    """
    from scgtl.datasets import pbmc68k_reduced

    adata = pbmc68k_reduced(use_raw=True)
    labels = adata.obs[DEFAULT_LABELS_KEY].astype(str)
    adata = AnnData(X=adata.X, obs=adata.obs[[DEFAULT_LABELS_KEY]].copy(), var=adata.var.copy())
    parts = []
    for part in ("pretrain", "held_out"):
        mask = labels.isin(DEFAULT_SPLIT[part]).to_numpy()
        sub = adata[mask].copy()
        sub.obs[DEFAULT_LABELS_KEY] = sub.obs[DEFAULT_LABELS_KEY].astype(str).astype("category")
        parts.append(sub)
    return parts[0], parts[1]


def pretrain_default(
    corpus: AnnData,
    *,
    seed: int = 0,
    train_kwargs: dict | None = None,
    model_kwargs: dict | None = None,
    progress: bool | None = None,
):
    """Pre-train a :class:`scgtl.GTL` on the embedded default's corpus (labelled, log1p).

    Parameters
    ----------
    corpus
        The corpus of :func:`default_task`.
    seed
        Seeds pre-training and the scouts.
    train_kwargs
        Options of :meth:`scgtl.GTL.train`, over the default's (:data:`DEFAULT_TRAIN_KWARGS`).
    model_kwargs
        Options of :class:`scgtl.GTL` (e.g. ``n_latent``).
    progress
        Show progress bars (on stderr); default :attr:`scgtl.settings.progress_bar`.

    Returns
    -------
    The trained model, with its guide.
    """
    from scgtl.benchmark._pretrain import pretrain

    kwargs = {**DEFAULT_TRAIN_KWARGS, **(train_kwargs or {})}
    max_epochs = kwargs.pop("max_epochs")
    return pretrain(
        corpus,
        units="log1p",
        labels_key=DEFAULT_LABELS_KEY,
        n_hvg=None,
        max_epochs=max_epochs,
        seed=seed,
        progress=progress,
        model_kwargs=model_kwargs,
        train_kwargs=kwargs,
    )


def run_default(
    *,
    model: str | None = None,
    k_shots: Sequence[int] = (1, 3, 5, 10),
    n_episodes: int = 20,
    seed: int = 0,
    methods: Sequence[str | Method] | None = None,
    n_threads: int | None = 1,
    progress: bool | None = None,
    baseline_genes: str = "target",
) -> FewShotResult:
    """Run the main job: the shipped model, benchmarked on the embedded study, no pre-training.

    Parameters
    ----------
    model
        Name of a pre-trained model (:func:`scgtl.models.available`); default
        :data:`scgtl.models.DEFAULT_MODEL`.
    k_shots, n_episodes, seed, methods, n_threads, progress, baseline_genes
        As in :func:`scgtl.benchmark.few_shot` (``baseline_genes``: the study's own genes by
        default). The study is :func:`embedded_study`, read as ``units="log1p"``.

    Returns
    -------
    The benchmark result; ``settings`` also records the task, the model and the seconds spent
    loading it (``"load_seconds"``) and in all (``"total_seconds"``).
    """
    from scgtl import models
    from scgtl.benchmark._builtin import resolve_methods
    from scgtl.benchmark._episodes import check_k_shots, check_n_episodes
    from scgtl.benchmark._few_shot import few_shot
    from scgtl.benchmark._methods import check_baseline_genes

    # Fail on bad settings before loading anything.
    check_k_shots(k_shots)
    check_n_episodes(n_episodes)
    check_baseline_genes(baseline_genes)
    resolve_methods(methods, has_model=True)
    name = models.DEFAULT_MODEL if model is None else model
    start = time.perf_counter()
    gtl = models.load(name)
    load_seconds = time.perf_counter() - start
    study = embedded_study()
    result = few_shot(
        gtl,
        study,
        labels_key=DEFAULT_LABELS_KEY,
        units="log1p",
        k_shots=k_shots,
        n_episodes=n_episodes,
        seed=seed,
        methods=methods,
        n_threads=n_threads,
        progress=progress,
        baseline_genes=baseline_genes,
    )
    result.settings.update(
        {
            "task": f"embedded default: the shipped model {name!r} (no pre-training) on scanpy's "
            f"pbmc68k_reduced (.raw, log1p, {study.n_obs} cells, "
            f"{study.obs[DEFAULT_LABELS_KEY].nunique()} bulk_labels)",
            "model": name,
            "load_seconds": load_seconds,
            "total_seconds": time.perf_counter() - start,
        }
    )
    return result
