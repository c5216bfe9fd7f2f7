"""Progress bars: all on stderr (results go to stdout), all off with one setting.

``scgtl.settings.progress_bar = False`` silences every bar scgtl draws: pre-training, scouts and
the benchmark. A function's own ``progress=`` / ``enable_progress_bar=`` argument, when given,
takes precedence. Lightning's banners and tips are kept off the console while scgtl trains
(:func:`quiet_lightning`); its warnings stay.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import TYPE_CHECKING

from scgtl._settings import settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator


#: Lightning's loggers. At INFO they print, on every fit, the accelerators found ("GPU
#: available: False ...") and a tip advertising a model-upload service.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's INFO lines off (as scvi-tools users set its logger to WARNING), then restored.

    Also silences two warnings that say nothing about the user's data: the logging interval
    being longer than a small corpus's epoch, and a deprecation inside Lightning's own code.
    """
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def progress_enabled(progress: bool | None) -> bool:
    """``progress`` if given, else :attr:`scgtl.settings.progress_bar`."""
    return settings.progress_bar if progress is None else bool(progress)


@contextlib.contextmanager
def progress_bar(total: int, description: str, *, enabled: bool) -> Iterator[Callable]:
    """A rich progress bar on stderr; yields ``advance(description=None)``, a no-op if disabled."""
    if not enabled:
        yield lambda description=None: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)

        def advance(description: str | None = None) -> None:
            bar.update(task, advance=1, description=description)

        yield advance


def track(items: Iterable, *, total: int, description: str, enabled: bool) -> Iterator:
    """Yield ``items`` while a progress bar on stderr counts them."""
    with progress_bar(total, description, enabled=enabled) as advance:
        for item in items:
            yield item
            advance()
