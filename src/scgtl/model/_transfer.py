"""Fine-tuning on a study's few labels, as a part of :class:`scgtl.GTL`.

The model only orchestrates: reading rows (:mod:`scgtl.data`), the training loops and the wide
path (:mod:`scgtl.train`), and wrapping the result in a :class:`~scgtl.GTLClassifier`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from scgtl._docs import doc
from scgtl._settings import uses_threads
from scgtl.data import support_rows
from scgtl.data._checks import check_anndata, check_layer
from scgtl.data._units import check_units_name
from scgtl.model._classifier import GTLClassifier
from scgtl.model._plan import FineTunePlan
from scgtl.train import add_wide_path, calibration_record, fine_tune_network, fine_tune_networks
from scgtl.train._wide import (
    DEFAULT_WIDE_FORMS,
    MAX_PCA_ROWS,
    check_wide_form_regime,
    wide_fitters,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anndata import AnnData

    from scgtl._constants import Units
    from scgtl.module import GTLClassifierModule


class TransferMixin:
    """:meth:`fine_tune` of :class:`~scgtl.GTL`."""

    @uses_threads
    @doc.dedent
    def fine_tune(
        self,
        adata: AnnData,
        *,
        labels_key: str,
        k_shot: int | None = None,
        seed: int = 0,
        layer: str | None = None,
        units: Units | None = None,
        support_indices: Sequence[int] | np.ndarray | None = None,
        transductive: bool | None = None,
        plan_kwargs: FineTunePlan | Mapping[str, Any] | None = None,
    ) -> GTLClassifier:
        """Learn a few-shot target task; returns a new classifier, this model is unchanged.

        Two paths, pooled as ``log p = (1 - w) log p_network + w log p_wide``: the pre-trained
        encoder with a new head, fine-tuned on the support under the guide (GTL), and a logistic
        regression on the study's own genes; ``w`` is chosen by cross-validation on the support.

        Parameters
        ----------
        adata
            The target study, not modified. Its genes are aligned to the model's (missing ones
            zero-filled, with a warning); its whole matrix is checked against ``units``.
        labels_key
            ``obs`` column with the target classes.
        k_shot
            Labelled samples per class to train on, drawn with ``seed``. ``None`` (the default):
            every row whose label is present, the others being unlabelled (NaN) — how a
            half-annotated study is given.
        seed
            Seed of the support draw, the head's initialisation and dropout.
        %(param_query_layer_units)s
        support_indices
            Positions of the rows to train on, instead of drawing ``k_shot`` per class; only
            these rows need labels.
        transductive
            Also learn from the study's other rows (never their labels): the pre-trained model
            is first adapted to the study (:meth:`adapted_to`, once per study), and the wide
            path is logistic regression on 50 principal components of the study (fitted on all
            of its rows, or 20,000 random ones), as the benchmark's ``pca_logreg``. ``None``
            (the default): whenever the study has rows besides the support (and the plan keeps
            the wide path); ``False``: the support alone. Measured in ``docs/benchmarks.md``.
        plan_kwargs
            How the network is trained, and the research hooks: a dict of
            :class:`~scgtl.FineTunePlan`'s settings (``n_steps``, ``lr``, ``use_guide``,
            ``wide``, ``extra_loss``...) or a plan; ``None``: the package's method.

        Returns
        -------
        A fitted :class:`~scgtl.GTLClassifier`; its ``fit_record_`` holds the support's
        ``obs_names`` (``"support_obs_names"``), the loss at every step, the wide path's weight
        and how it was chosen, whether it learnt from the study's other rows
        (``"transductive"``; ``"n_unlabelled"``: how many rows besides the support it read),
        whether the network started from an adapted model (``"adapted"``; ``"adaptation"``:
        its ``n_steps``, ``replay`` and ``seed``, or ``None``), the calibration and novelty
        reference that :meth:`~scgtl.GTLClassifier.predict` uses (``"temperature"``,
        ``"prototypes"``, ``"novelty_spread"``, ``"reference_prototypes"``,
        ``"reference_novelty_spread"``, ``"support_novelty"``; see
        :class:`~scgtl.GTLClassifier`), and the plan's settings. Unless fine-tuned from scratch,
        the classifier keeps a frozen copy of the encoder it started from, for the novelty score.

        Raises
        ------
        ValueError
            Values impossible in ``units`` anywhere in the matrix, bad labels or settings, or a
            study sharing fewer than 5 percent (or 10) of the model's genes (see
            :func:`scgtl.data.align_genes`).
        TypeError
            ``transductive`` not ``None``/bool, or a ``plan_kwargs`` naming unknown settings.
        """
        plan = FineTunePlan.of(plan_kwargs)
        units = self.units if units is None else units
        check_units_name(units)
        _check_transductive(transductive, plan)
        guide = self._fine_tune_guide(plan)
        labels, support = _labelled_support(
            adata, labels_key=labels_key, k_shot=k_shot, seed=seed, indices=support_indices
        )
        check_layer(adata, layer=layer, units=units)
        n_other = adata.n_obs - support.size
        if transductive is None:
            transductive = plan.wide and n_other > 0
        check_wide_form_regime(plan.wide_form, transductive=transductive)
        rows = {"layer": layer, "units": units, "indices": support}
        x = self._read_rows(adata, **rows)
        # Adapting a network trained from scratch would undo the point of from_scratch.
        adapt = transductive and not plan.from_scratch
        pretrained = self.adapted_to(adata, layer=layer, units=units) if adapt else self
        classes = pd.Categorical(labels.iloc[support].astype(str))
        y = torch.as_tensor(classes.codes.astype(np.int64), device=x.device)
        encoder = None if plan.from_scratch else pretrained.module.encoder
        settings = self._fit_settings(plan, guide, n_classes=len(classes.categories), seed=seed)
        network, losses = fine_tune_network(encoder, x, y, callback=plan.callback, **settings)
        record, wide_genes = self._pool_wide_path(
            network, adata, rows, x, y, encoder, settings, plan, transductive, seed=seed
        )
        record.update(_study_record(pretrained, transductive, n_other))
        if encoder is not None:
            # The novelty score also reads the latent space fine-tuning started from.
            network.set_reference_encoder(encoder)
        record.update(calibration_record(network, x, y, record))
        record = {
            "support_obs_names": adata.obs_names[support].to_numpy(dtype=str),
            "losses": np.asarray(losses, dtype=np.float32),
            **_plan_record(plan, use_guide=guide is not None, k_shot=k_shot, seed=seed),
            **record,
        }
        return GTLClassifier.from_network(
            network,
            gene_names=self.gene_names,
            classes=classes.categories,
            source=adata,
            fit_record=record,
            architecture=self.architecture_,
            wide_gene_names=wide_genes,
            labels_key=labels_key,
            layer=layer,
            units=units,
        )

    def _pool_wide_path(
        self,
        network: GTLClassifierModule,
        adata: AnnData,
        rows: dict,
        x: torch.Tensor,
        y: torch.Tensor,
        encoder: torch.nn.Module | None,
        settings: dict,
        plan: FineTunePlan,
        transductive: bool,
        *,
        seed: int,
    ) -> tuple[dict, pd.Index | None]:
        """Fit the plan's wide path and pool it into ``network``: its record and its genes."""
        if not plan.wide:
            record = {"wide": False, "wide_weight": 0.0, "wide_weight_source": "none"}
            return {**record, "wide_form": None}, None
        genes = pd.Index(adata.var_names.astype(str))
        x_wide = self._read_rows(adata, **rows, genes=genes, warn=False)
        study_rows = {**rows, "indices": _pca_rows(adata.n_obs, seed=seed)}
        fitters = wide_fitters(
            plan.wide_form or DEFAULT_WIDE_FORMS[transductive],
            transductive=transductive,
            read_study=lambda: self._read_rows(adata, **study_rows, genes=genes, warn=False),
        )
        fit_networks = functools.partial(fine_tune_networks, encoder, **settings)
        record = add_wide_path(
            network, fit_networks, fitters, x, x_wide, y, wide_weight=plan.wide_weight, seed=seed
        )
        return record, genes

    def _fit_settings(self, plan: FineTunePlan, guide, *, n_classes: int, seed: int) -> dict:
        """The options of the network's fits (the final one and the cross-validation's)."""
        return {
            "n_classes": n_classes,
            "architecture": self.architecture_,
            "seed": seed,
            "head_init": plan.head_init,
            "n_steps": plan.n_steps,
            "lr": plan.lr,
            "weight_decay": plan.weight_decay,
            "guide": guide,
            "input_transform": plan.input_transform,
            "extra_loss": plan.extra_loss,
        }

    def _fine_tune_guide(self, plan: FineTunePlan) -> dict[str, torch.Tensor] | None:
        """The guide the plan fine-tunes with: none, the plan's own, or the model's."""
        if plan.from_scratch or not plan.use_guide:
            return None
        if plan.guide is not None:
            return plan.guide
        if self.guide_ is None:
            raise ValueError(
                "This model has no guide yet: call model.train() or model.compute_guide(), "
                "or pass plan_kwargs={'use_guide': False} for plain fine-tuning."
            )
        return self.guide_


