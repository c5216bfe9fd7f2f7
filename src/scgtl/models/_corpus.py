"""The multi-study corpus of the shipped model: every public study that the data mirror holds."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from scgtl.data import Study, concat_studies
from scgtl.data._studies import HUMAN, MOUSE, STUDY_KEY

if TYPE_CHECKING:
    from collections.abc import Iterable

    import anndata as ad

#: Where each study's real labels for the scouts are, by study (the atlases': by file).
_PUBLIC_STUDIES = (
    # (loader, study name, tissue, obs column of its labels or None)
    ("mudan_pbmcA", "Zheng_2017_pbmcA", "PBMC (10x, frozen, donor A)", None),
    ("mudan_ref", "Zheng_2017_sorted", "PBMC (10x, sorted populations)", "cell_type"),
    ("kang_stim", "Kang_2018", "PBMC (10x, control and IFN-beta stimulated)", "stim"),
    ("yan", "Yan_2013", "pre-implantation embryo (Smart-seq)", "cell_type"),
)
#: Tabula Muris's cell types recur across tissues ("endothelial cell"): its labels are per tissue.
_ATLAS_LABELS = {
    "human_atlas_subsample": "cell_type",
    "tabula_muris_facs_subsample": "tissue_cell_type",
}


def corpus_studies(
    *,
    data_dir: str | os.PathLike | None = None,
    species: Iterable[str] = (HUMAN, MOUSE),
    exclude: Iterable[str] = (),
) -> list[Study]:
    """Every study of the shipped model's corpus, read from the data mirror (checked by sha256).

    The four public sets of :mod:`scgtl.datasets` (UMI counts and RPKM), the seven studies of
    the human atlas subsample and Tabula Muris (CPM). Each keeps its own units and gene panel;
    the atlas file's genes that a study did not measure (``var["in_<dataset>"]``) are not part
    of that study. Mouse genes are matched to human ones by upper-casing their symbols.

    Parameters
    ----------
    data_dir
        The mirror; defaults to ``$SCGTL_DATA_DIR``.
    species
        Keep the studies of these species (``"human"``, ``"mouse"``).
    exclude
        Names of studies to leave out (leave-one-study-out; :func:`all_study_names`).

    Returns
    -------
    The studies, in a fixed order.

    Raises
    ------
    ValueError
        An unknown species or study name in ``exclude``.
    """
    from scgtl import datasets

    species = set(species)
    exclude = set(exclude)
    unknown_species = species - {HUMAN, MOUSE}
    if unknown_species:
        raise ValueError(f"Unknown species {sorted(unknown_species)}; choose {HUMAN!r}, {MOUSE!r}.")
    unknown = exclude - set(all_study_names())
    if unknown:
        raise ValueError(f"exclude={sorted(unknown)} names no study; studies: {all_study_names()}.")
    studies = []
    if HUMAN in species:
        for loader, name, tissue, labels_key in _PUBLIC_STUDIES:
            if name in exclude:
                continue
            adata = getattr(datasets, loader)(data_dir=data_dir, download=False)
            units = adata.uns["scgtl_units"]
            studies.append(Study(name, adata, units, labels_key, HUMAN, tissue))
        studies += _atlas_studies("human_atlas_subsample", HUMAN, data_dir, exclude)
    if MOUSE in species:
        studies += _atlas_studies("tabula_muris_facs_subsample", MOUSE, data_dir, exclude)
    return studies


def all_study_names() -> list[str]:
    """The names of every study of the corpus (without reading it)."""
    from scgtl.datasets._atlas import ATLAS_STUDIES

    return [name for _, name, _, _ in _PUBLIC_STUDIES] + [
        study for file in ATLAS_STUDIES for study in ATLAS_STUDIES[file]
    ]


def _atlas_studies(file: str, species: str, data_dir, exclude: set[str]) -> list[Study]:
    """The studies of one atlas file, split by ``obs["dataset"]``, each over its own genes."""
    from scgtl.datasets import load_atlas

    atlas = load_atlas(file, data_dir=data_dir)
    studies = []
    for name in atlas.obs["dataset"].astype(str).unique():
        if name in exclude:
            continue
        rows = atlas[atlas.obs["dataset"].astype(str) == name]
        measured_column = f"in_{name}"
        measured = (
            rows.var_names[rows.var[measured_column].to_numpy(dtype=bool)]
            if measured_column in rows.var
            else None
        )
        tissues = sorted(rows.obs["tissue"].astype(str).unique())
        tissue = tissues[0] if len(tissues) == 1 else f"{len(tissues)} tissues"
        studies.append(
            Study(name, rows, "normalized", _ATLAS_LABELS[file], species, tissue, measured)
        )
    return studies


def build_corpus(
    *,
    data_dir: str | os.PathLike | None = None,
    species: Iterable[str] = (HUMAN, MOUSE),
    exclude: Iterable[str] = (),
) -> ad.AnnData:
    """The multi-study corpus: :func:`corpus_studies` joined by :func:`scgtl.data.concat_studies`.

    Returns
    -------
    The corpus, with ``obs["study"]``, ``obs["scout_label"]``, ``obs["library_size"]`` and
    ``varm["measured"]`` (see :func:`scgtl.data.concat_studies`).
    """
    studies = corpus_studies(data_dir=data_dir, species=species, exclude=exclude)
    return concat_studies(studies, study_key=STUDY_KEY)
