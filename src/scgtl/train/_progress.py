"""One progress display for the whole of ``train()`` (pre-training, then scouts), and its logs.

Everything is drawn on stderr, where it does not mix with results on stdout.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from lightning.pytorch.callbacks import Callback, ProgressBar

if TYPE_CHECKING:
    from collections.abc import Iterable

    import lightning.pytorch as pl
    from rich.progress import Progress, Task, TaskID

logger = logging.getLogger(__name__)

#: The phases of ``train()``, in order, and the description of each row.
PRETRAINING, SCOUTS = "Pre-training", "Scouts"
WHOLE = "train()"


class TrainingDisplay:
    """One live display of ``train()``: a row for the whole call and one per phase.

    Each row shows how much is done, the time spent and the time left, and the time left is
    measured rather than guessed: pre-training's from the epochs run so far (unknown, and shown
    as ``-``, until the first epoch ends); the scouts' from a timed step of scout training taken
    before pre-training (:func:`~scgtl.train.estimate_scout_seconds`), then from the scout
    steps done; the whole call's is the sum of its phases'. A display of the
    scouts alone (:meth:`scgtl.GTL.compute_guide`) has no row for the whole call.

    Use it as a context manager; it draws nothing when ``enabled`` is false, and
    :meth:`disable` turns it off before it starts (other processes than the first under DDP).

    Parameters
    ----------
    phases
        The phases the call runs, a subsequence of ``("Pre-training", "Scouts")``.
    enabled
        Draw the display.
    scout_seconds
        The scouts' expected duration, ``None`` when unknown.

    Notes
    -----
    A phase's time left is its rate since its first step (epoch or scout step) times the steps
    left: the first step is left out, as it also pays for warming up (and, for the scouts,
    reading and clustering the corpus).
    """

    def __init__(
        self,
        phases: Iterable[str],
        *,
        enabled: bool = True,
        scout_seconds: float | None = None,
    ):
        self.phases = tuple(phases)
        unknown = set(self.phases) - {PRETRAINING, SCOUTS}
        if unknown or not self.phases:
            raise ValueError(f"phases={self.phases!r} must name {PRETRAINING!r} and/or {SCOUTS!r}.")
        self.enabled = enabled
        self.scout_seconds = scout_seconds
        self._progress: Progress | None = None
        self._rows: dict[str, TaskID] = {}
        self._state = {phase: _PhaseClock() for phase in self.phases}

    def __enter__(self) -> TrainingDisplay:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def disable(self) -> None:
        """Draw nothing from now on (before the display has started)."""
        self.enabled = False

    # ------------------------------------------------------------------ events
    def start_phase(self, phase: str, *, total: int, done: int = 0) -> None:
        """``phase`` starts: ``total`` steps (epochs or scouts), ``done`` of them already."""
        clock = self._state[phase]
        clock.start(total=total, done=done)
        if self._start_drawing():
            self._progress.update(self._rows[phase], total=total, completed=done)
            self._progress.start_task(self._rows[phase])
            self._refresh(phase)

    def advance(self, phase: str, steps: int = 1, *, note: str = "") -> None:
        """``steps`` more steps (epochs, scout steps) of ``phase`` are done; ``note``: its loss."""
        clock = self._state[phase]
        clock.advance(steps)
        clock.note = note
        if self._progress is not None:
            self._progress.update(self._rows[phase], completed=clock.done)
            self._refresh(phase)

    def end_phase(self, phase: str) -> None:
        """``phase`` is over (also when it stopped early)."""
        self._state[phase].end()
        if self._progress is not None:
            self._refresh(phase)

    # ------------------------------------------------------------------ time left
    def seconds_left(self, row: str) -> float | None:
        """Seconds the phase ``row`` (or the whole call, ``"train()"``) has left; None: unknown."""
        if row == WHOLE:
            parts = [self.seconds_left(phase) for phase in self.phases]
            return None if None in parts else sum(parts)
        clock = self._state[row]
        if row == SCOUTS and clock.done == 0 and self.scout_seconds is not None:
            # Until the first scout step (after reading and clustering), the timed step says.
            return max(self.scout_seconds - clock.elapsed(), 0.0)
        return clock.seconds_left()

    # ------------------------------------------------------------------ drawing
    def _start_drawing(self) -> bool:
        """Start the live display on first use; whether it is drawn."""
        if not self.enabled:
            return False
        if self._progress is None:
            self._progress = _new_progress(self)
            rows = ([WHOLE] if len(self.phases) > 1 else []) + list(self.phases)
            for row in rows:
                # Not started: rich's own clock then waits for the phase to begin.
                self._rows[row] = self._progress.add_task(
                    row, total=None, start=row == WHOLE, row=row
                )
            self._progress.start()
        return True

    def _refresh(self, phase: str) -> None:
        """Redraw ``phase``'s description and the whole call's bar (its share of time spent)."""
        clock = self._state[phase]
        unit = "epoch" if phase == PRETRAINING else "scout step"
        description = f"{phase}: {unit} {clock.done}/{clock.total}"
        if clock.note:
            description += f" ({clock.note})"
        self._progress.update(self._rows[phase], description=description)
        if WHOLE in self._rows:
            spent = sum(state.elapsed() for state in self._state.values())
            left = self.seconds_left(WHOLE)
            share = None if left is None else 100 * spent / max(spent + left, 1e-9)
            self._progress.update(self._rows[WHOLE], total=100, completed=share or 0)


class _PhaseClock:
    """Steps done and time spent in one phase of ``train()``."""

    def __init__(self):
        self.total: int | None = None
        self.done = 0
        self.note = ""
        self._first = 0
        self._started: float | None = None
        self._ended: float | None = None

    def start(self, *, total: int, done: int) -> None:
        self.total, self.done, self._first = total, done, done
        self._started, self._ended = time.perf_counter(), None
        self._first_step: tuple[float, int] | None = None

    def advance(self, steps: int) -> None:
        self.done += steps
        if self._first_step is None:
            self._first_step = (time.perf_counter(), self.done)

    def end(self) -> None:
        self._ended = time.perf_counter()

    def elapsed(self) -> float:
        if self._started is None:
            return 0.0
        return (self._ended or time.perf_counter()) - self._started

    def seconds_left(self) -> float | None:
        if self._ended is not None:
            return 0.0
        if self.total is None or self._first_step is None:
            return None
        # The rate since the first step: the first is slower (warm-up, loading, clustering).
        at, done = self._first_step
        if self.done > done:
            rate = (time.perf_counter() - at) / (self.done - done)
        else:
            rate = self.elapsed() / (self.done - self._first)
        return rate * (self.total - self.done)


def _new_progress(display: TrainingDisplay) -> Progress:
    """A rich progress display on stderr whose last column is the display's time left."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class TimeLeftColumn(ProgressColumn):
        """``left 0:01:23`` from the display's own estimate, ``left -:--:--`` while unknown."""

        def render(self, task: Task) -> Text:
            seconds = display.seconds_left(task.fields["row"])
            if seconds is None:
                return Text("left -:--:--", style="progress.remaining")
            minutes, secs = divmod(round(seconds), 60)
            hours, minutes = divmod(minutes, 60)
            return Text(f"left {hours}:{minutes:02d}:{secs:02d}", style="progress.remaining")

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeLeftColumn(),
        console=Console(stderr=True),
    )


class PretrainingProgress(ProgressBar):
    """Lightning's progress bar of pre-training, drawn as a row of a :class:`TrainingDisplay`.

    Only the first process draws (Lightning disables the bar on the others); a resumed
    training starts from the epochs its checkpoint had done.
    """

    def __init__(self, display: TrainingDisplay):
        super().__init__()
        self._enabled = True
        self._display = display

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False
        if self._display is not None:
            self._display.disable()

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        if self._display is not None:
            self._display.start_phase(
                PRETRAINING, total=trainer.max_epochs, done=trainer.current_epoch
            )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._display is not None:
            note = _losses(self.get_metrics(trainer, pl_module))
            self._display.advance(PRETRAINING, note=note)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if self._display is not None:
            self._display.end_phase(PRETRAINING)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_display"] = None  # a live display cannot be pickled
        return state


def _losses(metrics: dict) -> str:
    """``"train_loss 0.123"`` from Lightning's progress-bar metrics (numbers only)."""
    return ", ".join(
        f"{name} {value:.3g}" for name, value in metrics.items() if isinstance(value, float)
    )


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
