"""The embedded default benchmark: scanpy's ``pbmc68k_reduced``, no files needed.

The 700 cells' ``bulk_labels`` are split by cell type: a model is pre-trained on six types and
the benchmark is run on the four held-out types, which it never saw. The held-out types are the
four with at least 31 cells that are not needed as pre-training material, so every held-out
class keeps at least 21 query cells at ``k=10``; the tiny classes (8, 13, 19 cells) stay in
pre-training, where scouts only need 5 per class.
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
    k_shots: Sequence[int] = (1, 3, 5, 10),
    n_episodes: int = 20,
    seed: int = 0,
    methods: Sequence[str | Method] | None = None,
    train_kwargs: dict | None = None,
    n_threads: int | None = 1,
    progress: bool | None = None,
    baseline_genes: str = "target",
) -> FewShotResult:
    """Run the embedded default benchmark (see :data:`DEFAULT_SPLIT`).

    Parameters
    ----------
    k_shots, n_episodes, seed, methods, n_threads, progress, baseline_genes
        As in :func:`scgtl.benchmark.few_shot` (``baseline_genes``: the target's own genes by
        default); ``seed`` also seeds pre-training. The model has all of the target's genes
        here, so ``baseline_genes`` changes no number.
    train_kwargs
        Overrides of :data:`DEFAULT_TRAIN_KWARGS`, passed to :meth:`scgtl.GTL.train`.

    Returns
    -------
    The benchmark result; ``settings`` also records the split and the pre-training time.
    """
    from scgtl.benchmark._episodes import check_k_shots, check_n_episodes
    from scgtl.benchmark._few_shot import few_shot
    from scgtl.benchmark._methods import check_baseline_genes, resolve_methods

    # Fail on bad settings before pre-training, not after.
    check_k_shots(k_shots)
    check_n_episodes(n_episodes)
    check_baseline_genes(baseline_genes)
    resolve_methods(methods, has_model=True)
    start = time.perf_counter()
    corpus, target = default_task()
    model = pretrain_default(corpus, seed=seed, train_kwargs=train_kwargs, progress=progress)
    pretrain_seconds = time.perf_counter() - start
    result = few_shot(
        model,
        target,
        labels_key=DEFAULT_LABELS_KEY,
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
            "task": "embedded default: scanpy pbmc68k_reduced (.raw, log1p), pre-trained on "
            f"{list(DEFAULT_SPLIT['pretrain'])}, few-shot on {list(DEFAULT_SPLIT['held_out'])}",
            "n_corpus": corpus.n_obs,
            "pretrain_seconds": pretrain_seconds,
            "total_seconds": time.perf_counter() - start,
        }
    )
    return result
