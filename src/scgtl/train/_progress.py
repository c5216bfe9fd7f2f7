"""Lightning's pre-training progress bar, on stderr (results go to stdout), and its length log."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from lightning.pytorch.callbacks import Callback, ProgressBar
from tqdm.auto import tqdm

if TYPE_CHECKING:
    import lightning.pytorch as pl

logger = logging.getLogger(__name__)


class StderrProgressBar(ProgressBar):
    """One bar over the epochs, with the latest losses, written to stderr.

    The same display as scvi-tools' simple progress bar, which writes to stdout.
    """

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._bar = None

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        # A resumed training starts where its checkpoint stopped, not at epoch 0.
        self._bar = tqdm(
            total=trainer.max_epochs,
            initial=trainer.current_epoch,
            desc="Training",
            file=sys.stderr,
            disable=not self._enabled,
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")
        self._bar.update()
        self._bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self._bar.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_bar"] = None  # a tqdm bar cannot be pickled
        return state


class TrainingLengthLog(Callback):
    """Log, when training starts, the epochs it will run and the optimiser steps they take.

    The figures come from the trainer once its data loaders exist, so they are exact: the
    steps per epoch are those of one device (under DDP each device takes the same number), and a
    resumed training counts only the epochs it has left. Logged at ``INFO`` by
    ``scgtl.train._progress``, on global rank 0 only.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            logger.info(training_length(trainer))


def training_length(trainer: pl.Trainer) -> str:
    """``"Pre-training: 10 epochs x 5 steps = 50 optimiser steps."`` and the like."""
    first, last = trainer.current_epoch, trainer.max_epochs
    steps_per_epoch = trainer.num_training_batches
    epochs = f"{last - first} epoch{'' if last - first == 1 else 's'}"
    if first > 0:
        epochs += f" (resumed after epoch {first} of {last})"
    devices = f" on each of {trainer.world_size} devices" if trainer.world_size > 1 else ""
    total = (last - first) * steps_per_epoch
    return f"Pre-training: {epochs} x {steps_per_epoch} steps{devices} = {total} optimiser steps."
