"""Plots of a pre-trained model: its guide, per tensor and per input gene."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from scgtl.pl._utils import figure_path, finish, plot_doc
from scgtl.tl._plasticity import PLASTICITY_SUMMARIES, model_guide
from scgtl.tl._plasticity import gene_plasticity as _gene_plasticity

if TYPE_CHECKING:
    import torch
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from scgtl.model import GTL
    from scgtl.pl._utils import Save

#: ``kind`` of :func:`guide`.
GUIDE_KINDS = ("violin", "hist")

#: An :class:`~scgtl.module.MLPEncoder` parameter name: hidden layer ``i``, weight or bias.
_HIDDEN_LAYER = re.compile(r"^hidden\.fc_layers\.Layer (\d+)\.0\.(weight|bias)$")


def tensor_label(name: str, shape: Sequence[int]) -> str:
    """A parameter's readable name and, on a second line, its shape (``256 × 2000``)."""
    match = _HIDDEN_LAYER.match(name)
    if match:
        name = f"hidden {int(match.group(1)) + 1} {match.group(2)}"
    elif name.startswith("to_latent."):
        name = name.replace(".", " ")
    return f"{name}\n{' × '.join(str(n) for n in shape)}"


def _guide_of(model_or_guide: GTL | Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if isinstance(model_or_guide, Mapping):
        if not model_or_guide:
            raise ValueError("The guide is empty: there is nothing to plot.")
        return model_or_guide
    return model_guide(model_or_guide)


@plot_doc.dedent
def guide(
    model: GTL | Mapping[str, torch.Tensor],
    *,
    kind: Literal["violin", "hist"] = "violin",
    bins: int = 50,
    ax: Axes | None = None,
    show: bool | None = None,
    save: Save = None,
) -> Axes | None:
    """Distribution of the guide's values in each tensor (layer weight or bias) of the encoder.

    The guide holds one value per encoder weight: how much of each fine-tuning step the
    weight takes (0: it stays at its pre-trained value, 1: it moves as in plain fine-tuning;
    see :meth:`scgtl.GTL.compute_guide`). With the default global normalisation the layers
    are on one scale, so the plot shows which layers the scouts moved most.

    Parameters
    ----------
    model
        A pre-trained :class:`scgtl.GTL` with a guide, or a guide itself (``{name: tensor}``,
        e.g. :attr:`scgtl.GTL.guide` or one reshaped by :func:`scgtl.guide.apply_temperature`).
    kind
        ``"violin"``: one violin per tensor, with its median marked; ``"hist"``: one
        histogram (density, log scale) per tensor, overlaid.
    bins
        Bins of each histogram (``kind="hist"``).
    ax
        Axes to draw into; by default a new figure.
    %(param_show_save)s

    Returns
    -------
    The Axes (``None`` when the figure is shown). Violins: one per tensor, in the guide's order,
    labelled with the tensor's name and shape on the x axis. Histograms: one step patch per
    tensor, named in the legend.
    """
    import matplotlib.pyplot as plt

    if kind not in GUIDE_KINDS:
        raise ValueError(f"kind={kind!r} is not valid; choose one of {GUIDE_KINDS}.")
    tensors = _guide_of(model)
    values = {name: g.detach().cpu().double().numpy().ravel() for name, g in tensors.items()}
    labels = [tensor_label(name, tuple(g.shape)) for name, g in tensors.items()]
    path = figure_path(save, "guide")
    own_figure = ax is None
    if own_figure:
        width = max(4.5, 1.5 * len(values) + 1) if kind == "violin" else 6.0
        _, ax = plt.subplots(figsize=(width, 4.0), layout="constrained")
    if kind == "violin":
        positions = np.arange(1, len(values) + 1)
        ax.violinplot(list(values.values()), positions=positions, showmedians=True, widths=0.8)
        ax.set_xticks(positions, labels, fontsize="small")
        ax.set_ylabel("guide value")
    else:
        top = max(float(v.max()) for v in values.values())
        for label, v in zip(labels, values.values(), strict=True):
            ax.hist(v, bins=bins, range=(0.0, top or 1.0), density=True, histtype="step",
                    linewidth=1.5, label=label.replace("\n", " "))  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("guide value")
        ax.set_ylabel("density")
        ax.legend(fontsize="small", frameon=False)
    ax.set_title("guide per encoder tensor")
    ax.grid(alpha=0.3, axis="y")
    return finish(ax.figure, ax, path=path, show=show, own_figure=own_figure)


@plot_doc.dedent
def gene_plasticity(
    model: GTL | pd.DataFrame,
    *,
    n_genes: int = 20,
    column: str = "plasticity",
    ax: Sequence[Axes] | None = None,
    show: bool | None = None,
    save: Save = None,
) -> Figure | None:
    """The most and the least plastic genes, as two bar charts side by side.

    A gene's plasticity summarises the guide of the encoder's first-layer weights that read the
    gene (see :func:`scgtl.tl.gene_plasticity`, which says exactly what the numbers are).

    Parameters
    ----------
    model
        A pre-trained :class:`scgtl.GTL` with a guide, or the DataFrame that
        :func:`scgtl.tl.gene_plasticity` returned (indexed by gene).
    n_genes
        Genes in each panel.
    column
        The column to rank and draw: ``"plasticity"`` (default), ``"mean"``, ``"median"`` or
        ``"max"``.
    ax
        Two Axes to draw the most and the least plastic genes into; by default a new figure.
    %(param_show_save)s

    Returns
    -------
    The Figure (``None`` when it is shown). Its first two Axes hold ``n_genes`` horizontal bars
    each (the most plastic genes, most plastic on top; the least plastic, least plastic at the
    bottom), the gene names as y tick labels.
    """
    import matplotlib.pyplot as plt

    if isinstance(n_genes, bool) or not isinstance(n_genes, int | np.integer) or n_genes < 1:
        raise ValueError(f"n_genes={n_genes!r} must be a positive integer.")
    frame = model if isinstance(model, pd.DataFrame) else _gene_plasticity(model)
    valid = ("plasticity", *PLASTICITY_SUMMARIES)
    if column not in valid or column not in frame.columns:
        raise ValueError(
            f"column={column!r} is not valid; choose one of {[c for c in valid if c in frame]}."
        )
    path = figure_path(save, "gene_plasticity")
    own_figure = ax is None
    if own_figure:
        height = max(3.0, 0.22 * min(n_genes, len(frame)) + 1.2)
        fig, axes = plt.subplots(1, 2, figsize=(8.0, height), layout="constrained")
    else:
        axes = list(ax)
        if len(axes) != 2:
            raise ValueError(f"ax must hold two Axes (most, least plastic); got {len(axes)}.")
        fig = axes[0].figure
    ranked = frame[column].sort_values(ascending=False, kind="stable")
    panels = {
        f"{n_genes} most plastic genes": (ranked.head(n_genes), "tab:red"),
        f"{n_genes} least plastic genes": (ranked.tail(n_genes), "tab:blue"),
    }
    for axis, (title, (genes, color)) in zip(axes, panels.items(), strict=True):
        positions = np.arange(len(genes))[::-1]  # highest value at the top
        axis.barh(positions, genes.to_numpy(), color=color)
        axis.set_yticks(positions, genes.index.astype(str), fontsize="small")
        axis.set_title(title)
        axis.set_xlabel(_value_label(frame, column), fontsize="small")
        axis.grid(alpha=0.3, axis="x")
    return finish(fig, fig, path=path, show=show, own_figure=own_figure)


def _value_label(frame: pd.DataFrame, column: str) -> str:
    """The x label: which summary of the gene's first-layer guide the bars show."""
    if column == "plasticity":
        same = [s for s in PLASTICITY_SUMMARIES if s in frame and frame[s].equals(frame[column])]
        column = same[0] if same else column
    return f"{column} guide of the gene's first-layer weights"
