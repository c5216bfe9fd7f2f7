"""Global settings of scgtl, in one object (as ``scvi.settings``)."""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    F = TypeVar("F", bound=Callable)

#: Threads scgtl's own work uses unless told otherwise (see ``docs/research/speed.md``,
#: "Threads").
DEFAULT_N_THREADS = 1


def _check_n_threads(n_threads: int | None) -> None:
    if n_threads is not None and (
        isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1
    ):
        raise ValueError(f"n_threads={n_threads!r} must be None or an integer >= 1.")


class ScgtlSettings:
    """Global settings; use the instance :data:`scgtl.settings`.

    Attributes
    ----------
    n_threads
        Threads of torch and of the BLAS/OpenMP libraries (numpy, scikit-learn) while scgtl
        works: pre-training, scouts, adaptation, fine-tuning, prediction and the benchmark's
        fits. The limit applies inside scgtl's calls only; the caller's settings are restored
        when a call returns. Default ``1``: scgtl's networks are small, and on a machine shared
        with other work torch's default (one thread per core) made pre-training up to ten times
        slower, while one thread is as fast as two on a quiet machine (measured by
        ``benchmarks/threads.py``). ``None`` leaves the libraries' settings alone.
    progress_bar
        Show progress bars (on stderr): pre-training, scouts, the benchmark. ``False`` silences
        all of them; a call's own ``progress=`` or ``enable_progress_bar=`` takes precedence.

    Examples
    --------
    >>> scgtl.settings.n_threads = 2  # for everything scgtl does from now on
    >>> with scgtl.settings.threads(4):  # for this block only
    ...     model.train()
    """

    def __init__(self):
        self._n_threads: int | None = DEFAULT_N_THREADS
        self._active: int | None = None
        self._progress_bar = True

    @property
    def progress_bar(self) -> bool:
        """Show progress bars (on stderr)."""
        return self._progress_bar

    @progress_bar.setter
    def progress_bar(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"progress_bar={value!r} must be True or False.")
        self._progress_bar = value

    @property
    def n_threads(self) -> int | None:
        """Threads of torch and BLAS/OpenMP inside scgtl's calls (``None``: leave them)."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, n_threads: int | None) -> None:
        _check_n_threads(n_threads)
        self._n_threads = n_threads

    @contextlib.contextmanager
    def threads(self, n_threads: int | None) -> Iterator[None]:
        """Use ``n_threads`` inside a ``with`` block, for torch, BLAS/OpenMP and scgtl's calls.

        :attr:`n_threads` reads ``n_threads`` inside the block, so the scgtl calls made there
        use it too. Everything is restored afterwards; ``None`` changes nothing.
        """
        _check_n_threads(n_threads)
        if n_threads is None:
            yield
            return
        setting_before = self._n_threads
        self._n_threads = n_threads
        try:
            if n_threads == self._active:
                yield
            else:
                with self._limited(n_threads):
                    yield
        finally:
            self._n_threads = setting_before

    @contextlib.contextmanager
    def _limited(self, n_threads: int) -> Iterator[None]:
        import torch
        from threadpoolctl import threadpool_limits

        torch_before, active_before = torch.get_num_threads(), self._active
        torch.set_num_threads(n_threads)
        self._active = n_threads
        try:
            with threadpool_limits(limits=n_threads):
                yield
        finally:
            torch.set_num_threads(torch_before)
            self._active = active_before

    def __repr__(self) -> str:
        return f"ScgtlSettings(n_threads={self._n_threads!r}, progress_bar={self._progress_bar})"


#: The global settings object.
settings = ScgtlSettings()


def uses_threads(method: F) -> F:
    """Run ``method`` with :attr:`scgtl.settings.n_threads` in force (restored afterwards)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with settings.threads(settings.n_threads):
            return method(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def scvi_seed(seed: int) -> Iterator[None]:
    """``scvi.settings.seed = seed`` for the block, then the caller's setting again.

    scvi-tools seeds torch, numpy and the train/validation split from it; a pre-training
    recipe seeds itself without leaving the global seed changed for the caller's later work.
    """
    import scvi

    before = scvi.settings.seed
    scvi.settings.seed = seed
    try:
        yield
    finally:
        scvi.settings.seed = before
