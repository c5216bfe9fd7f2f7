"""Batched reading of an AnnData into the model's log-expression space."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from scgtl.data._units import check_block, log_expression, row_sums

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from anndata import AnnData

    from scgtl._constants import Units
    from scgtl.data._align import GeneAlignment


def get_matrix(adata: AnnData, layer: str | None):
    """``adata.layers[layer]``, or ``adata.X`` when ``layer`` is ``None``; never a copy."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"The AnnData is empty ({adata.n_obs} obs x {adata.n_vars} vars).")
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is None; pass layer= naming the layer that holds the data.")
        return adata.X
    if layer not in adata.layers.keys():
        raise KeyError(
            f"layer={layer!r} is not in adata.layers; available: {list(adata.layers.keys())}."
        )
    return adata.layers[layer]


def iter_log_expression(
    adata: AnnData,
    *,
    layer: str | None,
    units: Units,
    alignment: GeneAlignment,
    indices: np.ndarray | None = None,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    library_size: np.ndarray | None = None,
) -> Iterator[torch.Tensor]:
    """Yield batches of rows as log expression over the model's genes.

    Each batch is checked against ``units``, its library size taken over all of the query's
    genes (or from ``library_size``, one total per row of ``adata``), aligned to the model's
    genes and transformed; only one batch is dense at a time.
    """
    for (x,) in iter_log_expression_views(
        adata,
        layer=layer,
        units=units,
        alignments=(alignment,),
        indices=indices,
        batch_size=batch_size,
        device=device,
        library_size=library_size,
    ):
        yield x


def iter_log_expression_views(
    adata: AnnData,
    *,
    layer: str | None,
    units: Units,
    alignments: Sequence[GeneAlignment],
    indices: np.ndarray | None = None,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    library_size: np.ndarray | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Like :func:`iter_log_expression`, one view of each batch per alignment.

    Each block of rows is read, checked and summed once, then aligned to every gene list in
    ``alignments`` (e.g. a classifier's network genes and its wide path's genes), so that a
    query is read from its matrix (or from disk, when backed) only once.
    """
    matrix = get_matrix(adata, layer)
    rows = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
    if library_size is not None:
        library_size = torch.as_tensor(np.asarray(library_size, dtype=np.float32))
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    for start in range(0, rows.size, batch_size):
        batch_rows = rows[start : start + batch_size]
        if indices is None:
            block = matrix[batch_rows[0] : batch_rows[-1] + 1]
        else:
            # Fancy indexing of backed/sparse matrices wants sorted rows; restore caller order.
            ascending = np.argsort(batch_rows)
            block = matrix[batch_rows[ascending]][np.argsort(ascending)]
        check_block(block, units, where=where)
        if library_size is None:
            library = torch.as_tensor(row_sums(block))
        else:
            library = library_size[torch.as_tensor(batch_rows)]
        yield tuple(
            log_expression(
                torch.as_tensor(alignment.transform(block), dtype=torch.float32), units, library
            ).to(device)
            for alignment in alignments
        )


def read_log_expression(adata: AnnData, **kwargs) -> torch.Tensor:
    """All requested rows at once; for small sets such as a k-shot support set."""
    return torch.cat(list(iter_log_expression(adata, **kwargs)), dim=0)


def row_sampler(
    adata: AnnData,
    *,
    layer: str | None,
    units: Units,
    alignment: GeneAlignment,
    n_rows: int,
    rng: np.random.Generator,
    device: torch.device | str = "cpu",
    library_size: np.ndarray | None = None,
    return_rows: bool = False,
) -> Callable[[], torch.Tensor | tuple[torch.Tensor, np.ndarray]]:
    """A function that draws ``n_rows`` random rows of ``adata`` (with ``rng``) as log expression.

    Rows are drawn without replacement when ``adata`` has enough of them; each call reads only
    the drawn rows (see :func:`iter_log_expression` for the other parameters). With
    ``return_rows``, each call returns the expression and the (sorted) row indices drawn, for a
    caller that needs something else of those rows, such as their study.
    """
    replace = n_rows > adata.n_obs

    def draw() -> torch.Tensor | tuple[torch.Tensor, np.ndarray]:
        rows = np.sort(rng.choice(adata.n_obs, size=n_rows, replace=replace))
        x = read_log_expression(
            adata,
            layer=layer,
            units=units,
            alignment=alignment,
            indices=rows,
            batch_size=n_rows,
            device=device,
            library_size=library_size,
        )
        return (x, rows) if return_rows else x

    return draw
