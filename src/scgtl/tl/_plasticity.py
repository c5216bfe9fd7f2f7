"""Per-gene plasticity: the guide of the encoder's first layer, mapped back to the input genes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from torch import nn

from scgtl.model import GTL, GTLClassifier

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch
    from anndata import AnnData

Summary = Literal["mean", "median", "max"]

#: How a gene's column of first-layer guide values can be summarised, in column order.
PLASTICITY_SUMMARIES = ("mean", "median", "max")


def gene_plasticity(
    model: GTL,
    *,
    adata: AnnData | None = None,
    key_added: str = "scgtl_plasticity",
    statistic: Summary = "mean",
) -> pd.DataFrame:
    """How freely guided fine-tuning lets each input gene's weights move.

    The encoder's first layer is a linear map from the model's genes to its hidden units: its
    weight has one column per gene (shape ``(n_hidden, n_genes)``), and the guide holds one
    value per weight. A gene's plasticity summarises the guide values of its column, i.e. of
    every weight that carries the gene into the network.

    What a guide value is: during guided fine-tuning each weight moves by ``G * (p_new - p_old)``
    at every step (:class:`scgtl.train.GuidedUpdate`), so ``G = 0`` keeps the weight at its
    pre-trained value and ``G = 1`` lets it move as in plain fine-tuning. With the default
    guide settings (``statistic="squared"``, ``normalization="global"``, ``temperature="room"``,
    ``scale=1``) ``G = (m - m_min) / (m_max - m_min)``, where ``m`` is the weight's squared
    change averaged over the scouts and ``m_min`` / ``m_max`` the smallest and largest such
    mean over *all* encoder weights (both layers). A gene's ``mean`` of 0.05 thus says that
    the scouts moved its weights, on average, 5 % as much (in squared change) as the encoder's
    most-moved weight. The model keeps only the guide, not the scouts' raw changes; with the
    defaults the guide is an increasing affine map of them, so the ranking of genes by ``mean``,
    ``median`` or ``max`` is the raw statistic's. Other settings reshape the values (see
    :func:`scgtl.guide.apply_temperature`): ``"warm"`` lifts them into ``[0.5, 1]``,
    ``"freeze"`` makes them 0 or 1 (the ``mean`` is then the fraction of the gene's weights
    left free), and ``scale`` or ``"linear"`` may take them above 1. The numbers describe the
    guide the model will fine-tune with, whatever its settings
    (:attr:`scgtl.GTL.guide_settings_`).

    Parameters
    ----------
    model
        A pre-trained :class:`scgtl.GTL` with a guide. A :class:`scgtl.GTLClassifier` does not
        keep the guide it was fine-tuned with: pass the pre-trained model instead.
    adata
        Also write the columns to ``adata.var`` (see Returns). Genes of ``adata`` that the
        model lacks get NaN; the model's genes that ``adata`` lacks are left out. Nothing else
        of ``adata`` changes; existing columns of those names are replaced.
    key_added
        Prefix of the ``adata.var`` columns.
    statistic
        The summary that ``plasticity`` and ``rank`` use: ``"mean"`` (default), ``"median"``
        or ``"max"``.

    Returns
    -------
    One row per gene of the model, indexed by :attr:`scgtl.GTL.gene_names` in the model's order,
    with the columns

    ``plasticity``
        The summary chosen by ``statistic`` (a copy of that column).
    ``mean``, ``median``, ``max``
        Mean, median and largest guide value of the gene's ``n_hidden`` first-layer weights.
        In ``[0, 1]`` with the default guide settings (see above).
    ``rank``
        1 for the most plastic gene by ``plasticity``, ``n_genes`` for the least (ties share
        the lower rank).

    With ``adata``, the same columns are written to ``adata.var`` as
    ``adata.var[key_added]`` (``plasticity``), ``adata.var[f"{key_added}_mean"]``,
    ``[f"{key_added}_median"]``, ``[f"{key_added}_max"]`` and ``[f"{key_added}_rank"]``
    (float, NaN for genes the model lacks).

    Raises
    ------
    ValueError
        If the model has no guide yet, ``statistic`` is unknown, or ``adata`` shares no gene
        with the model.
    TypeError
        If ``model`` is a :class:`scgtl.GTLClassifier` or not a scgtl model.
    """
    if statistic not in PLASTICITY_SUMMARIES:
        raise ValueError(
            f"statistic={statistic!r} is not valid; choose one of {PLASTICITY_SUMMARIES}."
        )
    guide = model_guide(model)
    weight_name = first_layer_weight(model.module.encoder, n_genes=len(model.gene_names))
    if weight_name not in guide:
        raise KeyError(
            f"The guide has no entry for the first layer's weight {weight_name!r}; "
            f"it has {sorted(guide)}."
        )
    frame = summarize_columns(guide[weight_name], genes=model.gene_names)
    frame.insert(0, "plasticity", frame[statistic])
    frame["rank"] = frame["plasticity"].rank(ascending=False, method="min").astype(int)
    if adata is not None:
        write_to_var(adata, frame, key_added=key_added)
    return frame


def model_guide(model: GTL) -> Mapping[str, torch.Tensor]:
    """The guide of a pre-trained model, or a clear error saying why there is none."""
    if isinstance(model, GTLClassifier):
        raise TypeError(
            "A GTLClassifier does not keep the guide it was fine-tuned with; pass the "
            "pre-trained scgtl.GTL it was fine-tuned from (the model whose fine_tune() made it)."
        )
    if not isinstance(model, GTL):
        raise TypeError(f"Expected a pre-trained scgtl.GTL; got {type(model).__name__}.")
    if model.guide is None:
        raise ValueError(
            "The model has no guide yet: call model.train() (which computes it after "
            "pre-training) or model.compute_guide()."
        )
    return model.guide


def first_layer_weight(encoder: nn.Module, *, n_genes: int) -> str:
    """Name (as in the encoder's parameters and the guide) of the first linear layer's weight."""
    for name, layer in encoder.named_modules():
        if isinstance(layer, nn.Linear):
            if layer.in_features != n_genes:
                raise ValueError(
                    f"The encoder's first linear layer {name!r} reads {layer.in_features} "
                    f"inputs, not the model's {n_genes} genes; its weights cannot be mapped to "
                    "genes."
                )
            return f"{name}.weight" if name else "weight"
    raise ValueError("The encoder has no linear layer whose weights could be mapped to genes.")


def summarize_columns(weight_guide: torch.Tensor, *, genes: pd.Index) -> pd.DataFrame:
    """Mean, median and max over the rows (hidden units) of each gene's column."""
    values = weight_guide.detach().cpu().double().numpy()
    if values.ndim != 2 or values.shape[1] != len(genes):
        raise ValueError(
            f"The first layer's guide has shape {values.shape}; expected (n_hidden, {len(genes)})."
        )
    summaries = {
        "mean": values.mean(axis=0),
        "median": np.median(values, axis=0),
        "max": values.max(axis=0),
    }
    return pd.DataFrame(summaries, index=pd.Index(genes))


def write_to_var(adata: AnnData, frame: pd.DataFrame, *, key_added: str) -> None:
    """``frame``'s columns into ``adata.var`` under ``key_added`` names, NaN for other genes."""
    shared = adata.var_names.isin(frame.index)
    if not shared.any():
        raise ValueError(
            f"adata shares no gene with the model (adata: {list(adata.var_names[:3])}...; "
            f"model: {list(frame.index[:3])}...); are the gene identifiers of the same kind?"
        )
    aligned = frame.reindex(adata.var_names).astype(float)
    for column in frame.columns:
        name = key_added if column == "plasticity" else f"{key_added}_{column}"
        adata.var[name] = aligned[column].to_numpy()
