"""The GTL model end to end on real data (scanpy's bundled pbmc68k_reduced).

Most tests read the run's one pre-trained model, ``gtl_model`` (tests/conftest.py: pre-trained on
the six ``pbmc_corpus`` cell types), and fine-tune it on ``pbmc_target``, the four held-out types.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from anndata import AnnData
from sklearn.metrics import balanced_accuracy_score

import scgtl


def _query_balanced_accuracy(clf, pbmc_target) -> float:
    query = ~pbmc_target.obs_names.isin(clf.fit_record_["support_obs_names"])
    predicted = clf.predict(pbmc_target[query], inplace=False)
    return balanced_accuracy_score(pbmc_target.obs["bulk_labels"][query], predicted)


# ---------------------------------------------------------------- pre-training and guide
def test_pretraining_produces_a_guide_per_encoder_parameter(gtl_model):
    assert gtl_model.is_trained
    encoder_params = dict(gtl_model.module.encoder.named_parameters())
    assert set(gtl_model.guide) == set(encoder_params)
    for name, g in gtl_model.guide.items():
        assert g.shape == encoder_params[name].shape
        assert 0.0 <= float(g.min()) and float(g.max()) <= 1.0
    # Normalised over all weights together (the default): one weight is free, one is frozen.
    values = torch.cat([g.flatten() for g in gtl_model.guide.values()])
    assert float(values.min()) == pytest.approx(0.0) and float(values.max()) == pytest.approx(1.0)
    assert gtl_model.guide_settings_["normalization"] == "global"
    assert gtl_model.guide_settings_["groups"] == "kmeans"
    assert gtl_model.history["reconstruction_loss_train"].shape[0] == 20


def test_latent_representation_shape_and_other_genes(gtl_model, pbmc_target):
    latent = gtl_model.get_latent_representation(pbmc_target)
    assert latent.shape == (pbmc_target.n_obs, 32) and np.isfinite(latent).all()
    reordered = pbmc_target[:, pbmc_target.var_names[::-1]].copy()
    np.testing.assert_allclose(gtl_model.get_latent_representation(reordered), latent, atol=1e-5)


def test_compute_guide_reruns_with_other_settings(gtl_model, fast_guide):
    # compute_guide replaces the shared model's guide and guide settings: both are restored.
    before = {k: v.clone() for k, v in gtl_model.guide.items()}
    before_settings = dict(gtl_model.guide_settings_)
    state = {k: v.clone() for k, v in gtl_model.module.state_dict().items()}
    try:
        icy = gtl_model.compute_guide(**fast_guide, temperature="icy", progress=False)
        assert all(float((g == 0).float().mean()) > 0.3 for g in icy.values())
        for k, v in gtl_model.module.state_dict().items():
            assert torch.equal(v, state[k]), f"compute_guide changed weight {k}"
    finally:
        gtl_model.guide_ = before
        gtl_model.guide_settings_ = before_settings


def test_labelled_corpus_uses_labels_for_scouts(pbmc_target, fast_guide):
    corpus = pbmc_target  # a fresh copy with four cell types
    scgtl.GTL.setup_anndata(corpus, units="log1p", labels_key="bulk_labels")
    gtl = scgtl.GTL(corpus, n_hidden=32, n_latent=8)
    assert gtl.module.classifier is not None and gtl.module.classifier.out_features == 4
    gtl.train(max_epochs=2, enable_progress_bar=False, guide_kwargs={**fast_guide, "k_shot": 3})
    assert gtl.guide_settings_["groups"] == "labels"


# ---------------------------------------------------------------- fine-tuning
def test_fine_tune_beats_chance_and_leaves_everything_unchanged(
    gtl_model, pbmc_target, adata_snapshot
):
    snap = adata_snapshot(pbmc_target)
    state = {k: v.clone() for k, v in gtl_model.module.state_dict().items()}
    guide = {k: v.clone() for k, v in gtl_model.guide.items()}
    with pytest.warns(UserWarning, match="genes"):
        pass_through = None
        warnings_target = pbmc_target[:, pbmc_target.var_names[:700]].copy()
        clf_subset = gtl_model.fine_tune(warnings_target, labels_key="bulk_labels", k_shot=5)
        pass_through = clf_subset
    assert pass_through is not None
    clf = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=5, seed=0)
    snap.assert_unchanged(pbmc_target)
    for k, v in gtl_model.module.state_dict().items():
        assert torch.equal(v, state[k])
    for k, v in gtl_model.guide.items():
        assert torch.equal(v, guide[k])
    assert clf.classes_ == sorted(pbmc_target.obs["bulk_labels"].astype(str).unique())
    assert clf.fit_record_["support_obs_names"].size == 5 * len(clf.classes_)
    chance = 1 / len(clf.classes_)
    assert _query_balanced_accuracy(clf, pbmc_target) > chance + 0.25


def test_fine_tune_is_deterministic_per_seed(gtl_model, pbmc_target):
    a = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3, seed=7)
    b = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3, seed=7)
    c = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3, seed=8)
    pd.testing.assert_frame_equal(a.predict_proba(pbmc_target), b.predict_proba(pbmc_target))
    assert not np.array_equal(
        a.fit_record_["support_obs_names"], c.fit_record_["support_obs_names"]
    )


def test_variants_differ_and_use_the_given_support(gtl_model, pbmc_target):
    support = np.flatnonzero(
        pbmc_target.obs["bulk_labels"]
        .groupby(pbmc_target.obs["bulk_labels"], observed=True)
        .cumcount()
        < 2
    )
    variants = {
        "gtl": gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", support_indices=support),
        "plain": gtl_model.fine_tune(
            pbmc_target,
            labels_key="bulk_labels",
            support_indices=support,
            plan_kwargs={"use_guide": False},
        ),
        "scratch": gtl_model.fine_tune(
            pbmc_target,
            labels_key="bulk_labels",
            support_indices=support,
            plan_kwargs={"from_scratch": True},
        ),
    }
    for clf in variants.values():
        np.testing.assert_array_equal(
            clf.fit_record_["support_obs_names"], pbmc_target.obs_names[support]
        )
    probas = {name: clf.predict_proba(pbmc_target).to_numpy() for name, clf in variants.items()}
    assert not np.allclose(probas["gtl"], probas["plain"])
    assert not np.allclose(probas["plain"], probas["scratch"])
    assert (
        variants["gtl"].fit_record_["use_guide"] and not variants["plain"].fit_record_["use_guide"]
    )


def test_support_indices_need_labels_only_on_the_support(gtl_model, pbmc_target):
    partly = pbmc_target.copy()
    labels = partly.obs["bulk_labels"].astype(object)
    support = np.flatnonzero(labels.groupby(labels).cumcount().to_numpy() < 2)
    labels.iloc[np.setdiff1d(np.arange(partly.n_obs), support)] = np.nan
    partly.obs["bulk_labels"] = labels
    clf = gtl_model.fine_tune(partly, labels_key="bulk_labels", support_indices=support)
    assert clf.classes_ == sorted(pbmc_target.obs["bulk_labels"].astype(str).unique())
    with pytest.raises(ValueError, match="missing labels"):
        gtl_model.fine_tune(partly, labels_key="bulk_labels", k_shot=1)


def test_zero_guide_keeps_the_pretrained_encoder(gtl_model, pbmc_target):
    saved = gtl_model.guide_
    gtl_model.guide_ = {k: torch.zeros_like(v) for k, v in saved.items()}
    kwargs = dict(labels_key="bulk_labels", k_shot=2, seed=0)
    try:
        inductive = gtl_model.fine_tune(pbmc_target, transductive=False, **kwargs)
        plain = gtl_model.fine_tune(pbmc_target, **kwargs)  # reads the study: adapted first
        adapted = gtl_model.adapted_to(pbmc_target)
    finally:
        gtl_model.guide_ = saved
    for name, p in gtl_model.module.encoder.state_dict().items():
        assert torch.equal(inductive.module.encoder.state_dict()[name], p)
    assert plain.fit_record_["adapted"]
    for name, p in adapted.module.encoder.state_dict().items():
        assert torch.equal(plain.module.encoder.state_dict()[name], p)


# ---------------------------------------------------------------- prediction
def test_predict_writes_exactly_the_documented_keys(gtl_model, pbmc_target, adata_snapshot):
    clf = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3)
    before_obs, before_obsm = set(pbmc_target.obs), set(pbmc_target.obsm)
    before_uns = set(pbmc_target.uns)
    labels = clf.predict(pbmc_target)
    assert set(pbmc_target.obs) - before_obs == {
        "scgtl_prediction",
        "scgtl_confidence",
        "scgtl_novelty",
        "scgtl_is_support",
    }
    assert set(pbmc_target.obsm) - before_obsm == {"scgtl_proba", "X_scgtl"}
    # No "<labels_key>_colors" in this study, so no prediction colours (see test_predict.py).
    assert set(pbmc_target.uns) - before_uns == {"scgtl"}
    proba = pbmc_target.obsm["scgtl_proba"]
    assert list(proba.columns) == clf.classes_
    np.testing.assert_allclose(proba.to_numpy().sum(1), 1.0, rtol=1e-5)
    assert pbmc_target.obsm["X_scgtl"].shape == (pbmc_target.n_obs, 32)
    assert (
        pbmc_target.obs["scgtl_prediction"].astype(str).to_numpy() == labels.astype(str).to_numpy()
    ).all()
    np.testing.assert_allclose(
        pbmc_target.obs["scgtl_confidence"], proba.to_numpy().max(1), rtol=1e-6
    )

    other = pbmc_target.copy()
    snap = adata_snapshot(other)
    again = clf.predict(other, key_added="mine", inplace=False)
    snap.assert_unchanged(other)
    pd.testing.assert_series_equal(again.rename(None), labels.rename(None))
    clf.predict(other, key_added="mine")
    assert {"mine_prediction", "mine_confidence", "mine_is_support"} <= set(other.obs)
    assert {"mine_proba", "X_mine"} <= set(other.obsm)
    assert "mine" in other.uns


def test_predict_defaults_to_the_fine_tuned_study(gtl_model, pbmc_target):
    clf = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3)
    clf.predict()
    assert "scgtl_prediction" in pbmc_target.obs


def test_predict_in_small_batches_matches_one_batch(gtl_model, pbmc_target):
    clf = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3)
    a = clf.predict_proba(pbmc_target, batch_size=7)
    b = clf.predict_proba(pbmc_target, batch_size=10_000)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-5)


# ---------------------------------------------------------------- save / load
def test_save_load_round_trip(gtl_model, pbmc_target, tmp_path):
    clf = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3)
    gtl_model.save(tmp_path / "gtl")
    clf.save(tmp_path / "clf")
    assert (tmp_path / "gtl" / "model.pt").is_file()
    # With its corpus, a loaded model adapts to the study as the original did (replaying it).
    gtl2 = scgtl.GTL.load(tmp_path / "gtl", adata=gtl_model.adata)
    clf2 = scgtl.GTLClassifier.load(tmp_path / "clf")
    assert clf2.fit_record_["adaptation"] == clf.fit_record_["adaptation"]
    np.testing.assert_array_equal(
        gtl2.get_latent_representation(pbmc_target),
        gtl_model.get_latent_representation(pbmc_target),
    )
    for k in gtl_model.guide:
        assert torch.equal(gtl2.guide[k], gtl_model.guide[k])
    assert gtl2.units == "log1p" and gtl2.guide_settings_ == gtl_model.guide_settings_
    pd.testing.assert_frame_equal(clf2.predict_proba(pbmc_target), clf.predict_proba(pbmc_target))
    assert clf2.classes_ == clf.classes_ and clf2.labels_key == "bulk_labels"
    assert clf2.scgtl_version_ == scgtl.__version__
    # a loaded pre-trained model can be fine-tuned again
    clf3 = gtl2.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3)
    pd.testing.assert_frame_equal(clf3.predict_proba(pbmc_target), clf.predict_proba(pbmc_target))


def test_save_refuses_to_overwrite_and_failed_save_leaves_nothing(gtl_model, tmp_path, monkeypatch):
    gtl_model.save(tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        gtl_model.save(tmp_path / "m")
    gtl_model.save(tmp_path / "m", overwrite=True)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        gtl_model.save(tmp_path / "new")
    with pytest.raises(OSError, match="disk full"):
        gtl_model.save(tmp_path / "m", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    monkeypatch.undo()
    assert scgtl.GTL.load(tmp_path / "m").guide is not None


def test_load_refuses_what_it_cannot_trust(gtl_model, pbmc_target, tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        scgtl.GTL.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no model.pt"):
        scgtl.GTL.load(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable scgtl model"):
        scgtl.GTL.load(tmp_path / "junk")
    (tmp_path / "foreign").mkdir()
    torch.save({"attr_dict": {"registry_": {}}}, tmp_path / "foreign" / "model.pt")
    with pytest.raises(ValueError, match="not written by scgtl"):
        scgtl.GTL.load(tmp_path / "foreign")
    gtl_model.save(tmp_path / "gtl")
    with pytest.raises(ValueError, match="holds a GTL"):
        scgtl.GTLClassifier.load(tmp_path / "gtl")


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("mutate", "kwargs", "error", "match"),
    [
        (lambda a: a.X.data.__setitem__(0, np.nan), {}, ValueError, "non-finite"),
        (lambda a: a.X.data.__setitem__(0, np.inf), {}, ValueError, "non-finite"),
        (lambda a: a.X.data.__setitem__(0, -1.0), {}, ValueError, "negative"),
        (lambda a: a.X.data.__setitem__(0, 0.5), {}, ValueError, "non-integer"),
        (lambda a: None, {"units": "tpm"}, ValueError, "units='tpm'"),
        (lambda a: None, {"labels_key": "nope"}, KeyError, "labels_key='nope'"),
        (lambda a: None, {"layer": "counts"}, KeyError, "layer='counts'"),
    ],
)
def test_setup_anndata_rejects_bad_input(mutate, kwargs, error, match, make_counts, adata_snapshot):
    adata = make_counts()
    mutate(adata)
    snap = adata_snapshot(adata) if not np.isnan(adata.X.data).any() else None
    with pytest.raises(error, match=match):
        scgtl.GTL.setup_anndata(adata, **kwargs)
    if snap is not None:
        snap.assert_unchanged(adata)


def test_setup_anndata_rejects_empty_and_duplicate_genes(make_counts):
    with pytest.raises(ValueError, match="empty"):
        scgtl.GTL.setup_anndata(make_counts()[:0].copy())
    dup = make_counts()
    dup.var_names = ["g0"] * 2 + [f"g{i}" for i in range(2, 20)]
    with pytest.raises(ValueError, match="duplicate gene names"):
        scgtl.GTL.setup_anndata(dup)


def test_scaled_values_declared_log1p_get_a_hint():
    scaled = sc.datasets.pbmc68k_reduced()
    with pytest.raises(ValueError, match="raw.to_adata"):
        scgtl.GTL.setup_anndata(scaled, units="log1p")


def _all_unlabelled(target):
    target = target.copy()
    target.obs["bulk_labels"] = pd.Categorical([None] * target.n_obs)
    return target


@pytest.mark.parametrize(
    ("make_target", "kwargs", "error", "match"),
    [
        (lambda t: t, {"labels_key": "nope", "k_shot": 1}, KeyError, "labels_key='nope'"),
        (lambda t: t, {"labels_key": "bulk_labels", "k_shot": 0}, ValueError, "k_shot=0"),
        (
            lambda t: t,
            {"labels_key": "bulk_labels", "k_shot": 10},
            ValueError,
            "CD4\\+/CD45RA\\+/CD25- Naive T",
        ),
        (_all_unlabelled, {"labels_key": "bulk_labels"}, ValueError, "no label at all"),
        (
            lambda t: t,
            {"labels_key": "bulk_labels", "k_shot": 1, "units": "raw"},
            ValueError,
            "units='raw'",
        ),
        (
            lambda t: t[t.obs["bulk_labels"] == "Dendritic"].copy(),
            {"labels_key": "bulk_labels", "k_shot": 1},
            ValueError,
            "at least 2",
        ),
        (
            lambda t: AnnData(
                t.X, obs=t.obs, var=pd.DataFrame(index=[f"x{i}" for i in range(t.n_vars)])
            ),
            {"labels_key": "bulk_labels", "k_shot": 1},
            ValueError,
            "shares only 0",
        ),
        (lambda t: t[:0].copy(), {"labels_key": "bulk_labels", "k_shot": 1}, ValueError, "empty"),
    ],
)
def test_fine_tune_rejects_bad_input(
    gtl_model, pbmc_corpus, adata_snapshot, make_target, kwargs, error, match
):
    # The six corpus types as the study: with classes of 8 cells (Naive T) and the Dendritic
    # cells. The checks fail before any training, so the model having seen them does not matter.
    bad = make_target(pbmc_corpus)
    snap = adata_snapshot(bad) if bad.n_obs else None
    with pytest.raises(error, match=match):
        gtl_model.fine_tune(bad, **kwargs)
    if snap is not None:
        snap.assert_unchanged(bad)


def test_fine_tune_rejects_duplicate_query_genes(gtl_model, pbmc_target):
    dup = pbmc_target.copy()
    names = dup.var_names.to_list()
    names[1] = names[0]
    dup.var_names = names
    with pytest.raises(ValueError, match="duplicate gene names"):
        gtl_model.fine_tune(dup, labels_key="bulk_labels", k_shot=1)


def test_predict_rejects_negative_query(gtl_model, pbmc_target):
    clf = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=1)
    bad = pbmc_target.copy()
    bad.X = bad.X.copy()
    bad.X[0, 0] = -3.0
    with pytest.raises(ValueError, match="negative"):
        clf.predict(bad)
    assert "scgtl_prediction" not in bad.obs


def test_counts_query_is_library_size_normalised(make_counts):
    """A corpus in counts and a query in counts: scaling a cell's depth changes nothing."""
    corpus = make_counts(n_obs=60, n_vars=30)
    scgtl.GTL.setup_anndata(corpus, units="counts")
    gtl = scgtl.GTL(corpus, n_hidden=16, n_latent=4)
    gtl.train(max_epochs=1, enable_progress_bar=False, compute_guide=False)
    deeper = corpus.copy()
    deeper.X = deeper.X * 3
    np.testing.assert_allclose(
        gtl.get_latent_representation(corpus), gtl.get_latent_representation(deeper), atol=1e-5
    )
    with pytest.raises(ValueError, match="no guide yet"):
        gtl.fine_tune(corpus, labels_key="label", k_shot=2)
    clf = gtl.fine_tune(corpus, labels_key="label", k_shot=2, plan_kwargs={"use_guide": False})
    assert clf.classes_ == ["a", "b", "c"]


