"""Pre-training a model for a benchmark from a corpus file: gene selection, then training."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from scgtl._settings import scvi_seed
from scgtl.data import get_matrix, highly_variable_genes, library_sizes

#: ``obs`` column in which :func:`pretrain` stores each corpus row's total over all its genes.
LIBRARY_SIZE_KEY = "scgtl_library_size"

if TYPE_CHECKING:
    from anndata import AnnData

    from scgtl._constants import Units


def select_genes(
    corpus: AnnData, *, n_hvg: int | None, layer: str | None = None, units: Units = "counts"
) -> pd.Index:
    """The ``n_hvg`` most variable genes (:func:`scgtl.data.highly_variable_genes`).

    Returns
    -------
    The selected gene names, in corpus order (all genes when ``n_hvg`` is ``None``).
    """
    return highly_variable_genes(corpus, n_top_genes=n_hvg, layer=layer, units=units)


def pretrain(
    corpus: AnnData,
    *,
    layer: str | None = None,
    units: Units = "counts",
    labels_key: str | None = None,
    n_hvg: int | None = 2000,
    max_epochs: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
    model_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
):
    """Pre-train a :class:`scgtl.GTL` on a corpus, restricted to its most variable genes.

    The caller's AnnData is not modified: the model is set up on a copy of the selected genes,
    whose ``obs['scgtl_library_size']`` keeps each row's total over *all* corpus genes (for
    counts and normalised values), so that pre-training normalises cells exactly as the model
    later normalises a query.

    Parameters
    ----------
    corpus
        The pre-training corpus.
    layer, units, labels_key
        As in :meth:`scgtl.GTL.setup_anndata`.
    n_hvg
        Number of highly variable genes to keep (see :func:`select_genes`); ``None``: all.
    max_epochs
        Pre-training epochs (``None``: the model's default).
    seed
        Seeds pre-training (``scvi.settings.seed`` during the call; the caller's setting is
        restored after) and the scouts.
    progress
        Show progress bars (on stderr); default :attr:`scgtl.settings.progress_bar`.
    model_kwargs, train_kwargs
        Passed to :class:`scgtl.GTL` and :meth:`scgtl.GTL.train`.

    Returns
    -------
    The trained model, with its guide.
    """
    from scgtl.model import GTL

    genes = select_genes(corpus, n_hvg=n_hvg, layer=layer, units=units)
    work = corpus[:, genes].copy()
    library_size_key = None
    if units != "log1p":
        library_size_key = LIBRARY_SIZE_KEY
        work.obs[library_size_key] = library_sizes(get_matrix(corpus, layer))
    kwargs = dict(train_kwargs or {})
    kwargs.setdefault("enable_progress_bar", progress)
    guide_kwargs = {"seed": seed, "progress": progress, **kwargs.pop("guide_kwargs", {})}
    with scvi_seed(seed):
        GTL.setup_anndata(
            work,
            layer=layer,
            labels_key=labels_key,
            units=units,
            library_size_key=library_size_key,
            n_top_genes=None,  # cut to the chosen genes above
        )
        model = GTL(work, **(model_kwargs or {}))
        model.train(max_epochs=max_epochs, guide_kwargs=guide_kwargs, **kwargs)
    return model
