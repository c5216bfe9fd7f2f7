"""What ``GTLClassifier.predict`` writes; input ``fine_tune`` and ``predict`` refuse (issue 12)."""

import numpy as np
import pandas as pd
import pytest

import scgtl
from scgtl._constants import LOW_GENE_FRACTION, MIN_GENE_FRACTION
from scgtl.data import align_genes

#: One colour per category of the target's ``bulk_labels``, in category order.
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


@pytest.fixture()
def clf(gtl_model, pbmc_target):
    """A classifier fine-tuned on ``pbmc_target`` (3 cells per class)."""
    return gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3)


def _with_nan(adata, row: int):
    """A copy of ``adata`` (sparse X) with one stored value of ``row`` set to NaN."""
    bad = adata.copy()
    bad.X = bad.X.copy()
    bad.X.data[bad.X.indptr[row]] = np.nan
    return bad


# ---------------------------------------------------------------- categorical prediction, colours
def test_prediction_is_categorical_with_the_classes_as_categories(clf, pbmc_target):
    labels = clf.predict(pbmc_target)
    written = pbmc_target.obs["scgtl_prediction"]
    assert isinstance(written.dtype, pd.CategoricalDtype)
    assert list(written.cat.categories) == clf.classes_
    assert list(labels.cat.categories) == clf.classes_
    np.testing.assert_array_equal(written.astype(str), labels.astype(str))
    # The same category set as the truth, so scanpy can colour both alike.
    assert set(written.cat.categories) == set(pbmc_target.obs["bulk_labels"].cat.categories)


def test_prediction_colours_reuse_the_labels_colours(clf, pbmc_target):
    categories = list(pbmc_target.obs["bulk_labels"].cat.categories)
    pbmc_target.uns["bulk_labels_colors"] = np.array(COLORS)
    clf.predict(pbmc_target)
    colour_of = dict(zip(categories, COLORS, strict=True))
    assert list(pbmc_target.uns["scgtl_prediction_colors"]) == [colour_of[c] for c in clf.classes_]

    # Categories in another order than the classes: the prediction lists the classes in the
    # study's order, as the truth's legend does, and each class keeps its own colour.
    shuffled = pbmc_target.copy()
    shuffled.obs["bulk_labels"] = shuffled.obs["bulk_labels"].cat.reorder_categories(
        categories[::-1]
    )
    shuffled.uns["bulk_labels_colors"] = COLORS[::-1]
    labels = clf.predict(shuffled, key_added="again")
    order = list(shuffled.obs["again_prediction"].cat.categories)
    assert order == list(labels.cat.categories) == categories[::-1]
    assert list(shuffled.uns["again_prediction_colors"]) == [colour_of[c] for c in order]
    same = pbmc_target.obs["scgtl_prediction"].astype(str).to_numpy()
    np.testing.assert_array_equal(labels.astype(str).to_numpy(), same)
    with_unknown = clf.predict(shuffled, unknown=0.0, inplace=False)
    assert list(with_unknown.cat.categories) == [*categories[::-1], "unknown"]


def test_prediction_colours_left_out_when_a_class_has_none(clf, pbmc_target):
    # Fewer colours than categories: scanpy would replace them, so none are copied.
    pbmc_target.uns["bulk_labels_colors"] = COLORS[:3]
    pbmc_target.uns["scgtl_prediction_colors"] = ["#000000"] * 4  # stale, from an earlier call
    clf.predict(pbmc_target)
    assert "scgtl_prediction_colors" not in pbmc_target.uns

    # A query whose labels lack one of the classes: no partial list either.
    other = pbmc_target[pbmc_target.obs["bulk_labels"] != clf.classes_[0]].copy()
    other.obs["bulk_labels"] = other.obs["bulk_labels"].cat.remove_unused_categories()
    other.uns["bulk_labels_colors"] = COLORS[:3]
    clf.predict(other)
    assert "scgtl_prediction_colors" not in other.uns

    # No labels column at all (a new study): nothing to copy.
    unlabelled = pbmc_target.copy()
    del unlabelled.obs["bulk_labels"]
    unlabelled.uns["bulk_labels_colors"] = COLORS
    clf.predict(unlabelled)
    assert "scgtl_prediction_colors" not in unlabelled.uns


def test_prediction_colours_of_a_string_labels_column(clf, pbmc_target):
    # scanpy makes a string column categorical with its sorted values: colours follow that order.
    pbmc_target.obs["bulk_labels"] = pbmc_target.obs["bulk_labels"].astype(str)
    ordered = sorted(pbmc_target.obs["bulk_labels"].unique())
    pbmc_target.uns["bulk_labels_colors"] = COLORS
    clf.predict(pbmc_target)
    colour_of = dict(zip(ordered, COLORS, strict=True))
    assert list(pbmc_target.uns["scgtl_prediction_colors"]) == [colour_of[c] for c in clf.classes_]


# ---------------------------------------------------------------- support cells
def test_predict_marks_the_support_cells(clf, pbmc_target, tmp_path):
    support = clf.fit_record_["support_obs_names"]
    assert support.size == 3 * len(clf.classes_)
    clf.predict(pbmc_target)
    is_support = pbmc_target.obs["scgtl_is_support"]
    assert is_support.dtype == bool
    assert set(pbmc_target.obs_names[is_support.to_numpy()]) == set(support)

    clf.save(tmp_path / "clf")
    loaded = scgtl.GTLClassifier.load(tmp_path / "clf")
    other = pbmc_target.copy()
    loaded.predict(other, key_added="loaded")
    np.testing.assert_array_equal(other.obs["loaded_is_support"], is_support)


