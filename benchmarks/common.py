"""Helpers shared by the study scripts of benchmarks/: paths, data, models and the study loop.

Not a script. ``python benchmarks/X.py`` puts this folder first on ``sys.path``, so every
script imports it as ``import common`` from any working directory. It uses scgtl's public API
only. What is here:

- where things are: :data:`REPO`, :data:`RESULTS` (the default output folders resolve under it,
  not under the working directory) and :func:`data_dir` (the data mirror);
- the data: :func:`load_corpus` (the PBMC corpus), :func:`load_target` (the targets of
  few_shot_real.py and do_no_harm.py), :func:`load_study` (the leave-one-study-out targets of
  shipped_model.py and plain_call.py);
- the models: :func:`pretrained` (a folder caching pre-trained models), :func:`pbmc_model` and
  :func:`multi_models` (shipped_model.py's), :func:`tasks` (do_no_harm.py's targets with their
  models);
- the study: :func:`study_parser`, :func:`run_study` and :func:`benchmark_targets`, the options
  and the loop of do_no_harm.py and its variant scripts, and :func:`study_few_shot`, their
  few_shot call; :func:`run_episodes`, few_shot with a script's ``--k-shots``,
  ``--n-episodes`` and ``--seed``; :func:`configure`, threads and quiet logs.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import anndata as ad
import pandas as pd

import scgtl
from scgtl import benchmark, datasets, models

#: The repository this folder is in.
REPO = Path(__file__).resolve().parents[1]
#: Where the scripts write by default (ignored by git).
RESULTS = REPO / "benchmarks" / "results"

#: The targets of the model pre-trained on the PBMC corpus (few_shot_real.py and its kin).
PBMC_TARGETS = ("mudan_ref", "pbmc68k_reduced", "yan")
#: The simple baselines run beside GTL.
BASELINES = ("logreg", "pca_logreg", "pca_knn")
#: do_no_harm.py's five developer targets (``default``: the embedded default task).
STUDY_TARGETS = ("kang_stim", "mudan_ref", "pbmc68k_reduced", "yan", "default")
#: do_no_harm.py's methods: the inductive regime, then the transductive baselines.
STUDY_METHODS = (
    "gtl",
    "gtl_network",
    "finetune",
    "logreg",
    "pca_logreg",
    "pca_knn",
    "pca_label_spreading",
    "pca_self_training",
)
#: shipped_model.py's targets: (study left out of the multi-study corpus or None, PBMC corpus).
LEAVE_ONE_OUT_TARGETS = {
    "mudan_ref": ("Zheng_2017_sorted", "pbmc"),
    "kang_stim": ("Kang_2018", "pbmcA"),
    "yan": ("Yan_2013", "pbmc"),
    "pbmc68k_reduced": (None, "pbmc"),
    "Baron_2016": ("Baron_2016", "pbmc"),
    "Darmanis_2015": ("Darmanis_2015", "pbmc"),
}
#: The parts of the PBMC corpus.
PBMC_CORPUS = ("mudan_pbmcA", "kang_stim")

#: Loggers whose banners would repeat at every fit.
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


# ------------------------------------------------------------------------------------ set-up
def data_dir() -> Path:
    """The data mirror: ``$SCGTL_DATA_DIR``, else ``shared/data`` beside the repository."""
    return Path(os.environ.get("SCGTL_DATA_DIR", REPO.parent / "shared" / "data"))


def configure(threads: int, *, progress_bar: bool | None = False) -> None:
    """Quiet Lightning's loggers and set scgtl's threads (and progress bars, unless ``None``)."""
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    scgtl.settings.n_threads = threads
    if progress_bar is not None:
        scgtl.settings.progress_bar = progress_bar


# -------------------------------------------------------------------------------------- data
def load_corpus(folder: Path, names: Iterable[str] = PBMC_CORPUS) -> ad.AnnData:
    """The studies ``names`` (the PBMC corpus by default), raw counts, inner join on genes.

    Each part is read through :mod:`scgtl.datasets` (checked by sha256) and loses its ``obs``
    columns; ``obs["source"]`` says which study a row came from.
    """
    parts = {name: getattr(datasets, name)(data_dir=folder, download=False) for name in names}
    for part in parts.values():
        part.obs = part.obs[[]]
    return ad.concat(parts, join="inner", label="source", index_unique="-")


def pbmc68k_study() -> tuple[ad.AnnData, str, str]:
    """(scanpy's pbmc68k_reduced on all its genes, labels_key, units)."""
    full = datasets.pbmc68k_reduced(use_raw=True)
    study = ad.AnnData(X=full.X, obs=full.obs[["bulk_labels"]].copy(), var=full.var.copy())
    return study, "bulk_labels", "log1p"


def load_target(name: str, folder: Path) -> tuple[ad.AnnData, str, str]:
    """(target, labels_key, units) of a target of :data:`PBMC_TARGETS`, via scgtl.datasets."""
    if name == "pbmc68k_reduced":
        return pbmc68k_study()
    target = getattr(datasets, name)(data_dir=folder, download=False)
    return target, "cell_type", "normalized" if name == "yan" else "counts"


def load_study(name: str, folder: Path) -> tuple[ad.AnnData, str, str]:
    """(study, labels_key, units) of a target of :data:`LEAVE_ONE_OUT_TARGETS`.

    Read through :mod:`scgtl.datasets` (sha256-checked); the units are those the data set
    records (``uns["scgtl_units"]``); Baron_2016 and Darmanis_2015 come from the human atlas
    subsample, on the genes each study measured.
    """
    if name == "pbmc68k_reduced":
        return pbmc68k_study()
    if name in ("Baron_2016", "Darmanis_2015"):
        atlas = datasets.human_atlas_subsample(data_dir=folder)
        rows = atlas[atlas.obs["dataset"] == name]
        study = rows[:, rows.var[f"in_{name}"].to_numpy(dtype=bool)].copy()
        study.obs["cell_type"] = study.obs["cell_type"].astype(str).astype("category")
        return study, "cell_type", "normalized"
    study = getattr(datasets, name)(data_dir=folder, download=False)
    labels_key = "stim" if name == "kang_stim" else "cell_type"
    return study, labels_key, study.uns["scgtl_units"]


# ------------------------------------------------------------------------------------ models
def pretrained(name: str, build: Callable[[], scgtl.GTL], cache: Path | None) -> scgtl.GTL:
    """``build()``'s model, saved under ``cache/name`` (with its corpus) and reloaded from there.

    Pre-training is deterministic per seed, so a cached model is the one ``build()`` would give;
    the cache only saves minutes when several scripts run on the same models. A reloaded model
    has its saved corpus attached (what ``compute_guide`` and ``model.adata`` need).
    """
    if cache is None:
        return build()
    path = cache / name
    if (path / "model.pt").exists():
        return scgtl.GTL.load(path)
    model = build()
    model.save(path, overwrite=True, save_anndata=True)
    return model


def pbmc_model(kind: str, folder: Path, cache: Path | None) -> scgtl.GTL:
    """The PBMC-only model: ``kind`` ``"pbmcA"`` (mudan_pbmcA alone) or ``"pbmc"`` (the corpus)."""
    names = ("mudan_pbmcA",) if kind == "pbmcA" else PBMC_CORPUS

    def build() -> scgtl.GTL:
        return benchmark.pretrain(load_corpus(folder, names), units="counts", n_hvg=2000, seed=0)

    return pretrained("mudan_pbmcA" if kind == "pbmcA" else "pbmc_corpus", build, cache)


def multi_models(
    left_out: str | None, folder: Path, cache: Path | None, variants: bool, n_top_genes: int | None
) -> dict[str, scgtl.GTL]:
    """The multi-study model without ``left_out``, and with ``variants`` its two variants.

    The variants: the same pre-training with scouts drawn from clusters only
    (``multi_study_clusters``), and the recipe on the human studies only
    (``multi_study_human``). ``n_top_genes``: genes of the model instead of the recipe's.
    """
    exclude = () if left_out is None else (left_out,)
    suffix = f"without_{left_out}" if left_out else "full"
    if n_top_genes is not None:
        suffix += f"_{n_top_genes}_genes"

    def build() -> scgtl.GTL:
        corpus = models.build_corpus(data_dir=folder, exclude=exclude)
        genes = {} if n_top_genes is None else {"n_top_genes": n_top_genes}
        return models.pretrain_corpus(corpus, progress=False, **genes)

    model = pretrained(f"multi_{suffix}", build, cache)
    name = "multi_study" if n_top_genes is None else f"multi_study_{n_top_genes}_genes"
    out = {name: model}
    if variants:
        clusters = copy.deepcopy(model)  # the same pre-training; only the scouts' classes differ
        clusters.compute_guide(groups_key=None, seed=0, progress=False)
        out["multi_study_clusters"] = clusters
        out["multi_study_human"] = pretrained(
            f"multi_{suffix}_human",
            lambda: models.build_model(
                data_dir=folder, exclude=exclude, species=("human",), progress=False
            ),
            cache,
        )
    return out


def tasks(
    targets: Iterable[str],
    folder: Path,
    cache: Path | None = None,
    model_kwargs: dict | None = None,
) -> Iterator[tuple[str, scgtl.GTL, ad.AnnData, str, str]]:
    """(name, model, target, labels_key, units) for each of :data:`STUDY_TARGETS` asked for.

    The models, pre-trained on demand: mudan_pbmcA alone for kang_stim, the PBMC corpus for
    :data:`PBMC_TARGETS`, the embedded default's own corpus for ``default`` (2,000 HVGs, seed
    0). ``model_kwargs`` (e.g. ``{"n_latent": 256}``) go to every :class:`scgtl.GTL`; the
    cache keeps such models under their own names.
    """
    targets = list(targets)
    suffix = "".join(f"_{key}{value}" for key, value in sorted((model_kwargs or {}).items()))

    def pretrain(corpus: ad.AnnData) -> scgtl.GTL:
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
    real = [t for t in targets if t in PBMC_TARGETS]
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


# ------------------------------------------------------------------------------------- study
def run_episodes(
    model, target: ad.AnnData, labels_key: str, units: str, args: argparse.Namespace, **kwargs
) -> benchmark.FewShotResult:
    """``scgtl.benchmark.few_shot`` with the script's k, episodes and seed (``args``)."""
    return benchmark.few_shot(
        model,
        target,
        labels_key=labels_key,
        k_shots=args.k_shots,
        n_episodes=args.n_episodes,
        seed=args.seed,
        units=units,
        **kwargs,
    )


def study_few_shot(
    model, target: ad.AnnData, labels_key: str, units: str, **kwargs
) -> benchmark.FewShotResult:
    """``scgtl.benchmark.few_shot`` as the studies of :data:`STUDY_TARGETS` run it.

    Every baseline reads the target's own genes, and no progress bar is drawn; ``kwargs``
    (``k_shots``, ``n_episodes``, ``seed``, ``methods``...) go to ``few_shot``.
    """
    return benchmark.few_shot(
        model,
        target,
        labels_key=labels_key,
        units=units,
        baseline_genes="target",
        progress=False,
        **kwargs,
    )


def study_parser(
    description: str, methods, *, default_out: Path, only_these: bool = False
) -> argparse.ArgumentParser:
    """The options every study of :data:`STUDY_TARGETS` takes (do_no_harm.py and its variants).

    ``methods``: the default ``--methods``; with ``only_these`` also the only ones accepted (a
    variant script's own methods rather than any built-in name). ``default_out``: ``--out``
    when not given, a folder under :data:`RESULTS`.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--targets", nargs="+", default=list(STUDY_TARGETS), choices=STUDY_TARGETS)
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
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument(
        "--models", type=Path, default=None, help="cache the pre-trained models in this folder"
    )
    return parser


def run_study(
    args: argparse.Namespace, methods, *, title: str, model_kwargs: dict | None = None
) -> None:
    """:func:`benchmark_targets` with the options of :func:`study_parser`, quietly."""
    configure(args.threads)
    benchmark_targets(
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


def benchmark_targets(
    targets: Iterable[str],
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

    Every baseline reads the target's own genes (:func:`study_few_shot`). ``models``: a folder
    caching the pre-trained models (see :func:`pretrained`); ``model_kwargs``: options of every
    pre-trained :class:`scgtl.GTL`. ``overview.csv``: mean balanced accuracy per k and over k,
    and mean fit seconds, per method, regime and target.
    """
    rows = []
    for name, model, target, labels_key, units in tasks(targets, data_dir(), models, model_kwargs):
        start = time.perf_counter()
        result = study_few_shot(
            model,
            target,
            labels_key,
            units,
            k_shots=k_shots,
            n_episodes=n_episodes,
            seed=seed,
            methods=methods,
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
