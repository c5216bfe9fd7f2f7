"""Data sets: recount3 studies and corpora, and the small public sets used in the docs.

Loaders download into a cache directory (``$SCGTL_CACHE_DIR``, default ``~/.cache/scgtl``) and
verify what they fetch. ``$SCGTL_DATA_DIR`` points the public-set loaders at a local mirror
(holding ``<name>.h5ad`` or the original files in ``raw/``) and ``$SCGTL_RECOUNT3_URL`` points
the recount3 loaders at a mirror of recount3, for work without network. Importing this module
does no I/O.
"""

from scgtl.datasets._atlas import (
    ATLAS_FILES,
    human_atlas_subsample,
    load_atlas,
    tabula_muris_facs_subsample,
)
from scgtl.datasets._download import ChecksumError, DownloadError, RemoteFileNotFoundError
from scgtl.datasets._public import (
    PUBLIC_DATASETS,
    kang_stim,
    mudan_pbmcA,
    mudan_ref,
    pbmc68k_reduced,
    yan,
)
from scgtl.datasets._recount3 import (
    read_gene_annotation,
    read_gene_sums,
    read_metadata,
    recount3,
    recount3_corpus,
    recount3_paths,
)

__all__ = [
    "ATLAS_FILES",
    "PUBLIC_DATASETS",
    "ChecksumError",
    "DownloadError",
    "RemoteFileNotFoundError",
    "human_atlas_subsample",
    "kang_stim",
    "load_atlas",
    "mudan_pbmcA",
    "mudan_ref",
    "pbmc68k_reduced",
    "read_gene_annotation",
    "read_gene_sums",
    "read_metadata",
    "recount3",
    "recount3_corpus",
    "recount3_paths",
    "tabula_muris_facs_subsample",
    "yan",
]
