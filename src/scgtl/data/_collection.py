"""A corpus split over several ``.h5ad`` files, read through anndata's ``AnnCollection``.

Nothing is concatenated: every file is opened backed, anndata's
:class:`~anndata.experimental.AnnCollection` joins them lazily (genes by name, ``obs`` in
memory), and scvi-tools' :class:`~scvi.dataloaders.CollectionAdapter` lets the joined files
pass for one AnnData in scvi-tools' registry and data loaders. Rows are read from disk only
when a batch asks for them, so memory does not grow with the corpus.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse
from scvi.dataloaders import CollectionAdapter

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata.experimental import AnnCollection

#: The ``obs`` column that says which file each row came from (``read_collection``'s default).
FILE_KEY = "file"


def read_collection(
    files: Sequence[str | os.PathLike],
    *,
    label: str = FILE_KEY,
    index_unique: str | None = None,
) -> CorpusCollection:
    """Open several ``.h5ad`` files as one pre-training corpus, without reading their matrices.

    Each file is opened backed (``anndata.read_h5ad(path, backed="r")``) and the files are
    joined by :class:`anndata.experimental.AnnCollection` on the genes they all have (by name,
    whatever their order in each file), with the ``obs`` columns they all have. Pass the result
    to :meth:`scgtl.GTL.setup_anndata` and train as on an AnnData: pre-training reads each
    shuffled mini-batch from the files it lies in, scouts read their subsample, and
    :meth:`~scgtl.GTL.get_latent_representation` reads chunk by chunk.

    Parameters
    ----------
    files
        Paths of two or more ``.h5ad`` files (one works too) with the same kind of values in
        ``X`` (or in a layer they all have: ``setup_anndata(..., layer=...)``).
    label
        ``obs`` column added with each row's file (the file's name without ``.h5ad``; the
        whole path where two files share a name).
    index_unique
        If given, each row's name gets this separator and its file's label appended, making
        names unique across files (as :func:`anndata.concat`); ``None`` keeps the names.

    Returns
    -------
    The joined corpus: it behaves as a backed AnnData for scgtl and scvi-tools. Like any
    backed corpus it needs ``setup_anndata(..., n_top_genes=None)`` or ``genes=[...]`` when it
    has more than ``n_top_genes`` genes (choosing variable genes needs the matrix in memory).

    Raises
    ------
    ValueError
        No files, the same file twice, or files that share no gene.
    FileNotFoundError
        A file that does not exist.
    """
    import anndata as ad
    from anndata.experimental import AnnCollection

    paths = _checked_paths(files)
    opened = {name: ad.read_h5ad(path, backed="r") for name, path in _labels(paths).items()}
    _check_shared_genes(opened)
    collection = AnnCollection(
        opened, join_vars="inner", join_obs="inner", label=label, index_unique=index_unique
    )
    return CorpusCollection(collection)


def _checked_paths(files: Sequence[str | os.PathLike]) -> list[Path]:
    """The files as paths; each exists, none twice, at least one."""
    if isinstance(files, str | os.PathLike):
        raise ValueError(f"files={files!r} must be a list of paths, not one path.")
    paths = [Path(f) for f in files]
    if not paths:
        raise ValueError("files is empty; give the .h5ad files of the corpus.")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"No such corpus file: {str(path)!r}.")
    resolved = [p.resolve() for p in paths]
    twice = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if twice:
        raise ValueError(f"The same file is given more than once: {twice}.")
    return paths


def _labels(paths: list[Path]) -> dict[str, Path]:
    """Each file's label: its name without the suffix, or its path where names repeat."""
    stems = [p.name.removesuffix(".h5ad") for p in paths]
    if len(set(stems)) == len(stems):
        return dict(zip(stems, paths, strict=True))
    return {str(p): p for p in paths}


def _check_shared_genes(opened: dict) -> None:
    """The files share at least one gene, and no file names a gene twice."""
    shared = None
    for name, adata in opened.items():
        if not adata.var_names.is_unique:
            repeated = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
            raise ValueError(f"File {name!r} names some genes more than once, e.g. {repeated}.")
        shared = adata.var_names if shared is None else shared.intersection(adata.var_names)
    if len(shared) == 0:
        raise ValueError(
            f"The files {list(opened)} share no gene name; give files with the same kind of "
            "gene identifiers (e.g. all Ensembl ids or all symbols)."
        )


class CollectionMatrix(sparse.csr_matrix):
    """``X`` (or a layer) of a :class:`CorpusCollection`: rows read from the files on demand.

    Indexing by rows (a slice, an integer array or a list) returns the rows as the files hold
    them (a SciPy sparse matrix or a NumPy array); the whole matrix is never in memory. It is a
    ``csr_matrix`` only in name, so that scvi-tools' data loaders take it for a sparse matrix
    and densify one mini-batch at a time (scvi-tools' own adapter does the same).
    """

    def __init__(self, collection: AnnCollection, layer: str | None):
        # No csr_matrix.__init__: there is no matrix in memory to hold.
        self.collection = collection
        self.layer = layer
        self._shape = (collection.n_obs, collection.n_vars)

    def __getitem__(self, index):
        rows, columns = index if isinstance(index, tuple) else (index, slice(None))
        view = self.collection[rows]
        block = view.X if self.layer is None else view.layers[self.layer]
        return block if columns == slice(None) else block[:, columns]

    @property
    def dtype(self) -> np.dtype:
        return self[:1].dtype

    @property
    def data(self) -> np.ndarray:
        """Stored values of the first rows (what scvi-tools samples to check counts)."""
        block = self[: min(64, self.shape[0])]
        return block.data if sparse.issparse(block) else np.asarray(block).ravel()

    def getformat(self) -> str:
        return "csr"

    def __repr__(self) -> str:
        where = "X" if self.layer is None else f"layers[{self.layer!r}]"
        return f"<{where} of {self.shape[0]} x {self.shape[1]} read from {self.collection!r}>"


class CorpusCollection(CollectionAdapter):
    """Several ``.h5ad`` files as one backed AnnData for scgtl and scvi-tools.

    Made by :func:`read_collection`: the files are joined by
    :class:`~anndata.experimental.AnnCollection`. Extends scvi-tools'
    :class:`~scvi.dataloaders.CollectionAdapter` with ``X`` and dense or sparse layers, the
    shape, and its own ``uns`` (scvi-tools keeps a model's registration there).
    """

    SPECIAL_ATTRS = [*CollectionAdapter.SPECIAL_ATTRS, "X"]

    def __init__(self, collection: AnnCollection):
        super().__init__(collection)
        self.uns = {}  # the adapter's class-level dict would be shared by every collection

    @property
    def X(self) -> CollectionMatrix:
        """The files' ``X``, joined, read on demand."""
        return CollectionMatrix(self.collection, None)

    @property
    def layers(self) -> dict[str, CollectionMatrix]:
        """The layers every file has, joined, read on demand."""
        sample = self.collection[:1]
        names = sample.layers.keys() if getattr(sample, "layers", None) is not None else []
        return {name: CollectionMatrix(self.collection, name) for name in names}

    @property
    def n_obs(self) -> int:
        return self.collection.n_obs

    @property
    def n_vars(self) -> int:
        return self.collection.n_vars

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_obs, self.n_vars

    def __repr__(self) -> str:
        return f"CorpusCollection of {self.n_obs} x {self.n_vars}:\n{self.collection!r}"
