"""Joining several studies into one pre-training corpus, each with its own genes and units."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from scgtl.data._align import check_unique_genes
from scgtl.data._reading import get_matrix
from scgtl.data._units import check_matrix, library_sizes

#: The ``obs`` and ``varm`` keys :func:`concat_studies` writes, the defaults of its options.
STUDY_KEY = "study"
MEASURED_KEY = "measured"
LIBRARY_SIZE_KEY = "library_size"
SCOUT_LABELS_KEY = "scout_label"

#: Species whose gene symbols are mapped to human ones by upper-casing them (``Cd3e`` ->
#: ``CD3E``): a common approximation of one-to-one orthology, not an orthology table.
MOUSE = "mouse"
HUMAN = "human"


@dataclass(frozen=True)
class Study:
    """One study of a multi-study corpus.

    Attributes
    ----------
    name
        The study's name, its value in the corpus's ``obs["study"]``.
    adata
        Its cells x genes, gene symbols as ``var_names``. Not modified.
    units
        ``"counts"`` or ``"normalized"`` (CPM, TPM, RPKM): both are depth-normalised and
        ``log1p``-transformed inside the model, so each study keeps the units it was published in.
    labels_key
        ``obs`` column of its real labels (cell types, conditions, stages) for the scouts, or
        ``None``.
    species
        ``"human"`` or ``"mouse"`` (mouse symbols are upper-cased to human ones).
    tissue
        What it is, for the model's description.
    measured
        The genes the study measured; ``None``: every gene of ``adata``. A gene of the joined
        corpus that a study did not measure is *missing* there, not zero.
    """

    name: str
    adata: ad.AnnData = field(repr=False)
    units: str
    labels_key: str | None = None
    species: str = HUMAN
    tissue: str = ""
    measured: Sequence[str] | None = field(default=None, repr=False)


def human_symbols(genes: pd.Index, species: str) -> pd.Index:
    """Gene symbols as human ones: mouse symbols upper-cased (``Cd3e`` -> ``CD3E``).

    Upper-casing is a common approximation of one-to-one orthology; it maps most mouse genes
    onto their human orthologue and misses those whose names differ between the species.
    """
    if species not in (HUMAN, MOUSE):
        raise ValueError(f"species={species!r} is not valid; choose {HUMAN!r} or {MOUSE!r}.")
    return pd.Index(genes.astype(str).str.upper()) if species == MOUSE else pd.Index(genes)


def _study_matrix(study: Study) -> ad.AnnData:
    """One study as an AnnData over its measured genes, human symbols, nothing else."""
    if study.units not in ("counts", "normalized"):
        raise ValueError(
            f"Study {study.name!r} has units={study.units!r}; a corpus study must hold counts or "
            "normalised values ('counts' or 'normalized'), which the model depth-normalises."
        )
    adata = study.adata
    check_unique_genes(adata.var_names)
    check_matrix(get_matrix(adata, None), study.units, where=f"study {study.name!r}")
    keep = np.ones(adata.n_vars, dtype=bool)
    if study.measured is not None:
        keep = adata.var_names.isin(pd.Index(study.measured))
    genes = human_symbols(adata.var_names[keep], study.species)
    unique = ~genes.duplicated()
    if not unique.all():
        warnings.warn(
            f"Study {study.name!r}: {int((~unique).sum())} genes share a symbol with another "
            "after mapping to human symbols; the first of each is kept.",
            UserWarning,
            stacklevel=3,
        )
    columns = np.flatnonzero(keep)[unique]
    matrix = sparse.csr_matrix(get_matrix(adata, None)[:, columns], dtype=np.float32)
    obs = pd.DataFrame(index=adata.obs_names.astype(str))
    obs[LIBRARY_SIZE_KEY] = library_sizes(matrix)
    return ad.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=genes[unique]))


def concat_studies(
    studies: Sequence[Study],
    *,
    study_key: str = STUDY_KEY,
    measured_key: str = MEASURED_KEY,
    scout_labels_key: str = SCOUT_LABELS_KEY,
) -> ad.AnnData:
    """Join studies with different gene panels and units into one pre-training corpus.

    Genes are joined by symbol (mouse symbols upper-cased, see :func:`human_symbols`), the
    union of all studies' genes. A gene that a study did not measure is stored as 0 in its
    rows, and ``varm[measured_key]`` says where each gene was measured, so that
    ``GTL.setup_anndata(..., batch_key=study_key, measured_key=measured_key)`` masks it out of
    pre-training instead of reading it as silent. Values are kept as published.

    Parameters
    ----------
    studies
        The studies (:class:`Study`), with unique names.
    study_key, measured_key, scout_labels_key
        Names of the columns written.

    Returns
    -------
    A new AnnData, rows in the order of ``studies``, ``X`` CSR float32, with

    - ``obs[study_key]``: the study (categorical, in the order given); ``obs["units"]``,
      ``obs["species"]``, ``obs["tissue"]``;
    - ``obs["library_size"]``: each row's total over its study's measured genes (register it as
      ``library_size_key``, so that a corpus later cut to some genes keeps the true depth);
    - ``obs[scout_labels_key]``: ``"<study>: <label>"`` where the study has labels, missing
      elsewhere (:meth:`scgtl.GTL.compute_guide`'s ``groups_key``);
    - ``varm[measured_key]``: genes x studies, ``True`` where a study measured the gene;
    - ``uns["studies"]``: one row per study (units, species, tissue, cells, genes, labels).

    Raises
    ------
    ValueError
        No studies, duplicate names, units other than counts or normalised values, values
        impossible in a study's units, or an unknown species.
    KeyError
        A ``labels_key`` that is not a column of its study.
    """
    if not studies:
        raise ValueError("concat_studies needs at least one study.")
    names = [s.name for s in studies]
    if len(set(names)) != len(names):
        raise ValueError(f"Study names must be unique; got {names}.")
    parts, summary = [], []
    for study in studies:
        part = _study_matrix(study)
        part.obs[study_key] = study.name
        part.obs["units"] = study.units
        part.obs["species"] = study.species
        part.obs["tissue"] = study.tissue
        part.obs[scout_labels_key] = _scout_labels(study)
        parts.append(part)
        summary.append(
            {
                "study": study.name,
                "units": study.units,
                "species": study.species,
                "tissue": study.tissue,
                "n_obs": part.n_obs,
                "n_genes": part.n_vars,
                "labels_key": study.labels_key or "",
            }
        )
    corpus = ad.concat(parts, join="outer", fill_value=0.0, index_unique=None)
    corpus.obs_names_make_unique()
    measured = pd.DataFrame(
        {name: corpus.var_names.isin(p.var_names) for name, p in zip(names, parts, strict=True)},
        index=corpus.var_names,
    )
    corpus.X = sparse.csr_matrix(corpus.X, dtype=np.float32)
    corpus.obs[study_key] = pd.Categorical(corpus.obs[study_key], categories=names)
    for key in ("units", "species", "tissue"):
        corpus.obs[key] = corpus.obs[key].astype("category")
    corpus.varm[measured_key] = measured
    corpus.uns["studies"] = pd.DataFrame(summary).set_index("study")
    return corpus


def _scout_labels(study: Study) -> pd.Series:
    """``"<study>: <label>"`` per row, missing where the study has no label for it."""
    index = study.adata.obs_names.astype(str)
    if study.labels_key is None:
        return pd.Series(pd.NA, index=index, dtype="string")
    if study.labels_key not in study.adata.obs:
        raise KeyError(
            f"Study {study.name!r}: labels_key={study.labels_key!r} is not a column of its obs: "
            f"{list(study.adata.obs)}."
        )
    labels = study.adata.obs[study.labels_key].astype("string")
    labels.index = index
    return (study.name + ": " + labels).astype("string")
