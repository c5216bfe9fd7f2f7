"""The fine-tuned network: a (copied) pre-trained encoder and a head for the target classes."""

from __future__ import annotations

import torch
from torch import nn

from scgtl.module._encoder import MLPEncoder


class GTLClassifierModule(nn.Module):
    """Encoder + linear head over the target's classes; a plain :class:`torch.nn.Module`.

    It is trained by :func:`scgtl.train.fit_few_shot`, not by a Lightning training plan, so it
    needs none of scvi-tools' generative-model interface.

    Parameters
    ----------
    n_input
        Number of genes of the pre-trained model.
    n_labels
        Number of target classes.
    **architecture
        ``n_latent``, ``n_hidden``, ``n_layers``, ``dropout_rate`` of the encoder (see
        :class:`~scgtl.module.MLPEncoder`); must match the pre-trained encoder whose weights are
        loaded.
    """

    def __init__(self, n_input: int, n_labels: int, **architecture):
        super().__init__()
        self.encoder = MLPEncoder(n_input, **architecture)
        self.head = nn.Linear(self.encoder.n_latent, n_labels)

    @property
    def device(self) -> torch.device:
        """Device of the weights (scvi-tools' models read it)."""
        return next(self.parameters()).device

    def forward(self, x_log: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latent code ``"z"`` and class ``"logits"`` of log-transformed input."""
        z = self.encoder(x_log)
        return {"z": z, "logits": self.head(z)}

    def inference(self, x_log: torch.Tensor) -> dict[str, torch.Tensor]:
        """The same as calling the module (the name scvi-tools' modules use)."""
        return self(x_log)

    def on_load(self, model, **kwargs) -> None:
        """Called by scvi-tools' ``load`` before the weights are restored; nothing to do."""
