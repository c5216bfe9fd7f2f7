"""The GTL network: encoder, masked-expression decoder and an optional classifier head."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from scgtl._docs import doc
from scgtl.data._units import log_expression
from scgtl.module._encoder import DROPOUT_RATE, N_HIDDEN, N_LATENT, N_LAYERS, MLPEncoder

if TYPE_CHECKING:
    from collections.abc import Sequence

    from scgtl._constants import Units


@doc.dedent
class GTLModule(BaseModuleClass):
    """Encoder pre-trained by masked-expression reconstruction, plus a classification head.

    Pre-training hides a random ``mask_rate`` fraction of each cell's genes from the encoder and
    asks a linear decoder to reconstruct their log expression from the latent code; when labels
    are registered a classifier on the latent code adds a cross-entropy term.

    Parameters
    ----------
    n_input
        Number of genes.
    n_labels
        Number of classes of the head; ``0`` or ``1`` means no head.
    %(param_architecture)s
    units
        Units of the raw input, which sets the input transform (see
        :func:`scgtl.data.log_expression`).
    mask_rate
        Fraction of genes hidden from the encoder in each pre-training step.
    classification_weight
        Weight of the cross-entropy term when labels are given.
    encoder
        A replacement encoder module mapping ``(n_obs, n_input)`` to ``(n_obs, n_latent)``; the
        default is :class:`~scgtl.module.MLPEncoder`.
    gene_index
        Positions, in the registered matrix, of the ``n_input`` genes the network reads. The
        library size is taken over all registered genes first, as for a query. ``None``: the
        registered matrix has exactly the ``n_input`` genes.
    measured
        ``(n_batch, n_input)`` booleans, ``True`` where a batch (a study of a multi-study
        corpus) measured a gene. A gene that a row's study did not measure is *missing*: it is
        hidden from the encoder like a masked gene and left out of the reconstruction loss, so
        it gets no gradient from that row. ``None``: every gene was measured everywhere. Saved
        with the weights.
    """

    def __init__(
        self,
        n_input: int,
        *,
        n_labels: int = 0,
        n_hidden: int = N_HIDDEN,
        n_latent: int = N_LATENT,
        n_layers: int = N_LAYERS,
        dropout_rate: float = DROPOUT_RATE,
        units: Units = "counts",
        mask_rate: float = 0.3,
        classification_weight: float = 1.0,
        encoder: nn.Module | None = None,
        gene_index: Sequence[int] | None = None,
        measured: torch.Tensor | np.ndarray | None = None,
    ):
        super().__init__()
        if not 0.0 <= mask_rate < 1.0:
            raise ValueError(f"mask_rate={mask_rate!r} must be in [0, 1).")
        self.units = units
        self.mask_rate = mask_rate
        self.classification_weight = classification_weight
        self.encoder = encoder or MLPEncoder(
            n_input, n_latent, n_hidden=n_hidden, n_layers=n_layers, dropout_rate=dropout_rate
        )
        self.decoder = nn.Linear(n_latent, n_input)
        self.classifier = nn.Linear(n_latent, n_labels) if n_labels > 1 else None
        if gene_index is not None:
            gene_index = torch.as_tensor(np.asarray(gene_index), dtype=torch.long)
            if gene_index.ndim != 1 or gene_index.numel() != n_input or (gene_index < 0).any():
                raise ValueError(f"gene_index must hold {n_input} positions of registered genes.")
        # Derived from the registry, so not saved with the weights.
        self.register_buffer("gene_index", gene_index, persistent=False)
        if measured is not None:
            measured = torch.as_tensor(np.asarray(measured), dtype=torch.bool)
            if measured.ndim != 2 or measured.shape[1] != n_input:
                raise ValueError(
                    f"measured must be (n_batch, {n_input}) booleans; got {tuple(measured.shape)}."
                )
        # The corpus's, not derivable without it: saved, so a loaded model keeps it.
        self.register_buffer("measured", measured)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "library_size": tensors.get(REGISTRY_KEYS.SIZE_FACTOR_KEY),
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor,
        library_size: torch.Tensor | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode raw input; in training mode a random subset of genes is masked first.

        ``library_size`` holds each row's total over all of its genes when the registered
        matrix is a subset of them (e.g. highly variable genes); without it the row sums of
        ``x`` are used. ``batch_index`` (each row's batch) selects the row's measured genes when
        the module has ``measured``.

        Returns
        -------
        ``"z"`` (latent codes), ``"x_log"`` (log expression), ``"mask"`` (genes hidden from the
        encoder) and ``"scored"`` (genes whose reconstruction counts in the loss: the hidden ones
        that were measured; every measured gene when none is hidden).
        """
        if library_size is not None:
            library_size = library_size.view(-1)
        x_log = log_expression(x, self.units, library_size)
        if self.gene_index is not None:
            x_log = x_log[:, self.gene_index]
        measured = self._measured_rows(batch_index, x_log)
        if self.training and self.mask_rate > 0:
            mask = torch.rand_like(x_log) < self.mask_rate
            scored = mask if measured is None else mask & measured
            z = self.encoder(x_log.masked_fill(mask, 0.0))
        else:
            mask = torch.zeros_like(x_log, dtype=torch.bool)
            scored = torch.ones_like(mask) if measured is None else measured
            z = self.encoder(x_log)
        if measured is not None:
            if not scored.any():  # never fall back on every gene, the missing ones included
                scored = measured
            # Unmeasured genes are zero in the input already; the mask says they were hidden.
            mask = mask | ~measured
        return {"z": z, "x_log": x_log, "mask": mask, "scored": scored}

    def _measured_rows(
        self, batch_index: torch.Tensor | None, x_log: torch.Tensor
    ) -> torch.Tensor | None:
        """``(n_obs, n_input)`` booleans: the genes each row's study measured (``None``: all)."""
        if self.measured is None:
            return None
        if batch_index is None:
            raise ValueError("This module masks unmeasured genes and needs each row's batch.")
        return self.measured[batch_index.long().view(-1)]

    @auto_move_data
    def generative(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruct log expression from the latent code."""
        return {"x_hat": self.decoder(z)}

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
    ) -> LossOutput:
        """Masked-gene reconstruction error, plus cross-entropy when a head and labels exist."""
        reconstruction = _masked_squared_error(
            generative_outputs["x_hat"], inference_outputs["x_log"], inference_outputs["scored"]
        )
        loss = reconstruction.mean()
        extra = {}
        if self.classifier is not None and REGISTRY_KEYS.LABELS_KEY in tensors:
            labels = tensors[REGISTRY_KEYS.LABELS_KEY].long().view(-1)
            cross_entropy = F.cross_entropy(self.classifier(inference_outputs["z"]), labels)
            loss = loss + self.classification_weight * cross_entropy
            extra["classification_loss"] = cross_entropy.detach()
        return LossOutput(
            loss=loss,
            reconstruction_loss=reconstruction,
            kl_local=torch.zeros_like(reconstruction),
            extra_metrics=extra,
        )

    def masked_reconstruction_loss(
        self, x_log: torch.Tensor, measured: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pre-training loss of already log-transformed rows (masking a fresh random subset).

        The same objective as :meth:`loss` without labels; :meth:`scgtl.GTL.adapt` uses it on
        batches that mix corpus rows and target rows read in different units. ``measured``
        (``(n_obs, n_genes)`` booleans) marks the genes each row's study measured: the others
        (a query's zero-filled genes) are hidden from the encoder and not scored.
        """
        mask = torch.rand_like(x_log) < self.mask_rate
        scored = mask if measured is None else mask & measured
        hidden = mask if measured is None else mask | ~measured
        x_hat = self.decoder(self.encoder(x_log.masked_fill(hidden, 0.0)))
        return _masked_squared_error(x_hat, x_log, scored).mean()

    @torch.inference_mode()
    def embed(self, x_log: torch.Tensor) -> torch.Tensor:
        """Latent code of already log-transformed input (evaluation mode, no masking)."""
        return self.encoder(x_log)


def _masked_squared_error(
    x_hat: torch.Tensor, x_log: torch.Tensor, scored: torch.Tensor
) -> torch.Tensor:
    """Per-row mean squared error over the ``scored`` genes (over all genes when none is).

    Genes outside ``scored`` get no gradient: their error is multiplied by zero, not averaged.
    """
    squared_error = (x_hat - x_log) ** 2
    if not scored.any():
        return squared_error.mean(1)
    weight = scored.float()
    return (squared_error * weight).sum(1) / weight.sum(1).clamp(min=1.0)
