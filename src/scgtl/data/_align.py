"""Aligning a query's genes to the genes a model was trained on."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from scgtl._constants import MIN_GENE_OVERLAP

if TYPE_CHECKING:
    from collections.abc import Sequence


def check_unique_genes(var_names: pd.Index, *, where: str = "adata") -> None:
    """Raise when ``var_names`` has duplicates, naming a few of them."""
    if not var_names.is_unique:
        dupes = var_names[var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"{where}.var_names has duplicate gene names, e.g. {dupes}; "
            f"call {where}.var_names_make_unique() or aggregate them first."
        )


@dataclass(frozen=True)
class GeneAlignment:
    """How the columns of a query map onto a model's genes.

    Attributes
    ----------
    reference
        The model's genes, in model order.
    query_index
        For each shared gene, its column in the query.
    reference_index
        For each shared gene, its column in the model's gene order.
    n_query
        Number of genes (columns) of the query.
    """

    reference: pd.Index
    query_index: np.ndarray
    reference_index: np.ndarray
    n_query: int

    @property
    def n_overlap(self) -> int:
        """Number of model genes found in the query."""
        return int(self.query_index.size)

    @property
    def is_identity(self) -> bool:
        """Whether the query already has exactly the model's genes in the model's order."""
        order = np.arange(self.reference.size)
        return self.n_query == order.size and bool(
            np.array_equal(self.query_index, order) and np.array_equal(self.reference_index, order)
        )

    def transform(self, block) -> np.ndarray:
        """Reorder a dense or sparse block of query rows into dense model columns (zero-filled)."""
        if self.is_identity:
            return block.toarray() if sparse.issparse(block) else np.asarray(block)
        out = np.zeros((block.shape[0], self.reference.size), dtype=np.float32)
        picked = block[:, self.query_index]
        out[:, self.reference_index] = picked.toarray() if sparse.issparse(picked) else picked
        return out


def align_genes(
    query_var_names: Sequence[str] | pd.Index,
    reference_var_names: Sequence[str] | pd.Index,
    *,
    min_overlap: int = MIN_GENE_OVERLAP,
    warn: bool = True,
) -> GeneAlignment:
    """Match a query's genes to a model's genes by name.

    Model genes missing from the query are zero-filled and query genes unknown to the model are
    dropped; a :class:`UserWarning` reports the overlap whenever the gene sets differ.

    Raises
    ------
    ValueError
        When the query has duplicate gene names, or shares fewer than ``min_overlap`` genes with
        the model.
    """
    query = pd.Index(query_var_names).astype(str)
    reference = pd.Index(reference_var_names).astype(str)
    check_unique_genes(query, where="query")
    position = reference.get_indexer(query)
    query_index = np.flatnonzero(position >= 0)
    reference_index = position[query_index]
    n_overlap = query_index.size
    if n_overlap < min(min_overlap, reference.size):
        raise ValueError(
            f"The query shares only {n_overlap} of the model's {reference.size} genes "
            f"(at least {min(min_overlap, reference.size)} needed). Check that both use the "
            f"same gene identifiers: query genes look like {query[:3].tolist()}, model genes "
            f"like {reference[:3].tolist()}."
        )
    alignment = GeneAlignment(reference, query_index, reference_index, query.size)
    if warn and not alignment.is_identity:
        warnings.warn(
            _alignment_message(n_overlap, reference.size, query.size), UserWarning, stacklevel=3
        )
    return alignment


def _alignment_message(n_overlap: int, n_reference: int, n_query: int) -> str:
    if n_overlap == n_reference == n_query:
        return "Aligned query genes to the model: the same genes in another order, reordered."
    return (
        f"Aligned query genes to the model: {n_overlap} of the model's {n_reference} genes "
        f"found ({n_overlap / n_reference:.0%}); {n_reference - n_overlap} missing genes are "
        f"zero-filled and {n_query - n_overlap} extra query genes are dropped."
    )
