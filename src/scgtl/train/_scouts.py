"""Running scouts: each starts from the pre-trained encoder and records how its weights move."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from scgtl._progress import progress_enabled, track
from scgtl.guide import parameter_changes
from scgtl.train._few_shot import check_head_init, fit_few_shot, prototype_head

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from scgtl.guide import ScoutTask
    from scgtl.train._few_shot import HeadInit


def run_scouts(
    encoder: nn.Module,
    x: torch.Tensor,
    tasks: Sequence[ScoutTask],
    *,
    n_latent: int,
    n_steps: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool | None = None,
    head_init: HeadInit = "prototypes",
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield each scout's parameter change ``w_final - w_base`` of ``encoder``.

    ``encoder`` itself is never modified: every scout trains a copy with a fresh linear head,
    initialised like the fine-tuning head (``head_init``, see
    :func:`~scgtl.train.prototype_head`) so that scouts move the weights as fine-tuning will.
    """
    check_head_init(head_init)
    base = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    enabled = progress_enabled(progress)
    iterator = track(tasks, total=len(tasks), description="Scouts", enabled=enabled)
    for i, task in enumerate(iterator):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            scout = copy.deepcopy(encoder)
            x_task = x[torch.as_tensor(task.indices, device=x.device)]
            y_task = torch.as_tensor(task.labels, device=x.device)
            if head_init == "prototypes":
                head = prototype_head(scout, x_task, y_task, len(task.groups))
            else:
                head = nn.Linear(n_latent, len(task.groups)).to(x.device)
            fit_few_shot(
                scout,
                head,
                x_task,
                y_task,
                n_steps=n_steps,
                lr=lr,
                weight_decay=weight_decay,
            )
        yield parameter_changes(base, dict(scout.named_parameters()))
