"""The fine-tuned network: a (copied) pre-trained encoder and a head for the target classes."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from scgtl.module._encoder import MLPEncoder


def pool_log_probabilities(
    network_logits: torch.Tensor, wide_logits: torch.Tensor, wide_weight: float | torch.Tensor
) -> torch.Tensor:
    """Logits ``(1 - w) log_softmax(network) + w log_softmax(wide)``: a log-linear pool.

    Their softmax is the normalised geometric mean of the two paths' probabilities, weighted by
    ``w`` (``wide_weight``): ``0`` gives the network's probabilities, ``1`` the wide path's.
    """
    network = F.log_softmax(network_logits, dim=1)
    return (1 - wide_weight) * network + wide_weight * F.log_softmax(wide_logits, dim=1)


class GTLClassifierModule(nn.Module):
    """Encoder + linear head over the target's classes, and an optional wide linear path.

    A plain :class:`torch.nn.Module`.
    It is trained by :func:`scgtl.train.fit_few_shot`, not by a Lightning training plan, so it
    needs none of scvi-tools' generative-model interface.

    Parameters
    ----------
    n_input
        Number of genes of the pre-trained model.
    n_labels
        Number of target classes.
    n_wide
        Genes of the wide path, a linear layer from the study's own genes to the logits (see
        :func:`scgtl.train.fit_linear_path`); ``0``: no wide path. Its weight in the pooled
        prediction is the buffer ``wide_weight``.
    reference
        Whether the module keeps a frozen copy of the encoder it was fine-tuned from
        (``reference_encoder``, see :meth:`set_reference_encoder`), whose latent space the
        novelty score also reads.
    **architecture
        ``n_latent``, ``n_hidden``, ``n_layers``, ``dropout_rate`` of the encoder (see
        :class:`~scgtl.module.MLPEncoder`); must match the pre-trained encoder whose weights are
        loaded.
    """

    def __init__(
        self,
        n_input: int,
        n_labels: int,
        n_wide: int = 0,
        *,
        reference: bool = False,
        **architecture,
    ):
        super().__init__()
        self.encoder = MLPEncoder(n_input, **architecture)
        self.head = nn.Linear(self.encoder.n_latent, n_labels)
        self.wide = nn.Linear(n_wide, n_labels) if n_wide else None
        self.register_buffer("wide_weight", torch.zeros(()))
        self.reference_encoder = None
        if reference:
            self.set_reference_encoder(MLPEncoder(n_input, **architecture))

    @property
    def has_reference(self) -> bool:
        """Whether the module keeps the encoder it was fine-tuned from."""
        return self.reference_encoder is not None

    @property
    def has_wide_path(self) -> bool:
        """Whether the module has a wide path."""
        return self.wide is not None

    @property
    def device(self) -> torch.device:
        """Device of the weights (scvi-tools' models read it)."""
        return next(self.parameters()).device

    def set_wide_path(self, wide: nn.Linear, wide_weight: float) -> None:
        """Attach a fitted wide path (genes -> logits) and its weight in the pool."""
        if wide.out_features != self.head.out_features:
            raise ValueError(
                f"The wide path has {wide.out_features} outputs; the head has "
                f"{self.head.out_features} classes."
            )
        self.wide = wide
        self.wide_weight.fill_(float(wide_weight))

    def set_reference_encoder(self, encoder: MLPEncoder) -> None:
        """Keep a frozen copy of ``encoder`` (the one fine-tuning started from).

        Its latent code of a cell, ``reference_latent``, is not trained further: the novelty
        score measures a cell's distance to the support there as well as in the fine-tuned
        space (``docs/novelty.md``).
        """
        reference = copy.deepcopy(encoder).eval()
        reference.requires_grad_(False)
        self.reference_encoder = reference

    def reference_latent(self, x_log: torch.Tensor) -> torch.Tensor:
        """Latent code of log-transformed input in the reference encoder's space."""
        if self.reference_encoder is None:
            raise ValueError("This module keeps no reference encoder (reference=False).")
        return self.reference_encoder(x_log)

    def forward(
        self, x_log: torch.Tensor, x_wide: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Latent code ``"z"`` and class ``"logits"`` of log-transformed input.

        ``x_wide`` is the same rows over the wide path's genes, needed when there is a wide
        path; the logits are then the pool ``(1 - w) log_softmax(network) + w
        log_softmax(wide)``, and ``"network_logits"`` holds the network's alone. The reference
        encoder is not run here (see :meth:`reference_latent`).
        """
        z = self.encoder(x_log)
        logits = self.head(z)
        if self.wide is None:
            return {"z": z, "logits": logits}
        if x_wide is None:
            raise ValueError("This classifier has a wide path: pass x_wide, its genes' rows.")
        pooled = pool_log_probabilities(logits, self.wide(x_wide), self.wide_weight)
        return {"z": z, "logits": pooled, "network_logits": logits}

    def inference(
        self, x_log: torch.Tensor, x_wide: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The same as calling the module (the name scvi-tools' modules use)."""
        return self(x_log, x_wide)

    def on_load(self, model, **kwargs) -> None:
        """Called by scvi-tools' ``load`` before the weights are restored; nothing to do."""
