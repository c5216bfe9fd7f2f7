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
import time
from pathlib import Path

import common
import pandas as pd

import scgtl
from scgtl import benchmark

TARGETS = common.LEAVE_ONE_OUT_TARGETS


def run(args) -> None:
    folder = Path(args.data_dir)
    rows = []
    for target_name in args.targets:
        left_out, pbmc_kind = TARGETS[target_name]
        target, labels_key, units = common.load_study(target_name, folder)
        start = time.perf_counter()
        candidates = {"pbmc_only": common.pbmc_model(pbmc_kind, folder, args.models)}
        candidates.update(
            common.multi_models(left_out, folder, args.models, args.variants, args.n_top_genes)
        )
        print(f"{target_name}: models ready in {time.perf_counter() - start:.0f} s", flush=True)
        for i, (model_name, model) in enumerate(candidates.items()):
            methods = ["gtl", *common.BASELINES] if i == 0 else ["gtl"]
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
    parser.add_argument("--data-dir", default=str(common.data_dir()))
    parser.add_argument("--out", type=Path, default=common.RESULTS / "shipped_model")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scgtl.settings.n_threads = args.threads
    scgtl.settings.progress_bar = False
    run(args)


if __name__ == "__main__":
    main()
