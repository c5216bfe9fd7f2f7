"""``scgtl predict``: annotate a study with a saved classifier and write it as a new ``.h5ad``.

``GTLClassifier.load`` + ``predict(adata)`` + write.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from scgtl._cli._common import (
    Reporter,
    add_run_options,
    check_input_file,
    check_model_dir,
    check_new_output,
    command_warnings,
    counted,
    load_model,
    read_h5ad,
    unknown_threshold,
    write_h5ad,
)

if TYPE_CHECKING:
    import argparse

    from anndata import AnnData

#: :data:`scgtl._constants.DEFAULT_KEY_ADDED`, written out so that ``--help`` needs no import
#: of the model (``tests/test_cli_pipeline.py`` checks that they agree).
DEFAULT_KEY_ADDED = "scgtl"


def add_parser(subparsers) -> None:
    k = "KEY"
    p = subparsers.add_parser(
        "predict",
        help="annotate a study with a fine-tuned classifier; write a new .h5ad",
        description=(
            "Predict every cell of --input (.h5ad) with a classifier saved by `scgtl fine-tune` "
            "and write a copy of it with the predictions to --output, in the keys "
            "scgtl.GTLClassifier.predict documents (KEY being --key-added): "
            f"obs[{k}_prediction], obs[{k}_confidence], obs[{k}_novelty], obs[{k}_is_support] "
            f"(the cells the classifier learnt from), obsm[{k}_proba] (class probabilities), "
            f"obsm[X_{k}] (the fine-tuned latent space) and uns[{k}] (gene overlap). "
            "The input file is never changed unless --output names it and --overwrite is given."
        ),
    )
    p.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory of a fine-tuned classifier",
    )
    p.add_argument(
        "--input", type=Path, required=True, metavar="FILE", help="the cells to annotate (.h5ad)"
    )
    p.add_argument(
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="the annotated copy to write (.h5ad)",
    )
    p.add_argument(
        "--key-added",
        default=DEFAULT_KEY_ADDED,
        metavar=k,
        help=f"prefix of the keys written (default {DEFAULT_KEY_ADDED})",
    )
    p.add_argument("--layer", help="layer of --input to read (default: the one fine-tuning read)")
    p.add_argument(
        "--unknown",
        type=unknown_threshold,
        metavar="auto|T",
        help="label 'unknown' the cells unlike every class the classifier learnt: those whose "
        "novelty is above T, or above the threshold calibrated on the support with 'auto' "
        "(default: every cell gets a class)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --output (also needed when --output is the --input file)",
    )
    add_run_options(p)
    p.set_defaults(func=_predict, check=_check_args, subparser=p, error_status=2)


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    check_model_dir(parser, args.model, kind="GTLClassifier")
    check_input_file(parser, "--input", args.input)
    if not args.key_added:
        parser.error("--key-added must not be empty")
    if _same_file(args.input, args.output) and not args.overwrite:
        parser.error(
            f"--output {args.output} is the --input file; write the annotated copy elsewhere, "
            "or pass --overwrite to replace the input"
        )
    check_new_output(parser, "--output", args.output, overwrite=args.overwrite)


def _predict(args: argparse.Namespace) -> int:
    from scgtl import settings

    report = Reporter("predict", quiet=args.quiet)
    start = time.perf_counter()
    with command_warnings("predict"):
        classifier = load_model(args.model, kind="GTLClassifier")
        adata = read_h5ad(args.input, option="--input")
        report(
            f"read {args.input}: {counted(adata.n_obs, 'row')} x {counted(adata.n_vars, 'gene')}"
        )
        with settings.threads(args.threads):
            predicted = classifier.predict(
                adata, layer=args.layer, key_added=args.key_added, unknown=args.unknown
            )
        counts = predicted.value_counts()
        report("predicted " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
        write_h5ad(adata, args.output)
    print(
        f"Wrote {args.output} in {time.perf_counter() - start:.0f} s: "
        f"{counted(adata.n_obs, 'prediction')} in {', '.join(written_keys(adata, args.key_added))}."
    )
    return 0


def written_keys(adata: AnnData, key: str) -> list[str]:
    """The keys of ``adata`` that ``predict(key_added=key)`` writes, as ``obs['...']`` etc."""
    names = []
    for slot in ("obs", "obsm", "uns"):
        for name in getattr(adata, slot).keys():
            if name == key or name.startswith(f"{key}_") or name == f"X_{key}":
                names.append(f"{slot}['{name}']")
    return names
