"""The shipped multi-study model, leave-one-study-out, against the PBMC-only model (issue 24).

For each target the multi-study model is pre-trained by the shipped model's own recipe
(``scgtl.models.build_model``) on the corpus *without the target's study*; pbmc68k_reduced is
in no corpus, so it is scored on the full model. The PBMC-only model is today's
(``benchmarks/do_no_harm.py``: mudan_pbmcA + kang_stim, or mudan_pbmcA alone for Kang). Every
method runs on the same seeded episodes (k = 1, 3, 5), every baseline on the target's own genes.

    python benchmarks/shipped_model.py --out benchmarks/results/shipped_model
    python benchmarks/shipped_model.py --seed 1 --n-episodes 10 --variants \
        --out benchmarks/results/shipped_model_choice

``--variants`` adds, on the same episodes, the multi-study model whose scouts draw from clusters
only (the same pre-training, the guide recomputed with ``groups_key=None``) and one pre-trained
on the human studies only: the choices of the recipe, measured on seed-1 episodes, not the
reported ones. ``--n-top-genes N`` builds the multi-study models on N genes instead of the
recipe's 2,000 (a variant, measured on seed-1 episodes). ``--models DIR`` keeps the pre-trained
models for the next run. Writes
``<out>/episodes.csv`` (every episode) and ``<out>/summary.md``.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import anndata as ad
import pandas as pd

import scgtl
from scgtl import benchmark, datasets, models

#: target -> (study left out of the multi-study corpus or None, PBMC-only corpus)
TARGETS = {
    "mudan_ref": ("Zheng_2017_sorted", "pbmc"),
    "kang_stim": ("Kang_2018", "pbmcA"),
    "yan": ("Yan_2013", "pbmc"),
    "pbmc68k_reduced": (None, "pbmc"),
    "Baron_2016": ("Baron_2016", "pbmc"),
    "Darmanis_2015": ("Darmanis_2015", "pbmc"),
}
BASELINES = ("logreg", "pca_logreg", "pca_knn")


def load_target(name: str, folder: Path) -> tuple[ad.AnnData, str, str]:
    """(study, labels_key, units) of a target, read through scgtl.datasets (sha256-checked)."""
    if name == "pbmc68k_reduced":
        full = datasets.pbmc68k_reduced(use_raw=True)
        return (
            ad.AnnData(X=full.X, obs=full.obs[["bulk_labels"]].copy(), var=full.var.copy()),
            ("bulk_labels"),
            "log1p",
        )
    if name in ("Baron_2016", "Darmanis_2015"):
        atlas = datasets.human_atlas_subsample(data_dir=folder)
        rows = atlas[atlas.obs["dataset"] == name]
        study = rows[:, rows.var[f"in_{name}"].to_numpy(dtype=bool)].copy()
        study.obs["cell_type"] = study.obs["cell_type"].astype(str).astype("category")
        return study, "cell_type", "normalized"
    study = getattr(datasets, name)(data_dir=folder, download=False)
    labels_key = "stim" if name == "kang_stim" else "cell_type"
    return study, labels_key, study.uns["scgtl_units"]


def cached(cache: Path | None, name: str, build):
    """``build()``'s model, kept with its corpus under ``cache/name`` (deterministic per seed)."""
    if cache is not None and (cache / name / "model.pt").exists():
        return scgtl.GTL.load(cache / name, adata=_cached_corpus(cache / name))
    model = build()
    if cache is not None:
        model.save(cache / name, overwrite=True, save_anndata=True)
    return model


def _cached_corpus(path: Path) -> ad.AnnData:
    return ad.read_h5ad(path / "adata.h5ad")


def pbmc_model(kind: str, folder: Path, cache: Path | None):
    """Today's PBMC-only model (do_no_harm.py's recipe)."""
    names = ("mudan_pbmcA",) if kind == "pbmcA" else ("mudan_pbmcA", "kang_stim")

    def build():
        parts = {n: getattr(datasets, n)(data_dir=folder, download=False) for n in names}
        for part in parts.values():
            part.obs = part.obs[[]]
        corpus = ad.concat(parts, join="inner", label="source", index_unique="-")
        return benchmark.pretrain(corpus, units="counts", n_hvg=2000, seed=0)

    return cached(cache, "mudan_pbmcA" if kind == "pbmcA" else "pbmc_corpus", build)


