"""``scgtl pretrain``: pre-train a GTL model on a corpus and save it.

``GTL.setup_anndata`` + ``GTL(corpus)`` + ``train()`` + ``save(out)``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from scgtl._cli._common import (
    UNITS,
    CommandError,
    Reporter,
    add_run_options,
    check_input_file,
    check_new_output,
    command_warnings,
    counted,
    non_negative_int,
    positive_int,
    read_h5ad,
)

if TYPE_CHECKING:
    import argparse

#: The defaults of ``GTL.setup_anndata``'s ``n_top_genes`` and ``compute_guide``'s ``n_scouts``,
#: written out so that ``--help`` needs no import of the model (``tests/test_cli_pipeline.py``
#: checks that they agree).
DEFAULT_N_TOP_GENES = 2000
DEFAULT_N_SCOUTS = 60


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pre-train a GTL model on a corpus and save it",
        description=(
            "Pre-train a GTL model on a corpus (.h5ad, cells or samples x genes): "
            "masked-expression reconstruction (plus classification with --labels-key), then the "
            "scouts and the guide. Saves the model into the directory --out, for "
            "`scgtl fine-tune --model`."
        ),
    )
    p.add_argument(
        "--corpus", type=Path, required=True, metavar="FILE", help="pre-training corpus (.h5ad)"
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory to save the model into"
    )
    p.add_argument("--layer", help="layer of the corpus with the values (default X)")
    p.add_argument(
        "--units", choices=UNITS, default="counts", help="units of the values (default counts)"
    )
    p.add_argument(
        "--labels-key",
        metavar="COLUMN",
        help="obs column of corpus labels: supervised pre-training, scouts drawn from its classes "
        "(default: self-supervised, scouts from clusters)",
    )
    p.add_argument(
        "--n-top-genes",
        type=non_negative_int,
        metavar="N",
        default=DEFAULT_N_TOP_GENES,
        help=f"pre-train on this many highly variable genes (0: all genes; default "
        f"{DEFAULT_N_TOP_GENES})",
    )
    p.add_argument(
        "--max-epochs",
        type=positive_int,
        metavar="E",
        help="passes over the corpus (default: GTL.train's, 10 to 100 by the corpus's size)",
    )
    p.add_argument(
        "--n-scouts",
        type=positive_int,
        metavar="N",
        default=DEFAULT_N_SCOUTS,
        help=f"scout problems the guide is learnt from (default {DEFAULT_N_SCOUTS})",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of training and scouts (default 0)"
    )
    p.add_argument(
        "--backed",
        action="store_true",
        help="leave the corpus matrix on disk (for a corpus larger than memory; needs "
        "--n-top-genes 0 when the corpus has more genes than --n-top-genes)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_run_options(p)
    p.set_defaults(func=_pretrain, check=_check_args, subparser=p, error_status=2)


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    check_input_file(parser, "--corpus", args.corpus)
    check_new_output(parser, "--out", args.out, overwrite=args.overwrite)


def _pretrain(args: argparse.Namespace) -> int:
    import scvi

    from scgtl import settings
    from scgtl.model import GTL

    report = Reporter("pretrain", quiet=args.quiet)
    start = time.perf_counter()
    with command_warnings("pretrain"):
        corpus = read_h5ad(args.corpus, option="--corpus", backed=args.backed)
        report(
            f"read {args.corpus}: {counted(corpus.n_obs, 'row')} x {counted(corpus.n_vars, 'gene')}"
        )
        n_top_genes = args.n_top_genes or None
        if corpus.isbacked and n_top_genes is not None and corpus.n_vars > n_top_genes:
            raise CommandError(
                f"--backed leaves the matrix on disk, where the {n_top_genes} most variable of "
                f"{corpus.n_vars:,} genes cannot be chosen: pass --n-top-genes 0 (all genes), or "
                "leave out --backed"
            )
        with settings.threads(args.threads):
            scvi.settings.seed = args.seed
            GTL.setup_anndata(
                corpus,
                layer=args.layer,
                labels_key=args.labels_key,
                units=args.units,
                n_top_genes=n_top_genes,
            )
            model = GTL(corpus)
            report(f"pre-training on {counted(len(model.gene_names), 'gene')} ({args.units})")
            model.train(
                max_epochs=args.max_epochs,
                enable_progress_bar=not args.quiet,
                guide_kwargs={
                    "n_scouts": args.n_scouts,
                    "seed": args.seed,
                    "progress": not args.quiet,
                },
            )
        model.save(args.out, overwrite=args.overwrite)
    print(
        f"Saved the pre-trained model ({counted(len(model.gene_names), 'gene')}, "
        f"{args.units}) to {args.out} in {time.perf_counter() - start:.0f} s."
    )
    return 0