# ---------------------------------------------------------------- NaN / inf
def test_fine_tune_refuses_nan_outside_the_support(gtl_model, pbmc_target, adata_snapshot):
    codes = pbmc_target.obs["bulk_labels"].cat.codes.to_numpy()
    support = np.array([np.flatnonzero(codes == c)[0] for c in range(codes.max() + 1)])
    outside = int(np.setdiff1d(np.arange(pbmc_target.n_obs), support)[-1])
    bad = _with_nan(pbmc_target, outside)
    snap = adata_snapshot(bad)
    with pytest.raises(ValueError, match="adata.X contains non-finite values"):
        gtl_model.fine_tune(bad, labels_key="bulk_labels", support_indices=support)
    snap.assert_unchanged(bad)

    layered = pbmc_target.copy()
    layered.layers["logged"] = _with_nan(pbmc_target, outside).X
    with pytest.raises(ValueError, match=r"adata.layers\['logged'\] contains non-finite"):
        gtl_model.fine_tune(
            layered, labels_key="bulk_labels", support_indices=support, layer="logged"
        )
    # The same rows without the NaN fine-tune.
    gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", support_indices=support)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_predict_refuses_non_finite_rows(clf, pbmc_target, adata_snapshot, value):
    bad = pbmc_target.copy()
    bad.X = bad.X.copy()
    last = bad.n_obs - 1  # in the last of several batches
    bad.X.data[bad.X.indptr[last]] = value
    snap = adata_snapshot(bad)
    with pytest.raises(ValueError, match="non-finite"):
        clf.predict(bad, batch_size=64)
    with pytest.raises(ValueError, match="non-finite"):
        clf.predict_proba(bad, batch_size=64)
    with pytest.raises(ValueError, match="non-finite"):
        clf.get_latent_representation(bad)
    snap.assert_unchanged(bad)


# ---------------------------------------------------------------- gene overlap
def test_align_genes_refuses_below_the_fraction_floor():
    model_genes = [f"g{i}" for i in range(2000)]
    assert MIN_GENE_FRACTION == 0.05
    with pytest.warns(UserWarning, match="100 of the model's 2000 genes"):
        ok = align_genes(model_genes[:100] + ["other"], model_genes)
    assert ok.n_overlap == 100
    assert ok.fraction == pytest.approx(0.05)
    with pytest.raises(ValueError, match=r"shares only 99 of the model's 2000 genes \(5.0%\)"):
        align_genes(model_genes[:99], model_genes)
    # The threshold can be set per call.
    with pytest.warns(UserWarning):
        align_genes(model_genes[:99], model_genes, min_fraction=0.01)
    with pytest.raises(ValueError, match="min_fraction=1.5"):
        align_genes(model_genes, model_genes, min_fraction=1.5)


def test_align_genes_warns_plainly_below_half_the_genes():
    model_genes = [f"g{i}" for i in range(100)]
    assert LOW_GENE_FRACTION == 0.5
    with pytest.warns(UserWarning, match="Fewer than 50% of the model's genes") as record:
        align_genes(model_genes[:49], model_genes)
    # One warning, still starting as before (the benchmark silences it by that start).
    assert len(record) == 1
    assert str(record[0].message).startswith("Aligned query genes to the model")
    with pytest.warns(UserWarning) as record:
        align_genes(model_genes[:50], model_genes)
    assert "Fewer than" not in str(record[0].message)


def test_predict_refuses_a_query_sharing_too_few_genes(clf, pbmc_target, adata_snapshot):
    n_model = clf.gene_names.size  # 765
    needed = int(np.ceil(MIN_GENE_FRACTION * n_model))  # 39
    few = pbmc_target[:, : needed - 1].copy()
    snap = adata_snapshot(few)
    with pytest.raises(
        ValueError, match=rf"shares only {needed - 1} of the model's {n_model}"
    ) as e:
        clf.predict(few)
    assert f"at least {needed} are needed" in str(e.value)
    assert "same gene identifiers" in str(e.value)
    with pytest.raises(ValueError, match="shares only"):
        clf.predict_proba(few)
    snap.assert_unchanged(few)

    just_enough = pbmc_target[:, :needed].copy()
    with pytest.warns(UserWarning, match="Fewer than 50%"):
        labels = clf.predict(just_enough)
    assert labels.size == pbmc_target.n_obs
    assert just_enough.uns["scgtl"] == {
        "n_genes_model": n_model,
        "n_genes_found": needed,
        "gene_overlap": pytest.approx(needed / n_model),
        "n_genes_wide": n_model,  # the wide path's genes: the fine-tuned study's own
        "n_genes_wide_found": needed,
    }


def test_fine_tune_refuses_a_study_sharing_too_few_genes(gtl_model, pbmc_target):
    few = pbmc_target[:, :38].copy()
    with pytest.raises(ValueError, match="shares only 38 of the model's 765 genes"):
        gtl_model.fine_tune(few, labels_key="bulk_labels", k_shot=1)


def test_full_overlap_is_recorded_and_probabilities_unchanged(clf, pbmc_target):
    proba = clf.predict_proba(pbmc_target)
    clf.predict(pbmc_target)
    assert pbmc_target.uns["scgtl"] == {
        "n_genes_model": 765,
        "n_genes_found": 765,
        "gene_overlap": 1.0,
        "n_genes_wide": 765,
        "n_genes_wide_found": 765,
    }
    np.testing.assert_array_equal(pbmc_target.obsm["scgtl_proba"].to_numpy(), proba.to_numpy())
    np.testing.assert_array_equal(
        pbmc_target.obs["scgtl_confidence"].to_numpy(), proba.to_numpy().max(1).astype(np.float32)
    )