def test_backed_corpus_trains(tmp_path, make_counts):
    corpus = make_counts(n_obs=60, n_vars=30)
    corpus.write_h5ad(tmp_path / "corpus.h5ad")
    import anndata

    backed = anndata.read_h5ad(tmp_path / "corpus.h5ad", backed="r")
    scgtl.GTL.setup_anndata(backed, units="counts")
    gtl = scgtl.GTL(backed, n_hidden=16, n_latent=4)
    gtl.train(
        max_epochs=1,
        enable_progress_bar=False,
        guide_kwargs={"n_scouts": 2, "n_steps": 5, "n_clusters": 3, "k_shot": 2},
    )
    assert gtl.get_latent_representation().shape == (60, 4)


# ---------------------------------------------------------------- library size and head init
def test_library_size_key_normalises_the_corpus_like_a_query(make_counts):
    """A corpus restricted to some genes, with totals over all genes, embeds like the full query."""
    full = make_counts(n_obs=60, n_vars=30)
    corpus = full[:, :12].copy()
    corpus.obs["total"] = np.asarray(full.X.sum(1)).ravel()
    scgtl.GTL.setup_anndata(corpus, units="counts", library_size_key="total")
    gtl = scgtl.GTL(corpus, n_hidden=16, n_latent=4)
    assert gtl.library_size_key == "total"
    gtl.train(max_epochs=2, enable_progress_bar=False, compute_guide=False)
    with pytest.warns(UserWarning, match="extra query genes are dropped"):
        as_query = gtl.get_latent_representation(full[:, ::-1].copy())
    np.testing.assert_allclose(gtl.get_latent_representation(), as_query, atol=1e-5)
    # Without the totals the same rows are normalised over 12 genes only: a different input.
    plain = corpus.copy()
    del plain.obs["total"]
    assert not np.allclose(gtl.get_latent_representation(plain), as_query, atol=1e-3)


