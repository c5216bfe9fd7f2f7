"""The GTL model end to end on real data (scanpy's bundled pbmc68k_reduced)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from anndata import AnnData
from scipy import sparse
from sklearn.metrics import balanced_accuracy_score

import scgtl

PRETRAIN_TYPES = ["CD14+ Monocyte", "CD19+ B", "CD56+ NK", "CD8+ Cytotoxic T"]
FAST_GUIDE = {"n_scouts": 8, "n_steps": 30, "n_clusters": 6}


@pytest.fixture(scope="session")
def pbmc() -> AnnData:
    """pbmc68k_reduced with its log-normalised values (``raw``) as X."""
    return sc.datasets.pbmc68k_reduced().raw.to_adata()


@pytest.fixture(scope="session")
def split(pbmc):
    pre = pbmc.obs["bulk_labels"].isin(PRETRAIN_TYPES).to_numpy()
    return pbmc[pre].copy(), pbmc[~pre].copy()


@pytest.fixture(scope="session")
def model(split) -> scgtl.GTL:
    corpus = split[0].copy()
    scgtl.GTL.setup_anndata(corpus, units="log1p")
    torch.manual_seed(0)
    gtl = scgtl.GTL(corpus, n_hidden=128, n_latent=32)
    gtl.train(max_epochs=20, enable_progress_bar=False, guide_kwargs=FAST_GUIDE)
    return gtl


@pytest.fixture()
def target(split) -> AnnData:
    return split[1].copy()


def _snapshot(adata: AnnData) -> dict:
    x = adata.X.toarray() if sparse.issparse(adata.X) else np.array(adata.X)
    return {
        "obs": adata.obs.copy(),
        "obsm": set(adata.obsm.keys()),
        "uns": set(adata.uns.keys()),
        "X": x,
        "var_names": adata.var_names.copy(),
    }


def _assert_unchanged(adata: AnnData, snap: dict) -> None:
    pd.testing.assert_frame_equal(adata.obs, snap["obs"])
    assert set(adata.obsm.keys()) == snap["obsm"]
    assert set(adata.uns.keys()) == snap["uns"]
    x = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    np.testing.assert_array_equal(x, snap["X"])
    assert adata.var_names.equals(snap["var_names"])


def _query_balanced_accuracy(clf, target) -> float:
    query = ~target.obs_names.isin(clf.fit_record_["support_obs_names"])
    predicted = clf.predict(target[query], inplace=False)
    return balanced_accuracy_score(target.obs["bulk_labels"][query], predicted)


# ---------------------------------------------------------------- pre-training and guide
def test_pretraining_produces_a_guide_per_encoder_parameter(model):
    assert model.is_trained
    encoder_params = dict(model.module.encoder.named_parameters())
    assert set(model.guide) == set(encoder_params)
    for name, g in model.guide.items():
        assert g.shape == encoder_params[name].shape
        assert 0.0 <= float(g.min()) and float(g.max()) <= 1.0
    # Normalised over all weights together (the default): one weight is free, one is frozen.
    values = torch.cat([g.flatten() for g in model.guide.values()])
    assert float(values.min()) == pytest.approx(0.0) and float(values.max()) == pytest.approx(1.0)
    assert model.guide_settings_["normalization"] == "global"
    assert model.guide_settings_["groups"] == "kmeans"
    assert model.history["reconstruction_loss_train"].shape[0] == 20


def test_latent_representation_shape_and_other_genes(model, target):
    latent = model.get_latent_representation(target)
    assert latent.shape == (target.n_obs, 32) and np.isfinite(latent).all()
    reordered = target[:, target.var_names[::-1]].copy()
    np.testing.assert_allclose(model.get_latent_representation(reordered), latent, atol=1e-5)


def test_compute_guide_reruns_with_other_settings(model):
    before = {k: v.clone() for k, v in model.guide.items()}
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    try:
        icy = model.compute_guide(**FAST_GUIDE, temperature="icy", progress=False)
        assert all(float((g == 0).float().mean()) > 0.3 for g in icy.values())
        for k, v in model.module.state_dict().items():
            assert torch.equal(v, state[k]), f"compute_guide changed weight {k}"
    finally:
        model.guide_ = before


def test_labelled_corpus_uses_labels_for_scouts(split):
    corpus = split[0].copy()
    scgtl.GTL.setup_anndata(corpus, units="log1p", labels_key="bulk_labels")
    gtl = scgtl.GTL(corpus, n_hidden=32, n_latent=8)
    assert gtl.module.classifier is not None and gtl.module.classifier.out_features == 4
    gtl.train(max_epochs=2, enable_progress_bar=False, guide_kwargs={**FAST_GUIDE, "k_shot": 3})
    assert gtl.guide_settings_["groups"] == "labels"


# ---------------------------------------------------------------- fine-tuning
def test_fine_tune_beats_chance_and_leaves_everything_unchanged(model, target):
    snap = _snapshot(target)
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    guide = {k: v.clone() for k, v in model.guide.items()}
    with pytest.warns(UserWarning, match="genes"):
        pass_through = None
        warnings_target = target[:, target.var_names[:700]].copy()
        clf_subset = model.fine_tune(warnings_target, labels_key="bulk_labels", k_shot=5)
        pass_through = clf_subset
    assert pass_through is not None
    clf = model.fine_tune(target, labels_key="bulk_labels", k_shot=5, seed=0)
    _assert_unchanged(target, snap)
    for k, v in model.module.state_dict().items():
        assert torch.equal(v, state[k])
    for k, v in model.guide.items():
        assert torch.equal(v, guide[k])
    assert clf.classes_ == sorted(target.obs["bulk_labels"].astype(str).unique())
    assert clf.fit_record_["support_obs_names"].size == 5 * len(clf.classes_)
    chance = 1 / len(clf.classes_)
    assert _query_balanced_accuracy(clf, target) > chance + 0.25


def test_fine_tune_is_deterministic_per_seed(model, target):
    a = model.fine_tune(target, labels_key="bulk_labels", k_shot=3, seed=7)
    b = model.fine_tune(target, labels_key="bulk_labels", k_shot=3, seed=7)
    c = model.fine_tune(target, labels_key="bulk_labels", k_shot=3, seed=8)
    pd.testing.assert_frame_equal(a.predict_proba(target), b.predict_proba(target))
    assert not np.array_equal(
        a.fit_record_["support_obs_names"], c.fit_record_["support_obs_names"]
    )


def test_variants_differ_and_use_the_given_support(model, target):
    support = np.flatnonzero(
        target.obs["bulk_labels"].groupby(target.obs["bulk_labels"], observed=True).cumcount() < 2
    )
    variants = {
        "gtl": model.fine_tune(target, labels_key="bulk_labels", support_indices=support),
        "plain": model.fine_tune(
            target, labels_key="bulk_labels", support_indices=support, use_guide=False
        ),
        "scratch": model.fine_tune(
            target, labels_key="bulk_labels", support_indices=support, from_scratch=True
        ),
    }
    for clf in variants.values():
        np.testing.assert_array_equal(
            clf.fit_record_["support_obs_names"], target.obs_names[support]
        )
    probas = {name: clf.predict_proba(target).to_numpy() for name, clf in variants.items()}
    assert not np.allclose(probas["gtl"], probas["plain"])
    assert not np.allclose(probas["plain"], probas["scratch"])
    assert (
        variants["gtl"].fit_record_["use_guide"] and not variants["plain"].fit_record_["use_guide"]
    )


def test_support_indices_need_labels_only_on_the_support(model, target):
    partly = target.copy()
    labels = partly.obs["bulk_labels"].astype(object)
    support = np.flatnonzero(labels.groupby(labels).cumcount().to_numpy() < 2)
    labels.iloc[np.setdiff1d(np.arange(partly.n_obs), support)] = np.nan
    partly.obs["bulk_labels"] = labels
    clf = model.fine_tune(partly, labels_key="bulk_labels", support_indices=support)
    assert clf.classes_ == sorted(target.obs["bulk_labels"].astype(str).unique())
    with pytest.raises(ValueError, match="missing labels"):
        model.fine_tune(partly, labels_key="bulk_labels", k_shot=1)


def test_zero_guide_keeps_the_pretrained_encoder(model, target):
    saved = model.guide_
    model.guide_ = {k: torch.zeros_like(v) for k, v in saved.items()}
    try:
        clf = model.fine_tune(target, labels_key="bulk_labels", k_shot=2, seed=0)
    finally:
        model.guide_ = saved
    for name, p in model.module.encoder.state_dict().items():
        assert torch.equal(clf.module.encoder.state_dict()[name], p)


# ---------------------------------------------------------------- prediction
def test_predict_writes_exactly_the_documented_keys(model, target):
    clf = model.fine_tune(target, labels_key="bulk_labels", k_shot=3)
    before_obs, before_obsm = set(target.obs), set(target.obsm)
    labels = clf.predict(target)
    assert set(target.obs) - before_obs == {"scgtl_prediction", "scgtl_confidence"}
    assert set(target.obsm) - before_obsm == {"scgtl_proba", "X_scgtl"}
    proba = target.obsm["scgtl_proba"]
    assert list(proba.columns) == clf.classes_
    np.testing.assert_allclose(proba.to_numpy().sum(1), 1.0, rtol=1e-5)
    assert target.obsm["X_scgtl"].shape == (target.n_obs, 32)
    assert (
        target.obs["scgtl_prediction"].astype(str).to_numpy() == labels.astype(str).to_numpy()
    ).all()
    np.testing.assert_allclose(target.obs["scgtl_confidence"], proba.to_numpy().max(1), rtol=1e-6)

    other = target.copy()
    snap = _snapshot(other)
    again = clf.predict(other, key_added="mine", inplace=False)
    _assert_unchanged(other, snap)
    pd.testing.assert_series_equal(again.rename(None), labels.rename(None))
    clf.predict(other, key_added="mine")
    assert {"mine_prediction", "mine_confidence"} <= set(other.obs)
    assert {"mine_proba", "X_mine"} <= set(other.obsm)


def test_predict_defaults_to_the_fine_tuned_study(model, target):
    clf = model.fine_tune(target, labels_key="bulk_labels", k_shot=3)
    clf.predict()
    assert "scgtl_prediction" in target.obs


def test_predict_in_small_batches_matches_one_batch(model, target):
    clf = model.fine_tune(target, labels_key="bulk_labels", k_shot=3)
    a = clf.predict_proba(target, batch_size=7)
    b = clf.predict_proba(target, batch_size=10_000)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-5)


# ---------------------------------------------------------------- save / load
def test_save_load_round_trip(model, target, tmp_path):
    clf = model.fine_tune(target, labels_key="bulk_labels", k_shot=3)
    model.save(tmp_path / "gtl")
    clf.save(tmp_path / "clf")
    assert (tmp_path / "gtl" / "model.pt").is_file()
    gtl2 = scgtl.GTL.load(tmp_path / "gtl")
    clf2 = scgtl.GTLClassifier.load(tmp_path / "clf")
    np.testing.assert_array_equal(
        gtl2.get_latent_representation(target), model.get_latent_representation(target)
    )
    for k in model.guide:
        assert torch.equal(gtl2.guide[k], model.guide[k])
    assert gtl2.units == "log1p" and gtl2.guide_settings_ == model.guide_settings_
    pd.testing.assert_frame_equal(clf2.predict_proba(target), clf.predict_proba(target))
    assert clf2.classes_ == clf.classes_ and clf2.labels_key == "bulk_labels"
    assert clf2.scgtl_version_ == scgtl.__version__
    # a loaded pre-trained model can be fine-tuned again
    clf3 = gtl2.fine_tune(target, labels_key="bulk_labels", k_shot=3)
    pd.testing.assert_frame_equal(clf3.predict_proba(target), clf.predict_proba(target))


def test_save_refuses_to_overwrite_and_failed_save_leaves_nothing(model, tmp_path, monkeypatch):
    model.save(tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "m")
    model.save(tmp_path / "m", overwrite=True)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        model.save(tmp_path / "new")
    with pytest.raises(OSError, match="disk full"):
        model.save(tmp_path / "m", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    monkeypatch.undo()
    assert scgtl.GTL.load(tmp_path / "m").guide is not None


def test_load_refuses_what_it_cannot_trust(model, target, tmp_path):
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
    model.save(tmp_path / "gtl")
    with pytest.raises(ValueError, match="holds a GTL"):
        scgtl.GTLClassifier.load(tmp_path / "gtl")


# ---------------------------------------------------------------- bad input
def _counts(n_obs=30, n_vars=20, seed=0) -> AnnData:
    rng = np.random.default_rng(seed)
    adata = AnnData(sparse.csr_matrix(rng.poisson(2.0, (n_obs, n_vars)).astype(np.float32)))
    adata.var_names = [f"g{i}" for i in range(n_vars)]
    adata.obs["label"] = pd.Categorical(np.repeat(["a", "b", "c"], n_obs // 3))
    return adata


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
def test_setup_anndata_rejects_bad_input(mutate, kwargs, error, match):
    adata = _counts()
    mutate(adata)
    snap = _snapshot(adata) if not np.isnan(adata.X.data).any() else None
    with pytest.raises(error, match=match):
        scgtl.GTL.setup_anndata(adata, **kwargs)
    if snap is not None:
        _assert_unchanged(adata, snap)


def test_setup_anndata_rejects_empty_and_duplicate_genes():
    with pytest.raises(ValueError, match="empty"):
        scgtl.GTL.setup_anndata(_counts()[:0].copy())
    dup = _counts()
    dup.var_names = ["g0"] * 2 + [f"g{i}" for i in range(2, 20)]
    with pytest.raises(ValueError, match="duplicate gene names"):
        scgtl.GTL.setup_anndata(dup)


def test_scaled_values_declared_log1p_get_a_hint():
    scaled = sc.datasets.pbmc68k_reduced()
    with pytest.raises(ValueError, match="raw.to_adata"):
        scgtl.GTL.setup_anndata(scaled, units="log1p")


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
        (lambda t: t, {"labels_key": "bulk_labels"}, ValueError, "Pass k_shot"),
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
def test_fine_tune_rejects_bad_input(model, target, make_target, kwargs, error, match):
    bad = make_target(target)
    snap = _snapshot(bad) if bad.n_obs else None
    with pytest.raises(error, match=match):
        model.fine_tune(bad, **kwargs)
    if snap is not None:
        _assert_unchanged(bad, snap)


def test_fine_tune_rejects_duplicate_query_genes(model, target):
    dup = target.copy()
    names = dup.var_names.to_list()
    names[1] = names[0]
    dup.var_names = names
    with pytest.raises(ValueError, match="duplicate gene names"):
        model.fine_tune(dup, labels_key="bulk_labels", k_shot=1)


def test_predict_rejects_negative_query(model, target):
    clf = model.fine_tune(target, labels_key="bulk_labels", k_shot=1)
    bad = target.copy()
    bad.X = bad.X.copy()
    bad.X[0, 0] = -3.0
    with pytest.raises(ValueError, match="negative"):
        clf.predict(bad)
    assert "scgtl_prediction" not in bad.obs


def test_counts_query_is_library_size_normalised(split):
    """A corpus in counts and a query in counts: scaling a cell's depth changes nothing."""
    corpus = _counts(n_obs=60, n_vars=30)
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
    clf = gtl.fine_tune(corpus, labels_key="label", k_shot=2, use_guide=False)
    assert clf.classes_ == ["a", "b", "c"]


