"""Reliability diagrams of gtl and the baselines at k = 5 (issue 15).

The figures of docs/research/novelty.md, "Reliability diagrams, measured":

    python benchmarks/reliability.py --models /work/explore/cache \\
        --out benchmarks/results/reliability

runs scgtl.benchmark.few_shot at k = 5 (20 episodes, seed 0, baselines on the target's own
genes) on mudan_ref and pbmc68k_reduced with gtl (the package default, calibrated by its
temperature), logreg (inductive) and pca_logreg (transductive), and draws each target's
reliability diagram (scgtl.pl.reliability: the query cells of all episodes pooled into the 15
confidence bins of the ECE). The pre-trained model is benchmarks/do_no_harm.py's PBMC-corpus
model (`--models` reuses its cache). Writes <out>/<target>/ (results.csv, calibration.csv,
summary.md, accuracy_vs_k.png, reliability.png), <out>/ece.csv (pooled and mean per-episode ECE
per target and method) and <out>/ece.md (the same as a Markdown table).
"""

from __future__ import annotations

import time

import common
import matplotlib
import pandas as pd

import scgtl
from scgtl import benchmark

matplotlib.use("Agg")

TARGETS = ("mudan_ref", "pbmc68k_reduced")
METHODS = ("gtl", "logreg", "pca_logreg")


def ece_rows(name: str, result: benchmark.FewShotResult, k: int) -> pd.DataFrame:
    """Pooled ECE (every query cell of every episode) and mean per-episode ECE per method."""
    pooled = result.reliability(k=k)
    per_episode = result.table[result.table["k"] == k].groupby("method")["ece"].mean()
    frame = pooled.groupby(["method", "regime"], sort=False).agg(
        n_episodes=("n_episodes", "max"), n_cells=("n_cells", "sum")
    )
    frame = frame.reset_index()
    frame["pooled_ece"] = frame["method"].map(result.pooled_ece(k=k))
    frame["mean_episode_ece"] = frame["method"].map(per_episode)
    return frame.assign(target=name, k=k)[
        ["target", "k", "method", "regime", "n_episodes", "n_cells", "pooled_ece",
         "mean_episode_ece"]
    ]  # fmt: skip


def main() -> None:
    parser = common.study_parser(
        __doc__.splitlines()[0], METHODS, default_out=common.RESULTS / "reliability"
    )
    parser.set_defaults(targets=list(TARGETS), k_shots=[5])
    args = parser.parse_args()
    common.configure(args.threads)
    k = max(args.k_shots)
    rows = []
    studies = common.tasks(args.targets, common.data_dir(), args.models)
    for name, model, target, labels_key, units in studies:
        start = time.perf_counter()
        result = common.study_few_shot(
            model,
            target,
            labels_key,
            units,
            k_shots=args.k_shots,
            n_episodes=args.n_episodes,
            seed=args.seed,
            methods=args.methods,
            n_threads=args.threads,
        )
        result.save(args.out / name, title=f"{name}: calibration at k={k}")
        scgtl.pl.reliability(
            result,
            k=k,
            title=f"{name}, k={k}: {args.n_episodes} episodes pooled",
            save=args.out / name / "reliability.png",
            show=False,
        )
        rows.append(ece_rows(name, result, k))
        print(f"{name} ({time.perf_counter() - start:.0f} s)", flush=True)
        print(rows[-1].round(3).to_string(index=False), flush=True)
    table = pd.concat(rows, ignore_index=True)
    table.to_csv(args.out / "ece.csv", index=False)
    shown = table.assign(
        pooled_ece=table["pooled_ece"].map("{:.3f}".format),
        mean_episode_ece=table["mean_episode_ece"].map("{:.3f}".format),
    )
    (args.out / "ece.md").write_text(benchmark.markdown_table(shown) + "\n")


if __name__ == "__main__":
    main()
