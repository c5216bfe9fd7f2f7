"""A GTL's corpus: registration with scvi-tools' AnnDataManager, and what it records."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField, NumericalObsField

from scgtl.data import N_TOP_GENES, training_genes
from scgtl.data._checks import check_corpus, check_measured
from scgtl.data._units import check_library_sizes
from scgtl.model._base import recording_setup_failure

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

    from scgtl._constants import Units


class CorpusMixin:
    """:meth:`setup_anndata` of :class:`~scgtl.GTL`, and the registry's settings as properties."""

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        layer: str | None = None,
        labels_key: str | None = None,
        batch_key: str | None = None,
        units: Units = "counts",
        library_size_key: str | None = None,
        n_top_genes: int | None = N_TOP_GENES,
        genes: Sequence[str] | None = None,
        measured_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register a pre-training corpus, checking its values against the declared units.

        The model is trained on the corpus's ``n_top_genes`` most variable genes (2,000 by
        default), chosen here once and kept in the registry; ``adata`` itself is not subset.

        Parameters
        ----------
        adata
            Cells or samples x genes; may be backed (``read_h5ad(..., backed="r")``), or
            several files opened as one by :func:`scgtl.data.read_collection`.
        layer
            Layer holding the expression values; ``None`` uses ``adata.X``.
        labels_key
            Optional ``obs`` column of corpus labels: adds a classification term to
            pre-training and defines the scout problems. Without it pre-training is
            self-supervised and scouts come from clusters of the model's latent space.
        batch_key
            Optional ``obs`` column of batches (registered for bookkeeping).
        units
            ``"counts"`` (raw integers), ``"normalized"`` (TPM/FPKM/RPKM...) or ``"log1p"``
            (``log1p`` of normalised values, e.g. scanpy's ``adata.raw``); the first two are
            normalised and ``log1p``-transformed inside the model.
        library_size_key
            Optional ``obs`` column of each row's total over *all* of its genes, for a corpus
            already cut to some genes (``scgtl.data.library_sizes(adata.X)`` before cutting), so
            that it is normalised as a query is. Without it: the row sums of the registered
            matrix. Only for ``units="counts"`` or ``"normalized"``.
        n_top_genes
            Pre-train on this many highly variable genes (:func:`scgtl.data.highly_variable_genes`:
            scanpy's ``seurat_v3`` on counts, ``seurat`` otherwise); ``None``: every gene. A
            corpus with no more genes than this keeps all of them. A backed corpus with more
            needs ``n_top_genes=None`` or ``genes``.
        genes
            The genes to pre-train on, instead of choosing them by ``n_top_genes``.
        measured_key
            For a corpus of studies with different gene panels (:func:`scgtl.data.concat_studies`):
            a ``varm`` key of a genes x studies boolean DataFrame, one column per ``batch_key``
            category. A gene a row's study did not measure is missing, not zero: hidden from the
            encoder, left out of the loss, and the ``n_top_genes`` are ranked within each study.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Returns
        -------
        Nothing. Like every scvi-tools model, registration adds ``adata.uns["_scvi_uuid"]``,
        ``adata.uns["_scvi_manager_uuid"]`` and ``adata.obs["_scvi_labels"]`` /
        ``adata.obs["_scvi_batch"]``.

        Raises
        ------
        ValueError
            Empty data, duplicate gene names, NaN/inf or negative values, non-integer values
            declared as counts, or an unknown ``units``.
        KeyError
            Unknown ``layer``, ``labels_key``, ``batch_key``, ``library_size_key``,
            ``measured_key`` or ``genes``.
        """
        with recording_setup_failure(adata):
            check_corpus(
                adata,
                layer=layer,
                units=units,
                labels_key=labels_key,
                batch_key=batch_key,
                library_size_key=library_size_key,
            )
            if measured_key is not None:
                check_measured(adata, measured_key=measured_key, batch_key=batch_key)
            # Kept in the registry (every local here is), so a re-registration reuses it.
            genes = training_genes(
                adata,
                genes=genes,
                n_top_genes=n_top_genes,
                layer=layer,
                units=units,
                batch_key=None if measured_key is None else batch_key,
            )
        setup_method_args = cls._get_setup_method_args(**locals())
        fields = _corpus_fields(layer, batch_key, labels_key, library_size_key)
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @property
    def gene_names(self) -> pd.Index:
        """The genes the model is trained on (``setup_anndata``'s ``n_top_genes``/``genes``)."""
        genes = self.registry_["setup_args"].get("genes")
        return self._registered_genes if genes is None else pd.Index(genes)

    @property
    def _registered_genes(self) -> pd.Index:
        return pd.Index(self.get_var_names())

    @property
    def measured_key(self) -> str | None:
        """``varm`` key of the corpus's genes x studies "measured" table, or ``None``."""
        return self.registry_["setup_args"].get("measured_key")

    def _measured_genes(self) -> np.ndarray | None:
        """``(n_batch, n_genes)`` booleans: the model's genes each corpus study measured.

        Rows follow the registered batch categories. A model loaded without its corpus gets a
        placeholder of the right shape, which the saved weights then overwrite.
        """
        if self.measured_key is None:
            return None
        if self.adata is None:
            return np.ones((self.summary_stats.n_batch, len(self.gene_names)), dtype=bool)
        batches = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        table = self.adata.varm[self.measured_key]
        studies = [str(c) for c in batches.categorical_mapping]
        return table.loc[self.gene_names, studies].to_numpy(dtype=bool).T

    @property
    def units(self) -> Units:
        """Units of the corpus, the default for queries."""
        return self.registry_["setup_args"]["units"]

    @property
    def layer(self) -> str | None:
        """Layer of the corpus, the default for queries."""
        return self.registry_["setup_args"]["layer"]

    @property
    def labels_key(self) -> str | None:
        """Corpus labels column, or ``None`` for self-supervised pre-training."""
        return self.registry_["setup_args"]["labels_key"]

    @property
    def library_size_key(self) -> str | None:
        """``obs`` column of per-row totals over all genes, or ``None`` (row sums)."""
        return self.registry_["setup_args"].get("library_size_key")

    def _stored_library_sizes(self, adata: AnnData, units: Units) -> np.ndarray | None:
        """The corpus's per-row totals, for an AnnData that carries the registered column."""
        key = self.library_size_key
        if key is None or units == "log1p" or key not in adata.obs:
            return None
        return check_library_sizes(adata.obs[key], units, key=key)


def _corpus_fields(
    layer: str | None, batch_key: str | None, labels_key: str | None, library_size_key: str | None
) -> list:
    """scvi-tools' fields of a GTL corpus: expression, batches, labels, library sizes."""
    return [
        LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
        CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        NumericalObsField(REGISTRY_KEYS.SIZE_FACTOR_KEY, library_size_key, required=False),
    ]
