"""Small public RNA-seq sets, fetched from their canonical source or a local mirror.

Each set is defined once in :data:`PUBLIC_DATASETS`: the original R data files (URL pinned to a
commit, sha256, size), the sha256 of the converted ``.h5ad`` shipped in mirrors such as
``../shared/data``, and provenance. A loader looks in this order:

1. the mirror (``data_dir=`` or ``$SCGTL_DATA_DIR``): ``<name>.h5ad``, else the original files
   under ``raw/``; both are checked against their published sha256;
2. the converted ``<name>.h5ad`` in the cache (``cache_dir=`` or ``$SCGTL_CACHE_DIR``);
3. the network: the original files are downloaded into the cache, checked, converted with the
   ``rdata`` package and the result cached.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from scgtl.datasets import _download as dl

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_MUDAN = "https://github.com/JEFworks/MUDAN/raw/3636ed2f9a404cbdfcfdce5500384b59a72de666/data/"
_HARMONY = (
    "https://github.com/immunogenomics/harmony/raw/df19af23ae0639bd6ea2da63898f973f08c85862/data/"
)
_SC3 = "https://github.com/hemberg-lab/SC3/raw/5f5161b1aea7dacaad14eb2433b568bbfbd85b8a/data/"
_ZHENG = (
    "Zheng GXY et al. (2017) Massively parallel digital transcriptional profiling of single "
    "cells. Nat Commun 8:14049. doi:10.1038/ncomms14049"
)


@dataclass(frozen=True)
class RawFile:
    """One original file of a public set, as published."""

    name: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class PublicDataset:
    """Everything needed to fetch, verify, convert and describe one public set."""

    name: str
    files: tuple[RawFile, ...]
    h5ad_sha256: str
    h5ad_size: int
    units: str  # scgtl units: "counts" or "normalized"
    units_detail: str
    label_key: str
    shape: tuple[int, int]
    repo: str
    commit: str
    license: str
    citation: str
    description: str
    converter: Callable[[Mapping[str, Path]], ad.AnnData] = field(repr=False)

    def source(self) -> dict:
        """Provenance stored in ``adata.uns["source"]``."""
        main = self.files[0]
        return {
            "name": self.name,
            "url": main.url,
            "sha256": main.sha256,
            "repo": self.repo,
            "commit": self.commit,
            "path": f"data/{main.name}",
            "raw_url": {f.name: f.url for f in self.files},
            "raw_sha256": {f.name: f.sha256 for f in self.files},
            "h5ad_sha256": self.h5ad_sha256,
            "license": self.license,
            "citation": self.citation,
            "units": self.units_detail,
            "description": self.description,
        }


# --- conversion from the original R objects -------------------------------------------------


def _read_rda(path: Path) -> dict:
    """Read an ``.rda``/``.RData`` file with ``rdata``, turning Matrix's dgCMatrix into scipy."""
    import rdata  # imported here: only conversion needs it

    constructors = {**rdata.conversion.DEFAULT_CLASS_MAP, "dgCMatrix": _dgcmatrix}
    return rdata.read_rda(path, constructor_dict=constructors)


@dataclass
class _Matrix:
    """A genes x cells matrix from R with its dimnames."""

    data: sparse.csc_matrix
    rows: np.ndarray
    cols: np.ndarray


def _dgcmatrix(obj, attrs) -> _Matrix:
    """Constructor for the S4 class ``dgCMatrix`` (compressed sparse column, from ``Matrix``)."""
    n_rows, n_cols = (int(d) for d in obj.Dim)
    matrix = sparse.csc_matrix(
        (np.asarray(obj.x), np.asarray(obj.i), np.asarray(obj.p)), shape=(n_rows, n_cols)
    )
    rows, cols = obj.Dimnames
    return _Matrix(matrix, np.asarray(rows, dtype=str), np.asarray(cols, dtype=str))


def _to_anndata(genes_by_cells, genes, cells, obs: pd.DataFrame | None = None) -> ad.AnnData:
    """Cells x genes AnnData with ``X`` a sorted float32 CSR matrix."""
    if sparse.issparse(genes_by_cells):
        x = sparse.csr_matrix(genes_by_cells.T, dtype=np.float32)
    else:
        x = sparse.csr_matrix(np.asarray(genes_by_cells, dtype=np.float32).T)
    x.sort_indices()
    obs = pd.DataFrame(index=pd.Index(cells, dtype=str)) if obs is None else obs
    obs.index = pd.Index(np.asarray(cells, dtype=str))
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=pd.Index(np.asarray(genes, dtype=str))))


