"""A corpus over several .h5ad files (``scgtl.data.read_collection``) trains like one file."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scvi
import torch
from scipy import sparse

import scgtl
from scgtl.data import CorpusCollection, read_collection

FAST = {"n_scouts": 3, "n_steps": 5, "n_clusters": 3, "k_shot": 2}


@pytest.fixture()
def corpus(make_counts) -> ad.AnnData:
    return make_counts(n_obs=90, n_vars=30)


@pytest.fixture()
def files(corpus, tmp_path) -> list:
    """The corpus's rows in three files: one dense, one with its genes in reverse order."""
    parts = [corpus[:40].copy(), corpus[40:70].copy(), corpus[70:].copy()]
    parts[1].X = parts[1].X.toarray()
    parts[2] = parts[2][:, corpus.var_names[::-1]].copy()
    paths = [tmp_path / f"part{i}.h5ad" for i in range(3)]
    for part, path in zip(parts, paths, strict=True):
        part.write_h5ad(path)
    return paths


def _trained(adata, **setup):
    scvi.settings.seed = 0
    scgtl.GTL.setup_anndata(adata, units="counts", **setup)
    model = scgtl.GTL(adata, n_hidden=16, n_latent=4)
    model.train(max_epochs=2, batch_size=32, enable_progress_bar=False, guide_kwargs=FAST)
    return model


def test_collection_reads_the_files_rows_and_genes(files, corpus):
    collection = read_collection(files)
    assert isinstance(collection, CorpusCollection)
    assert isinstance(collection, ad.AnnData)  # to scvi-tools' checks
    assert collection.shape == (90, 30)
    assert list(collection.var_names) == list(corpus.var_names)  # the first file's order
    assert list(collection.obs["file"].unique()) == ["part0", "part1", "part2"]
    rows = np.array([85, 3, 50, 41])  # across files, out of order
    block = collection.X[rows]
    np.testing.assert_array_equal(
        block.toarray() if sparse.issparse(block) else block, corpus.X[rows].toarray()
    )
    assert collection.X[10:20].shape == (10, 30)


def test_collection_trains_like_one_backed_file(files, corpus, tmp_path):
    """Same rows, same seed: the same weights, guide and latent space as one backed file."""
    corpus.write_h5ad(tmp_path / "whole.h5ad")
    single = _trained(ad.read_h5ad(tmp_path / "whole.h5ad", backed="r"))
    several = _trained(read_collection(files))
    for name, weight in single.module.state_dict().items():
        torch.testing.assert_close(several.module.state_dict()[name], weight)
    for name, guide in single.guide.items():
        torch.testing.assert_close(several.guide[name], guide)
    latent = several.get_latent_representation()
    assert latent.shape == (90, 4)
    np.testing.assert_allclose(latent, single.get_latent_representation(), atol=1e-5)
    # The model reads a study in memory as it read the files.
    np.testing.assert_allclose(latent, several.get_latent_representation(corpus), atol=1e-5)


def test_collection_with_labels_and_a_layer(files):
    """scanpy's layout: counts in a layer, log-normalised values in X."""
    for path in files:
        part = ad.read_h5ad(path)
        part.layers["counts"] = part.X.copy()
        part.X = np.log1p(part.X)
        part.write_h5ad(path)
    model = _trained(read_collection(files), layer="counts", labels_key="label")
    assert model.guide_settings_["groups"] == "labels"
    study = ad.read_h5ad(files[0])
    clf = model.fine_tune(study, labels_key="label", k_shot=2, layer="counts")
    assert clf.classes_ == sorted(study.obs["label"].unique())


def test_collection_rejects_bad_files(files, tmp_path, make_counts):
    with pytest.raises(ValueError, match="files is empty"):
        read_collection([])
    with pytest.raises(ValueError, match="list of paths"):
        read_collection(str(files[0]))
    with pytest.raises(FileNotFoundError, match="missing.h5ad"):
        read_collection([files[0], tmp_path / "missing.h5ad"])
    with pytest.raises(ValueError, match="more than once"):
        read_collection([files[0], files[0]])
    other = make_counts(n_obs=9, n_vars=5)
    other.var_names = [f"ENSG{i}" for i in range(5)]
    other.write_h5ad(tmp_path / "other.h5ad")
    with pytest.raises(ValueError, match="share no gene"):
        read_collection([files[0], tmp_path / "other.h5ad"])


def test_collection_needs_its_genes_named_when_there_are_many(files):
    """Like one backed file: choosing variable genes would need the matrix in memory."""
    with pytest.raises(ValueError, match="backed"):
        scgtl.GTL.setup_anndata(read_collection(files), units="counts", n_top_genes=10)