@pytest.mark.parametrize(
    ("value", "units", "match"),
    [
        (-1.0, "counts", "positive"),
        (np.nan, "counts", "positive"),
        (10.0, "log1p", "units='log1p'"),
    ],
)
def test_setup_anndata_rejects_bad_library_sizes(value, units, match, make_counts):
    adata = make_counts()
    adata.obs["total"] = 50.0
    adata.obs.iloc[0, adata.obs.columns.get_loc("total")] = value
    with pytest.raises(ValueError, match=match):
        scgtl.GTL.setup_anndata(adata, units=units, library_size_key="total")
    with pytest.raises(KeyError, match="library_size_key='nope'"):
        scgtl.GTL.setup_anndata(make_counts(), library_size_key="nope")


def test_head_init_choices(gtl_model, pbmc_target):
    protos = gtl_model.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=3, seed=0)
    rand = gtl_model.fine_tune(
        pbmc_target, labels_key="bulk_labels", k_shot=3, seed=0, plan_kwargs={"head_init": "random"}
    )
    assert protos.fit_record_["head_init"] == "prototypes"
    assert rand.fit_record_["head_init"] == "random"
    # Starting from the nearest-class-mean classifier, the first loss is already low.
    assert protos.fit_record_["losses"][0] < rand.fit_record_["losses"][0]
    assert (
        _query_balanced_accuracy(protos, pbmc_target)
        > 2.0 / pbmc_target.obs["bulk_labels"].nunique()
    )
    with pytest.raises(ValueError, match="head_init='mean'"):
        gtl_model.fine_tune(
            pbmc_target, labels_key="bulk_labels", k_shot=1, plan_kwargs={"head_init": "mean"}
        )