def _labels(values) -> pd.Categorical:
    return pd.Categorical(np.asarray(values, dtype=str))


def _convert_mudan_ref(paths: Mapping[str, Path]) -> ad.AnnData:
    counts = _read_rda(paths["referenceCounts.rda"])["referenceCounts"]  # xarray, genes x cells
    labels = np.asarray(_read_rda(paths["referenceAnnot.rda"])["referenceAnnot"], dtype=str)
    genes, cells = (np.asarray(counts.coords[d].values, dtype=str) for d in counts.dims)
    if labels.shape != cells.shape:
        raise ValueError(f"referenceAnnot has {labels.size} labels for {cells.size} cells.")
    # The labels carry no names; each cell id starts with its sorted population, which ties the
    # two objects together and guards against a reordering upstream.
    if not all(c.startswith(lab) for c, lab in zip(cells, labels, strict=True)):
        raise ValueError("referenceAnnot does not match the cells of referenceCounts.")
    obs = pd.DataFrame({"cell_type": _labels(labels)})
    return _to_anndata(counts.values, genes, cells, obs)


def _convert_mudan_pbmca(paths: Mapping[str, Path]) -> ad.AnnData:
    m = _read_rda(paths["pbmcA.rda"])["pbmcA"]
    obs = pd.DataFrame({"dataset": _labels(np.repeat("pbmcA", m.cols.size))})
    return _to_anndata(m.data, m.rows, m.cols, obs)


def _convert_kang_stim(paths: Mapping[str, Path]) -> ad.AnnData:
    objects = _read_rda(paths["pbmc_stim.RData"])
    ctrl, stim = objects["pbmc.ctrl"], objects["pbmc.stim"]
    if not np.array_equal(ctrl.rows, stim.rows):
        raise ValueError("pbmc.ctrl and pbmc.stim have different genes.")
    matrix = sparse.hstack([ctrl.data, stim.data], format="csc")
    cells = np.concatenate([ctrl.cols, stim.cols])
    condition = np.repeat(["ctrl", "stim"], [ctrl.cols.size, stim.cols.size])
    obs = pd.DataFrame({"stim": _labels(condition)})
    return _to_anndata(matrix, ctrl.rows, cells, obs)


def _convert_yan(paths: Mapping[str, Path]) -> ad.AnnData:
    objects = _read_rda(paths["yan.rda"])
    table, ann = objects["yan"], objects["ann"]  # genes x cells RPKM; cells x 1 annotation
    if not table.columns.equals(ann.index):
        raise ValueError("The rows of `ann` do not match the columns of `yan`.")
    obs = pd.DataFrame({"cell_type": _labels(ann["cell_type1"].astype(str))})
    return _to_anndata(table.to_numpy(), table.index, table.columns, obs)


# --- the registry ---------------------------------------------------------------------------

