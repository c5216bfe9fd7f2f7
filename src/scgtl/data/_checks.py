"""Checks of whole AnnData objects, before anything is built from them."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pandas as pd
from anndata import AnnData

from scgtl.data._align import check_unique_genes
from scgtl.data._reading import get_matrix
from scgtl.data._units import check_library_sizes, check_matrix, check_units_name

if TYPE_CHECKING:
    from scgtl._constants import Units


def check_anndata(adata) -> None:
    """Reject anything that is not a non-empty AnnData."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"The AnnData is empty ({adata.n_obs} obs x {adata.n_vars} vars).")


def check_layer(adata: AnnData, *, layer: str | None, units: Units) -> None:
    """Check every value of ``adata.X`` (or ``adata.layers[layer]``) against ``units``."""
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    check_matrix(get_matrix(adata, layer), units, where=where)


def check_corpus(
    adata: AnnData,
    *,
    layer: str | None,
    units: Units,
    labels_key: str | None = None,
    batch_key: str | None = None,
    library_size_key: str | None = None,
) -> None:
    """Check a pre-training corpus: units, unique genes, values, and the named ``obs`` columns.

    Raises
    ------
    ValueError
        Unknown units, empty data, duplicate genes, values impossible in ``units``, missing
        labels, or bad library sizes.
    KeyError
        A layer or ``obs`` column that does not exist.
    """
    check_units_name(units)
    check_unique_genes(adata.var_names)
    check_layer(adata, layer=layer, units=units)
    keys = (("labels_key", labels_key), ("batch_key", batch_key))
    for name, key in (*keys, ("library_size_key", library_size_key)):
        if key is not None and key not in adata.obs:
            raise KeyError(f"{name}={key!r} is not a column of adata.obs: {list(adata.obs)}.")
    if labels_key is not None and adata.obs[labels_key].isna().any():
        raise ValueError(f"obs[{labels_key!r}] has missing labels; drop or fill them.")
    if library_size_key is not None:
        check_library_sizes(adata.obs[library_size_key], units, key=library_size_key)


def check_measured(adata: AnnData, *, measured_key: str, batch_key: str | None) -> None:
    """Check a corpus's genes x studies table of measured genes (``varm[measured_key]``).

    Raises
    ------
    ValueError
        No ``batch_key``, a table that is not boolean, a study of ``batch_key`` without a
        column, or a study that measured none of the genes.
    KeyError
        ``measured_key`` is not in ``adata.varm``.
    """
    if batch_key is None:
        raise ValueError(
            f"measured_key={measured_key!r} needs batch_key=, the obs column naming each row's "
            "study (the columns of the measured table)."
        )
    if measured_key not in adata.varm:
        raise KeyError(f"measured_key={measured_key!r} is not in adata.varm: {list(adata.varm)}.")
    table = adata.varm[measured_key]
    if not isinstance(table, pd.DataFrame) or not all(
        pd.api.types.is_bool_dtype(dtype) for dtype in table.dtypes
    ):
        raise ValueError(
            f"adata.varm[{measured_key!r}] must be a DataFrame of booleans, genes x studies "
            "(as scgtl.data.concat_studies writes)."
        )
    studies = pd.Index(adata.obs[batch_key].astype(str).unique())
    missing = studies.difference(table.columns.astype(str))
    if len(missing):
        raise ValueError(
            f"adata.varm[{measured_key!r}] has no column for the studies {list(missing)} of "
            f"obs[{batch_key!r}]; its columns are {list(table.columns)}."
        )
    empty = [s for s in studies if not table[s].any()]
    if empty:
        raise ValueError(f"adata.varm[{measured_key!r}] says {empty} measured no gene.")


def study_fingerprint(adata: AnnData, *, layer: str | None, units: Units) -> str:
    """A short hash naming a study: its observation and gene names, its layer and units.

    Lets a model adapted to a study (:meth:`scgtl.GTL.adapt`) recognise it again, so that
    ``fine_tune(transductive=True)`` does not adapt twice to the same rows. The values are not
    hashed (reading a large matrix would cost more than it saves): a study whose names are
    unchanged but whose values were replaced counts as the same study.

    Parameters
    ----------
    adata
        The study.
    layer, units
        How its values are read.

    Returns
    -------
    A hexadecimal SHA-1 digest.
    """
    digest = hashlib.sha1(usedforsecurity=False)
    for names in (adata.obs_names, adata.var_names):
        digest.update(str(len(names)).encode())
        digest.update("\0".join(map(str, names)).encode())
    digest.update(f"{layer!r}|{units}".encode())
    return digest.hexdigest()