def test_backed_corpus_trains(tmp_path):
    corpus = _counts(n_obs=60, n_vars=30)
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
def test_library_size_key_normalises_the_corpus_like_a_query():
    """A corpus restricted to some genes, with totals over all genes, embeds like the full query."""
    full = _counts(n_obs=60, n_vars=30)
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
def test_setup_anndata_rejects_bad_library_sizes(value, units, match):
    adata = _counts()
    adata.obs["total"] = 50.0
    adata.obs.iloc[0, adata.obs.columns.get_loc("total")] = value
    with pytest.raises(ValueError, match=match):
        scgtl.GTL.setup_anndata(adata, units=units, library_size_key="total")
    with pytest.raises(KeyError, match="library_size_key='nope'"):
        scgtl.GTL.setup_anndata(_counts(), library_size_key="nope")


def test_head_init_choices(model, target):
    protos = model.fine_tune(target, labels_key="bulk_labels", k_shot=3, seed=0)
    rand = model.fine_tune(target, labels_key="bulk_labels", k_shot=3, seed=0, head_init="random")
    assert protos.fit_record_["head_init"] == "prototypes"
    assert rand.fit_record_["head_init"] == "random"
    # Starting from the nearest-class-mean classifier, the first loss is already low.
    assert protos.fit_record_["losses"][0] < rand.fit_record_["losses"][0]
    assert _query_balanced_accuracy(protos, target) > 2.0 / target.obs["bulk_labels"].nunique()
    with pytest.raises(ValueError, match="head_init='mean'"):
        model.fine_tune(target, labels_key="bulk_labels", k_shot=1, head_init="mean")