#: The public data sets by loader name: URL, sha256, size, licence, citation and units of each.
PUBLIC_DATASETS: dict[str, PublicDataset] = {
    "mudan_ref": PublicDataset(
        name="mudan_ref",
        files=(
            RawFile(
                "referenceCounts.rda",
                _MUDAN + "referenceCounts.rda",
                "d44df269ab223db35a3ac0f46a08f623b61ffd46f44f110b34910724b932a8d6",
                2_382_895,
            ),
            RawFile(
                "referenceAnnot.rda",
                _MUDAN + "referenceAnnot.rda",
                "72ac3b67cb1f831c23a9ecc094451d93901a8f2ba30fa1089704482e5cb76865",
                10_656,
            ),
        ),
        h5ad_sha256="008519dd894c9934247e69e4311d4270ce4056f3fe282979c4f48b580e0a2d18",
        h5ad_size=6_096_211,
        units="counts",
        units_detail="raw UMI counts",
        label_key="cell_type",
        shape=(2140, 8863),
        repo="JEFworks/MUDAN",
        commit="3636ed2f9a404cbdfcfdce5500384b59a72de666",
        license="GPL-3",
        citation=_ZHENG,
        description=(
            "FACS-sorted human PBMC populations (10x Genomics, Zheng et al. 2017), subsample "
            "shipped with MUDAN; 9 cell types."
        ),
        converter=_convert_mudan_ref,
    ),
    "mudan_pbmcA": PublicDataset(
        name="mudan_pbmcA",
        files=(
            RawFile(
                "pbmcA.rda",
                _MUDAN + "pbmcA.rda",
                "6d36da8505d38bb6f866e4a1a49e89b69e4f6d9312e85ce3da32eafa6e7b1aa8",
                2_260_804,
            ),
        ),
        h5ad_sha256="bf19c9bb8768874459ad74db9adcefd6f2bba96bad54e50f42381873dac749b9",
        h5ad_size=5_778_950,
        units="counts",
        units_detail="raw UMI counts",
        label_key="dataset",
        shape=(2896, 13939),
        repo="JEFworks/MUDAN",
        commit="3636ed2f9a404cbdfcfdce5500384b59a72de666",
        license="GPL-3",
        citation=_ZHENG,
        description=(
            "10x Genomics frozen PBMCs, donor A (Zheng et al. 2017), subsample shipped with "
            "MUDAN; unlabelled."
        ),
        converter=_convert_mudan_pbmca,
    ),
    "kang_stim": PublicDataset(
        name="kang_stim",
        files=(
            RawFile(
                "pbmc_stim.RData",
                _HARMONY + "pbmc_stim.RData",
                "d85a18ce8ec9dcb4ac86c8e195ed53ff893c5952a7d6bf70035a17856c9dc0ef",
                2_550_930,
            ),
        ),
        h5ad_sha256="8bc00b0fce859e5fe90614e2b761b97467b528bd4a5cf4583f535204a7709de2",
        h5ad_size=2_998_616,
        units="counts",
        units_detail="raw UMI counts",
        label_key="stim",
        shape=(2000, 9015),
        repo="immunogenomics/harmony",
        commit="df19af23ae0639bd6ea2da63898f973f08c85862",
        license="GPL-3",
        citation=(
            "Kang HM et al. (2018) Multiplexed droplet single-cell RNA-sequencing using natural "
            "genetic variation. Nat Biotechnol 36:89-94. doi:10.1038/nbt.4042"
        ),
        description=(
            "Human PBMC, 1,000 control and 1,000 interferon-beta stimulated cells (Kang et al. "
            "2018), objects pbmc.ctrl and pbmc.stim shipped with harmony."
        ),
        converter=_convert_kang_stim,
    ),
    "yan": PublicDataset(
        name="yan",
        files=(
            RawFile(
                "yan.rda",
                _SC3 + "yan.rda",
                "04dbe1de78f59e157da8c438295d07b7c8694effe2e3adffa12c18fcd69c0a26",
                1_645_740,
            ),
        ),
        h5ad_sha256="60873f9c0b53ba0472a7a8a101065375763f634e276b25e9dc944a9673b3911f",
        h5ad_size=3_906_492,
        units="normalized",
        units_detail="RPKM",
        label_key="cell_type",
        shape=(90, 20214),
        repo="hemberg-lab/SC3",
        commit="5f5161b1aea7dacaad14eb2433b568bbfbd85b8a",
        license="GPL-3",
        citation=(
            "Yan L et al. (2013) Single-cell RNA-Seq profiling of human preimplantation embryos "
            "and embryonic stem cells. Nat Struct Mol Biol 20:1131-1139. doi:10.1038/nsmb.2660"
        ),
        description=(
            "Human pre-implantation embryo cells, Smart-seq (Yan et al. 2013), objects yan and "
            "ann shipped with SC3; 6 developmental stages."
        ),
        converter=_convert_yan,
    ),
}


# --- loading --------------------------------------------------------------------------------


def _finalize(adata: ad.AnnData, spec: PublicDataset) -> ad.AnnData:
    """Common form of every loader's result: CSR float32 X, categorical labels, provenance."""
    if not sparse.isspmatrix_csr(adata.X) or adata.X.dtype != np.float32:
        adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
    labels = adata.obs[spec.label_key]
    if not isinstance(labels.dtype, pd.CategoricalDtype):
        adata.obs[spec.label_key] = labels.astype("category")
    adata.uns["source"] = spec.source()
    adata.uns["scgtl_units"] = spec.units
    if adata.shape != spec.shape:
        raise ValueError(f"{spec.name} has shape {adata.shape}, expected {spec.shape}.")
    return adata


