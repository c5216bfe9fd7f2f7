"""The inductive and transductive regimes on the five developer targets (issue 13).

Pre-trains the two models of docs/research/wide_path.md with the package defaults (the PBMC corpus
mudan_pbmcA + kang_stim for mudan_ref, pbmc68k_reduced and yan; mudan_pbmcA alone for the Kang
stimulated-vs-control task; the embedded default's own corpus for it) and runs
scgtl.benchmark.few_shot on each target, k = 1, 3, 5, 20 episodes, seed 0, every baseline on the
target's own genes. Methods: gtl (the package default: guided network pooled with the wide
path), gtl_network (the guided network alone, wide=False), finetune, logreg (inductive), and
the transductive baselines pca_logreg, pca_knn, pca_label_spreading, pca_self_training.

    python benchmarks/do_no_harm.py --out benchmarks/results/do_no_harm
    python benchmarks/do_no_harm.py --methods gtl_transductive \\
        --out benchmarks/results/transductive
    python benchmarks/do_no_harm.py --time-adaptation   # transductive=True's adaptation

`--models DIR` keeps the pre-trained models in DIR for the next run. Writes <out>/<target>/
(results.csv, summary.md, accuracy_vs_k.png) and <out>/overview.csv (mean balanced accuracy
over k and mean fit seconds per method and target). About 20 min on the 2-core machine, one
thread. The targets, their models, the options and the loop are benchmarks/common.py's
(`tasks`, `study_parser`, `run_study`), which the variant scripts share.
"""

from __future__ import annotations

import time
from pathlib import Path

import common

import scgtl

METHODS = common.STUDY_METHODS


def main() -> None:
    parser = common.study_parser(
        __doc__.splitlines()[0], METHODS, default_out=common.RESULTS / "do_no_harm"
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
    common.run_study(args, args.methods, title="inductive and transductive regimes")


def time_adaptation(targets, models: Path | None) -> None:
    """Print the seconds ``fine_tune(transductive=True)`` spends adapting to each target."""
    for name, model, target, _, units in common.tasks(targets, common.data_dir(), models):
        start = time.perf_counter()
        model.adapted_to(target, units=units)
        print(f"{name}: adaptation {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
