"""Encoders over the genes, and the architecture defaults every network of scgtl shares."""

from __future__ import annotations

import torch
from scvi.nn import FCLayers
from torch import nn

from scgtl._docs import doc

#: Default architecture of the encoder: the one place these values are written. The latent
#: space is as wide as the hidden layer: a 64-dimensional one kept too little of a signal the
#: corpus never varied (Kang's stimulated vs control cells, 3.8 points lower; the choice on the
#: developer targets in ``docs/research/wide_path.md``, "A latent that keeps more of the input").
N_HIDDEN = 256
N_LATENT = 256
N_LAYERS = 1
DROPOUT_RATE = 0.1


@doc.dedent
class MLPEncoder(nn.Module):
    """Fully connected encoder: genes -> hidden layers (LayerNorm, ReLU, dropout) -> latent.

    LayerNorm rather than BatchNorm because fine-tuning sees batches of a handful of cells,
    whose batch statistics would be noise.

    Parameters
    ----------
    n_input
        Number of genes.
    %(param_architecture)s
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = N_LATENT,
        *,
        n_hidden: int = N_HIDDEN,
        n_layers: int = N_LAYERS,
        dropout_rate: float = DROPOUT_RATE,
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
