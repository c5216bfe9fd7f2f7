"""The inductive and transductive regimes on the five developer targets (issue 13).

Pre-trains the two models of docs/research/wide_path.md with the package defaults (the PBMC corpus
mudan_pbmcA + kang_stim for mudan_ref, pbmc68k_reduced and yan; mudan_pbmcA alone for the Kang
stimulated-vs-control task; the embedded default's own corpus for it) and runs
scgtl.benchmark.few_shot on each target, k = 1, 3, 5, 20 episodes, seed 0, every baseline on the
target's own genes. Methods: gtl (the package default: guided network pooled with the wide
path), gtl_network (the guided network alone, wide=False), finetune, logreg (inductive), and
the transductive baselines pca_logreg, pca_knn, pca_label_spreading, pca_self_training.

    python benchmarks/do_no_harm.py --out benchmarks/results/do_no_harm
    python benchmarks/do_no_harm.py --methods gtl_transductive --out results/transductive
    python benchmarks/do_no_harm.py --time-adaptation   # transductive=True's adaptation

`--models DIR` keeps the pre-trained models in DIR for the next run. Writes <out>/<target>/
(results.csv, summary.md, accuracy_vs_k.png) and <out>/overview.csv (mean balanced accuracy
over k and mean fit seconds per method and target). About 20 min on the 2-core machine, one
thread.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd
from few_shot_real import data_dir, load_corpus, load_target

import scgtl
from scgtl import benchmark, datasets

TARGETS = ("kang_stim", "mudan_ref", "pbmc68k_reduced", "yan", "default")
METHODS = (
    "gtl",
    "gtl_network",
    "finetune",
    "logreg",
    "pca_logreg",
    "pca_knn",
    "pca_label_spreading",
    "pca_self_training",
)


def pretrained(name: str, build, cache: Path | None):
    """``build()``'s model, saved under ``cache/name`` (with its corpus) and reloaded from there.

    Pre-training is deterministic per seed, so a cached model is the one ``build()`` would give;
    the cache only saves minutes when several scripts run on the same models.
    """
    if cache is None:
        return build()
    path = cache / name
    if (path / "model.pt").exists():
        return scgtl.GTL.load(path)
    model = build()
    model.save(path, overwrite=True, save_anndata=True)
    return model


def tasks(targets, folder, cache: Path | None = None, model_kwargs: dict | None = None):
    """(name, model, target, labels_key, units) for each target, pre-training on demand.

    ``model_kwargs`` (e.g. ``{"n_latent": 256}``) go to every :class:`scgtl.GTL`; the cache
    keeps such models under their own names.
    """
    suffix = "".join(f"_{key}{value}" for key, value in sorted((model_kwargs or {}).items()))

    def pretrain(corpus):
        return benchmark.pretrain(
            corpus, units="counts", n_hvg=2000, seed=0, model_kwargs=model_kwargs
        )

    if "kang_stim" in targets:
        pbmc_a = datasets.mudan_pbmcA(data_dir=folder, download=False)
        model = pretrained(f"mudan_pbmcA{suffix}", lambda: pretrain(pbmc_a), cache)
        yield (
            "kang_stim",
            model,
            datasets.kang_stim(data_dir=folder, download=False),
            "stim",
            "counts",
        )
    real = [t for t in targets if t in ("mudan_ref", "pbmc68k_reduced", "yan")]
    if real:
        model = pretrained(f"pbmc_corpus{suffix}", lambda: pretrain(load_corpus(folder)), cache)
        for name in real:
            target, labels_key, units = load_target(name, folder)
            yield name, model, target, labels_key, units
    if "default" in targets:
        corpus, target = benchmark.default_task()
        yield (
            "default",
            pretrained(
                f"default{suffix}",
                lambda: benchmark.pretrain_default(corpus, seed=0, model_kwargs=model_kwargs),
                cache,
            ),
            target,
            benchmark.DEFAULT_LABELS_KEY,
            "log1p",
        )


def study_parser(
    description: str, methods, *, default_out: str, only_these: bool = False
) -> argparse.ArgumentParser:
    """The options every study of these targets takes (this script and the variant scripts).

    ``methods``: the default ``--methods``; with ``only_these`` also the only ones accepted (a
    variant script's own methods rather than any built-in name).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(methods),
        choices=list(methods) if only_these else None,
    )
    parser.add_argument("--k-shots", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--n-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument(
        "--models", type=Path, default=None, help="cache the pre-trained models in this folder"
    )
    return parser


def run_study(args, methods, *, title: str, model_kwargs: dict | None = None) -> None:
    """:func:`run` with the parsed options of :func:`study_parser`, quietly, on ``threads``."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    scgtl.settings.n_threads = args.threads
    scgtl.settings.progress_bar = False
    run(
        args.targets,
        methods,
        args.out,
        k_shots=args.k_shots,
        n_episodes=args.n_episodes,
        seed=args.seed,
        title=title,
        models=args.models,
        model_kwargs=model_kwargs,
    )


def main() -> None:
    parser = study_parser(
        __doc__.splitlines()[0], METHODS, default_out="benchmarks/results/do_no_harm"
    )
    parser.add_argument(
        "--time-adaptation",
        action="store_true",
        help="only time model.adapted_to(target), the adaptation of transductive=True",
    )
    args = parser.parse_args()
    if args.time_adaptation:
        scgtl.settings.n_threads = args.threads
        scgtl.settings.progress_bar = False
        time_adaptation(args.targets, args.models)
        return
    run_study(args, args.methods, title="inductive and transductive regimes")


def time_adaptation(targets, models: Path | None) -> None:
    """Print the seconds ``fine_tune(transductive=True)`` spends adapting to each target."""
    for name, model, target, _, units in tasks(targets, data_dir(), models):
        start = time.perf_counter()
        model.adapted_to(target, units=units)
        print(f"{name}: adaptation {time.perf_counter() - start:.1f} s", flush=True)


def run(
    targets,
    methods,
    out: Path,
    *,
    k_shots,
    n_episodes: int,
    seed: int,
    title: str,
    models: Path | None = None,
    model_kwargs: dict | None = None,
) -> None:
    """Benchmark ``methods`` on each target; save each result and ``out/overview.csv``.

    ``models``: a folder caching the pre-trained models (see :func:`pretrained`);
    ``model_kwargs``: options of every pre-trained :class:`scgtl.GTL`.
    """
    rows = []
    for name, model, target, labels_key, units in tasks(targets, data_dir(), models, model_kwargs):
        start = time.perf_counter()
        result = benchmark.few_shot(
            model,
            target,
            labels_key=labels_key,
            units=units,
            k_shots=k_shots,
            n_episodes=n_episodes,
            seed=seed,
            methods=methods,
            baseline_genes="target",
            progress=False,
        )
        result.save(out / name, title=f"{name}: {title}")
        table = result.table
        means = table.groupby(["method", "regime", "k"])["balanced_accuracy"].mean().unstack("k")
        means["mean_over_k"] = means.mean(axis=1)
        means["fit_seconds"] = table.groupby(["method", "regime"])["fit_seconds"].mean()
        rows.append(means.reset_index().assign(target=name))
        print(f"{name} ({time.perf_counter() - start:.0f} s)", flush=True)
        print(means.round(3).to_string(), flush=True)
    pd.concat(rows).to_csv(out / "overview.csv", index=False)


if __name__ == "__main__":
    main()
