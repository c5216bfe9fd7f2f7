"""Ablation of the GTL recipe: each change of issue 5, added one at a time, on the real targets.

Every configuration pre-trains on the PBMC corpus (mudan_pbmcA + kang_stim, 2000 highly
variable genes, as in few_shot_real.py), computes its guide, and runs scgtl.benchmark.few_shot
with the methods `gtl` and `finetune` on the same episodes (seed 0) of mudan_ref,
pbmc68k_reduced and yan. Rows are cumulative: each adds one change to the row above; the last
row is the package's default.

    python benchmarks/gtl_ablation.py --out benchmarks/results/ablation

Data: $SCGTL_DATA_DIR, or ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd
import scvi
from few_shot_real import TARGETS, data_dir, load_corpus, load_target

from scgtl import GTL, benchmark
from scgtl.benchmark import FineTuneMethod
from scgtl.benchmark._few_shot import limit_threads
from scgtl.benchmark._pretrain import LIBRARY_SIZE_KEY, select_genes
from scgtl.data import get_matrix, library_sizes

REPO = Path(__file__).resolve().parents[1]

#: scvi-tools' TrainingPlan defaults, which the model used before issue 5.
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
]
ALL = CONFIGS + VARIANTS


def methods(settings: dict) -> list[FineTuneMethod]:
    """GTL and plain fine-tuning, both with the configuration's fine-tuning settings."""
    kwargs = {"head_init": settings["head_init"], **settings.get("fine_tune", {})}
    return [
        FineTuneMethod("gtl", use_guide=True, **kwargs),
        FineTuneMethod("finetune", use_guide=False, **kwargs),
    ]


def pretrain(corpus, genes, settings: dict, seed: int) -> GTL:
    work = corpus[:, genes].copy()
    key = None
    if settings["library_size"]:
        key = LIBRARY_SIZE_KEY
        work.obs[key] = library_sizes(get_matrix(corpus, None))
    scvi.settings.seed = seed
    GTL.setup_anndata(work, units="counts", library_size_key=key)
    model = GTL(work, **settings.get("model", {}))
    model.train(
        max_epochs=settings["max_epochs"],
        plan_kwargs=settings["plan"],
        enable_progress_bar=False,
        guide_kwargs={
            "seed": seed,
            "progress": False,
            "head_init": settings["head_init"],
            "normalization": settings["normalization"],
            **settings.get("guide", {}),
        },
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", nargs="+", default=[c[0] for c in CONFIGS], choices=[c[0] for c in ALL]
    )
    parser.add_argument("--k-shots", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--n-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ablation")
    args = parser.parse_args()
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = data_dir()
    corpus = load_corpus(folder)
    genes = select_genes(corpus, n_hvg=2000, units="counts")
    targets = {name: load_target(name, folder) for name in TARGETS}
    csv = args.out / "ablation.csv"
    # Runs of other configurations are kept, so variants can be measured later.
    tables = [pd.read_csv(csv)] if csv.exists() else []
    tables = [t[~t["config"].isin(args.configs)] for t in tables]
    with limit_threads(args.threads):
        for name, _, settings in ALL:
            if name not in args.configs:
                continue
            start = time.perf_counter()
            model = pretrain(corpus, genes, settings, args.seed)
            for target_name, (target, labels_key, units) in targets.items():
                result = benchmark.few_shot(
                    model,
                    target,
                    labels_key=labels_key,
                    k_shots=args.k_shots,
                    n_episodes=args.n_episodes,
                    seed=args.seed,
                    units=units,
                    methods=methods(settings),
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
