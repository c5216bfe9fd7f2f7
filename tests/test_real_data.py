"""The core on the real data in SCGTL_DATA_DIR: counts corpus -> another study with other genes."""

import warnings

import numpy as np
import pytest
import scanpy as sc
from sklearn.metrics import balanced_accuracy_score

import scgtl


@pytest.fixture(scope="module")
def pbmc_model(shared_data_dir):
    corpus = sc.read_h5ad(shared_data_dir / "mudan_pbmcA.h5ad")
    sc.pp.highly_variable_genes(corpus, n_top_genes=1000, flavor="seurat_v3", subset=True)
    scgtl.GTL.setup_anndata(corpus, units="counts")
    model = scgtl.GTL(corpus, n_hidden=128, n_latent=32)
    model.train(
        max_epochs=10,
        enable_progress_bar=False,
        guide_kwargs={"n_scouts": 10, "n_steps": 50, "progress": False},
    )
    return model


def test_counts_corpus_to_mudan_ref(pbmc_model, shared_data_dir):
    target = sc.read_h5ad(shared_data_dir / "mudan_ref.h5ad")
    with pytest.warns(UserWarning, match="of the model's 1000 genes found"):
        clf = pbmc_model.fine_tune(target, labels_key="cell_type", k_shot=5, seed=0)
    assert len(clf.classes_) == 9
    query = ~target.obs_names.isin(clf.fit_record_["support_obs_names"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        predicted = clf.predict(target[query], inplace=False)
    score = balanced_accuracy_score(target.obs["cell_type"][query], predicted)
    assert score > 0.4  # 9 classes: chance is 0.11


def test_rpkm_target_declared_normalized(pbmc_model, yan):
    with pytest.raises(ValueError, match="non-integer"):
        pbmc_model.fine_tune(yan, labels_key="cell_type", k_shot=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clf = pbmc_model.fine_tune(yan, labels_key="cell_type", k_shot=3, units="normalized")
        proba = clf.predict_proba(yan)
    assert proba.shape == (90, 6)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
