"""Aligning a query's genes to the genes a model was trained on."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from scgtl._constants import LOW_GENE_FRACTION, MIN_GENE_FRACTION, MIN_GENE_OVERLAP

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
    def fraction(self) -> float:
        """Fraction of the model's genes found in the query."""
        return self.n_overlap / self.reference.size if self.reference.size else 0.0

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
    min_fraction: float = MIN_GENE_FRACTION,
    warn: bool = True,
) -> GeneAlignment:
    """Match a query's genes to a model's genes by name.

    Model genes missing from the query are zero-filled and query genes unknown to the model are
    dropped; a :class:`UserWarning` reports the overlap whenever the gene sets differ, and says
    so plainly when fewer than :data:`~scgtl._constants.LOW_GENE_FRACTION` (half) of the model's
    genes are found.

    Parameters
    ----------
    query_var_names
        The query's genes (``adata.var_names``).
    reference_var_names
        The model's genes, in model order.
    min_overlap
        Fewest model genes the query must have (default
        :data:`~scgtl._constants.MIN_GENE_OVERLAP`, 10; all of them for a smaller model).
    min_fraction
        Smallest fraction of the model's genes the query must have (default
        :data:`~scgtl._constants.MIN_GENE_FRACTION`, 0.05: at least 5 %).
    warn
        Warn when the gene sets differ.

    Returns
    -------
    The :class:`GeneAlignment`.

    Raises
    ------
    ValueError
        When the query has duplicate gene names, or shares fewer than ``min_overlap`` genes or
        fewer than ``min_fraction`` of the model's genes with the model.
    """
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction={min_fraction!r} must be in [0, 1].")
    query = pd.Index(query_var_names).astype(str)
    reference = pd.Index(reference_var_names).astype(str)
    check_unique_genes(query, where="query")
    position = reference.get_indexer(query)
    query_index = np.flatnonzero(position >= 0)
    reference_index = position[query_index]
    n_overlap = query_index.size
    # round(): 0.05 * 2000 must need 100 genes, not 101 through a floating-point excess.
    needed = max(
        min(min_overlap, reference.size), math.ceil(round(min_fraction * reference.size, 9))
    )
    if n_overlap < needed:
        fraction = n_overlap / reference.size if reference.size else 0.0
        raise ValueError(
            f"The query shares only {n_overlap} of the model's {reference.size} genes "
            f"({fraction:.1%}); at least {needed} are needed ({min_fraction:.0%} of the "
            f"model's genes and at least {min(min_overlap, reference.size)}), or nearly all of "
            "the model's input would be zero-filled. Check that both use the same gene "
            f"identifiers: query genes look like {query[:3].tolist()}, model genes like "
            f"{reference[:3].tolist()} (map Ensembl IDs to symbols or back if they differ). If "
            "they do and the study measures other genes, pre-train a model on genes it shares "
            "with the corpus."
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
    message = (
        f"Aligned query genes to the model: {n_overlap} of the model's {n_reference} genes "
        f"found ({n_overlap / n_reference:.0%}); {n_reference - n_overlap} missing genes are "
        f"zero-filled and {n_query - n_overlap} extra query genes are dropped."
    )
    if n_overlap < LOW_GENE_FRACTION * n_reference:
        message += (
            f" Fewer than {LOW_GENE_FRACTION:.0%} of the model's genes were found, so most of its "
            "input is zero-filled: predictions may be unreliable, and their probabilities do "
            "not account for the missing genes. Check them against labelled cells of this study."
        )
    return message