def _write_h5ad_atomic(adata: ad.AnnData, path: Path) -> None:
    """Write ``adata`` to ``path`` via a temporary file, so ``path`` is complete or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        adata.write_h5ad(tmp, compression="gzip")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _convert(spec: PublicDataset, paths: Mapping[str, Path], cache: Path) -> ad.AnnData:
    adata = _finalize(spec.converter(paths), spec)
    _write_h5ad_atomic(adata, cache / f"{spec.name}.h5ad")
    return adata


def _from_mirror(spec: PublicDataset, mirror: Path, cache: Path) -> ad.AnnData | None:
    """The set from a mirror directory (converted ``.h5ad`` or ``raw/`` originals), or None."""
    h5ad = mirror / f"{spec.name}.h5ad"
    if h5ad.is_file():
        dl.verify_sha256(h5ad, spec.h5ad_sha256)
        return _finalize(ad.read_h5ad(h5ad), spec)
    raw = {f.name: mirror / "raw" / f.name for f in spec.files}
    if all(p.is_file() for p in raw.values()):
        for f in spec.files:
            dl.verify_sha256(raw[f.name], f.sha256)
        return _convert(spec, raw, cache)
    return None


def _from_cache(spec: PublicDataset, cache: Path) -> ad.AnnData | None:
    path = cache / f"{spec.name}.h5ad"
    if not path.is_file():
        return None
    adata = ad.read_h5ad(path)
    # A cached conversion made from other original files (another pinned version) is stale.
    if dict(adata.uns.get("source", {}).get("raw_sha256", {})) != spec.source()["raw_sha256"]:
        path.unlink()
        return None
    return _finalize(adata, spec)


def load_public(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> ad.AnnData:
    """Load one of :data:`PUBLIC_DATASETS`: mirror, then cache, then network."""
    if name not in PUBLIC_DATASETS:
        raise ValueError(f"Unknown data set {name!r}; choose one of {sorted(PUBLIC_DATASETS)}.")
    spec = PUBLIC_DATASETS[name]
    cache = dl.cache_dir(cache_dir) / "public"
    mirror = dl.data_dir(data_dir)
    if mirror is not None:
        adata = _from_mirror(spec, mirror, cache)
        if adata is not None:
            return adata
    adata = _from_cache(spec, cache)
    if adata is not None:
        return adata
    if not download:
        where = f"the mirror {mirror} (as {name}.h5ad or raw/) nor " if mirror else ""
        raise FileNotFoundError(f"{name} is in neither {where}the cache {cache}; download=False.")
    paths = {
        f.name: dl.download(f.url, cache / "raw" / f.name, sha256=f.sha256, size=f.size)
        for f in spec.files
    }
    return _convert(spec, paths, cache)


_LOADER_PARAMS = """Parameters
    ----------
    data_dir
        Local mirror to look in first; defaults to ``$SCGTL_DATA_DIR``. It may hold the
        converted ``{name}.h5ad`` or the original files in ``raw/``; both are checked against
        their published sha256 and a mismatch raises :class:`~scgtl.datasets.ChecksumError`.
    cache_dir
        Where downloads and the converted ``.h5ad`` are kept; defaults to ``$SCGTL_CACHE_DIR``,
        else ``~/.cache/scgtl``.
    download
        Whether to fetch the original files from their public URL when neither the mirror nor
        the cache has the set. With ``False`` a missing set raises :class:`FileNotFoundError`.

    Returns
    -------
    AnnData, cells x genes in the original order, with ``X`` a
    :class:`scipy.sparse.csr_matrix` of float32 {units}; labels in ``obs[{label!r}]``
    (categorical); ``uns["source"]`` the provenance (url, sha256, license, citation, units) and
    ``uns["scgtl_units"] = {scgtl_units!r}``.

    Raises
    ------
    DownloadError
        The set had to be downloaded and the network is unreachable (a :class:`ConnectionError`
        whose message names the URL and the ``SCGTL_DATA_DIR`` setting)."""


def _public_loader_doc(name: str):
    """Fill the ``{params}`` of a loader's docstring with the shared, per-set text."""
    spec = PUBLIC_DATASETS[name]
    params = _LOADER_PARAMS.format(
        name=name, units=spec.units_detail, label=spec.label_key, scgtl_units=spec.units
    )

    def decorate(func):
        func.__doc__ = func.__doc__.format(params=params)
        return func

    return decorate


