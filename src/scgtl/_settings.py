"""Global settings of scgtl, in one object (as ``scvi.settings``)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


def _check_n_threads(n_threads: int | None) -> None:
    if n_threads is not None and (not isinstance(n_threads, int) or n_threads < 1):
        raise ValueError(f"n_threads={n_threads!r} must be None or an integer >= 1.")


class ScgtlSettings:
    """Global settings; use the instance :data:`scgtl.settings`.

    Attributes
    ----------
    n_threads
        Threads of torch and of the BLAS/OpenMP libraries (numpy, scikit-learn) for everything
        that follows. ``None`` (the default) leaves the libraries' own defaults alone; setting it
        back to ``None`` restores them. On a small machine shared with other work, few threads
        per process are much faster than the default of one per core.

    Examples
    --------
    >>> scgtl.settings.n_threads = 1
    >>> with scgtl.settings.threads(2):  # temporarily
    ...     model.train()
    """

    def __init__(self):
        self._n_threads: int | None = None
        self._limiter = None
        self._torch_default: int | None = None

    @property
    def n_threads(self) -> int | None:
        """Threads of torch and BLAS/OpenMP (``None``: the libraries' defaults)."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, n_threads: int | None) -> None:
        _check_n_threads(n_threads)
        import torch

        if self._torch_default is None:
            self._torch_default = torch.get_num_threads()
        self._apply(n_threads, restore_torch=self._torch_default)

    def _apply(self, n_threads: int | None, *, restore_torch: int) -> None:
        """Limit torch and BLAS/OpenMP to ``n_threads``; ``None``: undo the limits."""
        import torch
        from threadpoolctl import threadpool_limits

        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        if n_threads is None:
            torch.set_num_threads(restore_torch)
        else:
            torch.set_num_threads(n_threads)
            self._limiter = threadpool_limits(limits=n_threads)
        self._n_threads = n_threads

    @contextlib.contextmanager
    def threads(self, n_threads: int | None) -> Iterator[None]:
        """Set :attr:`n_threads` inside a ``with`` block; everything is restored afterwards.

        ``None`` leaves the current setting as it is.
        """
        _check_n_threads(n_threads)
        if n_threads is None:
            yield
            return
        import torch

        before, torch_before = self._n_threads, torch.get_num_threads()
        self._apply(n_threads, restore_torch=torch_before)
        try:
            yield
        finally:
            self._apply(before, restore_torch=torch_before)

    def __repr__(self) -> str:
        return f"ScgtlSettings(n_threads={self._n_threads!r})"


#: The global settings object.
settings = ScgtlSettings()
