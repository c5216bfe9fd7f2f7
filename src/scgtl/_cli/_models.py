"""``scgtl models``: list the pre-trained models, or rebuild one from the public studies.

``scgtl models`` prints ``scgtl.models.available()``; ``scgtl models build --out DIR`` runs
``scgtl.models.build_model`` + ``write_compact`` and prints the file's sha256, size and the time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from scgtl._cli._common import (
    Reporter,
    add_run_options,
    check_new_output,
    command_warnings,
)

if TYPE_CHECKING:
    import argparse

#: Shown by ``scgtl models`` (the registry has more: ``scgtl.models.available()``).
_LISTED = ["corpus", "species", "n_obs", "n_genes", "units", "file_size", "shipped"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the pre-trained models (`scgtl models build` rebuilds the shipped one)",
        description=(
            "Without an action, list the pre-trained models that `scgtl fine-tune --model NAME` "
            "and scgtl.models.load(NAME) accept. `scgtl models build --out DIR` rebuilds the "
            "shipped model from the public studies of the data mirror ($SCGTL_DATA_DIR or "
            "--data-dir), deterministically, and prints its sha256."
        ),
    )
    p.add_argument("action", nargs="?", choices=("list", "build"), default="list")
    p.add_argument("--out", type=Path, metavar="DIR", help="build: directory to write into")
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="build: the data mirror (default $SCGTL_DATA_DIR)",
    )
    p.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="STUDY",
        help="build: leave these studies out of the corpus (leave-one-study-out)",
    )
    p.add_argument(
        "--species",
        nargs="+",
        choices=("human", "mouse"),
        default=["human", "mouse"],
        help="build: keep the studies of these species (default both)",
    )
    p.add_argument("--overwrite", action="store_true", help="build: replace an existing --out")
    add_run_options(p)
    p.set_defaults(func=_models, check=_check_args, subparser=p, error_status=2)


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.action == "list":
        given = [
            option
            for option, value in (("--out", args.out), ("--data-dir", args.data_dir))
            if value is not None
        ]
        if given:
            parser.error(f"{' and '.join(given)} only apply to `scgtl models build`")
        return
    if args.out is None:
        parser.error("`scgtl models build` needs --out DIR")
    check_new_output(parser, "--out", args.out, overwrite=args.overwrite)
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a directory")


def _models(args: argparse.Namespace) -> int:
    from scgtl import models

    if args.action == "list":
        table = models.available()[_LISTED]
        print(table.to_string())
        return 0
    return _build(args, models)


def _build(args: argparse.Namespace, models) -> int:
    from scgtl import settings
    from scgtl.datasets._download import sha256sum

    report = Reporter("models build", quiet=args.quiet)
    start = time.perf_counter()
    with command_warnings("models build"), settings.threads(args.threads):
        model = models.build_model(
            data_dir=args.data_dir,
            species=args.species,
            exclude=args.exclude,
            progress=False if args.quiet else None,
        )
        report(
            f"pre-trained on {model.adata.n_obs:,} cells of "
            f"{model.adata.obs['study'].nunique()} studies, {len(model.gene_names):,} genes"
        )
        path = models.write_compact(model, args.out, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    print(
        f"Wrote {path} ({path.stat().st_size:,} bytes, sha256 {sha256sum(path)}) "
        f"in {seconds:.0f} s."
    )
    return 0
