"""Gene alignment, units checks, the input transform and k-shot sampling."""

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from scipy import sparse

from scgtl.data import (
    align_genes,
    iter_log_expression,
    iter_log_expression_views,
    log_expression,
    sample_k_shot,
)
from scgtl.data._sampling import check_labels
from scgtl.data._units import check_matrix


def test_alignment_reorders_zero_fills_and_drops():
    query = ["c", "x", "a"]
    with pytest.warns(UserWarning, match="2 of the model's 3 genes"):
        alignment = align_genes(query, ["a", "b", "c"], min_overlap=1)
    block = sparse.csr_matrix(np.array([[1.0, 9.0, 3.0]]))
    np.testing.assert_array_equal(alignment.transform(block), [[3.0, 0.0, 1.0]])
    np.testing.assert_array_equal(alignment.transform(block.toarray()), [[3.0, 0.0, 1.0]])


def test_alignment_identity_and_extra_trailing_genes():
    same = align_genes(["a", "b"], ["a", "b"], min_overlap=1)
    assert same.is_identity
    with pytest.warns(UserWarning, match="1 extra query genes"):
        extra = align_genes(["a", "b", "z"], ["a", "b"], min_overlap=1)
    assert not extra.is_identity
    np.testing.assert_array_equal(extra.transform(np.array([[1.0, 2.0, 3.0]])), [[1.0, 2.0]])


def test_alignment_errors():
    with pytest.raises(ValueError, match="shares only 0"):
        align_genes(["x", "y"], ["a", "b"])
    with pytest.raises(ValueError, match="duplicate gene names"):
        align_genes(["a", "a"], ["a", "b"])


def test_units_checks_name_the_problem():
    check_matrix(sparse.csr_matrix(np.array([[0.0, 2.0]])), "counts")
    with pytest.raises(ValueError, match="non-integer"):
        check_matrix(np.array([[0.5]]), "counts")
    check_matrix(np.array([[0.5]]), "normalized")
    with pytest.raises(ValueError, match="negative"):
        check_matrix(np.array([[-0.5]]), "log1p")
    with pytest.raises(ValueError, match="non-finite"):
        check_matrix(np.array([[np.nan]]), "normalized")
    with pytest.raises(ValueError, match="units='cpm'"):
        check_matrix(np.array([[1.0]]), "cpm")


def test_log_expression_is_library_size_normalised_log1p():
    x = torch.tensor([[1.0, 3.0], [2.0, 6.0]])
    out = log_expression(x, "counts")
    expected = torch.log1p(torch.tensor([[2500.0, 7500.0], [2500.0, 7500.0]]))
    assert torch.allclose(out, expected)
    assert torch.equal(log_expression(x, "log1p"), x)
    with_lib = log_expression(x[:1], "counts", torch.tensor([8.0]))
    assert torch.allclose(with_lib, torch.log1p(torch.tensor([[1250.0, 3750.0]])))


def test_iter_log_expression_uses_library_size_before_alignment():
    adata = AnnData(sparse.csr_matrix(np.array([[1.0, 3.0, 4.0]], dtype=np.float32)))
    adata.var_names = ["a", "b", "extra"]
    with pytest.warns(UserWarning):
        alignment = align_genes(adata.var_names, ["a", "b"], min_overlap=1)
    (batch,) = iter_log_expression(adata, layer=None, units="counts", alignment=alignment)
    assert torch.allclose(batch, torch.log1p(torch.tensor([[1250.0, 3750.0]])))


def test_iter_log_expression_keeps_the_requested_row_order():
    adata = AnnData(np.arange(12, dtype=np.float32).reshape(4, 3))
    alignment = align_genes(adata.var_names, adata.var_names, min_overlap=1)
    rows = torch.cat(
        list(
            iter_log_expression(
                adata,
                layer=None,
                units="log1p",
                alignment=alignment,
                indices=np.array([3, 0, 2]),
                batch_size=2,
            )
        )
    )
    np.testing.assert_array_equal(rows.numpy(), adata.X[[3, 0, 2]])


def test_views_equal_one_read_per_gene_list():
    rng = np.random.default_rng(0)
    adata = AnnData(sparse.csr_matrix(rng.poisson(2.0, size=(7, 5)).astype(np.float32)))
    adata.var_names = list("abcde")
    network = align_genes(adata.var_names, ["c", "a", "z"], min_overlap=1, warn=False)
    wide = align_genes(adata.var_names, list("abcde"), min_overlap=1)
    options = {"layer": None, "units": "counts", "indices": np.array([5, 1, 6, 0]), "batch_size": 3}
    views = list(iter_log_expression_views(adata, alignments=(network, wide), **options))
    assert [tuple(v.shape for v in view) for view in views] == [((3, 3), (3, 5)), ((1, 3), (1, 5))]
    for position, alignment in enumerate((network, wide)):
        alone = torch.cat(list(iter_log_expression(adata, alignment=alignment, **options)))
        together = torch.cat([view[position] for view in views])
        assert torch.equal(together, alone)
    # Library sizes come from all of the query's genes in both views: "z" is zero-filled.
    assert torch.allclose(views[0][0][:, 1], views[0][1][:, 0])


def test_sample_k_shot_is_balanced_seeded_and_strict():
    labels = check_labels(pd.Series(list("aaaabbbbbccc")), labels_key="y")
    support = sample_k_shot(labels, 3, seed=0, labels_key="y")
    assert np.array_equal(support, sample_k_shot(labels, 3, seed=0))
    assert pd.Series(np.asarray(labels)[support]).value_counts().to_dict() == {
        "a": 3,
        "b": 3,
        "c": 3,
    }
    assert not np.array_equal(support, sample_k_shot(labels, 3, seed=1))
    with pytest.raises(ValueError, match=r"\{'c': 3, 'a': 4\}|\{'a': 4, 'c': 3\}"):
        sample_k_shot(labels, 5, seed=0)
    with pytest.raises(ValueError, match="k_shot=0"):
        sample_k_shot(labels, 0, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        check_labels(pd.Series(["a", "a"]), labels_key="y")
    with pytest.raises(ValueError, match="missing labels"):
        check_labels(pd.Series(["a", None]), labels_key="y")


def test_library_sizes_match_row_sums_across_chunks():
    from scgtl.data import library_sizes

    rng = np.random.default_rng(0)
    dense = rng.poisson(1.0, (25, 7)).astype(np.float32)
    expected = dense.sum(1)
    for matrix in (dense, sparse.csr_matrix(dense)):
        totals = library_sizes(matrix, chunk_size=4)
        assert totals.dtype == np.float32 and totals.shape == (25,)
        np.testing.assert_allclose(totals, expected)
