"""Few-shot benchmark on real data, the numbers of docs/research/benchmarks.md.

Pre-trains one scgtl.GTL on the PBMC corpus (mudan_pbmcA + kang_stim, raw UMI counts,
concatenated on their shared genes; 2000 highly variable genes by scanpy's seurat_v3 on the
corpus counts; self-supervised, scouts from K-means clusters; the model's default settings)
and runs scgtl.benchmark.few_shot on each target. The baselines read the target's own genes
(the library default); `--baseline-genes model` puts every method on the model's genes, as the
tables of docs/research/benchmarks.md measured before that default changed.

Target adaptation (`GTL.adapt` on the target's unlabelled cells, then guided or plain
fine-tuning) changes what the method sees, so it is benchmarked separately: a second run on the
same episodes, `gtl_adapted` (the transductive reference) against `finetune_adapted` and the
transductive PCA baselines, saved under `<out>/<target>/adapted/`.

    python benchmarks/few_shot_real.py --out benchmarks/results

Data: $SCGTL_DATA_DIR, or ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import common
import matplotlib

from scgtl import benchmark

matplotlib.use("Agg")

TARGETS = common.PBMC_TARGETS
ADAPTED_METHODS = (
    benchmark.FineTuneMethod(
        "gtl_adapted",
        adapt={},
        description="GTL after adaptation to the unlabelled target (model.adapt defaults)",
    ),
    benchmark.FineTuneMethod(
        "finetune_adapted",
        use_guide=False,
        adapt={},
        description="plain fine-tuning after the same adaptation",
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--k-shots", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--n-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-hvg", type=int, default=2000, help="0: all corpus genes")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (all steps)")
    parser.add_argument(
        "--baseline-genes",
        choices=("model", "target"),
        default="target",
        help="genes of the baselines: the target's own (default) or the model's",
    )
    parser.add_argument(
        "--no-adapt", dest="adapt", action="store_false", help="skip the target-adaptation run"
    )
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    parser.add_argument(
        "--plots", type=Path, default=common.REPO / "docs" / "_static" / "benchmarks"
    )
    args = parser.parse_args()
    common.configure(args.threads, progress_bar=None)  # keeps the few-shot progress display
    run(args)


def run(args: argparse.Namespace) -> None:
    folder = common.data_dir()
    timings = {}
    start = time.perf_counter()
    corpus = common.load_corpus(folder)
    model = benchmark.pretrain(
        corpus,
        units="counts",
        n_hvg=args.n_hvg or None,
        max_epochs=args.max_epochs,
        seed=args.seed,
    )
    timings["pretrain_seconds"] = time.perf_counter() - start
    timings["corpus"] = [corpus.n_obs, corpus.n_vars]
    print(f"pre-trained on {corpus.n_obs} x {corpus.n_vars} in {timings['pretrain_seconds']:.0f} s")
    args.plots.mkdir(parents=True, exist_ok=True)
    for name in args.targets:
        target, labels_key, units = common.load_target(name, folder)
        t0 = time.perf_counter()
        result = common.run_episodes(
            model,
            target,
            labels_key,
            units,
            args,
            n_threads=args.threads,
            baseline_genes=args.baseline_genes,
        )
        timings[name] = time.perf_counter() - t0
        title = f"{name}: pre-trained on mudan_pbmcA + kang_stim"
        paths = result.save(args.out / name, title=title)
        shutil.copy(paths["plot"], args.plots / f"{name}.png")
        print(f"{name}: {timings[name]:.0f} s")
        for line in result.verdicts():
            print("  " + line)
        if args.adapt:
            t0 = time.perf_counter()
            adapted = common.run_episodes(
                model,
                target,
                labels_key,
                units,
                args,
                methods=[*ADAPTED_METHODS, *common.BASELINES],
                transductive_reference="gtl_adapted",
                n_threads=args.threads,
                baseline_genes=args.baseline_genes,
                progress=False,
            )
            timings[f"{name}_adapted"] = time.perf_counter() - t0
            adapted.save(args.out / name / "adapted", title=f"{title}, adapted to {name}")
            print(f"{name}, adapted: {timings[f'{name}_adapted']:.0f} s")
            for line in adapted.verdicts():
                print("  " + line)
    timings["threads"] = args.threads
    timings["total_seconds"] = time.perf_counter() - start
    (args.out / "few_shot_real_timings.json").write_text(json.dumps(timings, indent=2) + "\n")


if __name__ == "__main__":
    main()
