"""Continued masked-expression pre-training on mixed batches (target adaptation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from scgtl.train._few_shot import check_training_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from scgtl.module import GTLModule


def fit_masked_reconstruction(
    module: GTLModule,
    draw_batch: Callable[[], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    *,
    n_steps: int,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    seed: int = 0,
) -> list[float]:
    """Train ``module``'s encoder and decoder in place on batches of log expression.

    Every step draws a batch (``draw_batch()``, already log-transformed, e.g. target rows mixed
    with corpus rows read in other units) and takes one Adam step on
    :meth:`~scgtl.module.GTLModule.masked_reconstruction_loss`, the pre-training objective
    without labels. A plain loop rather than Lightning: the batches come from several AnnData
    objects in different units, which one scvi-tools data loader cannot mix.

    Parameters
    ----------
    module
        The network to train; left in evaluation mode.
    draw_batch
        Returns the next batch, ``(batch_size, n_genes)``, or a pair of it and the
        ``(batch_size, n_genes)`` booleans of the genes each row measured (the others, such as
        a query's zero-filled genes, are left out of the loss; see
        :meth:`~scgtl.module.GTLModule.masked_reconstruction_loss`).
    n_steps, lr, weight_decay
        Adam settings.
    seed
        Seed of the masks and dropout (the global random state is left untouched).

    Returns
    -------
    The loss at every step.
    """
    check_training_settings(n_steps=n_steps, lr=lr, weight_decay=weight_decay)
    optimizer = torch.optim.Adam(
        list(module.encoder.parameters()) + list(module.decoder.parameters()),
        lr=lr,
        weight_decay=weight_decay,
        foreach=True,  # the same values as the per-tensor loop, faster
    )
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module.train()
        for _ in range(n_steps):
            batch = draw_batch()
            x, measured = batch if isinstance(batch, tuple) else (batch, None)
            loss = module.masked_reconstruction_loss(x, measured)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        module.eval()
    return losses
