"""Declared units of an expression matrix: checks and the model's input transform."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import sparse

from scgtl._constants import MAX_LOG1P, TARGET_SUM, UNITS

if TYPE_CHECKING:
    from scgtl._constants import Units


def check_units_name(units: str) -> None:
    """Raise a :class:`ValueError` unless ``units`` is one of :data:`scgtl._constants.UNITS`."""
    if units not in UNITS:
        raise ValueError(f"units={units!r} is not valid; choose one of {UNITS}.")


def _values(block) -> np.ndarray:
    """The stored values of a dense or sparse block (the zeros of a sparse one need no check)."""
    if sparse.issparse(block):
        return np.asarray(block.data)
    return np.asarray(block)


def check_block(block, units: Units, *, where: str = "X") -> None:
    """Check one block of rows against its declared units.

    Raises
    ------
    ValueError
        With the offending value, when the block has NaN/inf, negative values, (for
        ``units="counts"``) non-integer values, or (for ``units="log1p"``) values above
        :data:`~scgtl._constants.MAX_LOG1P`.
    """
    values = _values(block)
    if values.size == 0:
        return
    finite = np.isfinite(values)
    if not finite.all():
        bad = values[~finite][0]
        raise ValueError(
            f"{where} contains non-finite values (e.g. {bad}); remove or impute them first."
        )
    minimum = values.min()
    if minimum < 0:
        hint = (
            " It looks scaled or centred (e.g. by sc.pp.scale); pass the unscaled log values "
            "(for scanpy's datasets often adata.raw.to_adata())."
            if units == "log1p"
            else ""
        )
        raise ValueError(
            f"{where} contains negative values (min {minimum:.4g}), which units={units!r} "
            f"does not allow.{hint}"
        )
    maximum = values.max()
    if units == "log1p" and maximum > MAX_LOG1P:
        raise ValueError(
            f"{where} was declared units='log1p' but holds values up to {maximum:.4g}; log1p of "
            f"library-size-normalised expression stays below about {MAX_LOG1P:g} (log1p of a "
            "million is 13.8). These look like counts or normalised values: declare "
            "units='counts' or units='normalized'."
        )
    if units == "counts":
        fractional = values != np.round(values)
        if fractional.any():
            raise ValueError(
                f"{where} was declared units='counts' but holds non-integer values "
                f"(e.g. {values[fractional][0]:.4g}). Declare units='normalized' for "
                "TPM/FPKM/RPKM-like values or units='log1p' for log-transformed data."
            )


def check_matrix(matrix, units: Units, *, where: str = "X", chunk_size: int = 10_000) -> None:
    """Check a whole (possibly backed) matrix against its declared units, chunk by chunk."""
    check_units_name(units)
    n_obs = matrix.shape[0]
    for start in range(0, n_obs, chunk_size):
        check_block(matrix[start : start + chunk_size], units, where=where)


def check_library_sizes(values, units: Units, *, key: str) -> np.ndarray:
    """Per-row totals from ``obs[key]`` as float32, checked: finite and positive.

    Raises
    ------
    ValueError
        Non-numeric, missing, non-finite or non-positive totals, or ``units="log1p"`` (whose
        values are already normalised, so totals are not used).
    """
    if units == "log1p":
        raise ValueError(
            f"library_size_key={key!r} was given with units='log1p', whose values are already "
            "normalised; it only applies to units='counts' or 'normalized'."
        )
    try:
        totals = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"obs[{key!r}] must hold numeric per-row totals.") from err
    bad = ~np.isfinite(totals) | (totals <= 0)
    if bad.any():
        raise ValueError(
            f"obs[{key!r}] must hold finite, positive per-row totals; {int(bad.sum())} rows do "
            f"not (e.g. {totals[bad][0]!r})."
        )
    return totals.astype(np.float32)


def row_sums(block) -> np.ndarray:
    """Per-row totals of a dense or sparse block as a float32 vector."""
    return np.asarray(block.sum(axis=1), dtype=np.float32).ravel()


def library_sizes(matrix, *, chunk_size: int = 10_000) -> np.ndarray:
    """Per-row totals of a whole (possibly backed or sparse) matrix, chunk by chunk.

    Store them in ``obs`` before restricting a corpus to some genes, and register them with
    ``GTL.setup_anndata(..., library_size_key=...)``.

    Returns
    -------
    ``(n_obs,)`` float32 totals.
    """
    return np.concatenate(
        [
            row_sums(matrix[start : start + chunk_size])
            for start in range(0, matrix.shape[0], chunk_size)
        ]
    )


def log_expression(
    x: torch.Tensor, units: Units, library_size: torch.Tensor | None = None
) -> torch.Tensor:
    """Transform raw model input into log expression.

    ``counts`` and ``normalized`` rows are scaled to a library size of :data:`TARGET_SUM`
    and ``log1p``-transformed; ``log1p`` rows pass through unchanged.

    Parameters
    ----------
    x
        ``(n_obs, n_genes)`` values in ``units``.
    units
        The declared units.
    library_size
        Per-row totals over *all* of the sample's genes; defaults to the row sums of ``x``. A
        query whose genes were aligned to the model passes its totals from before alignment, so
        that zero-filled genes do not inflate the profile.
    """
    if units == "log1p":
        return x
    if library_size is None:
        library_size = x.sum(dim=1)
    scale = TARGET_SUM / library_size.clamp(min=1e-8).unsqueeze(1)
    return torch.log1p(x * scale)
