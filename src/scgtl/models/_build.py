"""Pre-training the shipped model from its corpus: the one recipe, for the file and for scoring."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from scgtl._settings import scvi_seed
from scgtl.data import N_TOP_GENES, highly_variable_genes
from scgtl.data._studies import (
    HUMAN,
    LIBRARY_SIZE_KEY,
    MEASURED_KEY,
    MOUSE,
    SCOUT_LABELS_KEY,
    STUDY_KEY,
)
from scgtl.models._corpus import build_corpus

if TYPE_CHECKING:
    from collections.abc import Iterable

    import anndata as ad

    from scgtl.model import GTL

#: The seed of the shipped model's pre-training and scouts.
BUILD_SEED = 0


def pretrain_corpus(
    corpus: ad.AnnData,
    *,
    n_top_genes: int = N_TOP_GENES,
    seed: int = BUILD_SEED,
    scout_labels: bool = True,
    progress: bool | None = None,
) -> GTL:
    """Pre-train a :class:`~scgtl.GTL` on a multi-study corpus, as the shipped model is.

    The ``n_top_genes`` most variable genes are ranked within each study (a gene is variable
    only where it was measured); unmeasured genes are masked out of pre-training
    (``measured_key``); each row is depth-normalised by its total over its own study's genes;
    the scouts draw from the studies' real labels, and from clusters of the unlabelled rows.

    Parameters
    ----------
    corpus
        As :func:`scgtl.data.concat_studies` returns it. Not modified.
    n_top_genes
        Genes of the model.
    seed
        ``scvi.settings.seed`` during the call (restored after), and the scouts' seed.
    scout_labels
        Draw the scouts from the studies' labels (``False``: clusters of every row, to measure
        what the labels add).
    progress
        Show progress bars; default :attr:`scgtl.settings.progress_bar`.

    Returns
    -------
    The trained model, with its guide.
    """
    from scgtl.model import GTL

    genes = highly_variable_genes(
        corpus, n_top_genes=n_top_genes, units="normalized", batch_key=STUDY_KEY
    )
    # Cut to the model's genes once: every mini-batch then reads 2,000 columns, not 77,000.
    # Each row keeps its true depth through library_size_key.
    corpus = corpus[:, genes].copy()
    GTL.setup_anndata(
        corpus,
        units="normalized",  # counts, CPM and RPKM share the depth normalisation and log1p
        batch_key=STUDY_KEY,
        measured_key=MEASURED_KEY,
        library_size_key=LIBRARY_SIZE_KEY,
        n_top_genes=None,
    )
    with scvi_seed(seed):
        model = GTL(corpus)
        model.train(
            enable_progress_bar=progress,
            guide_kwargs={"seed": seed, "groups_key": SCOUT_LABELS_KEY if scout_labels else None},
        )
    return model


def build_model(
    *,
    data_dir: str | os.PathLike | None = None,
    species: Iterable[str] = (HUMAN, MOUSE),
    exclude: Iterable[str] = (),
    seed: int = BUILD_SEED,
    scout_labels: bool = True,
    progress: bool | None = None,
) -> GTL:
    """The shipped model's recipe: :func:`build_corpus`, then :func:`pretrain_corpus`.

    ``exclude`` leaves studies out (leave-one-study-out scoring); ``species`` keeps only some.
    See those functions for the options.

    Returns
    -------
    The trained model; its corpus stays attached (``model.adata``).
    """
    corpus = build_corpus(data_dir=data_dir, species=species, exclude=exclude)
    return pretrain_corpus(corpus, seed=seed, scout_labels=scout_labels, progress=progress)
