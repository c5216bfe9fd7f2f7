"""GTL vs plain fine-tuning vs the same network from scratch, on one target, same episodes.

Pre-trains scgtl.GTL with its defaults on a PBMC corpus (mudan_pbmcA + kang_stim, raw counts,
2000 highly variable genes chosen on the corpus only), then for every k and seed draws one
support set (k cells per class) and fits the three variants on exactly that support set; the
query is every other cell of the target. Prints mean and standard deviation of balanced
accuracy over seeds and writes the per-episode table as CSV.

    python benchmarks/guide_vs_plain.py --target mudan_ref --labels-key cell_type \
        --k 1 3 5 10 --seeds 10 --out benchmarks/results/guide_vs_plain_mudan_ref.csv
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.metrics import balanced_accuracy_score

import scgtl
from scgtl.data import check_labels, sample_k_shot

VARIANTS = {
    "gtl": {"use_guide": True},
    "plain_fine_tune": {"use_guide": False},
    "scratch": {"from_scratch": True},
}


def data_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("SCGTL_DATA_DIR", default))


def pbmc_corpus(n_hvg: int) -> ad.AnnData:
    parts = [sc.read_h5ad(data_dir() / f"{name}.h5ad") for name in ("mudan_pbmcA", "kang_stim")]
    corpus = ad.concat(parts, join="inner", label="study", keys=["mudan_pbmcA", "kang_stim"])
    corpus.obs_names_make_unique()
    sc.pp.highly_variable_genes(corpus, n_top_genes=n_hvg, flavor="seurat_v3", subset=True)
    return corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="mudan_ref")
    parser.add_argument("--labels-key", default="cell_type")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n-hvg", type=int, default=2000)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    corpus = pbmc_corpus(args.n_hvg)
    scgtl.GTL.setup_anndata(corpus, units="counts")
    model = scgtl.GTL(corpus)
    model.train(max_epochs=args.max_epochs, enable_progress_bar=False)
    pretrain_seconds = time.perf_counter() - start
    print(
        f"corpus {corpus.n_obs} x {corpus.n_vars}; pre-training + guide: {pretrain_seconds:.0f} s"
    )

    target = sc.read_h5ad(data_dir() / f"{args.target}.h5ad")
    labels = check_labels(target.obs[args.labels_key], labels_key=args.labels_key)
    rows = []
    warnings.filterwarnings("ignore", message="Aligned query genes")
    for k in args.k:
        for seed in range(args.seeds):
            support = sample_k_shot(labels, k, seed=seed, labels_key=args.labels_key)
            query = np.setdiff1d(np.arange(target.n_obs), support)
            truth = np.asarray(labels)[query]
            for name, options in VARIANTS.items():
                t = time.perf_counter()
                clf = model.fine_tune(
                    target,
                    labels_key=args.labels_key,
                    support_indices=support,
                    seed=seed,
                    **options,
                )
                proba = clf.predict_proba(target[query])
                predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(1)]
                rows.append(
                    {
                        "method": name,
                        "k": k,
                        "seed": seed,
                        "balanced_accuracy": balanced_accuracy_score(truth, predicted),
                        "fit_seconds": time.perf_counter() - t,
                    }
                )
    table = pd.DataFrame(rows)
    summary = table.groupby(["method", "k"])["balanced_accuracy"].agg(["mean", "std", "count"])
    print(summary.round(3).to_string())
    wide = table.pivot_table(index=["k", "seed"], columns="method", values="balanced_accuracy")
    for other in ("plain_fine_tune", "scratch"):
        diff = (wide["gtl"] - wide[other]).groupby("k").agg(["mean", "std"])
        print(f"\npaired gtl - {other}:\n{diff.round(3).to_string()}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
