"""The fine-tuned few-shot classifier returned by :meth:`scgtl.GTL.fine_tune`."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass

from scgtl._constants import DEFAULT_KEY_ADDED
from scgtl._settings import uses_threads
from scgtl._version import package_version
from scgtl.data import align_genes
from scgtl.data._units import check_units_name
from scgtl.model._base import ScgtlModelMixin
from scgtl.module import GTLClassifierModule
from scgtl.train import UNKNOWN_LABEL, UNKNOWN_LEVEL, conformal_threshold, prototype_novelty
from scgtl.train._calibration import check_unknown

if TYPE_CHECKING:
    from scgtl._constants import Units

#: Colour of the ``"unknown"`` category in ``uns[f"{key_added}_prediction_colors"]``.
UNKNOWN_COLOR = "#d3d3d3"


class GTLClassifier(ScgtlModelMixin, BaseModelClass):
    """A few-shot classifier fine-tuned from a :class:`~scgtl.GTL` model.

    Made by :meth:`scgtl.GTL.fine_tune`, not directly. It keeps the pre-trained model's genes:
    any query is aligned to them. By default it also has a wide path, a logistic regression on
    the fine-tuned study's own genes (:attr:`wide_gene_names_`), pooled with the network's
    prediction with the weight ``fit_record_["wide_weight"]``; a query is aligned to those genes
    too. Its registry (scvi-tools' record of genes and label
    categories) is built on a small anchor AnnData with one row per class, so it can be saved,
    loaded and used without the study it was fitted on.

    Parameters
    ----------
    adata
        The anchor AnnData registered with :meth:`setup_anndata`.
    registry
        A saved registry (used by :meth:`load`).
    n_wide_genes
        Genes of the wide path (``0``: none), a logistic regression on the fine-tuned study's
        own genes pooled with the network (see :meth:`scgtl.GTL.fine_tune`).
    reference_encoder
        Whether the classifier keeps a frozen copy of the encoder it was fine-tuned from, whose
        latent space the novelty score also reads (see :meth:`predict`).
    **architecture
        ``n_hidden``, ``n_latent``, ``n_layers``, ``dropout_rate`` of the pre-trained encoder
        (see :class:`~scgtl.module.MLPEncoder`).

    Attributes
    ----------
    classes_
        The class names, in the order of the head's outputs (the columns of
        :meth:`predict_proba`).
    query_layer_
        The layer fine-tuning read, used by default when predicting.
    wide_gene_names_
        The genes of the wide path (the fine-tuned study's own genes, in its order); empty
        without a wide path. A query is aligned to them as to the model's genes.
    fit_record_
        How the classifier was fitted (saved with it), a dict:

        ``"support_obs_names"``
            ``obs_names`` of the support rows it was trained on (numpy array of str, in row
            order). :meth:`predict` on the study still predicts these cells and marks them in
            ``obs[f"{key_added}_is_support"]``; leave them out when scoring.
        ``"losses"``
            Training loss at every step (float32 array of ``n_steps``).
        ``"use_guide"``
            Whether updates were scaled by a guide (GTL) rather than plain fine-tuning.
        ``"from_scratch"``
            Whether the encoder started from a random initialisation.
        ``"k_shot"``
            The ``k_shot`` passed to ``fine_tune`` (``None``, or ignored, when
            ``support_indices`` were given).
        ``"seed"``
            Seed of the support draw, the head's initialisation and dropout.
        ``"n_steps"``, ``"lr"``, ``"weight_decay"``
            The Adam fine-tuning settings.
        ``"head_init"``
            How the head was initialised (``"prototypes"`` or ``"random"``).
        ``"wide"``
            Whether the classifier has a wide path.
        ``"wide_weight"``
            Weight ``w`` of the wide path in the pooled prediction (``0.0`` without one).
        ``"wide_weight_source"``
            ``"cross-validation"`` (chosen on the support), ``"one-shot default"`` (a class
            with a single sample), ``"given"`` or ``"none"``.
        ``"wide_form"``
            What the wide path's logistic regression read (``FineTunePlan.wide_form``):
            ``"genes"``, ``"scaled_genes"``, ``"pca"`` or ``"pca+scaled_genes"``; ``None``
            without a wide path.
        ``"wide_form_cv_log_loss"``
            With ``wide_form="auto"`` and cross-validation: each candidate form's least
            out-of-fold log-loss, in the order of ``scgtl.train._wide.AUTO_WIDE_FORMS``.
        ``"transductive"``, ``"n_unlabelled"``
            Whether fine-tuning also read the study's rows outside the support (its wide path
            on the study's principal components, see ``fine_tune``'s ``transductive``), and
            how many such rows it read (``0`` when inductive).
        ``"adapted"``, ``"adaptation"``
            Whether the network started from a model adapted to the study, and that
            adaptation's ``"n_steps"``, ``"replay"`` and ``"seed"`` (``None`` when not adapted).
        ``"wide_weight_grid"``, ``"wide_cv_log_loss"``
            With cross-validation: the weights tried and the out-of-fold log-loss at each.
        ``"temperature"``, ``"temperature_source"``
            The temperature ``T`` that divides the pooled logits before the softmax of
            :meth:`predict_proba` and :meth:`predict` (calibration; it never changes the
            argmax). Fitted on the pooled out-of-fold predictions of the wide path's
            cross-validation (``"cross-validation"``, see :func:`scgtl.train.fit_temperature`);
            ``1.0`` (``"none"``) without cross-validation (one support cell in a class,
            ``wide=False`` or a given ``wide_weight``).
        ``"support_log_proba"``
            With cross-validation: the pooled out-of-fold log-probabilities of the support
            cells (``(n_support, n_classes)``, rows in support order) the temperature was
            fitted on.
        ``"prototypes"``, ``"novelty_spread"``
            Each class's mean latent code of the support cells (``(n_classes, n_latent)``) and
            the support's pooled within-class spread: the reference of the novelty score.
        ``"reference_prototypes"``, ``"reference_novelty_spread"``
            The same in the latent space of the encoder fine-tuning started from (the
            pre-trained, or adapted, model's), kept with the classifier; absent when it was
            fine-tuned from scratch.
        ``"support_novelty"``, ``"novelty_source"``
            Held-out novelty of every support cell, what ``predict(unknown="auto")`` calibrates
            its threshold on: against the prototypes of the cross-validation fold that left the
            cell out (``"cross-validation"``), or, without cross-validation, against prototypes
            of the final network built without it (``"leave-one-out"``; NaN for a class's only
            cell).
    scgtl_version_
        The scgtl version that made it.
    """

    _module_cls = GTLClassifierModule

    def __init__(
        self,
        adata: AnnData | None = None,
        registry: dict | None = None,
        n_wide_genes: int = 0,
        reference_encoder: bool = False,
        **architecture,
    ):
        super().__init__(adata, registry)
        self.module = self._module_cls(
            self.summary_stats.n_vars,
            self.summary_stats.n_labels,
            n_wide=n_wide_genes,
            reference=reference_encoder,
            **architecture,
        )
        self.wide_gene_names_: np.ndarray = np.array([], dtype=str)
        self.classes_: list[str] = list(self._registered_classes())
        self.query_layer_: str | None = None
        self.fit_record_: dict = {}
        self.scgtl_version_ = package_version()
        self._source: AnnData | None = None
        self._model_summary_string = (
            f"GTLClassifier: {len(self.classes_)} classes of {self.labels_key!r}, "
            f"{self.summary_stats.n_vars} genes ({self.units})"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        labels_key: str,
        units: Units = "counts",
        **kwargs,
    ) -> None:
        """Register the anchor AnnData (one row per class, the model's genes).

        Parameters
        ----------
        adata
            Anchor AnnData.
        labels_key
            ``obs`` column of the class names.
        units
            Units of the target data the classifier reads.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Returns
        -------
        Nothing; scvi-tools registration keys are added to ``adata``.
        """
        check_units_name(units)
        setup_method_args = cls._get_setup_method_args(**locals())
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, None, is_count_data=False),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def from_network(
        cls,
        network: GTLClassifierModule,
        *,
        gene_names: pd.Index,
        classes: pd.Index,
        labels_key: str,
        layer: str | None,
        units: Units,
        source: AnnData | None,
        fit_record: dict,
        architecture: dict,
        wide_gene_names: pd.Index | None = None,
    ) -> GTLClassifier:
        """Wrap a fine-tuned network (used by :meth:`scgtl.GTL.fine_tune`)."""
        anchor = AnnData(
            X=sparse.csr_matrix((len(classes), len(gene_names)), dtype=np.float32),
            obs=pd.DataFrame(
                {labels_key: pd.Categorical(list(classes), categories=list(classes))},
                index=[f"class_{i}" for i in range(len(classes))],
            ),
            var=pd.DataFrame(index=pd.Index(gene_names, dtype=str)),
        )
        with warnings.catch_warnings():
            # One anchor row per class is by design; scvi-tools warns about small categories.
            warnings.filterwarnings("ignore", message=".*fewer than 3 cells.*")
            cls.setup_anndata(anchor, labels_key=labels_key, units=units)
        n_wide = 0 if wide_gene_names is None else len(wide_gene_names)
        model = cls(
            anchor, n_wide_genes=n_wide, reference_encoder=network.has_reference, **architecture
        )
        if n_wide:
            model.wide_gene_names_ = np.asarray(wide_gene_names, dtype=str)
        if model.classes_ != [str(c) for c in classes]:
            raise RuntimeError("Registered classes differ from the fitted head's classes.")
        model.module.load_state_dict(network.state_dict())
        model.module.eval()
        model.query_layer_ = layer
        model.fit_record_ = fit_record
        model.is_trained_ = True
        model._source = source
        return model

    def _registered_classes(self) -> np.ndarray:
        state = self.registry_["field_registries"][REGISTRY_KEYS.LABELS_KEY]["state_registry"]
        return np.asarray(state["categorical_mapping"]).astype(str)

    @property
    def labels_key(self) -> str:
        """The target's labels column."""
        return self.registry_["setup_args"]["labels_key"]

    @property
    def units(self) -> Units:
        """Units of the target data."""
        return self.registry_["setup_args"]["units"]

    def train(self, *args, **kwargs):
        """Not available: classifiers are made by :meth:`scgtl.GTL.fine_tune`."""
        raise NotImplementedError("Fit a GTLClassifier with scgtl.GTL.fine_tune().")

    # ------------------------------------------------------------------ inference
    def _resolve_query(self, adata: AnnData | None, layer: str | None):
        if adata is None:
            if self._source is None:
                raise ValueError(
                    "This classifier holds no AnnData (e.g. it was loaded from disk); pass adata=."
                )
            adata = self._source
        return adata, self.query_layer_ if layer is None else layer

    @torch.inference_mode()
    def _forward(
        self, adata, *, layer, batch_size, reference: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Latent codes, probabilities and (with ``reference``) reference latent codes."""
        self.module.eval()
        reference = reference and self.module.has_reference
        latents, probas, references = [], [], []
        gene_lists = [(self.gene_names, True)]
        if self.module.has_wide_path:
            gene_lists.append((pd.Index(self.wide_gene_names_), False))
        # One read of each block of the query feeds both paths.
        for x, *wide in self._log_expression_views(
            adata, layer=layer, units=self.units, batch_size=batch_size, gene_lists=gene_lists
        ):
            out = self.module(x, wide[0] if wide else None)
            latents.append(out["z"].cpu().numpy())
            probas.append(torch.softmax(out["logits"] / self.temperature, dim=1).cpu().numpy())
            if reference:
                references.append(self.module.reference_latent(x).cpu().numpy())
        return (
            np.concatenate(latents),
            np.concatenate(probas),
            np.concatenate(references) if reference else None,
        )

    @property
    def temperature(self) -> float:
        """The calibration temperature ``fit_record_["temperature"]`` (``1.0`` if absent)."""
        return float(self.fit_record_.get("temperature", 1.0))

    def novelty(self, latent: np.ndarray, reference_latent: np.ndarray | None = None) -> np.ndarray:
        """Novelty of latent codes: see :meth:`predict`.

        Parameters
        ----------
        latent
            Codes in the fine-tuned latent space (:meth:`get_latent_representation`).
        reference_latent
            The same cells' codes in the reference latent space
            (``get_latent_representation(..., reference=True)``); required when the classifier
            keeps a reference encoder.

        Returns
        -------
        Distance to the nearest class prototype of the support, in units of the support's
        within-class spread, in the fine-tuned space, plus the same in the reference space
        when the classifier keeps one. NaN for a classifier made before scgtl recorded
        prototypes.
        """
        record = self.fit_record_
        if "prototypes" not in record:
            return np.full(len(latent), np.nan)
        novelty = prototype_novelty(latent, record["prototypes"], record["novelty_spread"])
        if "reference_prototypes" not in record:
            return novelty
        if reference_latent is None:
            raise ValueError(
                "This classifier's novelty also reads the reference latent space: pass "
                "reference_latent=clf.get_latent_representation(adata, reference=True)."
            )
        if len(reference_latent) != len(latent):
            raise ValueError(
                f"reference_latent has {len(reference_latent)} rows and latent {len(latent)}; "
                "give the same cells' codes in both spaces."
            )
        return novelty + prototype_novelty(
            reference_latent, record["reference_prototypes"], record["reference_novelty_spread"]
        )

    def novelty_threshold(self, unknown: float | str = "auto") -> float:
        """The novelty above which ``predict(unknown=unknown)`` answers ``"unknown"``.

        ``"auto"``: the conformal quantile at level :data:`scgtl.train.UNKNOWN_LEVEL` of the
        support cells' held-out novelty ``fit_record_["support_novelty"]``
        (:func:`scgtl.train.conformal_threshold`); a number is returned as it is.
        """
        check_unknown(unknown)
        if unknown is None:
            raise ValueError("unknown=None has no threshold; give 'auto' or a number >= 0.")
        if not isinstance(unknown, str):
            return float(unknown)
        if "support_novelty" not in self.fit_record_:
            raise ValueError(
                "unknown='auto' needs the support's held-out novelty, which this classifier "
                "(made before scgtl recorded it) lacks; fine-tune it again or give a number."
            )
        return conformal_threshold(self.fit_record_["support_novelty"], UNKNOWN_LEVEL)

    @uses_threads
    def predict_proba(
        self, adata: AnnData | None = None, *, layer: str | None = None, batch_size: int = 1024
    ) -> pd.DataFrame:
        """Class probabilities of every observation.

        Parameters
        ----------
        adata
            Query AnnData (genes aligned to the model's); defaults to the study the classifier
            was fine-tuned on.
        layer
            Layer to read; defaults to the layer used in fine-tuning.
        batch_size
            Observations per batch; only one batch is dense at a time.

        Returns
        -------
        DataFrame of ``obs_names`` x :attr:`classes_`.
        """
        adata, layer = self._resolve_query(adata, layer)
        _, proba, _ = self._forward(adata, layer=layer, batch_size=batch_size)
        return pd.DataFrame(proba, index=adata.obs_names.copy(), columns=self.classes_)

    @uses_threads
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        *,
        layer: str | None = None,
        batch_size: int = 1024,
        reference: bool = False,
    ) -> np.ndarray:
        """Latent representation of the fine-tuned encoder, ``(n_obs, n_latent)``.

        With ``reference=True``, that of the encoder fine-tuning started from, which the
        classifier keeps for the novelty score (an error when it keeps none: fine-tuned from
        scratch, or made before scgtl kept it).
        """
        if reference and not self.module.has_reference:
            raise ValueError(
                "reference=True, but this classifier keeps no reference encoder (fine-tuned "
                "from scratch, or made by scgtl before it kept one)."
            )
        adata, layer = self._resolve_query(adata, layer)
        latent, _, reference_latent = self._forward(
            adata, layer=layer, batch_size=batch_size, reference=reference
        )
        return reference_latent if reference else latent

    @uses_threads
    def predict(
        self,
        adata: AnnData | None = None,
        *,
        layer: str | None = None,
        key_added: str = DEFAULT_KEY_ADDED,
        inplace: bool = True,
        batch_size: int = 1024,
        unknown: float | str | None = None,
    ) -> pd.Series:
        """Predict the class of every observation, or ``"unknown"`` for cells unlike the support.

        Each cell also gets a *novelty* score (:meth:`novelty`): its distance to the nearest
        class prototype of the support, in units of the support's spread, in the fine-tuned and
        the pre-trained latent spaces; the support's own cells score about 1. With ``unknown``,
        cells above a threshold are labelled ``"unknown"`` instead of being forced into the
        nearest wrong class; ``"auto"`` takes the 95 % conformal quantile of the support's own
        out-of-fold novelty (:meth:`novelty_threshold`; ``docs/novelty.md``). Probabilities are
        calibrated by temperature scaling (``fit_record_["temperature"]``), which never changes
        the argmax.

        Parameters
        ----------
        adata
            Query AnnData (any genes: they are aligned to the model's); defaults to the study the
            classifier was fine-tuned on.
        layer
            Layer to read; defaults to the layer used in fine-tuning.
        key_added
            Prefix of the keys written.
        inplace
            Write the results into ``adata``; otherwise only return the labels.
        batch_size
            Observations per batch; only one batch is dense at a time.
        unknown
            ``None`` (default): every cell gets one of :attr:`classes_`. A number ``>= 0``:
            cells whose novelty is above it are labelled ``"unknown"``. ``"auto"``: the
            threshold calibrated on the support (:meth:`novelty_threshold`).

        Returns
        -------
        Predicted labels (categorical Series indexed by ``obs_names``; categories
        :attr:`classes_`, in the order of ``adata.obs[labels_key]``'s categories where the
        query has that categorical column, so that legends of truth and prediction agree; then
        ``"unknown"`` when ``unknown`` is given). With ``inplace=True`` these keys are written,
        and nothing else in ``adata`` changes:

        ``adata.obs[f"{key_added}_prediction"]``
            Predicted class (categorical, categories as above, ``"unknown"`` included when
            ``unknown`` is given, whether or not a cell gets it).
        ``adata.obs[f"{key_added}_confidence"]``
            Calibrated probability of the most probable class (also for cells labelled
            ``"unknown"``). It does not account for genes of the model that the query lacks
            (see ``gene_overlap`` below).
        ``adata.obs[f"{key_added}_novelty"]``
            Novelty score (float32, >= 0; higher = less like any class of the support), as
            described above. NaN for a classifier saved before scgtl recorded prototypes.
        ``adata.obs[f"{key_added}_is_support"]``
            ``True`` for the cells the classifier was trained on
            (``fit_record_["support_obs_names"]``); leave them out when scoring.
        ``adata.obsm[f"{key_added}_proba"]``
            DataFrame of calibrated class probabilities, one column per class in
            :attr:`classes_`.
        ``adata.obsm[f"X_{key_added}"]``
            The fine-tuned encoder's latent representation.
        ``adata.uns[f"{key_added}_prediction_colors"]``
            Each class's colour in ``adata.uns[f"{labels_key}_colors"]`` (light grey for
            ``"unknown"``), so scanpy plots truth and prediction alike; only where that gives a
            colour to every class (otherwise removed, and scanpy picks its own).
        ``adata.uns[key_added]``
            A dict of the query's gene overlap: ``"n_genes_model"`` (the model's genes),
            ``"n_genes_found"`` (how many of them the query has) and ``"gene_overlap"`` (their
            fraction). Missing genes are zero-filled. With a wide path, also
            ``"n_genes_wide"`` (its genes, :attr:`wide_gene_names_`) and
            ``"n_genes_wide_found"`` (how many of them the query has). With ``unknown``, also
            ``"unknown_threshold"`` (the novelty threshold used) and ``"n_unknown"`` (cells
            labelled ``"unknown"``).

        Raises
        ------
        ValueError
            ``unknown`` not ``None``, ``"auto"`` or a finite number >= 0; ``"auto"`` with no
            support class of two cells, or a class named ``"unknown"``; a query sharing fewer
            than 5 % (or 10) of the model's genes (below half, a warning); rows with NaN/inf or
            values impossible in the classifier's units.
        """
        if not isinstance(key_added, str) or not key_added:
            raise ValueError(f"key_added={key_added!r} must be a non-empty string.")
        check_unknown(unknown)
        if unknown is not None and UNKNOWN_LABEL in self.classes_:
            raise ValueError(
                f"A class is named {UNKNOWN_LABEL!r}, the label of novel cells; rename it to "
                "use unknown=."
            )
        threshold = None if unknown is None else self.novelty_threshold(unknown)
        adata, layer = self._resolve_query(adata, layer)
        latent, proba, reference_latent = self._forward(
            adata, layer=layer, batch_size=batch_size, reference=True
        )
        novelty = self.novelty(latent, reference_latent)
        codes = proba.argmax(1)
        values = np.asarray(self.classes_, dtype=object)[codes]
        order = self._display_order(adata)
        if threshold is not None:
            values = np.where(novelty > threshold, UNKNOWN_LABEL, values)
            order.append(UNKNOWN_LABEL)
        predicted = pd.Series(
            pd.Categorical(values, categories=order),
            index=adata.obs_names.copy(),
            name=f"{key_added}_prediction",
        )
        if inplace:
            self._write_prediction(
                adata, predicted, proba, novelty, latent, key_added=key_added, threshold=threshold
            )
        return predicted

    def _write_prediction(
        self,
        adata: AnnData,
        predicted: pd.Series,
        proba: np.ndarray,
        novelty: np.ndarray,
        latent: np.ndarray,
        *,
        key_added: str,
        threshold: float | None,
    ) -> None:
        """Write :meth:`predict`'s keys into ``adata`` (those its docstring lists, no other)."""
        order = list(predicted.cat.categories)
        colors = self._class_colors(adata, order[: len(self.classes_)])
        if colors is not None and threshold is not None:
            colors.append(UNKNOWN_COLOR)
        adata.obs[f"{key_added}_prediction"] = predicted.array
        adata.obs[f"{key_added}_confidence"] = proba.max(1).astype(np.float32)
        adata.obs[f"{key_added}_novelty"] = novelty.astype(np.float32)
        adata.obs[f"{key_added}_is_support"] = adata.obs_names.isin(
            np.asarray(self.fit_record_.get("support_obs_names", []), dtype=str)
        )
        adata.obsm[f"{key_added}_proba"] = pd.DataFrame(
            proba, index=adata.obs_names, columns=self.classes_
        )
        adata.obsm[f"X_{key_added}"] = latent
        if colors is None:
            adata.uns.pop(f"{key_added}_prediction_colors", None)
        else:
            adata.uns[f"{key_added}_prediction_colors"] = colors
        adata.uns[key_added] = self._gene_overlap(adata)
        if threshold is not None:
            adata.uns[key_added]["unknown_threshold"] = float(threshold)
            adata.uns[key_added]["n_unknown"] = int((predicted == UNKNOWN_LABEL).sum())

    def _gene_overlap(self, adata: AnnData) -> dict:
        """How many of the model's (and the wide path's) genes the query has."""
        alignment = align_genes(adata.var_names, self.gene_names, warn=False)
        overlap = {
            "n_genes_model": int(alignment.reference.size),
            "n_genes_found": alignment.n_overlap,
            "gene_overlap": float(alignment.fraction),
        }
        if self.module.has_wide_path:
            wide = align_genes(adata.var_names, pd.Index(self.wide_gene_names_), warn=False)
            overlap["n_genes_wide"] = int(wide.reference.size)
            overlap["n_genes_wide_found"] = wide.n_overlap
        return overlap

    def _display_order(self, adata: AnnData) -> list[str]:
        """The classes in the order of the query's own label categories, where it has them.

        So that a legend of the prediction lists the classes as the truth's legend does; the
        classes the query's categories lack, or every class without them, follow in
        :attr:`classes_` order.
        """
        labels = adata.obs.get(self.labels_key)
        if labels is None or not isinstance(labels.dtype, pd.CategoricalDtype):
            return list(self.classes_)
        classes = set(self.classes_)
        first = [c for c in labels.cat.categories.astype(str) if c in classes]
        listed = set(first)
        return first + [c for c in self.classes_ if c not in listed]

    def _class_colors(self, adata: AnnData, order: list[str]) -> list[str] | None:
        """Each class's colour in ``adata.uns[f"{labels_key}_colors"]`` (``order``), or ``None``.

        ``None`` unless the query's labels column has a colour for each of its categories (as
        scanpy stores them, in category order) and every class is one of those categories.
        """
        key = self.labels_key
        colors = adata.uns.get(f"{key}_colors")
        if key not in adata.obs or colors is None:
            return None
        labels = adata.obs[key]
        if isinstance(labels.dtype, pd.CategoricalDtype):
            categories = labels.cat.categories
        else:
            # scanpy makes a string column categorical with its sorted values before plotting.
            categories = pd.Categorical(labels.dropna()).categories
        colors = [str(c) for c in np.asarray(colors).ravel()]
        if len(colors) < len(categories):
            return None  # scanpy would replace these colours too
        by_category = dict(zip(categories.astype(str), colors, strict=False))
        if not set(self.classes_) <= set(by_category):
            return None
        return [by_category[c] for c in order]
