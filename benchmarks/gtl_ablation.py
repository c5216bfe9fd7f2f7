"""Ablation of the GTL recipe: each change of the engineering study, added one at a time.

Every configuration pre-trains on the PBMC corpus (mudan_pbmcA + kang_stim, 2000 highly
variable genes, as in few_shot_real.py), computes its guide, and runs scgtl.benchmark.few_shot
with the methods `gtl` and `finetune` on the same episodes (seed 0) of mudan_ref,
pbmc68k_reduced and yan. Rows are cumulative: each adds one change to the row above; the last
row is the package's default. Variants (``--configs``) each make one change to the default,
including the pre-training objectives of ``pretraining_variants.py`` and two other pre-training
seeds, which give the spread a re-run alone would show.

    python benchmarks/gtl_ablation.py --out benchmarks/results/ablation

Data: $SCGTL_DATA_DIR, or ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common
import numpy as np
import pandas as pd
import pretraining_variants as variants
import scvi

from scgtl import GTL
from scgtl.benchmark import LIBRARY_SIZE_KEY, FineTuneMethod, select_genes
from scgtl.data import align_genes, get_matrix, library_sizes, read_log_expression
from scgtl.module import GTLModule

TARGETS = common.PBMC_TARGETS

#: scvi-tools' TrainingPlan defaults, which the model used before the engineering study.
SCVI_OPTIMIZER = {"eps": 0.01, "weight_decay": 0.0}

#: (name, what it adds, settings); cumulative, the last one is the package default.
CONFIGS: list[tuple[str, str, dict]] = [
    (
        "before",
        "the recipe of the first benchmark: scvi-tools' Adam (eps 0.01, no weight decay), "
        "40 epochs, row sums of the 2000 genes as library size, random head, per-tensor guide",
        {
            "plan": SCVI_OPTIMIZER,
            "max_epochs": 40,
            "library_size": False,
            "head_init": "random",
            "normalization": "per_tensor",
        },
    ),
    (
        "optimizer",
        "Adam eps 1e-8, weight decay 1e-5, 61 epochs (the new training defaults)",
        {
            "plan": {},
            "max_epochs": None,
            "library_size": False,
            "head_init": "random",
            "normalization": "per_tensor",
        },
    ),
    (
        "library_size",
        "library size over all corpus genes (`library_size_key`), as for a query",
        {
            "plan": {},
            "max_epochs": None,
            "library_size": True,
            "head_init": "random",
            "normalization": "per_tensor",
        },
    ),
    (
        "prototypes",
        "head initialised from class prototypes, in fine-tuning and in the scouts",
        {
            "plan": {},
            "max_epochs": None,
            "library_size": True,
            "head_init": "prototypes",
            "normalization": "per_tensor",
        },
    ),
    (
        "global_guide",
        "guide min-max normalised over all weights instead of per tensor (the default)",
        {
            "plan": {},
            "max_epochs": None,
            "library_size": True,
            "head_init": "prototypes",
            "normalization": "global",
        },
    ),
]

#: Single changes on top of the default, measured after it (not cumulative).
VARIANTS: list[tuple[str, str, dict]] = [
    (
        "latent_128",
        "default + n_latent=128",
        {**CONFIGS[-1][2], "model": {"n_latent": 128}},
    ),
    (
        "wide",
        "default + n_hidden=512, n_latent=128",
        {**CONFIGS[-1][2], "model": {"n_hidden": 512, "n_latent": 128}},
    ),
    (
        "epochs_120",
        "default + 120 pre-training epochs",
        {**CONFIGS[-1][2], "max_epochs": 120},
    ),
    (
        "scouts_5way_3shot",
        "default + scouts of 5 classes x 3 samples (closer to the targets' tasks)",
        {**CONFIGS[-1][2], "guide": {"n_way": 5, "k_shot": 3}},
    ),
    (
        "scouts_200",
        "default + 200 scouts instead of 60",
        {**CONFIGS[-1][2], "guide": {"n_scouts": 200}},
    ),
    (
        "finetune_lr_3e-3",
        "default + fine-tuning (and scout) learning rate 3e-3",
        {**CONFIGS[-1][2], "guide": {"lr": 3e-3}, "fine_tune": {"lr": 3e-3}},
    ),
    (
        "mask_0.15",
        "default + 15 % of genes masked in pre-training (instead of 30 %)",
        {**CONFIGS[-1][2], "model": {"mask_rate": 0.15}},
    ),
    (
        "mask_0.5",
        "default + 50 % of genes masked in pre-training",
        {**CONFIGS[-1][2], "model": {"mask_rate": 0.5}},
    ),
    (
        "two_layers",
        "default + two hidden layers in the encoder",
        {**CONFIGS[-1][2], "model": {"n_layers": 2}},
    ),
    (
        "finetune_300_steps",
        "default + 300 fine-tuning (and scout) steps",
        {**CONFIGS[-1][2], "guide": {"n_steps": 300}, "fine_tune": {"n_steps": 300}},
    ),
    (
        "epochs_30",
        "default + 30 pre-training epochs (half the default)",
        {**CONFIGS[-1][2], "max_epochs": 30},
    ),
    (
        "shallow_decoder",
        "default, but a one-hidden-layer decoder (latent -> 256 -> genes, ReLU) instead of linear",
        {**CONFIGS[-1][2], "objective": "shallow_decoder"},
    ),
    (
        "pretrain_seed_1",
        "the default pre-trained (and scouted) with seed 1: the spread between pre-training runs",
        {**CONFIGS[-1][2], "pretrain_seed": 1},
    ),
    (
        "pretrain_seed_2",
        "the default pre-trained (and scouted) with seed 2",
        {**CONFIGS[-1][2], "pretrain_seed": 2},
    ),
    (
        "mask_0.5_seed_1",
        "mask_0.5, pre-trained (and scouted) with seed 1",
        {**CONFIGS[-1][2], "model": {"mask_rate": 0.5}, "pretrain_seed": 1},
    ),
    (
        "mask_0.5_seed_2",
        "mask_0.5, pre-trained (and scouted) with seed 2",
        {**CONFIGS[-1][2], "model": {"mask_rate": 0.5}, "pretrain_seed": 2},
    ),
    (
        "kmeans_labels",
        "default + 30 K-means clusters of the corpus as labels (classification term; scouts on "
        "pairs of clusters)",
        {**CONFIGS[-1][2], "kmeans_labels": 30},
    ),
    (
        "pca_reconstruction",
        "decoder predicts the cell's 50 corpus principal components instead of the masked genes",
        {**CONFIGS[-1][2], "objective": "pca"},
    ),
    (
        "contrastive",
        "default + 0.1 x InfoNCE between two masked views of each cell (temperature 0.2)",
        {**CONFIGS[-1][2], "objective": "contrastive"},
    ),
    (
        "gene_scaling",
        "pre-training on per-gene standardised log expression (folded into the first layer)",
        {**CONFIGS[-1][2], "gene_scaling": True},
    ),
    (
        "missing_mean",
        "genes missing from the target enter as their corpus mean instead of 0",
        {**CONFIGS[-1][2], "missing": "mean"},
    ),
    (
        "target_genes",
        "one model per target, on the 2000 most variable corpus genes present in the target "
        "(baselines re-run on those genes)",
        {**CONFIGS[-1][2], "genes": "target"},
    ),
]
ALL = CONFIGS + VARIANTS


def methods(settings: dict) -> list[FineTuneMethod | str]:
    """GTL and plain fine-tuning, both with the configuration's fine-tuning settings.

    A configuration that changes the genes also re-runs the simple baselines on its genes.
    """
    kwargs = {"head_init": settings["head_init"], **settings.get("fine_tune", {})}
    fine_tuned = [
        FineTuneMethod("gtl", use_guide=True, **kwargs),
        FineTuneMethod("finetune", use_guide=False, **kwargs),
    ]
    if settings.get("genes") == "target":
        return [*fine_tuned, *common.BASELINES]
    return fine_tuned


def log_corpus(work) -> np.ndarray:
    """The model's input: log-normalised corpus rows over the selected genes."""
    library_size = work.obs.get(LIBRARY_SIZE_KEY)
    x_log = read_log_expression(
        work,
        layer=None,
        units="counts",
        alignment=align_genes(work.var_names, work.var_names, warn=False),
        library_size=None if library_size is None else library_size.to_numpy(),
        batch_size=4096,
    )
    return x_log.numpy()