# ---------------------------------------------------------------- target adaptation
def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_adapt_returns_a_new_model_and_leaves_the_source_unchanged(
    gtl_model, pbmc_target, adata_snapshot
):
    snap = adata_snapshot(pbmc_target)
    before = {k: v.clone() for k, v in gtl_model.module.state_dict().items()}
    unlabelled = pbmc_target.copy()
    del unlabelled.obs["bulk_labels"]
    adapted = gtl_model.adapt(unlabelled, n_steps=60, batch_size=64)
    snap.assert_unchanged(pbmc_target)
    assert all(torch.equal(v, before[k]) for k, v in gtl_model.module.state_dict().items())
    assert adapted is not gtl_model and adapted.module is not gtl_model.module
    assert not _states_equal(adapted.module.encoder, gtl_model.module.encoder)
    assert all(torch.equal(adapted.guide[k], g) for k, g in gtl_model.guide.items())
    assert gtl_model.adaptation_ is None
    record = adapted.adaptation_
    assert record["n_obs"] == pbmc_target.n_obs and record["n_steps"] == 60
    assert record["replay"] == 0.5 and record["losses"].shape == (60,)
    losses = record["losses"]
    assert losses[-15:].mean() < losses[:15].mean()
    clf = adapted.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=5, seed=0)
    assert _query_balanced_accuracy(clf, pbmc_target) > 1 / len(clf.classes_) + 0.25


