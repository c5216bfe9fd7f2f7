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

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "library_size": tensors.get(REGISTRY_KEYS.SIZE_FACTOR_KEY),
        }

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def inference(
        self, x: torch.Tensor, library_size: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Encode raw input; in training mode a random subset of genes is masked first.

        ``library_size`` holds each row's total over all of its genes when the registered
        matrix is a subset of them (e.g. highly variable genes); without it the row sums of
        ``x`` are used.
        """
        if library_size is not None:
            library_size = library_size.view(-1)
        x_log = log_expression(x, self.units, library_size)
        if self.gene_index is not None:
            x_log = x_log[:, self.gene_index]
        if self.training and self.mask_rate > 0:
            mask = torch.rand_like(x_log) < self.mask_rate
            z = self.encoder(x_log.masked_fill(mask, 0.0))
        else:
            mask = torch.zeros_like(x_log, dtype=torch.bool)
            z = self.encoder(x_log)
        return {"z": z, "x_log": x_log, "mask": mask}

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
            generative_outputs["x_hat"], inference_outputs["x_log"], inference_outputs["mask"]
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

    def masked_reconstruction_loss(self, x_log: torch.Tensor) -> torch.Tensor:
        """Pre-training loss of already log-transformed rows (masking a fresh random subset).

        The same objective as :meth:`loss` without labels; :meth:`scgtl.GTL.adapt` uses it on
        batches that mix corpus rows and target rows read in different units.
        """
        mask = torch.rand_like(x_log) < self.mask_rate
        x_hat = self.decoder(self.encoder(x_log.masked_fill(mask, 0.0)))
        return _masked_squared_error(x_hat, x_log, mask).mean()

    @torch.inference_mode()
    def embed(self, x_log: torch.Tensor) -> torch.Tensor:
        """Latent code of already log-transformed input (evaluation mode, no masking)."""
        return self.encoder(x_log)


def _masked_squared_error(
    x_hat: torch.Tensor, x_log: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-row mean squared error over the masked genes (over all genes when none is masked)."""
    squared_error = (x_hat - x_log) ** 2
    if not mask.any():
        return squared_error.mean(1)
    weight = mask.float()
    return (squared_error * weight).sum(1) / weight.sum(1).clamp(min=1.0)
