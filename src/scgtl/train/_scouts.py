"""Running scouts: each starts from the pre-trained encoder and records how its weights move."""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import math
import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from scgtl._progress import progress_bar, progress_enabled
from scgtl.guide import parameter_changes
from scgtl.train._batched_scouts import (
    fit_scouts_batched,
    scout_batch_size,
    supports_batched_scouts,
)
from scgtl.train._few_shot import check_head_init, fit_few_shot, prototype_head

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from scgtl.guide import ScoutTask
    from scgtl.train._few_shot import HeadInit

logger = logging.getLogger(__name__)


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
    batched: bool = True,
    batch_size: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield each scout's parameter change ``w_final - w_base`` of ``encoder``.

    ``encoder`` itself is never modified: every scout trains a copy with a fresh linear head,
    initialised like the fine-tuning head (``head_init``, see
    :func:`~scgtl.train.prototype_head`) so that scouts move the weights as fine-tuning will.
    Scout ``i`` is seeded with ``seed + i`` (its head and its dropout masks).

    Parameters
    ----------
    encoder
        The pre-trained encoder.
    x
        ``(n_pool, n_genes)`` log expression the tasks' indices point into.
    tasks
        The scout problems.
    n_latent
        Output size of ``encoder`` (for ``head_init="random"``).
    n_steps, lr, weight_decay
        Adam settings of each scout, see :func:`~scgtl.train.fit_few_shot`.
    seed
        Scout ``i`` uses ``seed + i``.
    progress
        Show a progress bar (on stderr); default :attr:`scgtl.settings.progress_bar`.
    head_init
        ``"prototypes"`` or ``"random"``.
    batched
        Train ``batch_size`` scouts at once as one batched model (see
        :func:`~scgtl.train.fit_scouts_batched`) instead of one after another. On the CPU
        the heads and dropout masks are the sequential run's exactly, and the changes differ
        by rounding only (batched matrix products, a fused Adam): within ``5e-4`` of the
        largest change in the tests, the size of the difference between running the
        sequential scouts on 1 and on 2 threads. Where a scout's loss reaches zero within a
        few steps (a pre-trained encoder, easy pairs), Adam amplifies rounding in the
        vanishing gradients and both differences grow alike, to percents of a change; the
        guides then still correlate at about 0.999 or better.
        Encoders with buffers (BatchNorm) or other dropout variants run one after another.
    batch_size
        Scouts trained at once; default: as many as fit in
        ``SCOUT_MEMORY_BYTES`` (256 MiB).
    on_step
        Called after every optimiser step with the number of scouts it stepped (``batch_size``
        or fewer when batched, 1 otherwise): ``n_scouts * n_steps`` in all. For progress
        displays (:class:`~scgtl.train.TrainingDisplay` counts it).

    Yields
    ------
    ``{name: w_final - w_base}`` of each scout, in the order of ``tasks``.
    """
    check_head_init(head_init)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} must be None or an integer >= 1.")
    base = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    settings = {"n_steps": n_steps, "lr": lr, "weight_decay": weight_decay}
    if batched and supports_batched_scouts(encoder):
        size = batch_size or scout_batch_size(encoder, len(tasks))
        trained = _batched_scouts(
            encoder, x, tasks, size, n_latent, head_init, seed, settings, on_step
        )
        how = f"batched, up to {size} at a time"
    else:
        trained = _sequential_scouts(
            encoder, x, tasks, n_latent, head_init, seed, settings, on_step
        )
        how = "one after another"
    logger.info(f"Scouts: {len(tasks)} scouts x {n_steps} optimiser steps, {how}.")
    with progress_bar(len(tasks), "Scouts", enabled=progress_enabled(progress)) as advance:
        for weights in trained:
            advance()
            yield parameter_changes(base, weights)


def _sequential_scouts(
    encoder: nn.Module,
    x: torch.Tensor,
    tasks: Sequence[ScoutTask],
    n_latent: int,
    head_init: HeadInit,
    seed: int,
    settings: dict,
    on_step: Callable[[int], None] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Each scout's trained weights, one scout after another (the reference)."""
    callback = None if on_step is None else lambda step, loss: on_step(1)
    for i, task in enumerate(tasks):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            scout = copy.deepcopy(encoder)
            x_task, y_task = _support(x, task)
            head = _initial_head(scout, x_task, y_task, len(task.groups), n_latent, head_init)
            fit_few_shot(scout, head, x_task, y_task, callback=callback, **settings)
        yield dict(scout.named_parameters())


