"""Transductive variants of GTL beyond fine_tune(transductive=True), one change at a time.

`spread_<method>`: the fine-tuned classifier's probabilities for every row of the study, spread
over a symmetric kNN graph (15 neighbours) of the study in the classifier's latent space
(`X_scgtl`): F <- alpha S F + (1 - alpha) P, S = D^-1/2 W D^-1/2, alpha = 0.8, 30 iterations,
support rows clamped to their labels (Zhou et al. 2004 label spreading, started from the
classifier instead of from the labels alone). Same targets, episodes and seed as do_no_harm.py.

    cd benchmarks && python transductive_variants.py --out results/transductive_variants

Writes <out>/<target>/ and <out>/overview.csv, as do_no_harm.py.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from do_no_harm import TARGETS, run
from scipy import sparse
from sklearn.neighbors import kneighbors_graph

import scgtl
from scgtl import benchmark

N_NEIGHBORS = 15
ALPHA = 0.8
N_ITERATIONS = 30


def spread(latent: np.ndarray, prior: np.ndarray, clamp: dict[int, int]) -> np.ndarray:
    """Label spreading of ``prior`` (rows x classes) over a kNN graph of ``latent``."""
    graph = kneighbors_graph(latent, n_neighbors=min(N_NEIGHBORS, len(latent) - 1))
    graph = ((graph + graph.T) > 0).astype(float)
    degree = np.asarray(graph.sum(1)).ravel()
    scale = sparse.diags(1 / np.sqrt(np.maximum(degree, 1e-12)))
    normalised = scale @ graph @ scale
    start = prior.copy()
    rows, codes = list(clamp), list(clamp.values())
    start[rows] = 0.0
    start[rows, codes] = 1.0
    f = start.copy()
    for _ in range(N_ITERATIONS):
        f = ALPHA * (normalised @ f) + (1 - ALPHA) * start
    return f / f.sum(1, keepdims=True)


class SpreadFineTune(benchmark.FineTuneMethod):
    """A fine-tuning method whose probabilities are then spread over the study's kNN graph."""

    transductive = True

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)

    def fit_predict_proba(self, task, *, seed):
        data = task.data
        clf = self.fit(task, seed=seed)
        everything = task.data.unlabelled()
        proba = clf.predict_proba(everything, layer=data.layer)
        classes = list(proba.columns)
        latent = clf.get_latent_representation(everything, layer=data.layer)
        clamp = {
            int(r): classes.index(c)
            for r, c in zip(task.support_indices, task.y_support, strict=True)
        }
        spread_proba = spread(latent, proba.to_numpy(), clamp)
        return pd.DataFrame(spread_proba[task.query_indices], columns=classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--n-episodes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("results/transductive_variants"))
    args = parser.parse_args()
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    scgtl.settings.progress_bar = False
    methods = [
        SpreadFineTune("spread_gtl"),
        SpreadFineTune("spread_gtl_transductive", transductive=True),
    ]
    run(
        args.targets,
        methods,
        args.out,
        k_shots=(1, 3, 5),
        n_episodes=args.n_episodes,
        seed=0,
        title="transductive variants",
    )


if __name__ == "__main__":
    main()