# ---------------------------------------------------------------- target adaptation
def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_adapt_returns_a_new_model_and_leaves_the_source_unchanged(model, target):
    snap = _snapshot(target)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    unlabelled = target.copy()
    del unlabelled.obs["bulk_labels"]
    adapted = model.adapt(unlabelled, n_steps=60, batch_size=64)
    _assert_unchanged(target, snap)
    assert all(torch.equal(v, before[k]) for k, v in model.module.state_dict().items())
    assert adapted is not model and adapted.module is not model.module
    assert not _states_equal(adapted.module.encoder, model.module.encoder)
    assert all(torch.equal(adapted.guide[k], g) for k, g in model.guide.items())
    assert not hasattr(model, "adaptation_")
    record = adapted.adaptation_
    assert record["n_obs"] == target.n_obs and record["n_steps"] == 60
    assert record["replay"] == 0.5 and record["losses"].shape == (60,)
    losses = record["losses"]
    assert losses[-15:].mean() < losses[:15].mean()
    clf = adapted.fine_tune(target, labels_key="bulk_labels", k_shot=5, seed=0)
    assert _query_balanced_accuracy(clf, target) > 1 / len(clf.classes_) + 0.25


def test_adapt_is_deterministic_per_seed_and_replay_is_optional(model, target):
    a = model.adapt(target, n_steps=5, seed=3)
    b = model.adapt(target, n_steps=5, seed=3)
    c = model.adapt(target, n_steps=5, seed=4)
    assert _states_equal(a.module, b.module)
    assert not _states_equal(a.module, c.module)
    np.testing.assert_array_equal(a.adaptation_["losses"], b.adaptation_["losses"])
    # Without replay the corpus is not needed.
    without_corpus = model.adapt(target, n_steps=5, replay=0.0)
    assert without_corpus.adaptation_["replay"] == 0.0


def test_adapt_without_corpus_needs_replay_zero(model, target, tmp_path):
    model.save(tmp_path / "m")
    alone = scgtl.GTL.load(tmp_path / "m")
    with pytest.raises(ValueError, match="replay > 0 needs the corpus"):
        alone.adapt(target, n_steps=2)
    adapted = alone.adapt(target, n_steps=2, replay=0.0)
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
def test_adapt_rejects_bad_settings(model, target, kwargs, error, match):
    with pytest.raises(error, match=match):
        model.adapt(target, **kwargs)


def test_adapt_rejects_bad_data(model, target):
    with pytest.raises(ValueError, match="empty"):
        model.adapt(target[:0].copy())
    with pytest.raises(TypeError, match="Expected an AnnData"):
        model.adapt(target.X)
    negative = target.copy()
    negative.X = -np.ones(negative.shape, dtype=np.float32)
    with pytest.raises(ValueError, match="negative"):
        model.adapt(negative, n_steps=1)