def _batched_scouts(
    encoder: nn.Module,
    x: torch.Tensor,
    tasks: Sequence[ScoutTask],
    batch_size: int,
    n_latent: int,
    head_init: HeadInit,
    seed: int,
    settings: dict,
    on_step: Callable[[int], None] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Each scout's trained weights, ``batch_size`` scouts (of one task shape) at a time."""
    for chunk in _chunks(tasks, batch_size):
        starts = [_scout_start(encoder, x, tasks[i], n_latent, head_init, seed + i) for i in chunk]
        x_tasks, y_tasks, heads, generators = zip(*starts, strict=True)
        stepped = None if on_step is None else functools.partial(on_step, len(chunk))
        weights = fit_scouts_batched(
            encoder,
            heads,
            torch.stack(x_tasks),
            torch.stack(y_tasks),
            generators,
            on_step=stepped,
            **settings,
        )
        for j in range(len(chunk)):
            yield {name: value[j] for name, value in weights.items()}


def _chunks(tasks: Sequence[ScoutTask], batch_size: int) -> Iterator[list[int]]:
    """Runs of at most ``batch_size`` consecutive task indices whose tasks can be stacked."""

    def shape(i: int) -> tuple[int, int]:
        return len(tasks[i].indices), len(tasks[i].groups)

    for _, run in itertools.groupby(range(len(tasks)), key=shape):
        run = list(run)
        for start in range(0, len(run), batch_size):
            yield run[start : start + batch_size]


def _scout_start(
    encoder: nn.Module,
    x: torch.Tensor,
    task: ScoutTask,
    n_latent: int,
    head_init: HeadInit,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, nn.Module, torch.Generator]:
    """A scout's support set, its head, and the generator its dropout masks come from.

    The head is built as in :func:`_sequential_scouts` after seeding with ``seed`` (the
    encoder's weights are the scout's starting weights). On the CPU the generator continues
    from the state the global generator then has, where the sequential scout's dropout draws
    from; on other devices, whose dropout kernels draw differently, it is seeded with ``seed``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x_task, y_task = _support(x, task)
        head = _initial_head(encoder, x_task, y_task, len(task.groups), n_latent, head_init)
        generator = torch.Generator(device=x.device)
        if x.device.type == "cpu":
            generator.set_state(torch.get_rng_state())
        else:
            generator.manual_seed(seed)
    return x_task, y_task, head, generator


def _support(x: torch.Tensor, task: ScoutTask) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's rows of ``x`` and its labels, on ``x``'s device."""
    rows = x[torch.as_tensor(task.indices, device=x.device)]
    return rows, torch.as_tensor(task.labels, device=x.device)


def _initial_head(
    encoder: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    n_latent: int,
    head_init: HeadInit,
) -> nn.Module:
    """A scout's fresh head, from the class prototypes or at random."""
    if head_init == "prototypes":
        return prototype_head(encoder, x, y, n_classes)
    return nn.Linear(n_latent, n_classes).to(x.device)


def estimate_scout_seconds(
    encoder: nn.Module,
    x: torch.Tensor,
    *,
    n_scouts: int,
    n_way: int = 2,
    n_latent: int,
    n_steps: int = 100,
    lr: float = 1e-3,
    batched: bool = True,
    batch_size: int | None = None,
    timed_steps: int = 2,
) -> float:
    """Seconds :func:`run_scouts` will spend training, from a few timed steps of it.

    Trains throw-away copies of ``encoder`` on the rows of ``x`` (one scout's support: give
    real rows, since batched scouts train only the genes their cells express) for one step and
    then for ``1 + timed_steps``, as :func:`run_scouts` would (batched the same way); the
    difference is the time of ``timed_steps`` steps, the rest the setting up of a run's copies,
    and both are scaled to ``n_scouts`` scouts of ``n_steps`` steps. What the scouts do
    besides training (reading the corpus, clustering it) is not counted. ``encoder`` and the
    random generators are left as they were.

    Parameters
    ----------
    encoder
        The encoder the scouts will copy (its weights do not matter, its shape does).
    x
        ``(n_way * k_shot, n_genes)`` log expression of corpus rows.
    n_scouts, n_way, n_latent, n_steps, lr, batched, batch_size
        As the scouts will run, see :func:`run_scouts`.
    timed_steps
        Steps timed beyond the first.

    Returns
    -------
    The estimated seconds.
    """
    y = torch.arange(x.shape[0], device=x.device) % n_way
    settings = {"lr": lr, "weight_decay": 0.0}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = nn.Linear(n_latent, n_way).to(x.device)
        if batched and supports_batched_scouts(encoder):
            size = batch_size or scout_batch_size(encoder, n_scouts)
            stacked_x, stacked_y = x.expand(size, *x.shape), y.expand(size, *y.shape)
            generators = [torch.Generator(device=x.device).manual_seed(i) for i in range(size)]

            def fit(steps: int) -> None:
                heads = [copy.deepcopy(head) for _ in range(size)]
                fit_scouts_batched(
                    encoder, heads, stacked_x, stacked_y, generators, n_steps=steps, **settings
                )

            runs = math.ceil(n_scouts / size)
        else:

            def fit(steps: int) -> None:
                fit_few_shot(
                    copy.deepcopy(encoder), copy.deepcopy(head), x, y, n_steps=steps, **settings
                )

            runs = n_scouts
        one, more = _seconds(fit, 1), _seconds(fit, 1 + timed_steps)
    # Each run also sets up its copies once: the difference of the two times is steps alone.
    seconds_per_step = max(more - one, 0.0) / timed_steps
    setup = max(one - seconds_per_step, 0.0)
    return runs * (setup + n_steps * seconds_per_step)


def _seconds(function: Callable[[int], None], steps: int) -> float:
    """Wall time of ``function(steps)``."""
    start = time.perf_counter()
    function(steps)
    return time.perf_counter() - start
