"""Choosing the genes a model is trained on."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scgtl.data._reading import get_matrix
from scgtl.data._units import check_units_name

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

    from scgtl._constants import Units

#: Highly variable genes a model is pre-trained on by default (as the ``scgtl`` command line).
N_TOP_GENES = 2000


def highly_variable_genes(
    adata: AnnData,
    *,
    n_top_genes: int | None,
    layer: str | None = None,
    units: Units = "counts",
    batch_key: str | None = None,
) -> pd.Index:
    """The ``n_top_genes`` most variable genes (all genes when ``None`` or not fewer).

    Counts use scanpy's ``flavor="seurat_v3"`` on the counts (it needs ``scikit-misc``;
    without it, or for other units, ``flavor="seurat"`` on log-normalised values is used).
    With ``batch_key`` the genes are ranked within each batch and then by how many batches
    rank them (scanpy's ``batch_key``), with ``flavor="seurat"``: a corpus of several studies
    then picks genes variable within its studies, and a gene a study did not measure (zero
    there) is not variable in it. The caller's AnnData is not modified.

    Returns
    -------
    The selected gene names, in ``adata``'s order.
    """
    check_units_name(units)
    if n_top_genes is not None and (
        isinstance(n_top_genes, bool)
        or not isinstance(n_top_genes, int | np.integer)
        or n_top_genes < 1
    ):
        raise ValueError(f"n_top_genes={n_top_genes!r} must be an integer >= 1 or None.")
    if n_top_genes is None or n_top_genes >= adata.n_vars:
        return adata.var_names.copy()
    if adata.isbacked:
        raise ValueError(
            f"Choosing {n_top_genes} highly variable genes of {adata.n_vars} needs the matrix in "
            "memory, but this AnnData is backed. Pass n_top_genes=None (all genes), or genes= "
            "with the genes to use."
        )
    import scanpy as sc  # imported here: scanpy is slow to import and only this needs it

    work = sc.AnnData(X=get_matrix(adata, layer), var=pd.DataFrame(index=adata.var_names))
    if batch_key is not None:
        work.obs[batch_key] = adata.obs[batch_key].to_numpy()
    if units == "counts" and batch_key is None:
        try:
            try:
                sc.pp.highly_variable_genes(work, n_top_genes=int(n_top_genes), flavor="seurat_v3")
            except ValueError as err:
                if "reciprocal condition number" not in str(err):
                    raise
                raise ValueError(_SEURAT_V3_FAILED.format(n=adata.n_obs)) from err
            return adata.var_names[work.var["highly_variable"].to_numpy()]
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
    sc.pp.highly_variable_genes(
        work, n_top_genes=int(n_top_genes), flavor="seurat", batch_key=batch_key
    )
    return adata.var_names[work.var["highly_variable"].to_numpy()]


#: What to do when seurat_v3's loess fit of variance on mean fails (scikit-misc's message is a
#: bare "reciprocal condition number"): it happens with few cells and many rarely seen genes.
_SEURAT_V3_FAILED = (
    "Choosing highly variable genes with scanpy's flavor='seurat_v3' failed on these {n} rows: "
    "its loess fit of variance against mean is ill-conditioned, as with few cells and many "
    "genes that are almost never detected. Drop rare genes first (e.g. "
    "sc.pp.filter_genes(adata, min_cells=10)), give genes=[...], or pass n_top_genes=None."
)


def check_gene_subset(genes: Sequence[str], var_names: pd.Index) -> list[str]:
    """``genes`` as a list, checked to be unique, non-empty genes of ``var_names``."""
    if isinstance(genes, str):
        raise TypeError(f"genes={genes!r} must be a list of gene names, not one string.")
    genes = [str(g) for g in genes]
    if not genes:
        raise ValueError("genes is empty; give at least one gene name.")
    if len(set(genes)) != len(genes):
        dupes = sorted({g for g in genes if genes.count(g) > 1})
        raise ValueError(f"genes has duplicates: {dupes[:5]}.")
    unknown = [g for g in genes if g not in var_names]
    if unknown:
        raise KeyError(f"{len(unknown)} of genes are not in adata.var_names (e.g. {unknown[:5]}).")
    return genes


def training_genes(
    adata: AnnData,
    *,
    genes: Sequence[str] | None,
    n_top_genes: int | None,
    layer: str | None = None,
    units: Units = "counts",
    batch_key: str | None = None,
) -> list[str] | None:
    """The genes a model is trained on: ``genes`` checked, or the ``n_top_genes`` most variable.

    ``batch_key`` ranks them within each batch (see :func:`highly_variable_genes`).

    Returns
    -------
    The gene names, or ``None`` when they are all of ``adata``'s genes (in its order).
    """
    if genes is not None:
        return check_gene_subset(genes, adata.var_names)
    chosen = highly_variable_genes(
        adata, n_top_genes=n_top_genes, layer=layer, units=units, batch_key=batch_key
    )
    return None if chosen.size == adata.n_vars else list(chosen)
