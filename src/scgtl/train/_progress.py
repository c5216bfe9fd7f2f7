"""Lightning's pre-training progress bar, on stderr (results go to stdout)."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import ProgressBar
from tqdm.auto import tqdm


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
        self._bar = tqdm(
            total=trainer.max_epochs, desc="Training", file=sys.stderr, disable=not self._enabled
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