def test_adapt_is_deterministic_per_seed_and_replay_is_optional(gtl_model, pbmc_target):
    a = gtl_model.adapt(pbmc_target, n_steps=5, seed=3)
    b = gtl_model.adapt(pbmc_target, n_steps=5, seed=3)
    c = gtl_model.adapt(pbmc_target, n_steps=5, seed=4)
    assert _states_equal(a.module, b.module)
    assert not _states_equal(a.module, c.module)
    np.testing.assert_array_equal(a.adaptation_["losses"], b.adaptation_["losses"])
    # Without replay the corpus is not needed.
    without_corpus = gtl_model.adapt(pbmc_target, n_steps=5, replay=0.0)
    assert without_corpus.adaptation_["replay"] == 0.0


def test_adapt_without_corpus_needs_replay_zero(gtl_model, pbmc_target, tmp_path):
    gtl_model.save(tmp_path / "m")
    alone = scgtl.GTL.load(tmp_path / "m")
    with pytest.raises(ValueError, match="replay > 0 needs the corpus"):
        alone.adapt(pbmc_target, n_steps=2)
    adapted = alone.adapt(pbmc_target, n_steps=2, replay=0.0)
    adapted.save(tmp_path / "adapted")
    loaded = scgtl.GTL.load(tmp_path / "adapted")
    assert loaded.adaptation_["n_steps"] == 2
    assert _states_equal(loaded.module, adapted.module)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_steps": 0}, ValueError, "n_steps=0"),
        ({"replay": 1.0}, ValueError, "replay=1.0"),
        ({"replay": -0.1}, ValueError, "replay=-0.1"),
        ({"batch_size": 1}, ValueError, "batch_size=1"),
        ({"units": "raw"}, ValueError, "units='raw'"),
        ({"lr": 0.0}, ValueError, "lr=0.0"),
    ],
)
def test_adapt_rejects_bad_settings(gtl_model, pbmc_target, kwargs, error, match):
    with pytest.raises(error, match=match):
        gtl_model.adapt(pbmc_target, **kwargs)


