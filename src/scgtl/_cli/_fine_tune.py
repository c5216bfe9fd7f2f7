"""``scgtl fine-tune``: fine-tune a saved GTL model on a study's labelled cells, save the result.

``GTL.load`` + ``fine_tune(...)`` + ``save(out)``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from scgtl._cli._common import (
    UNITS,
    CommandError,
    Reporter,
    add_run_options,
    check_input_file,
    check_model_dir,
    check_new_output,
    command_warnings,
    counted,
    load_model,
    one_line,
    positive_int,
    read_h5ad,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fine-tune",
        help="fine-tune a pre-trained model on a study's labelled cells; save the classifier",
        description=(
            "Fine-tune a model saved by `scgtl pretrain` on the labelled cells of a study "
            "(.h5ad): --k-shot cells per class drawn with --seed, the cells marked in the "
            "boolean obs column --support-key, or, with neither, every cell whose label is "
            "present (missing labels mark unlabelled cells). Saves the classifier into the "
            "directory --out, for `scgtl predict --model`."
        ),
    )
    p.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="DIR|NAME",
        help="directory of a pre-trained model, or the name of one (`scgtl models` lists them)",
    )
    p.add_argument("--target", type=Path, required=True, metavar="FILE", help="the study (.h5ad)")
    p.add_argument(
        "--labels-key", required=True, metavar="COLUMN", help="obs column of the study's classes"
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory to save the classifier into",
    )
    support = p.add_mutually_exclusive_group()
    support.add_argument(
        "--k-shot",
        type=positive_int,
        metavar="K",
        help="labelled cells per class to learn from, drawn by seed",
    )
    support.add_argument(
        "--support-key",
        metavar="COLUMN",
        help="boolean obs column: True for the cells to learn from (only those need labels)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the draw and of fine-tuning (default 0)",
    )
    p.add_argument(
        "--transductive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also learn from the study's cells outside the support (never their labels): "
        "adapt the model to the study, and fit the wide path on the study's principal "
        "components; the default whenever the study has such cells (--no-transductive: the "
        "support alone)",
    )
    p.add_argument(
        "--corpus",
        type=Path,
        metavar="FILE",
        help="the pre-training corpus, whose rows the adaptation to the study replays "
        "(without it the model adapts on the study's rows only)",
    )
    p.add_argument(
        "--target-layer", metavar="LAYER", help="layer of the study with the values (default X)"
    )
    p.add_argument(
        "--target-units",
        choices=UNITS,
        help="units of the study's values (default: the corpus's)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_run_options(p)
    p.set_defaults(func=_fine_tune, check=_check_args, subparser=p, error_status=2)


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    check_model_dir(parser, args.model, kind="GTL", names=True)
    check_input_file(parser, "--target", args.target)
    check_input_file(parser, "--corpus", args.corpus)
    if args.corpus is not None and args.transductive is False:
        parser.error("--corpus is not read with --no-transductive")
    check_new_output(parser, "--out", args.out, overwrite=args.overwrite)


def support_positions(obs: pd.DataFrame, key: str) -> np.ndarray:
    """Positions of the rows whose boolean ``obs[key]`` is True (missing values count as False)."""
    import numpy as np
    import pandas as pd

    if key not in obs.columns:
        raise CommandError(
            f"--support-key {key!r} is not a column of the study's obs: {list(obs.columns)}"
        )
    column = obs[key]
    if not pd.api.types.is_bool_dtype(column):
        raise CommandError(
            f"--support-key {key!r} must be a boolean column (True for the cells to learn "
            f"from), but its dtype is {column.dtype}"
        )
    positions = np.flatnonzero(column.astype("boolean").fillna(False).to_numpy(dtype=bool))
    if positions.size == 0:
        raise CommandError(f"--support-key {key!r} marks no cell: it has no True value")
    return positions


def _fine_tune(args: argparse.Namespace) -> int:
    from scgtl import settings

    report = Reporter("fine-tune", quiet=args.quiet)
    start = time.perf_counter()
    with command_warnings("fine-tune"):
        corpus = None
        if args.corpus is not None:
            corpus = read_h5ad(args.corpus, option="--corpus")
        try:
            model = load_model(args.model, kind="GTL", adata=corpus)
        except (ValueError, KeyError) as err:
            if corpus is None:
                raise
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise CommandError(
                f"--corpus {args.corpus} does not fit the model in {args.model} (give the corpus "
                f"it was pre-trained on): {one_line(message)}"
            ) from err
        target = read_h5ad(args.target, option="--target")
        report(
            f"read {args.target}: {counted(target.n_obs, 'row')} x {counted(target.n_vars, 'gene')}"
        )
        support = None
        if args.support_key is not None:
            support = support_positions(target.obs, args.support_key)
        with settings.threads(args.threads):
            classifier = model.fine_tune(
                target,
                labels_key=args.labels_key,
                k_shot=args.k_shot,
                seed=args.seed,
                layer=args.target_layer,
                units=args.target_units,
                support_indices=support,
                transductive=args.transductive,
            )
        record = classifier.fit_record_
        n_classes = counted(len(classifier.classes_), "class", "classes")
        report(
            f"learnt {n_classes} of {args.labels_key!r} from "
            f"{counted(len(record['support_obs_names']), 'cell')}; weight of the wide path "
            f"{record['wide_weight']:.2f} ({record['wide_weight_source']})"
        )
        classifier.save(args.out, overwrite=args.overwrite)
    print(
        f"Saved the classifier ({n_classes}) to {args.out} in {time.perf_counter() - start:.0f} s."
    )
    return 0