@_public_loader_doc("mudan_ref")
def mudan_ref(
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> ad.AnnData:
    """FACS-sorted human PBMC populations: 2,140 cells x 8,863 genes, 9 cell types.

    10x Genomics data of Zheng et al. (2017), the subsample shipped with the MUDAN R package
    (``data/referenceCounts.rda`` with the labels in ``data/referenceAnnot.rda``; GPL-3).

    {params}
    """
    return load_public("mudan_ref", data_dir=data_dir, cache_dir=cache_dir, download=download)


@_public_loader_doc("mudan_pbmcA")
def mudan_pbmcA(
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> ad.AnnData:
    """Human frozen PBMCs of donor A: 2,896 cells x 13,939 genes, unlabelled.

    10x Genomics data of Zheng et al. (2017), the subsample shipped with MUDAN
    (``data/pbmcA.rda``; GPL-3); ``obs['dataset']`` is the constant ``'pbmcA'``. It comes from
    the same study as :func:`mudan_ref`: keep one out of pre-training when the other is the
    target.

    {params}
    """
    return load_public("mudan_pbmcA", data_dir=data_dir, cache_dir=cache_dir, download=download)


@_public_loader_doc("kang_stim")
def kang_stim(
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> ad.AnnData:
    """Human PBMCs, control vs interferon-beta stimulated: 2,000 cells x 9,015 genes.

    Kang et al. (2018), 1,000 cells per condition as shipped with harmony
    (``data/pbmc_stim.RData``; GPL-3); the control cells come first.

    {params}
    """
    return load_public("kang_stim", data_dir=data_dir, cache_dir=cache_dir, download=download)


@_public_loader_doc("yan")
def yan(
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> ad.AnnData:
    """Human pre-implantation embryo cells: 90 cells x 20,214 genes, 6 stages.

    Smart-seq data of Yan et al. (2013) as shipped with SC3 (``data/yan.rda``; GPL-3). The
    values are RPKM, not counts: use a model or a transform that does not assume counts.

    {params}
    """
    return load_public("yan", data_dir=data_dir, cache_dir=cache_dir, download=download)


def pbmc68k_reduced(*, use_raw: bool = True) -> ad.AnnData:
    """Scanpy's bundled ``pbmc68k_reduced``: 700 PBMCs, 10 cell types (``obs['bulk_labels']``).

    It ships inside scanpy, so no download happens. Its ``.X`` is *scaled* (centred, unit
    variance, clipped; it has negative values) and ``.raw`` holds the log-normalised values
    (``log1p`` of library-size-normalised counts) of the same 765 genes. scgtl needs unscaled
    values, hence ``use_raw=True`` by default.

    Parameters
    ----------
    use_raw
        Return the log-normalised values of ``.raw`` as ``X`` (obs, obsm, uns kept; no
        ``.raw``). With ``False`` scanpy's object is returned as it is, scaled ``X`` included.

    Returns
    -------
    AnnData, 700 cells x 765 genes. With ``use_raw=True``: ``X`` a float32
    :class:`scipy.sparse.csr_matrix` of log1p values and ``uns["scgtl_units"] = "log1p"``. With
    ``use_raw=False``: ``uns["scgtl_units"] = "scaled"``, which scgtl refuses as input.
    ``uns["source"]`` holds the provenance in both cases.
    """
    import scanpy as sc  # imported here: scanpy is slow to import and only this loader needs it

    adata = sc.datasets.pbmc68k_reduced()
    source = {
        "name": "pbmc68k_reduced",
        "url": "bundled with scanpy (scanpy.datasets.pbmc68k_reduced)",
        "license": "BSD-3-Clause (scanpy, which bundles it); data: 10x Genomics public data set",
        "citation": _ZHENG,
        "description": (
            "700 PBMCs x 765 genes subsampled by scanpy from the 10x Genomics Fresh 68k PBMCs "
            "(Donor A) of Zheng et al. (2017); labels in obs['bulk_labels']."
        ),
    }
    if not use_raw:
        adata.uns["source"] = {**source, "units": "scaled log-normalised values"}
        adata.uns["scgtl_units"] = "scaled"
        return adata
    if adata.raw is None:
        raise ValueError("scanpy's pbmc68k_reduced has no .raw; use use_raw=False.")
    raw = adata.raw.to_adata()
    x = raw.X if sparse.issparse(raw.X) else sparse.csr_matrix(raw.X)
    out = ad.AnnData(
        sparse.csr_matrix(x, dtype=np.float32),
        obs=adata.obs.copy(),
        var=raw.var.copy(),
        obsm={k: v.copy() for k, v in adata.obsm.items()},
        uns=dict(adata.uns),
    )
    out.uns["source"] = {**source, "units": "log1p of library-size-normalised counts"}
    out.uns["scgtl_units"] = "log1p"
    return out
