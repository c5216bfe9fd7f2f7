"""Pre-training on the corpus's most variable genes, chosen once by ``setup_anndata``."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scgtl


@pytest.fixture()
def wide_counts() -> ad.AnnData:
    """120 cells x 60 genes of counts, mean 3 each; g0..g9 differ between two groups of cells."""
    rng = np.random.default_rng(0)
    x = rng.poisson(3.0, (120, 60)).astype(np.float32)
    x[:60, :10] = rng.poisson(0.1, (60, 10))
    x[60:, :10] = rng.poisson(5.9, (60, 10))
    return ad.AnnData(
        sp.csr_matrix(x),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(120)]),
        var=pd.DataFrame(index=[f"g{i}" for i in range(60)]),
    )


def _train(model, fast_guide):
    model.train(max_epochs=2, enable_progress_bar=False, guide_kwargs={**fast_guide, "n_scouts": 3})
    return model


def test_setup_keeps_the_most_variable_genes(wide_counts, adata_snapshot, fast_guide, tmp_path):
    before = wide_counts.copy()
    scgtl.GTL.setup_anndata(wide_counts, units="counts", n_top_genes=20)
    assert wide_counts.n_vars == 60 and list(wide_counts.var_names) == list(before.var_names)
    model = scgtl.GTL(wide_counts, n_hidden=16, n_latent=8)
    genes = model.gene_names
    assert len(genes) == 20 and set(genes) <= set(wide_counts.var_names)
    assert list(genes) == list(scgtl.data.highly_variable_genes(before, n_top_genes=20))
    # scanpy's seurat_v3 on 60 genes ranks by a loess fit: most of the varying genes come first.
    assert len({f"g{i}" for i in range(10)} & set(genes)) >= 8
    assert model.module.encoder.hidden.fc_layers[0][0].in_features == 20
    assert model.module.decoder.out_features == 20
    _train(model, fast_guide)
    assert model.get_latent_representation().shape == (120, 8)
    query = wide_counts[:, ::-1].copy()  # same cells, genes in another order
    np.testing.assert_allclose(
        model.get_latent_representation(query), model.get_latent_representation(), atol=1e-5
    )
    model.save(tmp_path / "m")
    loaded = scgtl.GTL.load(tmp_path / "m")
    assert list(loaded.gene_names) == list(genes)
    np.testing.assert_array_equal(
        loaded.get_latent_representation(query), model.get_latent_representation(query)
    )


def test_library_size_is_taken_over_all_registered_genes(wide_counts, fast_guide):
    """The corpus is normalised as a query is: totals over every gene, then the chosen ones."""
    scgtl.GTL.setup_anndata(wide_counts, units="counts", n_top_genes=20)
    model = _train(scgtl.GTL(wide_counts, n_hidden=16, n_latent=8), fast_guide)
    genes = list(model.gene_names)
    subset = wide_counts[:, genes].copy()
    subset.obs["total"] = scgtl.data.library_sizes(wide_counts.X)
    model.module.eval()
    import torch

    x = torch.as_tensor(wide_counts.X.toarray())
    via_module = model.module.inference(x)["x_log"]
    via_query = scgtl.data.read_log_expression(
        subset,
        layer=None,
        units="counts",
        alignment=scgtl.data.align_genes(subset.var_names, model.gene_names),
        library_size=subset.obs["total"].to_numpy(),
    )
    torch.testing.assert_close(via_module, via_query)


def test_explicit_genes_and_all_genes(wide_counts):
    chosen = ["g3", "g1", "g50"]
    scgtl.GTL.setup_anndata(wide_counts, units="counts", genes=chosen)
    assert list(scgtl.GTL(wide_counts, n_hidden=8, n_latent=4).gene_names) == chosen
    scgtl.GTL.setup_anndata(wide_counts, units="counts", n_top_genes=None)
    assert scgtl.GTL(wide_counts, n_hidden=8, n_latent=4).gene_names.equals(wide_counts.var_names)
    scgtl.GTL.setup_anndata(wide_counts, units="counts")  # default 2000 > 60 genes: all
    model = scgtl.GTL(wide_counts, n_hidden=8, n_latent=4)
    assert model.gene_names.equals(wide_counts.var_names)
    assert model.module.gene_index is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_top_genes": 0}, ValueError, "n_top_genes=0"),
        ({"n_top_genes": 2.5}, ValueError, "n_top_genes=2.5"),
        ({"genes": ["g1", "nope"]}, KeyError, "not in adata.var_names"),
        ({"genes": ["g1", "g1"]}, ValueError, "duplicates"),
        ({"genes": []}, ValueError, "empty"),
        ({"genes": "g1"}, TypeError, "list of gene names"),
    ],
)
def test_bad_gene_choices_are_refused(wide_counts, kwargs, error, match):
    with pytest.raises(error, match=match):
        scgtl.GTL.setup_anndata(wide_counts, units="counts", **kwargs)


def test_backed_corpus_needs_explicit_genes(wide_counts, tmp_path):
    wide_counts.write_h5ad(tmp_path / "c.h5ad")
    backed = ad.read_h5ad(tmp_path / "c.h5ad", backed="r")
    with pytest.raises(ValueError, match="backed"):
        scgtl.GTL.setup_anndata(backed, units="counts", n_top_genes=20)
    scgtl.GTL.setup_anndata(backed, units="counts", genes=[f"g{i}" for i in range(20)])
    assert len(scgtl.GTL(backed, n_hidden=8, n_latent=4).gene_names) == 20


def test_seurat_v3_failure_says_what_to_do(shared_data_dir):
    """Few raw cells with many almost-never-detected genes: scikit-misc's bare loess error."""
    import scanpy as sc

    corpus = ad.read_h5ad(shared_data_dir / "mudan_pbmcA.h5ad")[:400].copy()
    with pytest.raises(ValueError, match=r"seurat_v3.*filter_genes") as failure:
        scgtl.GTL.setup_anndata(corpus, units="counts", n_top_genes=300)
    assert "400 rows" in str(failure.value)
    sc.pp.filter_genes(corpus, min_cells=10)  # the advice works
    scgtl.GTL.setup_anndata(corpus, units="counts", n_top_genes=300)
    assert len(scgtl.GTL(corpus).gene_names) == 300
