"""Bad corpora are refused at set-up, and a failed set-up is reported as such."""

from __future__ import annotations

import pytest

import scgtl


def test_counts_declared_log1p_are_refused(make_counts, adata_snapshot):
    counts = make_counts()
    counts.X[0, 0] = 231.0
    snapshot = adata_snapshot(counts)
    with pytest.raises(
        ValueError, match=r"units='log1p' but holds values up to 231.*units='counts'"
    ):
        scgtl.GTL.setup_anndata(counts, units="log1p")
    snapshot.assert_unchanged(counts)


def test_real_log1p_values_are_accepted(pbmc_corpus):
    assert pbmc_corpus.X.max() < scgtl._constants.MAX_LOG1P
    scgtl.GTL.setup_anndata(pbmc_corpus, units="log1p")


def test_a_failed_setup_is_named_when_the_model_is_built(make_counts):
    good = make_counts()
    scgtl.GTL.setup_anndata(good, units="counts")
    copied = good.copy()  # carries the registration's identifiers, not the registration
    copied.X = copied.X.toarray() + 0.5
    with pytest.raises(ValueError, match="non-integer"):
        scgtl.GTL.setup_anndata(copied, units="counts")
    with pytest.raises(
        ValueError, match=r"the last GTL.setup_anndata on it failed with\n.*non-integer"
    ):
        scgtl.GTL(copied)
    scgtl.GTL.setup_anndata(copied, units="normalized")
    assert scgtl.GTL(copied, n_hidden=8, n_latent=4).units == "normalized"
