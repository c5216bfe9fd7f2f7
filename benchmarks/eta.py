"""How honest is ``train()``'s time left? (issue 14, part 6)

``train()`` shows one display whose time left comes from two measurements: the scouts' from a
timed step of scout training before pre-training (``scgtl.train.estimate_scout_seconds``), and
pre-training's from the epochs done so far (the rate since the first epoch, which is slower).
This script compares both with what then happened: the scouts' estimate with the wall time of
``compute_guide()``, and the time left after the second epoch (the second epoch's duration x
the epochs left) with the rest of pre-training.

    python benchmarks/eta.py --threads 1 --corpus ../shared/data/mudan_pbmcA.h5ad

Without ``--corpus``: the Quickstart's corpus (pbmc68k_reduced minus four cell types, log1p).
Run it alone on the machine: it is a timing.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import anndata as ad
import lightning.pytorch as pl
import scanpy as sc

import scgtl


class EpochClock(pl.Callback):
    """Wall time at the end of every training epoch."""

    def __init__(self):
        self.ends: list[float] = []

    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.ends.append(time.perf_counter())


def quickstart_corpus() -> ad.AnnData:
    adata = sc.datasets.pbmc68k_reduced().raw.to_adata()
    held_out = ["CD14+ Monocyte", "CD19+ B", "CD8+ Cytotoxic T", "CD56+ NK"]
    corpus = adata[~adata.obs["bulk_labels"].isin(held_out)].copy()
    scgtl.GTL.setup_anndata(corpus, units="log1p")
    return corpus


def file_corpus(path: str) -> ad.AnnData:
    corpus = ad.read_h5ad(path)
    scgtl.GTL.setup_anndata(corpus, units="counts")  # its 2,000 most variable genes
    return corpus


def measure(corpus: ad.AnnData, *, max_epochs: int | None, repeats: int) -> dict:
    model = scgtl.GTL(corpus)
    clock = EpochClock()
    model.train(max_epochs=max_epochs, compute_guide=False, callbacks=[clock])
    second = clock.ends[1] - clock.ends[0]
    rest = clock.ends[-1] - clock.ends[1]
    rows = []
    for _ in range(repeats):
        estimate = model.estimate_guide_seconds()
        start = time.perf_counter()
        model.compute_guide()
        rows.append({"estimate_s": estimate, "actual_s": time.perf_counter() - start})
    return {
        "n_obs": corpus.n_obs,
        "n_genes": len(model.gene_names),
        "epochs": len(clock.ends),
        "first_epoch_s": round(clock.ends[0] - clock.start, 2),
        "pretraining_left_after_epoch_2_estimate_s": round(second * (len(clock.ends) - 2), 2),
        "pretraining_left_after_epoch_2_actual_s": round(rest, 2),
        "scouts": [{k: round(v, 2) for k, v in row.items()} for row in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="a corpus of raw counts (.h5ad); default: Quickstart")
    parser.add_argument("--max-epochs", type=int, help="pre-training epochs (default: train's)")
    parser.add_argument("--repeats", type=int, default=3, help="scout estimates and runs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scgtl.settings.n_threads = args.threads
    scgtl.settings.progress_bar = False
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    corpus = file_corpus(args.corpus) if args.corpus else quickstart_corpus()
    print(json.dumps(measure(corpus, max_epochs=args.max_epochs, repeats=args.repeats), indent=1))


if __name__ == "__main__":
    main()
