"""Encoders over the genes."""

from __future__ import annotations

import torch
from scvi.nn import FCLayers
from torch import nn


class MLPEncoder(nn.Module):
    """Fully connected encoder: genes -> hidden layers (LayerNorm, ReLU, dropout) -> latent.

    LayerNorm rather than BatchNorm because fine-tuning sees batches of a handful of cells,
    whose batch statistics would be noise.

    Parameters
    ----------
    n_input
        Number of genes.
    n_latent
        Size of the latent representation.
    n_hidden
        Width of each hidden layer.
    n_layers
        Number of hidden layers.
    dropout_rate
        Dropout after each hidden layer.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        *,
        n_hidden: int = 256,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
    ):
        super().__init__()
        self.n_latent = n_latent
        self.hidden = FCLayers(
            n_in=n_input,
            n_out=n_hidden,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            use_batch_norm=False,
            use_layer_norm=True,
        )
        self.to_latent = nn.Linear(n_hidden, n_latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(n_obs, n_input)`` log expression to ``(n_obs, n_latent)``."""
        return self.to_latent(self.hidden(x))