def model_class_and_options(settings: dict, x_log: np.ndarray, seed: int) -> tuple[type, dict]:
    """The GTL subclass of the configuration's pre-training variant, and its module options."""
    objective = settings.get("objective")
    if objective == "pca":
        pca = variants.corpus_pca(x_log, 50, seed)
        return variants.PCAReconstructionGTL, {"components": pca.components_.T, "center": pca.mean_}
    if objective == "contrastive":
        return variants.ContrastiveGTL, {"contrastive_weight": 0.1}
    if objective == "shallow_decoder":
        return variants.ShallowDecoderGTL, {}
    if objective is not None:
        raise ValueError(f"unknown objective {objective!r}")
    if settings.get("gene_scaling", False):
        std = np.maximum(x_log.std(0), 0.05)
        return variants.ScaledInputGTL, {"gene_mean": x_log.mean(0), "gene_std": std}
    if settings.get("missing") == "mean":
        return variants.MeanFillGTL, {}
    return GTL, {}


def pretrain(corpus, genes, settings: dict, seed: int) -> tuple[GTL, np.ndarray]:
    """The configuration's model, and the log expression of the corpus rows it was trained on."""
    seed = settings.get("pretrain_seed", seed)
    work = corpus[:, genes].copy()
    key = None
    if settings["library_size"]:
        key = LIBRARY_SIZE_KEY
        work.obs[key] = library_sizes(get_matrix(corpus, None))
    x_log = log_corpus(work)
    labels_key = None
    if settings.get("kmeans_labels"):
        labels_key = "kmeans"
        work.obs[labels_key] = variants.kmeans_labels(x_log, settings["kmeans_labels"], seed)
    model_cls, module_options = model_class_and_options(settings, x_log, seed)
    scvi.settings.seed = seed
    model_cls.setup_anndata(work, units="counts", library_size_key=key, labels_key=labels_key)
    if settings.get("objective") in ("pca", "contrastive"):
        # The published rows of these two variants built a default module first and then
        # replaced it; building (and dropping) one here keeps their random stream, and so
        # their numbers, exactly.
        GTLModule(work.n_vars, units="counts", **settings.get("model", {}))
    model = model_cls(work, **settings.get("model", {}), **module_options)
    model.train(
        max_epochs=settings["max_epochs"],
        plan_kwargs=settings["plan"],
        enable_progress_bar=False,
        compute_guide=False,
    )
    model.compute_guide(
        seed=seed,
        progress=False,
        head_init=settings["head_init"],
        normalization=settings["normalization"],
        **settings.get("guide", {}),
    )
    return model, x_log


