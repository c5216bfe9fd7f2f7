"""Pre-training variants of the engineering study that are not package options, for gtl_ablation.py.

Each changes only how the encoder is pre-trained (or how a target's missing genes are filled);
scouts, guide and fine-tuning then run unchanged on a plain :class:`scgtl.module.MLPEncoder`,
so the variant is compared with the default on exactly the same footing. Every variant plugs
in as scvi-tools models do: a module class (a subclass of ``GTLModule``) set as ``_module_cls``
of a subclass of ``scgtl.GTL``, whose options are passed to the model's constructor.

- ``PCAReconstructionGTL``: the decoder predicts the cell's top principal components (of the
  corpus PCA, on the full unmasked log expression) instead of the masked genes.
- ``ContrastiveGTL``: masked reconstruction plus an InfoNCE term that pulls together the
  latent codes of two differently masked views of the same cell (SimCLR-style).
- ``ShallowDecoderGTL``: a one-hidden-layer decoder instead of the linear one.
- ``ScaledInputGTL``: pre-training on per-gene standardised log expression, the scaling then
  folded exactly into the first linear layer.
- ``MeanFillGTL.with_missing_at_mean``: genes absent from a target enter as the corpus mean
  instead of 0, done exactly by moving their contribution into the first layer's bias.
- ``kmeans_labels``: K-means clusters of the corpus, used as labels (classification term and
  scouts).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from scvi.module.base import LossOutput
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from torch import nn

from scgtl import GTL
from scgtl.module import GTLModule


class PCAReconstructionModule(GTLModule):
    """Masked input; the target of the linear decoder is the PCA scores of the whole cell."""

    def __init__(self, n_input: int, *, components: np.ndarray, center: np.ndarray, **kwargs):
        super().__init__(n_input, **kwargs)
        self.register_buffer("components", torch.as_tensor(components, dtype=torch.float32))
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))
        self.decoder = nn.Linear(self.encoder.n_latent, self.components.shape[1])

    def _pc_error(self, z: torch.Tensor, x_log: torch.Tensor) -> torch.Tensor:
        scores = (x_log - self.center) @ self.components
        return ((self.decoder(z) - scores) ** 2).mean(1)

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        error = self._pc_error(inference_outputs["z"], inference_outputs["x_log"])
        return LossOutput(
            loss=error.mean(), reconstruction_loss=error, kl_local=torch.zeros_like(error)
        )


class ContrastiveModule(GTLModule):
    """Masked reconstruction plus ``contrastive_weight`` x InfoNCE between two masked views."""

    def __init__(
        self, n_input: int, *, contrastive_weight: float, temperature: float = 0.2, **kwargs
    ):
        super().__init__(n_input, **kwargs)
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        base = super().loss(tensors, inference_outputs, generative_outputs)
        x_log = inference_outputs["x_log"]
        # The first view is the one inference() masked; the second gets its own mask.
        second = x_log.masked_fill(torch.rand_like(x_log) < self.mask_rate, 0.0)
        nce = info_nce(inference_outputs["z"], self.encoder(second), self.temperature)
        return LossOutput(
            loss=base.loss + self.contrastive_weight * nce,
            reconstruction_loss=base.reconstruction_loss,
            kl_local=base.kl_local,
            extra_metrics={"contrastive_loss": nce.detach()},
        )


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: the other view of a row is its positive, other rows negatives."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    logits = z1 @ z2.T / temperature
    target = torch.arange(z1.shape[0], device=z1.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class ShallowDecoderModule(GTLModule):
    """The default objective with a decoder latent -> ``n_decoder_hidden`` -> genes (ReLU)."""

    def __init__(self, n_input: int, *, n_decoder_hidden: int = 256, **kwargs):
        super().__init__(n_input, **kwargs)
        self.decoder = nn.Sequential(
            nn.Linear(self.encoder.n_latent, n_decoder_hidden),
            nn.ReLU(),
            nn.Linear(n_decoder_hidden, n_input),
        )


class ScaledInput(nn.Module):
    """Standardises each gene, ``(x - mean) / std``, before the wrapped encoder."""

    def __init__(self, encoder: nn.Module, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((x - self.mean) / self.std)


class ScaledInputModule(GTLModule):
    """The default objective on standardised genes; :meth:`fold_scaling` makes it plain again.

    Masking happens before the scaling (a masked gene enters as ``-mean / std``).
    """

    def __init__(self, n_input: int, *, gene_mean: np.ndarray, gene_std: np.ndarray, **kwargs):
        super().__init__(n_input, **kwargs)
        self.encoder = ScaledInput(self.encoder, gene_mean, gene_std)

    def fold_scaling(self) -> None:
        """Fold the standardisation into the first layer: a plain encoder, same outputs."""
        self.encoder = fold_scaling(self.encoder)


def first_linear(encoder: nn.Module) -> nn.Linear:
    return next(m for m in encoder.modules() if isinstance(m, nn.Linear))


@torch.no_grad()
def fold_scaling(scaled: ScaledInput) -> nn.Module:
    """The wrapped encoder with the standardisation folded into its first layer (same outputs)."""
    probe = torch.rand(8, scaled.mean.shape[0], generator=torch.Generator().manual_seed(0))
    before = _eval_output(scaled, probe)
    encoder = scaled.encoder
    layer = first_linear(encoder)
    weight = layer.weight / scaled.std
    layer.bias -= weight @ scaled.mean
    layer.weight.copy_(weight)
    _check_same(before, _eval_output(encoder, probe), "fold_scaling")
    return encoder


def _eval_output(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    training = module.training
    module.eval()
    out = module(x)
    module.train(training)
    return out


def _check_same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
        raise RuntimeError(f"{what} changed the encoder's output by {(a - b).abs().max():.2g}.")


# ---------------------------------------------------------------------------- the models
class PCAReconstructionGTL(GTL):
    """GTL pre-trained to predict the corpus PCs; pass ``components=``, ``center=``."""

    _module_cls = PCAReconstructionModule


class ContrastiveGTL(GTL):
    """GTL with a contrastive term; pass ``contrastive_weight=`` (and ``temperature=``)."""

    _module_cls = ContrastiveModule


class ShallowDecoderGTL(GTL):
    """GTL with a one-hidden-layer decoder."""

    _module_cls = ShallowDecoderModule


class ScaledInputGTL(GTL):
    """GTL pre-trained on standardised genes; pass ``gene_mean=``, ``gene_std=``.

    After pre-training the scaling is folded into the encoder, so the scouts, the guide and
    fine-tuning see a plain encoder of the model's genes.
    """

    _module_cls = ScaledInputModule

    def train(self, *args, compute_guide: bool = True, guide_kwargs=None, **kwargs) -> None:
        super().train(*args, compute_guide=False, **kwargs)
        self.module.fold_scaling()
        if compute_guide:
            self.compute_guide(**(guide_kwargs or {}))


class MeanFillGTL(GTL):
    """The default GTL, able to make copies that fill a target's missing genes with a mean."""

    @torch.no_grad()
    def with_missing_at_mean(self, missing: np.ndarray, gene_mean: np.ndarray) -> MeanFillGTL:
        """A copy whose encoder sees ``gene_mean`` for the ``missing`` genes instead of 0.

        Missing genes are zero-filled at the input, so adding ``W[:, missing] @ mean[missing]``
        to the first layer's bias is exactly the same as filling them with their mean.
        """
        filled = copy.copy(self)
        filled.module = copy.deepcopy(self.module)
        layer = first_linear(filled.module.encoder)
        fill = torch.as_tensor(gene_mean[missing], dtype=layer.weight.dtype)
        layer.bias += layer.weight[:, torch.as_tensor(missing)] @ fill
        probe = torch.rand(8, missing.size, generator=torch.Generator().manual_seed(0))
        probe[:, missing] = 0.0
        with_mean = probe.clone()
        with_mean[:, missing] = fill
        _check_same(
            _eval_output(self.module.encoder, with_mean),
            _eval_output(filled.module.encoder, probe),
            "with_missing_at_mean",
        )
        return filled


def corpus_pca(x_log: np.ndarray, n_components: int, seed: int) -> PCA:
    return PCA(n_components=n_components, random_state=seed).fit(x_log)


def kmeans_labels(x_log: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """K-means clusters of the corpus on its 50 principal components, as strings."""
    scores = corpus_pca(x_log, 50, seed).transform(x_log)
    clusters = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(scores)
    return np.asarray([f"c{c}" for c in clusters])
