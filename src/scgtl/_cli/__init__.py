"""The ``scgtl`` command line: a pipeline without Python, and the benchmark.

Commands (one module each)::

    scgtl pretrain  --corpus corpus.h5ad [--units counts] --out model/
    scgtl fine-tune --model model/ --target study.h5ad --labels-key cell_type --k-shot 5 --out clf/
    scgtl predict   --model clf/ --input study.h5ad --output annotated.h5ad
    scgtl benchmark [--corpus corpus.h5ad | --model model/] --target study.h5ad ...
    scgtl models    [build --out DIR]

``--model`` of ``fine-tune`` and ``benchmark`` takes a model directory, the name of a
pre-trained model (``scgtl models`` lists them) or a Hugging Face Hub id, ``hf:owner/repo``.

``pretrain`` is ``GTL.setup_anndata`` + ``GTL(corpus)`` + ``train()`` + ``save``; ``fine-tune``
is ``GTL.load`` + ``fine_tune(...)`` + ``save`` (``--support-key`` names a boolean ``obs`` column
of the cells to learn from; with neither it nor ``--k-shot``, every labelled cell); ``predict`` is
``GTLClassifier.load`` + ``predict(adata)`` + writing a copy of the input with the predictions.

A thin layer over the library: it checks the arguments, reads files, calls the library and
writes the results. Conventions:

- Progress bars and progress messages go to stderr (``--quiet`` silences them), as do warnings,
  one line each; the last line, on stdout, says where the output went.
- Outputs are written under a temporary sibling name and renamed when complete, so a failed
  command leaves no half-written output. An existing output is replaced only with
  ``--overwrite``; ``predict`` never writes over its input without it.
- A mistake the user can fix (a missing file, a model directory of the wrong kind, values that
  the declared units refuse, a bad column...) exits with status 2 and one line on stderr,
  ``scgtl COMMAND: error: ...`` (after argparse's usage line for the argument checks), not a
  traceback. ``scgtl benchmark`` reports the library's errors with status 1, as it always has.
- torch, scvi-tools, scanpy and anndata load only inside a command's function, so that
  ``scgtl --help`` and every ``scgtl COMMAND --help`` answer at once
  (``benchmarks/cli_startup.py`` measures it).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from scgtl._cli import _benchmark, _fine_tune, _models, _predict, _pretrain
from scgtl._cli._common import CommandError, one_line

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``scgtl`` argument parser."""
    from scgtl import __version__

    parser = argparse.ArgumentParser(
        prog="scgtl", description="Guided Transfer Learning for few-shot RNA-seq."
    )
    parser.add_argument("--version", action="version", version=f"scgtl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (_pretrain, _fine_tune, _predict, _benchmark, _models):
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``scgtl`` command line; returns the exit status.

    Parameters
    ----------
    argv
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    ``0`` on success; ``2`` for a mistake the user can fix (``1`` for the library's errors in
    ``scgtl benchmark``). Bad arguments exit through argparse (``SystemExit(2)``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.check(args.subparser, args)
    try:
        return args.func(args)
    except CommandError as err:
        _report_error(args.command, err)
        return 2
    except (ValueError, KeyError, FileNotFoundError, FileExistsError) as err:
        # The library's documented errors: bad values, units, columns, layers or settings.
        _report_error(args.command, err.args[0] if isinstance(err, KeyError) and err.args else err)
        return args.error_status


def _report_error(command: str, message: object) -> None:
    print(f"scgtl {command}: error: {one_line(message)}", file=sys.stderr)
