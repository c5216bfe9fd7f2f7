"""Shared fixtures and helpers.

Real data
    Tests that need the real data sets find them through one setting, the ``SCGTL_DATA_DIR``
    environment variable (the same one :mod:`scgtl.datasets` reads for its offline mirror). When
    it is unset, ``../shared/data`` beside the repository is used if present; otherwise those
    tests are skipped with a reason that says so.

The embedded default task
    ``pbmc_task`` is scanpy's bundled ``pbmc68k_reduced`` split as the benchmark's embedded default
    splits it (:func:`scgtl.benchmark._default.default_task`): a corpus of six cell types and a
    target of four held-out ones, log1p values, ``obs["bulk_labels"]``. ``pbmc_corpus`` and
    ``pbmc_target`` are fresh copies for each test, so a test may modify them.

One pre-trained model
    ``gtl_model`` is one :class:`scgtl.GTL` (with its guide) pre-trained once per test run on
    ``pbmc_corpus``, for every test that only needs "a trained model". Tests read it and must leave
    it as they found it: after each test the fixture checks that its weights, guide, guide
    settings and attributes are unchanged (a test that changes it fails at teardown). Tests that
    need a model configured otherwise (labelled corpus, counts, backed corpus...) train their own.

Helpers
    Module-level helpers of a ``conftest.py`` cannot be imported by the test modules (pytest runs
    with ``--import-mode=importlib``), so the shared helpers are handed out by fixtures:
    ``make_counts`` (a small counts AnnData) and ``adata_snapshot`` (record an AnnData, later
    assert it is unchanged).
"""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Scouts of the shared model and of the small models tests train themselves: few, short.
FAST_GUIDE = {"n_scouts": 8, "n_steps": 30, "n_clusters": 6}

#: Settings of the shared pre-trained model. ``tests/test_model.py`` asserts on them (20 epochs
#: of history, a 32-dimensional latent space, K-means scout groups: the corpus has no labels set).
SHARED_MODEL = {"n_hidden": 128, "n_latent": 32, "max_epochs": 20, "seed": 0}


