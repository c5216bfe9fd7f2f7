"""The atlas subsamples of iosonofabio/atlas_averages: many tissues, two species, in CPM.

Both files are assembled from the repository's ``data/subsamples/*.loom`` at a pinned commit
(at most 20 real cells per annotated cell type and atlas, each scaled to counts per million).
They are read from a local mirror (``data_dir=`` or ``$SCGTL_DATA_DIR``) or the cache and
checked against their sha256; assembling them from the looms is not part of scgtl, so without a
mirror they cannot be fetched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scgtl.datasets import _download as dl

if TYPE_CHECKING:
    import anndata as ad

_REPO = "iosonofabio/atlas_averages"
_COMMIT = "8b66f8b2ef0e4d4a863b563c9bebc6dcd7067387"


@dataclass(frozen=True)
class AtlasFile:
    """One assembled atlas subsample: its checksum, size and what it holds."""

    name: str
    sha256: str
    size: int
    species: str
    description: str


ATLAS_FILES = {
    spec.name: spec
    for spec in (
        AtlasFile(
            name="human_atlas_subsample",
            sha256="76a446f5d5d340e1b8685ec0d0e0d8c894d61c7b5919375433a464a4281b9e09",
            size=13_319_526,
            species="human",
            description=(
                "7 human atlases (obs['dataset']): Baron 2016 and Enge 2017 pancreas, Lawlor 2016 "
                "islets, Darmanis 2015 brain, Aizarani 2019 liver, Zanini 2018 PBMC, Croote 2018 "
                "B cells; an outer join of their gene panels (var['in_<dataset>'])"
            ),
        ),
        AtlasFile(
            name="tabula_muris_facs_subsample",
            sha256="d495b85f98138cf63981cddb1976beea7f01f7c8a5dd65072b5efafa9ca2c855",
            size=21_290_159,
            species="mouse",
            description="Tabula Muris 2018 FACS (Smart-seq2), 18 mouse tissues",
        ),
    )
}


#: The studies of each file (``obs["dataset"]``), as the files name them.
ATLAS_STUDIES = {
    "human_atlas_subsample": (
        "Aizaran_2019",
        "Baron_2016",
        "Croote_2018",
        "Darmanis_2015",
        "Enge_2017_manual_reannotation",
        "Lawlor_2016",
        "Zanini_2018",
    ),
    "tabula_muris_facs_subsample": ("Tabula_muris_2018_FACS",),
}


def load_atlas(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ad.AnnData:
    """Load one of :data:`ATLAS_FILES` from the mirror, else the cache, checked by sha256.

    Parameters
    ----------
    name
        ``"human_atlas_subsample"`` or ``"tabula_muris_facs_subsample"``.
    data_dir
        The mirror holding ``<name>.h5ad``; defaults to ``$SCGTL_DATA_DIR``.
    cache_dir
        Looked in next, for ``public/<name>.h5ad``; defaults to ``$SCGTL_CACHE_DIR``.

    Returns
    -------
    AnnData, cells x genes, ``X`` CSR float32 in CPM; ``obs["dataset"]``, ``obs["tissue"]``,
    ``obs["cell_type"]``, ``obs["tissue_cell_type"]``; ``var["in_<dataset>"]`` (where each gene
    was measured); ``uns["source"]`` (repository, commit, loom checksums, units).

    Raises
    ------
    FileNotFoundError
        In neither place.
    ChecksumError
        A file whose sha256 is not the published one.
    """
    import anndata as ad

    if name not in ATLAS_FILES:
        raise ValueError(f"Unknown atlas file {name!r}; choose one of {sorted(ATLAS_FILES)}.")
    spec = ATLAS_FILES[name]
    mirror = dl.data_dir(data_dir)
    places = [mirror / f"{name}.h5ad"] if mirror is not None else []
    places.append(dl.cache_dir(cache_dir) / "public" / f"{name}.h5ad")
    for path in places:
        if path.is_file():
            dl.verify_sha256(path, spec.sha256)
            return ad.read_h5ad(path)
    raise FileNotFoundError(
        f"{name}.h5ad is in none of {[str(p) for p in places]}. It is assembled from the looms of "
        f"{_REPO} at {_COMMIT} (data/subsamples/); point ${dl.DATA_DIR_ENV} at a mirror holding it."
    )


def human_atlas_subsample(
    *, data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> ad.AnnData:
    """Seven human atlases, 1,082 cells in CPM; see :func:`load_atlas` for the options."""
    return load_atlas("human_atlas_subsample", data_dir=data_dir, cache_dir=cache_dir)


def tabula_muris_facs_subsample(
    *, data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> ad.AnnData:
    """Tabula Muris FACS, 18 mouse tissues, 1,891 cells in CPM; see :func:`load_atlas`."""
    return load_atlas("tabula_muris_facs_subsample", data_dir=data_dir, cache_dir=cache_dir)
