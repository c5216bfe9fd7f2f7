"""CellTypist, the real package, as a method of scgtl.benchmark (issue 25).

``yan`` (90 embryo cells, six stages, RPKM) and ``pbmc_target`` (the embedded default's held-out
PBMC types, log1p) come from tests/conftest.py. The tests install the ``celltypist`` extra
(celltypist with scikit-learn < 1.8); the tests of a real fit are skipped, naming the conflict,
only where that extra is missing.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pandas as pd
import pytest

from scgtl import benchmark
from scgtl.benchmark import FewShotTask, _celltypist, builtin_methods

YAN = {"labels_key": "cell_type", "units": "normalized", "progress": False}
PROBLEM = benchmark.celltypist_problem()
needs_celltypist = pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))


def _versions(**installed):
    """A stand-in for importlib.metadata.version with these packages installed."""

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    return version


# ---------------------------------------------------------------------------------- the conflict
@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ({"celltypist": "1.7.1", "scikit-learn": "1.7.2"}, None),
        ({"celltypist": "1.7.1", "scikit-learn": "1.9.1"}, "scikit-learn 1.9.1 is installed"),
        ({"celltypist": "1.7.1", "scikit-learn": "1.8.0"}, "scikit-learn 1.8 removed"),
        ({"scikit-learn": "1.7.2"}, "CellTypist is not installed"),
    ],
)
def test_problem_names_the_conflict(monkeypatch, installed, expected):
    monkeypatch.setattr(importlib.metadata, "version", _versions(**installed))
    problem = benchmark.celltypist_problem()
    if expected is None:
        assert problem is None
    else:
        assert expected in problem
        assert "pip install 'scgtl[celltypist]'" in problem


def test_default_run_leaves_celltypist_out_with_a_warning(monkeypatch, yan):
    monkeypatch.setattr(
        importlib.metadata, "version", _versions(celltypist="1.7.1", **{"scikit-learn": "1.9.1"})
    )
    with pytest.warns(UserWarning, match="runs without 'celltypist'.*multi_class"):
        res = benchmark.few_shot(None, yan, k_shots=(3,), n_episodes=1, **YAN)
    assert "celltypist" not in set(res.table["method"])
    assert list(dict.fromkeys(res.table["method"]))[:3] == ["logreg", "pca_logreg", "pca_knn"]
    # Named explicitly, it is refused before any episode runs, with the same reason.
    with pytest.raises(ImportError, match="scikit-learn 1.9.1 is installed"):
        benchmark.few_shot(None, yan, k_shots=(3,), n_episodes=1, methods=["celltypist"], **YAN)


# ---------------------------------------------------------------------------------- input
def test_log1p_cp10k_rescales_each_row_to_ten_thousand():
    rng = np.random.default_rng(0)
    linear = rng.gamma(1.0, 2.0, size=(4, 30))
    linear[2] = 0.0  # a row without expression stays zero rather than dividing by zero
    out = _celltypist.log1p_cp10k(np.log1p(linear).astype(np.float32))
    assert out.dtype == np.float64
    sums = np.expm1(out).sum(axis=1)
    np.testing.assert_allclose(sums[[0, 1, 3]], 1e4, rtol=1e-5)
    assert sums[2] == 0.0
    # Rows already at 10,000 (what the benchmark gives for counts) are left as they are.
    at_target = np.log1p(linear[[0]] / linear[0].sum() * 1e4)
    np.testing.assert_allclose(_celltypist.log1p_cp10k(at_target), at_target, rtol=1e-6)


# ---------------------------------------------------------------------------------- a real fit
@needs_celltypist
def test_celltypist_beats_chance_on_real_data(yan, adata_snapshot):
    snapshot = adata_snapshot(yan)
    res = benchmark.few_shot(
        None, yan, k_shots=(3,), n_episodes=3, methods=["celltypist", "logreg"], **YAN
    )
    snapshot.assert_unchanged(yan)
    table = res.table.set_index(["method", "episode"])
    scores = table["balanced_accuracy"].unstack("method")
    # Six stages, chance 1/6. Measured (seed 0, 3 episodes): CellTypist 0.98, logreg 0.96.
    assert scores["celltypist"].mean() > 0.8, scores
    assert not table.loc["celltypist", "fit_seconds"].isna().any()
    assert list(res.settings["methods"]) == ["celltypist", "logreg"]
    assert not builtin_methods()["celltypist"].transductive


@needs_celltypist
def test_celltypist_reads_log1p_input_and_is_deterministic(pbmc_target, yan_target_data):
    labels = pbmc_target.obs["bulk_labels"].astype(str).to_numpy()
    kw = {"labels_key": "bulk_labels", "units": "log1p", "progress": False, "n_episodes": 2}
    a = benchmark.few_shot(None, pbmc_target, k_shots=(1, 5), methods=["celltypist"], seed=3, **kw)
    b = benchmark.few_shot(None, pbmc_target, k_shots=(1, 5), methods=["celltypist"], seed=3, **kw)
    columns = ["k", "episode", "balanced_accuracy"]
    pd.testing.assert_frame_equal(a.table[columns], b.table[columns])
    chance = 1 / np.unique(labels).size
    # Four held-out types, chance 0.25. Measured (seed 3, 2 episodes): 0.65 at k = 1, 0.87 at 5.
    assert a.table.loc[a.table["k"] == 5, "balanced_accuracy"].mean() > 3 * chance, a.table


@needs_celltypist
def test_celltypist_probabilities_cover_the_episode_classes(yan, yan_target_data):
    labels = yan.obs["cell_type"].astype(str).to_numpy()
    data = yan_target_data(yan, labels)
    (episode,) = benchmark.make_episodes(labels, k_shots=(1,), n_episodes=1, seed=0)
    method = builtin_methods()["celltypist"]
    method.prepare(data)
    proba = method.fit_predict_proba(FewShotTask(episode, data, genes="target"), seed=0)
    assert sorted(proba.columns) == sorted(episode.classes)
    assert proba.shape == (episode.query.size, len(episode.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
