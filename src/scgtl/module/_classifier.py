"""The fine-tuned network: a (copied) pre-trained encoder and a head for the target classes."""

from __future__ import annotations

import torch
from scvi.module.base import BaseModuleClass
from torch import nn

from scgtl.module._encoder import MLPEncoder


class GTLClassifierModule(BaseModuleClass):
    """Encoder + linear head over the target's classes.

    Parameters
    ----------
    n_input
        Number of genes of the pre-trained model.
    n_labels
        Number of target classes.
    n_hidden, n_latent, n_layers, dropout_rate
        Encoder architecture; must match the pre-trained encoder whose weights are loaded.
    """

    def __init__(
        self,
        n_input: int,
        n_labels: int,
        *,
        n_hidden: int = 256,
        n_latent: int = 64,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
    ):
        super().__init__()
        self.encoder = MLPEncoder(
            n_input, n_latent, n_hidden=n_hidden, n_layers=n_layers, dropout_rate=dropout_rate
        )
        self.head = nn.Linear(n_latent, n_labels)

    def _get_inference_input(self, tensors):
        raise NotImplementedError("GTLClassifierModule is trained by scgtl's few-shot loop.")

    def _get_generative_input(self, tensors, inference_outputs):
        raise NotImplementedError("GTLClassifierModule has no generative model.")

    def inference(self, x_log: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latent code and class logits of log-transformed input."""
        z = self.encoder(x_log)
        return {"z": z, "logits": self.head(z)}

    def generative(self, *args, **kwargs):
        """Not used: the classifier has no generative part."""
        raise NotImplementedError("GTLClassifierModule has no generative model.")

    def loss(self, *args, **kwargs):
        """Not used: see :func:`scgtl.train.fit_few_shot`."""
        raise NotImplementedError("GTLClassifierModule is trained by scgtl's few-shot loop.")