def test_adapt_rejects_bad_data(gtl_model, pbmc_target):
    with pytest.raises(ValueError, match="empty"):
        gtl_model.adapt(pbmc_target[:0].copy())
    with pytest.raises(TypeError, match="Expected an AnnData"):
        gtl_model.adapt(pbmc_target.X)
    negative = pbmc_target.copy()
    negative.X = -np.ones(negative.shape, dtype=np.float32)
    with pytest.raises(ValueError, match="negative"):
        gtl_model.adapt(negative, n_steps=1)


def test_pretraining_is_deterministic_per_torch_seed(make_counts, monkeypatch):
    """Two runs seeded alike train on the same rows: the train/validation split is seeded too."""
    import scvi

    # Unset, as in a user's session (other tests and the benchmark set it).
    monkeypatch.setattr(scvi.settings, "seed", None)
    weights, splits = [], []
    for _ in range(2):
        corpus = make_counts(n_obs=60, n_vars=20)
        scgtl.GTL.setup_anndata(corpus, units="counts", n_top_genes=None)
        torch.manual_seed(0)
        model = scgtl.GTL(corpus, n_hidden=16, n_latent=4)
        model.train(max_epochs=2, train_size=0.8, compute_guide=False, enable_progress_bar=False)
        weights.append({k: v.clone() for k, v in model.module.state_dict().items()})
        splits.append(np.sort(model.train_indices))
    np.testing.assert_array_equal(splits[0], splits[1])
    assert len(splits[0]) == 48
    for name, value in weights[0].items():
        assert torch.equal(weights[1][name], value), name