# ---------------------------------------------------------------------------------- real data
def _shared_data_dir() -> Path | None:
    configured = os.environ.get("SCGTL_DATA_DIR")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """Directory with the real ``.h5ad`` files (``$SCGTL_DATA_DIR`` or ``../shared/data``)."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip(
            "real test data not found: set SCGTL_DATA_DIR to the folder holding mudan_ref.h5ad "
            "etc. (default ../shared/data beside the repository)"
        )
    return path


@pytest.fixture(scope="session")
def _yan(shared_data_dir) -> ad.AnnData:
    return ad.read_h5ad(shared_data_dir / "yan.h5ad")


@pytest.fixture()
def yan(_yan) -> ad.AnnData:
    """90 embryo cells, 6 stages (``obs["cell_type"]``), RPKM: an easy real task (a copy)."""
    return _yan.copy()


# ---------------------------------------------------------------------------------- default task
@pytest.fixture(scope="session")
def pbmc_task() -> tuple[ad.AnnData, ad.AnnData]:
    """``(corpus, target)`` of the embedded default, shared by the run: do not modify them."""
    from scgtl.benchmark._default import default_task

    return default_task()


@pytest.fixture()
def pbmc_corpus(pbmc_task) -> ad.AnnData:
    """The six pre-training cell types of pbmc68k_reduced (391 cells, log1p), a fresh copy."""
    return pbmc_task[0].copy()


@pytest.fixture()
def pbmc_target(pbmc_task) -> ad.AnnData:
    """The four held-out cell types of pbmc68k_reduced (309 cells, log1p), a fresh copy."""
    return pbmc_task[1].copy()


@pytest.fixture(scope="session")
def fast_guide() -> dict:
    """Options of ``compute_guide`` for a few short scouts (a copy of :data:`FAST_GUIDE`)."""
    return dict(FAST_GUIDE)


# ---------------------------------------------------------------------------------- shared model
@pytest.fixture(scope="session")
def _shared_gtl(pbmc_task):
    import scgtl

    corpus = pbmc_task[0].copy()
    scgtl.GTL.setup_anndata(corpus, units="log1p")
    settings = dict(SHARED_MODEL)
    # Seeded inside a forked RNG: the model does not depend on which tests ran before it, and
    # pre-training does not change the random state the tests after it see.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.pop("seed"))
        max_epochs = settings.pop("max_epochs")
        gtl = scgtl.GTL(corpus, **settings)
        gtl.train(
            max_epochs=max_epochs,
            enable_progress_bar=False,
            guide_kwargs={**FAST_GUIDE, "progress": False},
        )
    return gtl


@pytest.fixture(scope="session")
def pbmc_predicted(_shared_gtl, pbmc_task):
    """The default task's target predicted by a classifier fine-tuned on 3 of its cells per class.

    Shared by the plotting tests, which only read it (they check it is left unchanged).
    """
    target = pbmc_task[1].copy()
    clf = _shared_gtl.fine_tune(
        target, labels_key="bulk_labels", k_shot=3, plan_kwargs={"wide": False}
    )
    clf.predict(target)
    return target


def _model_state(model) -> dict:
    return {
        "attributes": set(vars(model)),
        "adata": model.adata,
        "training": model.module.training,
        "weights": {k: v.detach().clone() for k, v in model.module.state_dict().items()},
        "guide": {k: v.clone() for k, v in model.guide_.items()},
        "guide_settings": dict(model.guide_settings_),
    }


@pytest.fixture()
def gtl_model(_shared_gtl):
    """The run's one pre-trained :class:`scgtl.GTL` (unlabelled corpus ``pbmc_corpus``).

    Read-only: ``fine_tune`` and ``adapt`` return new models; a test that changes the guide
    (``compute_guide``, ``guide_ = ...``) must restore it. Checked after each test.
    """
    before = _model_state(_shared_gtl)
    yield _shared_gtl
    after = _model_state(_shared_gtl)
    message = "a test changed the shared pre-trained model (gtl_model): "
    assert after["attributes"] == before["attributes"], message + "attributes"
    assert after["adata"] is before["adata"], message + "adata"
    assert after["training"] == before["training"], message + "train/eval mode"
    assert after["guide_settings"] == before["guide_settings"], message + "guide_settings_"
    for part in ("weights", "guide"):
        assert after[part].keys() == before[part].keys(), message + part
        for k, v in after[part].items():
            assert torch.equal(v, before[part][k]), message + f"{part} {k}"


# ---------------------------------------------------------------------------------- helpers
def _counts(n_obs: int = 30, n_vars: int = 20, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(sparse.csr_matrix(rng.poisson(2.0, (n_obs, n_vars)).astype(np.float32)))
    adata.var_names = [f"g{i}" for i in range(n_vars)]
    adata.obs["label"] = pd.Categorical(np.repeat(["a", "b", "c"], n_obs // 3))
    return adata


@pytest.fixture(scope="session")
def make_counts():
    """``make_counts(n_obs=30, n_vars=20, seed=0)``: Poisson counts (sparse), genes ``g0``...,
    ``obs["label"]`` in three equal classes ``a``, ``b``, ``c``."""
    return _counts


def _dense(adata: ad.AnnData) -> np.ndarray:
    return adata.X.toarray() if sparse.issparse(adata.X) else np.array(adata.X)


class AnnDataSnapshot:
    """What a call must leave unchanged in an AnnData: X, obs, var, the uns and obsm keys."""

    def __init__(self, adata: ad.AnnData):
        self.x = _dense(adata)
        self.obs = adata.obs.copy()
        self.var = adata.var.copy()
        self.uns = set(adata.uns.keys())
        self.obsm = set(adata.obsm.keys())

    def assert_unchanged(self, adata: ad.AnnData) -> None:
        np.testing.assert_array_equal(_dense(adata), self.x)
        pd.testing.assert_frame_equal(adata.obs, self.obs)
        pd.testing.assert_frame_equal(adata.var, self.var)
        assert set(adata.uns.keys()) == self.uns
        assert set(adata.obsm.keys()) == self.obsm


@pytest.fixture(scope="session")
def adata_snapshot():
    """``snap = adata_snapshot(adata)`` ... ``snap.assert_unchanged(adata)``."""
    return AnnDataSnapshot


def _yan_target_data(yan: ad.AnnData, labels: np.ndarray | None = None):
    from scgtl.benchmark._methods import TargetData
    from scgtl.data import align_genes

    if labels is None:
        labels = yan.obs["cell_type"].astype(str).to_numpy()
    return TargetData(
        adata=yan,
        labels=labels,
        labels_key="cell_type",
        layer=None,
        units="normalized",
        alignment=align_genes(yan.var_names, yan.var_names),
    )


@pytest.fixture(scope="session")
def yan_target_data():
    """``yan_target_data(yan, labels=None)``: the benchmark's ``TargetData`` of yan (RPKM, its
    own genes), for tests that build episodes by hand; ``labels`` replaces ``obs["cell_type"]``."""
    return _yan_target_data