def _check_transductive(transductive: bool | None, plan: FineTunePlan) -> None:
    if transductive is not None and not isinstance(transductive, bool):
        raise TypeError(f"transductive={transductive!r} must be None, True or False.")
    if transductive and not plan.wide:
        raise ValueError(
            "transductive=True works through the wide path; it needs wide=True "
            "(plan_kwargs={'wide': True}, the default)."
        )


def _labelled_support(
    adata: AnnData,
    *,
    labels_key: str,
    k_shot: int | None,
    seed: int,
    indices: Sequence[int] | np.ndarray | None,
) -> tuple[pd.Series, np.ndarray]:
    """The study's labels column and the positions of the support rows."""
    check_anndata(adata)
    if labels_key not in adata.obs:
        raise KeyError(
            f"labels_key={labels_key!r} is not a column of adata.obs: {list(adata.obs)}."
        )
    labels = adata.obs[labels_key]
    support = support_rows(
        labels, k_shot=k_shot, seed=seed, support_indices=indices, labels_key=labels_key
    )
    return labels, support


def _plan_record(plan: FineTunePlan, *, use_guide: bool, k_shot: int | None, seed: int) -> dict:
    """What the classifier's record keeps of the call and its plan (settings, not hooks)."""
    settings = {
        name: getattr(plan, name) for name in ("n_steps", "lr", "weight_decay", "head_init")
    }
    call = {"use_guide": use_guide, "from_scratch": plan.from_scratch, "k_shot": k_shot}
    return {**call, "seed": seed, **settings}


def _study_record(pretrained, transductive: bool, n_other: int) -> dict:
    """What the classifier's record says of the study's other rows and the adaptation to them."""
    return {
        "transductive": transductive,
        "n_unlabelled": n_other if transductive else 0,
        "adapted": pretrained.adaptation_ is not None,
        "adaptation": _adaptation_summary(pretrained.adaptation_),
    }


def _adaptation_summary(adaptation: dict | None) -> dict | None:
    """What the classifier's record keeps of the adaptation its network started from."""
    if adaptation is None:
        return None
    return {name: adaptation[name] for name in ("n_steps", "replay", "seed")}


def _pca_rows(n_obs: int, *, seed: int) -> np.ndarray | None:
    """The rows the transductive PCA is fitted on: all, or a seeded random subset."""
    if n_obs <= MAX_PCA_ROWS:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_obs, MAX_PCA_ROWS, replace=False))
