"""What the commands share: option types, checks, reading and writing, errors and messages.

Nothing here imports torch, scvi-tools, scanpy or anndata at module level: building the parser
(``scgtl --help``) must stay fast. Those load inside the functions that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anndata import AnnData

UNITS = ("counts", "normalized", "log1p")

#: The file :meth:`scgtl.GTL.save` and :meth:`scgtl.GTLClassifier.save` write in their directory.
MODEL_FILE = "model.pt"

#: What each model class is, which command makes it and which command reads it.
MODEL_KINDS = {
    "GTL": ("a pre-trained GTL model", "scgtl pretrain", "scgtl fine-tune"),
    "GTLClassifier": ("a fine-tuned classifier", "scgtl fine-tune", "scgtl predict"),
}


class CommandError(Exception):
    """A failure the user can fix, reported as one line on stderr with exit status 2."""


def one_line(message: object) -> str:
    """``message`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(message).split())


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def non_negative_int(text: str) -> int:
    """Argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def unknown_threshold(text: str) -> float | str:
    """Argparse type of ``--unknown``: ``auto`` or a finite novelty threshold >= 0."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'auto' nor a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--quiet``, as ``scgtl benchmark`` has them."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        default=1,
        help="torch/BLAS threads (default 1: the networks are small and cores are often shared)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or progress messages"
    )


# ------------------------------------------------------------------------------ argument checks
def check_input_file(parser: argparse.ArgumentParser, option: str, path: Path | None) -> None:
    """Refuse an input that is not an existing file."""
    if path is not None and not path.is_file():
        parser.error(f"{option} {path} is not a file")


def registered_model_names() -> list[str]:
    """The names of the pre-trained models (``scgtl models``)."""
    from scgtl.models import MODELS

    return sorted(MODELS)


def is_model_name(path: Path) -> bool:
    """Whether ``--model`` names a pre-trained model (or a hub id ``hf:owner/repo``), not a folder.

    ``hf://owner/repo`` reaches here as ``hf:/owner/repo`` (a ``Path`` folds the slashes), which
    :func:`scgtl.models.load` reads alike.
    """
    return not path.exists() and (
        str(path) in registered_model_names() or str(path).startswith("hf:")
    )


def check_model_dir(
    parser: argparse.ArgumentParser, path: Path, *, kind: str, names: bool = False
) -> None:
    """Refuse a ``--model`` that is not a model directory (with ``names``: nor a model name).

    No torch is needed for a directory; a name is looked up in :mod:`scgtl.models`' registry.
    """
    made_by = MODEL_KINDS[kind][1]
    if names and is_model_name(path):
        return
    if not path.is_dir():
        listed = (
            f", or the name of a pre-trained model ({', '.join(registered_model_names())}) "
            "or a Hugging Face Hub id, hf:owner/repo"
            if names
            else ""
        )
        parser.error(
            f"--model {path} is not a directory; give the directory {made_by} wrote{listed}"
        )
    if not (path / MODEL_FILE).is_file():
        parser.error(
            f"--model {path} is not a saved scgtl model (it has no {MODEL_FILE}); give the "
            f"directory {made_by} wrote"
        )


def check_new_output(
    parser: argparse.ArgumentParser, option: str, path: Path, *, overwrite: bool
) -> None:
    """Refuse to replace an existing output unless ``--overwrite``."""
    if (path.exists() or path.is_symlink()) and not overwrite:
        parser.error(f"{option} {path} already exists; pass --overwrite to replace it")


# ------------------------------------------------------------------------------ reading and writing
def read_h5ad(path: Path, *, option: str, backed: bool = False) -> AnnData:
    """Read an ``.h5ad`` file, turning a file anndata cannot read into a :class:`CommandError`."""
    import anndata as ad

    try:
        return ad.read_h5ad(path, backed="r" if backed else None)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise CommandError(f"{option} {path} could not be read as .h5ad: {one_line(err)}") from err


def load_model(path: Path, *, kind: str, adata: AnnData | None = None):
    """Load a saved :class:`~scgtl.GTL` or :class:`~scgtl.GTLClassifier` from ``path``.

    The directory is checked first (:meth:`~scgtl.GTL.load` would refuse it too, in Python's
    words): one holding the other kind of model gets an error that says which command it is for.
    """
    from scgtl.model import GTL, GTLClassifier
    from scgtl.model._base import _check_model_file

    if kind == "GTL" and is_model_name(path):
        from scgtl import models

        if adata is not None:
            raise CommandError(
                f"--model {path} is a pre-trained model whose corpus is not at hand: no "
                "corpus can be attached to it"
            )
        return models.load(str(path))
    classes = {"GTL": GTL, "GTLClassifier": GTLClassifier}
    try:
        _check_model_file(path, kind)
    except ValueError as err:
        other = next(name for name in classes if name != kind)
        try:
            _check_model_file(path, other)
        except ValueError:
            raise CommandError(f"--model {path}: {one_line(err)}") from err
        what, _, used_by = MODEL_KINDS[other]
        wanted, made_by, _ = MODEL_KINDS[kind]
        raise CommandError(
            f"--model {path} holds {what} ({other}), not {wanted} ({kind}): it is for "
            f"{used_by}; this command needs a directory written by {made_by}"
        ) from err
    return classes[kind].load(path, adata=adata)


@contextlib.contextmanager
def staged_path(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to, renamed to ``path`` when the block succeeds.

    A failed or interrupted write leaves ``path`` as it was (absent, or the earlier file) and
    no temporary file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name, not tempfile.mkstemp's file: that would be created readable by its owner
    # only, and the output must get the permissions any new file gets.
    staging = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        yield staging
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def write_h5ad(adata: AnnData, path: Path) -> None:
    """Write ``adata`` to ``path`` through a temporary sibling, so a failure leaves no half file."""
    with staged_path(path) as staging:
        adata.write_h5ad(staging)


# ------------------------------------------------------------------------------ messages
class Reporter:
    """Progress messages on stderr (``scgtl COMMAND: ...``), silenced by ``--quiet``."""

    def __init__(self, command: str, *, quiet: bool):
        self.command = command
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"scgtl {self.command}: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def command_warnings(command: str) -> Iterator[None]:
    """Show warnings as one line, ``scgtl COMMAND: warning: ...``, on stderr.

    Also keeps Lightning's banners and two of its harmless warnings out of the output.
    """

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"scgtl {command}: warning: {one_line(message)}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        quiet_lightning()
        warnings.showwarning = show
        yield


def quiet_lightning() -> None:
    """Keep Lightning's banners and two of its harmless warnings out of the command's output."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 cell"``, ``"2,140 cells"``."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