def models_per_target(corpus, genes, targets: dict, settings: dict, seed: int) -> dict:
    """The model each target is run on: one shared model unless the variant is per target."""
    if settings.get("genes") == "target":
        return {
            name: pretrain(corpus, target_genes(corpus, target), settings, seed)[0]
            for name, (target, _, _) in targets.items()
        }
    model, x_log = pretrain(corpus, genes, settings, seed)
    if settings.get("missing") != "mean":
        return dict.fromkeys(targets, model)
    return {
        name: model.with_missing_at_mean(~model.gene_names.isin(target.var_names), x_log.mean(0))
        for name, (target, _, _) in targets.items()
    }


def target_genes(corpus, target) -> pd.Index:
    """The corpus's 2000 most variable genes among those the target has."""
    shared = corpus[:, corpus.var_names.isin(target.var_names)]
    return select_genes(shared, n_hvg=2000, units="counts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", nargs="+", default=[c[0] for c in CONFIGS], choices=[c[0] for c in ALL]
    )
    parser.add_argument("--k-shots", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--n-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=common.RESULTS / "ablation")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = common.data_dir()
    corpus = common.load_corpus(folder)
    genes = select_genes(corpus, n_hvg=2000, units="counts")
    targets = {name: common.load_target(name, folder) for name in TARGETS}
    csv = args.out / "ablation.csv"
    # Runs of other configurations are kept, so variants can be measured later.
    tables = [pd.read_csv(csv)] if csv.exists() else []
    tables = [t[~t["config"].isin(args.configs)] for t in tables]
    # Threads set after the gene selection, where the published rows set them.
    common.configure(args.threads, progress_bar=None)
    for name, _, config in ALL:
        if name not in args.configs:
            continue
        start = time.perf_counter()
        models = models_per_target(corpus, genes, targets, config, args.seed)
        for target_name, (target, labels_key, units) in targets.items():
            result = common.run_episodes(
                models[target_name],
                target,
                labels_key,
                units,
                args,
                methods=methods(config),
                progress=False,
            )
            table = result.table.assign(config=name, target=target_name)
            tables.append(table)
        pd.concat(tables).to_csv(csv, index=False)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        print(summarize(pd.concat(tables)).to_string(), flush=True)
    (args.out / "ablation.md").write_text(to_markdown(pd.concat(tables)) + "\n")


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean balanced accuracy over k and episodes, per configuration, target and method."""
    per_k = table.groupby(["config", "target", "method", "k"])["balanced_accuracy"].mean()
    mean = per_k.groupby(["config", "target", "method"]).mean().unstack(["target", "method"])
    return mean.reindex([c[0] for c in ALL if c[0] in mean.index]).round(3)


def to_markdown(table: pd.DataFrame) -> str:
    """One row per configuration: GTL's mean over k, and the paired GTL - finetune difference."""
    wide = table.pivot_table(
        index=["config", "target", "k", "episode"], columns="method", values="balanced_accuracy"
    )
    wide["diff"] = wide["gtl"] - wide["finetune"]
    per_k = wide.groupby(["config", "target", "k"]).mean()
    mean = per_k.groupby(["config", "target"]).mean()
    lines = [
        "| configuration | " + " | ".join(f"{t} gtl | {t} gtl − finetune" for t in TARGETS) + " |",
        "|---|" + "---|---|" * len(TARGETS),
    ]
    for name, what, _ in ALL:
        if name not in mean.index.get_level_values(0):
            continue
        cells = []
        for target in TARGETS:
            row = mean.loc[(name, target)]
            cells += [f"{row['gtl']:.3f}", f"{row['diff']:+.3f}"]
        lines.append(f"| {name}: {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
