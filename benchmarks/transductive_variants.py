"""Transductive variants of GTL beyond fine_tune(transductive=True), one change at a time.

Every variant starts from `gtl_transductive` (fine_tune(transductive=True): the network pooled
with logistic regression on the study's PCA) and changes one thing:

- `adapt_gtl_transductive`: the model is first adapted to the study's unlabelled rows
  (model.adapt defaults: 1,000 steps of masked reconstruction, half the batch replayed corpus).
- `self_train_gtl_transductive`: one round of self-training. The fitted classifier labels every
  unlabelled row; rows whose top probability is >= 0.75 (scikit-learn SelfTrainingClassifier's
  default threshold), at most `cap` per class (the most confident), join the support with their
  predicted label, and the classifier is fitted again (same wide weight, no new
  cross-validation). `_cap<n>` variants bound the pseudo-labels per class.
- `one_shot_w<w>_gtl_transductive`: the wide weight at k = 1 fixed to w instead of 0.75.
- `spread_<method>`: the fine-tuned classifier's probabilities for every row of the study, spread
over a symmetric kNN graph (15 neighbours) of the study in the classifier's latent space
(`X_scgtl`): F <- alpha S F + (1 - alpha) P, S = D^-1/2 W D^-1/2, alpha = 0.8, 30 iterations,
support rows clamped to their labels (Zhou et al. 2004 label spreading, started from the
classifier instead of from the labels alone). `spread_connectivities_<method>`: the same over
the graph a scanpy user has in `obsp["connectivities"]` (`sc.pp.neighbors` on the study's PCA,
15 neighbours, UMAP weights). `spread_connectivities_self_train_gtl_transductive`: the two
together, self-training first. Same targets and episodes as do_no_harm.py.

    python benchmarks/transductive_variants.py --out benchmarks/results/transductive_variants

Writes <out>/<target>/ and <out>/overview.csv, as do_no_harm.py.
"""

from __future__ import annotations

import anndata as ad
import common
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse
from sklearn.neighbors import kneighbors_graph

from scgtl import benchmark

N_NEIGHBORS = 15
ALPHA = 0.8
N_ITERATIONS = 30


def knn_graph(latent: np.ndarray) -> sparse.csr_matrix:
    """Symmetric, unweighted kNN graph of the rows of ``latent``."""
    graph = kneighbors_graph(latent, n_neighbors=min(N_NEIGHBORS, len(latent) - 1))
    return ((graph + graph.T) > 0).astype(float)


def scanpy_connectivities(data) -> sparse.csr_matrix:
    """``obsp["connectivities"]`` as a scanpy user has it: ``sc.pp.neighbors`` on the PCA.

    The study's own genes, log-normalised, 50 principal components (the benchmark's PCA), 15
    neighbours (scanpy's default), UMAP weights.
    """
    study = ad.AnnData(obs=pd.DataFrame(index=data.adata.obs_names))
    study.obsm["X_pca"] = data.pca("target")
    sc.pp.neighbors(study, n_neighbors=N_NEIGHBORS, use_rep="X_pca", random_state=0)
    return study.obsp["connectivities"]


def spread(graph: sparse.spmatrix, prior: np.ndarray, clamp: dict[int, int]) -> np.ndarray:
    """Label spreading of ``prior`` (rows x classes) over the weighted ``graph`` of the rows."""
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

    def __init__(self, name: str, *, graph: str = "latent", **kwargs):
        super().__init__(name, **kwargs)
        self.graph = graph
        self._connectivities = {}

    def study_graph(self, clf, data, everything):
        """The kNN graph of ``X_scgtl``, or of the study's PCA as scanpy builds it."""
        if self.graph == "latent":
            return knn_graph(clf.get_latent_representation(everything, layer=data.layer))
        if id(data) not in self._connectivities:
            self._connectivities = {id(data): scanpy_connectivities(data)}
        return self._connectivities[id(data)]

    def classifier(self, task, *, seed):
        """The classifier whose probabilities are spread: GTL fine-tuned once."""
        return self.fit(task, seed=seed)

    def fit_predict_proba(self, task, *, seed):
        data = task.data
        clf = self.classifier(task, seed=seed)
        everything = task.data.unlabelled()
        proba = clf.predict_proba(everything, layer=data.layer)
        classes = list(proba.columns)
        clamp = {
            int(r): classes.index(c)
            for r, c in zip(task.support_indices, task.y_support, strict=True)
        }
        graph = self.study_graph(clf, data, everything)
        spread_proba = spread(graph, proba.to_numpy(), clamp)
        return pd.DataFrame(spread_proba[task.query_indices], columns=classes)


