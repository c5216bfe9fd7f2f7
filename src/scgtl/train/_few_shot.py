"""Short full-batch training of an encoder + head on a few labelled samples.

Scouts and guided fine-tuning both use it. A k-shot support set is a few dozen rows, so a plain
loop on the model's device is used instead of a Lightning ``Trainer``, whose start-up cost would
dominate runs of a hundred steps repeated for every scout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from scgtl.train._guided import GuidedUpdate

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import nn


def check_training_settings(*, n_steps: int, lr: float, weight_decay: float = 0.0) -> None:
    """Reject step counts and rates that cannot train anything."""
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps={n_steps!r} must be an integer >= 1.")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} must be > 0.")
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay!r} must be >= 0.")


def fit_few_shot(
    encoder: nn.Module,
    head: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_steps: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    guide: Mapping[str, torch.Tensor] | None = None,
) -> list[float]:
    """Train ``head(encoder(x))`` on labels ``y`` with Adam, full batch, in place.

    Parameters
    ----------
    encoder, head
        Modules trained together; ``guide`` (keyed by ``encoder``'s parameter names) scales the
        encoder's updates, the head is never guided.
    x
        ``(n, n_genes)`` log expression.
    y
        ``(n,)`` integer class codes.
    n_steps, lr, weight_decay
        Adam settings.
    guide
        Per-parameter plasticity in ``[0, 1]``; ``None`` trains without guidance.

    Returns
    -------
    The training loss at every step.
    """
    check_training_settings(n_steps=n_steps, lr=lr, weight_decay=weight_decay)
    parameters = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    guided = GuidedUpdate(dict(encoder.named_parameters()), guide) if guide else None
    encoder.train()
    head.train()
    losses = []
    for _ in range(n_steps):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(encoder(x)), y)
        loss.backward()
        if guided is None:
            optimizer.step()
        else:
            with guided.step():
                optimizer.step()
        losses.append(float(loss.detach()))
    encoder.eval()
    head.eval()
    return losses
