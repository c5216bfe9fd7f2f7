"""Pre-training a model for a benchmark from a corpus file: gene selection, then training."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scgtl.data import check_units_name, get_matrix, library_sizes

#: ``obs`` column in which :func:`pretrain` stores each corpus row's total over all its genes.
LIBRARY_SIZE_KEY = "scgtl_library_size"

if TYPE_CHECKING:
    from anndata import AnnData

    from scgtl._constants import Units


def select_genes(
    corpus: AnnData, *, n_hvg: int | None, layer: str | None = None, units: Units = "counts"
) -> pd.Index:
    """The ``n_hvg`` most variable genes of the corpus (all genes when ``n_hvg`` is ``None``).

    Counts use scanpy's ``flavor="seurat_v3"`` on the counts (it needs ``scikit-misc``;
    without it, or for other units, ``flavor="seurat"`` on log-normalised values is used).

    Returns
    -------
    The selected gene names, in corpus order.
    """
    import scanpy as sc

    check_units_name(units)
    if n_hvg is None or n_hvg >= corpus.n_vars:
        return corpus.var_names.copy()
    if not isinstance(n_hvg, int | np.integer) or n_hvg < 1:
        raise ValueError(f"n_hvg={n_hvg!r} is not valid; it must be an integer >= 1 or None.")
    x = corpus.X if layer is None else corpus.layers[layer]
    work = sc.AnnData(X=x, var=pd.DataFrame(index=corpus.var_names))
    if units == "counts":
        try:
            sc.pp.highly_variable_genes(work, n_top_genes=int(n_hvg), flavor="seurat_v3")
            return corpus.var_names[work.var["highly_variable"].to_numpy()]
        except ImportError:
            warnings.warn(
                "scikit-misc is not installed, so highly variable genes are chosen with "
                "flavor='seurat' on log-normalised counts instead of 'seurat_v3'.",
                UserWarning,
                stacklevel=2,
            )
    work = work.copy()
    if units != "log1p":
        sc.pp.normalize_total(work, target_sum=1e4)
        sc.pp.log1p(work)
    sc.pp.highly_variable_genes(work, n_top_genes=int(n_hvg), flavor="seurat")
    return corpus.var_names[work.var["highly_variable"].to_numpy()]


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
        Seeds pre-training (``scvi.settings.seed``) and the scouts.
    progress
        Show progress bars (on stderr); default :attr:`scgtl.settings.progress_bar`.
    model_kwargs, train_kwargs
        Passed to :class:`scgtl.GTL` and :meth:`scgtl.GTL.train`.

    Returns
    -------
    The trained model, with its guide.
    """
    import scvi

    from scgtl.model import GTL

    genes = select_genes(corpus, n_hvg=n_hvg, layer=layer, units=units)
    work = corpus[:, genes].copy()
    library_size_key = None
    if units != "log1p":
        library_size_key = LIBRARY_SIZE_KEY
        work.obs[library_size_key] = library_sizes(get_matrix(corpus, layer))
    scvi.settings.seed = seed
    GTL.setup_anndata(
        work, layer=layer, labels_key=labels_key, units=units, library_size_key=library_size_key
    )
    model = GTL(work, **(model_kwargs or {}))
    kwargs = dict(train_kwargs or {})
    kwargs.setdefault("enable_progress_bar", progress)
    guide_kwargs = {"seed": seed, "progress": progress, **kwargs.pop("guide_kwargs", {})}
    model.train(max_epochs=max_epochs, guide_kwargs=guide_kwargs, **kwargs)
    return model
