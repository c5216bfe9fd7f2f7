"""What every plot of :mod:`scgtl.pl` does at the end: save, show, return (scanpy's way)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from docrep import DocstringProcessor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Drawn = TypeVar("Drawn")

#: matplotlib backends that draw to files only (``MPLBACKEND=Agg`` on a server, in CI).
NON_INTERACTIVE_BACKENDS = frozenset({"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"})

#: Save a figure: ``True`` (scanpy's figure folder), a path, or ``False``/``None`` (not saved).
Save = bool | str | os.PathLike | None


def interactive_backend() -> bool:
    """Whether matplotlib shows figures (a window, a notebook) rather than only writing files."""
    import matplotlib

    return matplotlib.get_backend().lower() not in NON_INTERACTIVE_BACKENDS


def figure_path(save: Save, name: str) -> Path | None:
    """Where ``save`` asks for the figure to go (``None``: not saved).

    ``True`` follows scanpy: ``sc.settings.figdir / f"scgtl_{name}{plot_suffix}.{format}"``. A
    path is used as given, ``.png`` added when it has no extension.
    """
    if save is None or save is False:
        return None
    if save is True:
        import scanpy as sc

        suffix, extension = sc.settings.plot_suffix, sc.settings.file_format_figs
        return Path(sc.settings.figdir) / f"scgtl_{name}{suffix}.{extension}"
    if not isinstance(save, str | os.PathLike):
        raise TypeError(f"save={save!r} is not valid; pass a path, True or False.")
    path = Path(save)
    return path if path.suffix else path.with_name(f"{path.name}.png")


def write_figure(fig: Figure, path: Path) -> None:
    """Save ``fig`` to ``path`` whole or not at all (through a temporary file beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        fig.savefig(temporary, bbox_inches="tight")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def finish(
    fig: Figure, drawn: Drawn, *, path: Path | None, show: bool | None, own_figure: bool
) -> Drawn | None:
    """Save and show ``fig`` as scanpy does; return ``drawn`` unless the figure was shown.

    ``path`` comes from :func:`figure_path`, called before drawing so that a bad ``save``
    fails before any work. ``show=None`` shows the figure when matplotlib can (an interactive
    backend or a notebook) and not under a file-only backend such as Agg, where the Axes are
    returned instead. A figure the plot made itself is closed after saving, as scanpy does.
    """
    import matplotlib.pyplot as plt

    if path is not None:
        write_figure(fig, path)
    show = interactive_backend() if show is None else show
    if show:
        plt.show()
    if path is not None and own_figure:
        plt.close(fig)
    return None if show else drawn


_show_save = """\
show
    Show the figure (``plt.show()``) and return ``None``. By default it is shown where
    matplotlib can show it (a notebook, a window); under a file-only backend such as
    ``MPLBACKEND=Agg`` it is not, and the plot is returned.
save
    Write the figure: a path (its extension picks the format, ``.png`` when it has none;
    missing folders are made), or ``True`` for ``scgtl_<plot>`` in scanpy's figure folder
    (``sc.settings.figdir``, with its ``plot_suffix`` and ``file_format_figs``).
    The file is written whole or not at all. A figure the function made is closed after
    saving, as scanpy does."""

#: Parameter text every plot shares: ``%(param_show_save)s``.
plot_doc = DocstringProcessor(param_show_save=_show_save)