#: Top probability a pseudo-label needs (scikit-learn ``SelfTrainingClassifier``'s default).
PSEUDO_LABEL_THRESHOLD = 0.75


def confident_rows(
    proba: np.ndarray, exclude: np.ndarray, *, threshold: float, cap: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (not in ``exclude``) whose top probability is >= ``threshold``, with their class.

    At most ``cap`` rows per class, the most confident first (``None``: all of them).
    """
    predicted, confidence = proba.argmax(axis=1), proba.max(axis=1)
    eligible = confidence >= threshold
    eligible[exclude] = False
    rows, codes = [], []
    for code in range(proba.shape[1]):
        candidates = np.flatnonzero(eligible & (predicted == code))
        candidates = candidates[np.argsort(-confidence[candidates], kind="stable")][:cap]
        rows.append(candidates)
        codes.append(np.full(candidates.size, code))
    return np.concatenate(rows), np.concatenate(codes)


class SelfTrainFineTune(benchmark.FineTuneMethod):
    """GTL fitted once, then again with its confident pseudo-labels added to the support."""

    def __init__(self, name: str, *, cap: int | None = None, **kwargs):
        super().__init__(name, transductive=True, **kwargs)
        self.cap = cap

    def fit_predict_proba(self, task, *, seed):
        return self.self_trained(task, seed=seed).predict_proba(
            task.query_adata(), layer=task.data.layer
        )

    def self_trained(self, task, *, seed):
        """The classifier fitted again on the support and its confident pseudo-labels."""
        data = task.data
        first = self.fit(task, seed=seed)
        classes = list(first.classes_)
        proba = first.predict_proba(data.unlabelled(), layer=data.layer)[classes].to_numpy()
        rows, codes = confident_rows(
            proba, task.support_indices, threshold=PSEUDO_LABEL_THRESHOLD, cap=self.cap
        )
        study = task.masked_target()
        labels = study.obs[data.labels_key].astype(object).to_numpy()
        labels[rows] = np.asarray(classes, dtype=object)[codes]
        study.obs[data.labels_key] = pd.Categorical(labels)
        second = self.starting_model(data).fine_tune(
            study,
            labels_key=data.labels_key,
            support_indices=np.sort(np.concatenate([task.support_indices, rows])),
            seed=seed,
            layer=data.layer,
            units=data.units,
            **self.fine_tune_arguments(
                {**self.options(task, seed=seed), "wide_weight": first.fit_record_["wide_weight"]}
            ),
        )
        return second


class SpreadSelfTrainFineTune(SpreadFineTune, SelfTrainFineTune):
    """Self-training, then label spreading of the self-trained classifier's probabilities."""

    def classifier(self, task, *, seed):
        return self.self_trained(task, seed=seed)


class OneShotWeight(benchmark.FineTuneMethod):
    """GTL with a fixed wide weight when the support has one sample per class."""

    def __init__(self, name: str, *, one_shot_weight: float, **kwargs):
        super().__init__(name, **kwargs)
        self.one_shot_weight = one_shot_weight

    def options(self, task, *, seed):
        options = super().options(task, seed=seed)
        if task.episode.k == 1:
            options["wide_weight"] = self.one_shot_weight
        return options


def variants() -> dict[str, benchmark.Method]:
    """The variants of this study by name, and the transductive baselines for reference."""
    builtins = benchmark.builtin_methods()
    methods = [
        builtins["gtl_transductive"],
        benchmark.FineTuneMethod("adapt_gtl_transductive", adapt={}, transductive=True),
        SelfTrainFineTune("self_train_gtl_transductive"),
        SelfTrainFineTune("self_train_cap50_gtl_transductive", cap=50),
        OneShotWeight("one_shot_w0.9_gtl_transductive", one_shot_weight=0.9, transductive=True),
        OneShotWeight("one_shot_w1_gtl_transductive", one_shot_weight=1.0, transductive=True),
        SpreadFineTune("spread_gtl"),
        SpreadFineTune("spread_gtl_transductive", transductive=True),
        SpreadFineTune(
            "spread_connectivities_gtl_transductive", graph="connectivities", transductive=True
        ),
        SpreadSelfTrainFineTune(
            "spread_connectivities_self_train_gtl_transductive", graph="connectivities"
        ),
        builtins["pca_logreg"],
        builtins["pca_self_training"],
        builtins["pca_label_spreading"],
    ]
    return {m.name: m for m in methods}


def main() -> None:
    chosen = variants()
    parser = common.study_parser(
        __doc__.splitlines()[0],
        chosen,
        only_these=True,
        default_out=common.RESULTS / "transductive_variants",
    )
    args = parser.parse_args()
    common.run_study(args, [chosen[name] for name in args.methods], title="transductive variants")


if __name__ == "__main__":
    main()