def multi_models(
    left_out: str | None, folder: Path, cache: Path | None, variants: bool, n_top_genes: int | None
) -> dict:
    """The multi-study model without ``left_out``, and with --variants its two variants."""
    exclude = () if left_out is None else (left_out,)
    suffix = f"without_{left_out}" if left_out else "full"
    if n_top_genes is not None:
        suffix += f"_{n_top_genes}_genes"

    def build():
        corpus = models.build_corpus(data_dir=folder, exclude=exclude)
        genes = {} if n_top_genes is None else {"n_top_genes": n_top_genes}
        return models.pretrain_corpus(corpus, progress=False, **genes)

    model = cached(cache, f"multi_{suffix}", build)
    name = "multi_study" if n_top_genes is None else f"multi_study_{n_top_genes}_genes"
    out = {name: model}
    if variants:
        clusters = copy.deepcopy(model)  # the same pre-training; only the scouts' classes differ
        clusters.compute_guide(groups_key=None, seed=0, progress=False)
        out["multi_study_clusters"] = clusters
        out["multi_study_human"] = cached(
            cache,
            f"multi_{suffix}_human",
            lambda: models.build_model(
                data_dir=folder, exclude=exclude, species=("human",), progress=False
            ),
        )
    return out


def run(args) -> None:
    folder = Path(args.data_dir)
    rows = []
    for target_name in args.targets:
        left_out, pbmc_kind = TARGETS[target_name]
        target, labels_key, units = load_target(target_name, folder)
        start = time.perf_counter()
        candidates = {"pbmc_only": pbmc_model(pbmc_kind, folder, args.models)}
        candidates.update(
            multi_models(left_out, folder, args.models, args.variants, args.n_top_genes)
        )
        print(f"{target_name}: models ready in {time.perf_counter() - start:.0f} s", flush=True)
        for i, (model_name, model) in enumerate(candidates.items()):
            methods = ["gtl", *BASELINES] if i == 0 else ["gtl"]
            res = benchmark.few_shot(
                model,
                target,
                labels_key=labels_key,
                units=units,
                k_shots=args.k_shots,
                n_episodes=args.n_episodes,
                seed=args.seed,
                methods=methods,
                n_threads=1,
                progress=False,
            )
            table = res.table.assign(target=target_name, model=model_name, left_out=left_out)
            table.loc[table["method"] != "gtl", "model"] = "-"
            rows.append(table)
            print(f"  {model_name}: {time.perf_counter() - start:.0f} s", flush=True)
    episodes = pd.concat(rows, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    episodes.to_csv(args.out / "episodes.csv", index=False)
    (args.out / "summary.md").write_text(summary(episodes))
    print(summary(episodes))


def summary(episodes: pd.DataFrame) -> str:
    """Mean ± sd balanced accuracy per target, row (a model's GTL or a baseline) and k."""
    is_gtl = episodes["method"] == "gtl"
    episodes = episodes.assign(row=("gtl, " + episodes["model"]).where(is_gtl, episodes["method"]))
    grouped = episodes.groupby(["target", "row", "k"])["balanced_accuracy"]
    means, spread = grouped.mean().unstack("k"), grouped.std().unstack("k")
    ks = list(means.columns)
    lines = [
        "| target | model or baseline | " + " | ".join(f"k = {k}" for k in ks) + " | mean over k |",
        "|---|---|" + "---|" * (len(ks) + 1),
    ]
    for (target, row), values in means.iterrows():
        cells = [f"{values[k]:.3f} ± {spread.loc[(target, row), k]:.3f}" for k in ks]
        mean = values[ks].mean()
        lines.append(f"| {target} | {row} | " + " | ".join(cells) + f" | {mean:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--k-shots", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--n-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", action="store_true")
    parser.add_argument("--n-top-genes", type=int, help="genes of the multi-study models")
    parser.add_argument("--models", type=Path, help="keep the pre-trained models here")
    parser.add_argument(
        "--data-dir", default=str(datasets._download.data_dir() or "../shared/data")
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shipped_model"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scgtl.settings.n_threads = args.threads
    scgtl.settings.progress_bar = False
    run(args)


if __name__ == "__main__":
    main()
