"""Several devices: what pre-training under Lightning's DDP needs beyond scvi-tools' defaults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scvi
from lightning.pytorch.strategies import DDPStrategy

if TYPE_CHECKING:
    from lightning.pytorch.strategies import Strategy

    from scgtl.train._checkpoint import ResumePoint

#: Seed of the train/validation split when ``scvi.settings.seed`` is unset (one device or DDP).
DISTRIBUTED_SPLIT_SEED = 0


def is_distributed(strategy: str | Strategy | None) -> bool:
    """Whether ``strategy`` is one of Lightning's DDP strategies.

    The rule scvi-tools applies to give its data loaders a distributed sampler
    (``scvi.model._utils.use_distributed_sampler``): ``"ddp"``, ``"ddp_spawn"``,
    ``"ddp_notebook"``, ``"ddp_find_unused_parameters_true"``... or a ``DDPStrategy``.

    Parameters
    ----------
    strategy
        The ``strategy`` passed to the trainer.

    Returns
    -------
    ``True`` for a DDP strategy.
    """
    if isinstance(strategy, str):
        return "ddp" in strategy
    return isinstance(strategy, DDPStrategy)


def seeded_split(n_obs: int, n_train: int, n_val: int, *, seed: int) -> list[np.ndarray]:
    """scvi-tools' ``DataSplitter`` split, drawn from ``seed``: ``[train, validation, test]``.

    Each DDP process builds its own split. scvi-tools draws it with ``scvi.settings.seed``,
    which is ``None`` unless set, so every process would otherwise train on a different
    subset and the processes' mini-batches would overlap. The same permutation as
    ``DataSplitter.setup`` (validation first, then training, then test), from a fixed seed.

    Parameters
    ----------
    n_obs
        Observations in the corpus.
    n_train, n_val
        Sizes of the training and validation sets, as ``DataSplitter`` computed them.
    seed
        Seed of the permutation; the same in every process.

    Returns
    -------
    The indices of the three sets, for ``datasplitter_kwargs={"external_indexing": ...}``.
    """
    indices = np.random.RandomState(seed).permutation(n_obs)
    return [indices[n_val : n_val + n_train], indices[:n_val], indices[n_val + n_train :]]


def split_sizes(data_splitter_cls: type, adata_manager: Any, **kwargs) -> tuple[int, int]:
    """``(n_train, n_val)`` as scvi-tools' data splitter computes them for these settings.

    Parameters
    ----------
    data_splitter_cls
        The model's ``_data_splitter_cls`` (scvi-tools' ``DataSplitter``).
    adata_manager
        The model's ``AnnDataManager``.
    **kwargs
        The splitter's settings (``train_size``, ``validation_size``, ``batch_size``...).

    Returns
    -------
    The sizes of the training and validation sets.
    """
    splitter = data_splitter_cls(adata_manager, **kwargs)
    return splitter.n_train, splitter.n_val


def datasplitter_kwargs(
    data_splitter_cls: type,
    adata_manager: Any,
    start: ResumePoint | None,
    *,
    batch_size: int,
    train_size: float | None,
    trainer_kwargs: dict,
) -> dict:
    """scvi-tools' data splitter options, with the split fixed where it must not be drawn.

    A resumed training keeps its checkpoint's split. scvi-tools draws the split from
    ``scvi.settings.seed``; unset, it would differ from run to run (two runs seeded with
    ``torch.manual_seed`` alike would train on different rows) and between the processes of
    DDP, so the split is then drawn here with :data:`DISTRIBUTED_SPLIT_SEED`.

    Parameters
    ----------
    data_splitter_cls, adata_manager
        The model's data splitter class and its registered corpus.
    start
        The checkpoint a training resumes from, or ``None``.
    batch_size, train_size
        :meth:`scgtl.GTL.train`'s options.
    trainer_kwargs
        ``train``'s further options; its ``datasplitter_kwargs`` is taken out of it.

    Returns
    -------
    The ``datasplitter_kwargs`` to pass to scvi-tools.
    """
    kwargs = dict(trainer_kwargs.pop("datasplitter_kwargs", None) or {})
    if start is not None and start.split is not None:
        kwargs["external_indexing"] = start.split
    elif (
        scvi.settings.seed is None
        and trainer_kwargs.get("shuffle_set_split", True)
        and "external_indexing" not in kwargs
    ):
        n_train, n_val = split_sizes(
            data_splitter_cls,
            adata_manager,
            train_size=train_size,
            validation_size=trainer_kwargs.get("validation_size"),
            batch_size=batch_size,
            **kwargs,
        )
        n_obs = adata_manager.adata.n_obs
        kwargs["external_indexing"] = seeded_split(
            n_obs, n_train, n_val, seed=DISTRIBUTED_SPLIT_SEED
        )
    return kwargs
