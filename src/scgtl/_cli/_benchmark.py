"""``scgtl benchmark``: the few-shot benchmark of GTL beside simple baselines.

A thin layer over :mod:`scgtl.benchmark`: it reads files, calls the library and writes the
results.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scgtl._cli._common import (
    UNITS,
    check_model_dir,
    is_model_name,
    load_model,
    positive_int,
    quiet_lightning,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="few-shot benchmark: GTL beside simple baselines",
        description=(
            "Few-shot benchmark of GTL beside plain fine-tuning, training from scratch, "
            "logistic regression, PCA + logistic regression and kNN on PCA, on the same seeded "
            "episodes. Inductive methods (learning from the support set alone) and transductive "
            "ones (also reading the target's unlabelled rows, as the PCA baselines do) are "
            "compared within their own regime. "
            "Writes results.csv, calibration.csv, summary.md, accuracy_vs_k.png and "
            "reliability.png (at the largest k) into --out. "
            "Without --corpus/--target it runs the embedded default: the shipped pre-trained "
            "model (or the one --model names), no pre-training, on scanpy's pbmc68k_reduced "
            "(700 cells, 10 types)."
        ),
    )
    source = p.add_argument_group("pre-trained model (one of; neither: the shipped model)")
    source.add_argument("--corpus", type=Path, help="pre-training corpus (.h5ad)")
    source.add_argument(
        "--model",
        type=Path,
        metavar="DIR|NAME",
        help="directory of a saved scgtl.GTL model, or the name of a pre-trained one "
        "(`scgtl models`)",
    )
    source.add_argument("--corpus-layer", help="layer of the corpus with the values (default X)")
    source.add_argument(
        "--units", choices=UNITS, default="counts", help="units of the corpus (default counts)"
    )
    source.add_argument(
        "--labels-key-corpus", help="obs column of corpus labels (supervised pre-training)"
    )
    source.add_argument(
        "--max-epochs", type=positive_int, help="pre-training epochs (default: the model's)"
    )
    source.add_argument(
        "--n-hvg",
        type=int,
        default=2000,
        help="highly variable genes of the corpus to pre-train on (0: all genes; default 2000)",
    )
    source.add_argument("--save-model", type=Path, help="save the pre-trained model here")
    target = p.add_argument_group("target")
    target.add_argument("--target", type=Path, help="labelled target data (.h5ad)")
    target.add_argument("--labels-key", help="obs column of the target's classes")
    target.add_argument("--target-layer", help="layer of the target (default X)")
    target.add_argument(
        "--target-units", choices=UNITS, help="units of the target (default: the corpus's)"
    )
    run = p.add_argument_group("benchmark")
    run.add_argument(
        "--k-shots",
        type=positive_int,
        nargs="+",
        default=[1, 3, 5, 10],
        help="support samples per class (default 1 3 5 10)",
    )
    run.add_argument(
        "--n-episodes", type=positive_int, default=20, help="episodes per k (default 20)"
    )
    run.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    run.add_argument(
        "--methods",
        nargs="+",
        help=(
            "methods to run (default: gtl gtl_transductive finetune scratch logreg pca_logreg "
            "pca_knn pca_label_spreading pca_self_training celltypist, the last where the "
            "celltypist extra is installed; also built in: gtl_network)"
        ),
    )
    run.add_argument(
        "--baseline-genes",
        choices=("model", "target"),
        default="target",
        help=(
            "genes of the baselines: all of the target's own (default) or the model's; the "
            "fine-tuning methods always read the model's"
        ),
    )
    run.add_argument("--out", type=Path, default=Path("scgtl_benchmark"), help="output folder")
    run.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch/BLAS threads (default 1: the fits are small and cores are often shared)",
    )
    run.add_argument("--title", help="title of the report and plot")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    # Library errors exit with 1 here, as this command always has (the pipeline commands: 2).
    p.set_defaults(func=_benchmark, check=_check_args, subparser=p, error_status=1)


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.corpus is not None and args.model is not None:
        parser.error("give --corpus or --model, not both")
    named = args.model is not None and is_model_name(args.model)
    has_source = args.corpus is not None or args.model is not None
    if args.target is None and has_source and not named:
        parser.error("--target is required with --corpus or --model")
    if args.corpus is None and args.max_epochs is not None:
        parser.error("--max-epochs only applies to pre-training on --corpus")
    if args.target is not None and not has_source:
        parser.error("--target needs a pre-trained model: give --corpus or --model")
    if args.target is not None and not args.labels_key:
        parser.error("--labels-key is required with --target")
    for name in ("corpus", "target"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            parser.error(f"--{name} {path} is not a file")
    if args.model is not None and not named:
        check_model_dir(parser, args.model, kind="GTL", names=True)
    if args.n_hvg < 0:
        parser.error(f"--n-hvg must be >= 0, got {args.n_hvg}")


def _run_default(args: argparse.Namespace):
    from scgtl import benchmark

    return benchmark.run_default(
        model=None if args.model is None else str(args.model),
        k_shots=args.k_shots,
        n_episodes=args.n_episodes,
        seed=args.seed,
        methods=args.methods,
        n_threads=args.threads,
        progress=not args.quiet,
        baseline_genes=args.baseline_genes,
    )


def _run_files(args: argparse.Namespace):
    import anndata as ad

    from scgtl import benchmark
    from scgtl.benchmark._builtin import resolve_methods

    resolve_methods(args.methods, has_model=True)  # fail before pre-training, not after
    if args.model is not None:
        model = load_model(args.model, kind="GTL")
    else:
        corpus = ad.read_h5ad(args.corpus)
        model = benchmark.pretrain(
            corpus,
            layer=args.corpus_layer,
            units=args.units,
            labels_key=args.labels_key_corpus,
            n_hvg=args.n_hvg or None,
            max_epochs=args.max_epochs,
            seed=args.seed,
            progress=not args.quiet,
        )
    if args.save_model is not None:
        model.save(args.save_model, overwrite=True)
    target = ad.read_h5ad(args.target)
    return benchmark.few_shot(
        model,
        target,
        labels_key=args.labels_key,
        k_shots=args.k_shots,
        n_episodes=args.n_episodes,
        seed=args.seed,
        methods=args.methods,
        layer=args.target_layer,
        units=args.target_units,
        n_threads=args.threads,
        progress=not args.quiet,
        baseline_genes=args.baseline_genes,
    )


def _benchmark(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from scgtl import settings

    quiet_lightning()
    start = time.perf_counter()
    with settings.threads(args.threads):
        if args.target is None:
            result = _run_default(args)
            title = args.title or "scgtl embedded default (shipped model, pbmc68k_reduced)"
        else:
            result = _run_files(args)
            title = args.title or f"Few-shot benchmark on {args.target.name}"
    result.settings["total_seconds"] = time.perf_counter() - start
    paths = result.save(args.out, title=title)
    if not result.calibration.empty:
        paths["reliability"] = _save_reliability(result, args.out / RELIABILITY_PNG)
    for regime in ("inductive", "transductive"):
        for line in result.verdicts(regime=regime):
            print(f"[{regime}] {line}")
    print(f"Done in {result.settings['total_seconds']:.0f} s. Wrote:")
    for path in paths.values():
        print(f"  {path}")
    return 0


#: The reliability diagram the command writes beside the benchmark's own files.
RELIABILITY_PNG = "reliability.png"


def _save_reliability(result, path: Path) -> Path:
    """Every method's reliability diagram at the largest k (:func:`scgtl.pl.reliability`)."""
    import matplotlib.pyplot as plt

    from scgtl.pl import reliability

    ax = reliability(result, show=False)
    ax.figure.savefig(path, dpi=110)
    plt.close(ax.figure)
    return path
