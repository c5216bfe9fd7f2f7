"""The wide path of fine-tuned classifiers: a logistic regression on the study's own genes,
pooled with the guided network, its weight chosen on the support (issue 13, part 1)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from sklearn.linear_model import LogisticRegression

import scgtl
from scgtl.data import study_fingerprint
from scgtl.train import choose_wide_weight, cross_validated_log_proba, fit_linear_path
from scgtl.train._wide import WIDE_WEIGHT_GRID, WIDE_WEIGHT_ONE_SHOT


def _with_hidden_condition(target: AnnData, seed: int = 0) -> AnnData:
    """``target`` plus a random two-level ``condition`` that only 20 new genes carry.

    The new genes are not among the model's (they do not exist in the corpus), so the network
    cannot see the condition; a logistic regression on the study's own genes can.
    """
    rng = np.random.default_rng(seed)
    condition = rng.permutation(np.arange(target.n_obs) % 2)
    signal = rng.normal(0.3, 0.2, (target.n_obs, 20)).clip(0)
    signal[condition == 1] += 2.0
    dense = target.X.toarray() if hasattr(target.X, "toarray") else np.asarray(target.X)
    obs = target.obs.copy()
    obs["condition"] = pd.Categorical(np.where(condition == 1, "treated", "control"))
    var = pd.DataFrame(index=[*map(str, target.var_names), *(f"NEW{i}" for i in range(20))])
    return AnnData(X=np.hstack([dense, signal]).astype(np.float32), obs=obs, var=var)


def test_fit_linear_path_is_sklearn_logistic_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 30)).astype(np.float32)
    for n_classes in (2, 3):
        y = np.arange(12) % n_classes
        layer = fit_linear_path(torch.as_tensor(x), torch.as_tensor(y), n_classes)
        with torch.no_grad():
            ours = torch.softmax(layer(torch.as_tensor(x)), dim=1).numpy()
        theirs = LogisticRegression(max_iter=1000).fit(x, y).predict_proba(x)
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_fit_linear_path_needs_every_class():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="3 classes"):
        fit_linear_path(x, torch.tensor([0, 1, 0, 1]), 3)


def test_choose_wide_weight_follows_the_better_path():
    y = np.array([0, 1, 0, 1, 0, 1])
    right = np.log(np.where(np.eye(2)[y] == 1, 0.9, 0.1))
    wrong = right[:, ::-1]
    assert choose_wide_weight(wrong, right, y)[0] == 1.0
    assert choose_wide_weight(right, wrong, y)[0] == 0.0
    weight, losses = choose_wide_weight(right, right, y)
    assert losses.shape == (len(WIDE_WEIGHT_GRID),)
    assert weight == 0.0  # ties go to the network
    assert np.allclose(losses, losses[0])


def test_cross_validated_log_proba_holds_out_each_row_once():
    y = np.array([0, 0, 0, 1, 1, 1])
    seen = []

    def fit_predict(train, test):
        assert not set(train) & set(test)
        assert set(y[train]) == {0, 1}  # every class in every training fold
        seen.extend(test)
        return torch.zeros(len(test), 2)

    out = cross_validated_log_proba(fit_predict, y, seed=0)
    assert sorted(seen) == list(range(6))
    np.testing.assert_allclose(out, np.log(0.5))
    with pytest.raises(ValueError, match="2 samples"):
        cross_validated_log_proba(fit_predict, np.array([0, 1, 1]), seed=0)


def test_wide_path_learns_a_signal_the_corpus_never_had(gtl_model, pbmc_target):
    study = _with_hidden_condition(pbmc_target)
    query = study.obs["condition"].to_numpy()
    scores = {}
    for wide in (False, True):
        clf = gtl_model.fine_tune(
            study,
            labels_key="condition",
            k_shot=5,
            seed=0,
            units="log1p",
            plan_kwargs={"wide": wide},
        )
        support = np.asarray(study.obs_names.isin(clf.fit_record_["support_obs_names"]))
        predicted = clf.predict(study, inplace=False).to_numpy()
        scores[wide] = (predicted[~support] == query[~support]).mean()
    assert scores[False] < 0.7  # the network sees only the model's genes
    assert scores[True] > 0.85
    assert scores[True] > scores[False] + 0.25
    assert clf.fit_record_["wide_weight_source"] == "cross-validation"
    assert clf.fit_record_["wide_weight"] >= 0.5
    assert list(clf.wide_gene_names_) == list(study.var_names)


def test_wide_weight_ends(gtl_model, pbmc_target):
    # Inductive: the wide path on the study's genes (the default would read its PCA).
    kwargs = dict(labels_key="bulk_labels", k_shot=3, seed=1, units="log1p", transductive=False)
    network = gtl_model.fine_tune(pbmc_target, **kwargs, plan_kwargs={"wide": False})
    assert not network.module.has_wide_path
    assert network.fit_record_["wide_weight_source"] == "none"
    pooled_at_0 = gtl_model.fine_tune(pbmc_target, **kwargs, plan_kwargs={"wide_weight": 0.0})
    np.testing.assert_allclose(
        pooled_at_0.predict_proba(pbmc_target), network.predict_proba(pbmc_target), atol=1e-5
    )
    wide_only = gtl_model.fine_tune(pbmc_target, **kwargs, plan_kwargs={"wide_weight": 1.0})
    assert wide_only.fit_record_["wide_weight_source"] == "given"
    support = np.flatnonzero(pbmc_target.obs_names.isin(wide_only.fit_record_["support_obs_names"]))
    x = np.asarray(pbmc_target.X.toarray() if hasattr(pbmc_target.X, "toarray") else pbmc_target.X)
    # units="log1p": the study's values are the input as they are.
    labels = pbmc_target.obs["bulk_labels"].astype(str).to_numpy()
    regression = LogisticRegression(max_iter=1000).fit(x[support], labels[support])
    np.testing.assert_allclose(
        wide_only.predict_proba(pbmc_target)[list(regression.classes_)].to_numpy(),
        regression.predict_proba(x),
        atol=1e-4,
    )


def test_one_shot_default_and_determinism(gtl_model, pbmc_target):
    kwargs = dict(labels_key="bulk_labels", k_shot=1, seed=2, units="log1p")
    first = gtl_model.fine_tune(pbmc_target, **kwargs)
    second = gtl_model.fine_tune(pbmc_target, **kwargs)
    assert first.fit_record_["wide_weight"] == WIDE_WEIGHT_ONE_SHOT
    assert first.fit_record_["wide_weight_source"] == "one-shot default"
    np.testing.assert_array_equal(
        first.predict_proba(pbmc_target).to_numpy(), second.predict_proba(pbmc_target).to_numpy()
    )
    cv = gtl_model.fine_tune(pbmc_target, **{**kwargs, "k_shot": 3})
    again = gtl_model.fine_tune(pbmc_target, **{**kwargs, "k_shot": 3})
    assert cv.fit_record_["wide_weight"] == again.fit_record_["wide_weight"]
    assert cv.fit_record_["wide_cv_log_loss"].shape == (len(WIDE_WEIGHT_GRID),)


def test_wide_path_save_load_and_query_genes(gtl_model, pbmc_target, tmp_path):
    study = _with_hidden_condition(pbmc_target)
    clf = gtl_model.fine_tune(study, labels_key="condition", k_shot=3, seed=0, units="log1p")
    clf.save(tmp_path / "clf")
    loaded = scgtl.GTLClassifier.load(tmp_path / "clf")
    np.testing.assert_array_equal(loaded.wide_gene_names_, clf.wide_gene_names_)
    assert loaded.fit_record_["wide_weight"] == clf.fit_record_["wide_weight"]
    np.testing.assert_allclose(
        loaded.predict_proba(study).to_numpy(), clf.predict_proba(study).to_numpy(), atol=1e-6
    )
    # A query without the new genes: they are zero-filled, and uns says how many were found.
    query = study[:, : pbmc_target.n_vars].copy()
    loaded.predict(query)
    assert query.uns["scgtl"]["n_genes_wide"] == study.n_vars
    assert query.uns["scgtl"]["n_genes_wide_found"] == pbmc_target.n_vars


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"plan_kwargs": {"wide_weight": 1.5}}, ValueError, "wide_weight=1.5"),
        ({"plan_kwargs": {"wide_weight": "auto"}}, TypeError, "wide_weight='auto'"),
        ({"plan_kwargs": {"wide_weight": 0.5, "wide": False}}, ValueError, "wide=False"),
        ({"plan_kwargs": {"wide": "no"}}, TypeError, "wide='no'"),
        ({"transductive": 1}, TypeError, "transductive=1"),
        ({"plan_kwargs": {"wide_form": "umap"}}, ValueError, "wide_form='umap'"),
        ({"plan_kwargs": {"wide_form": "genes", "wide": False}}, ValueError, "wide=False"),
        (
            {"plan_kwargs": {"wide_form": "pca"}, "transductive": False},
            ValueError,
            "wide_form='pca' reads the study's other rows",
        ),
    ],
)
def test_bad_wide_settings(gtl_model, pbmc_target, kwargs, error, match):
    with pytest.raises(error, match=match):
        gtl_model.fine_tune(
            pbmc_target, labels_key="bulk_labels", k_shot=1, units="log1p", **kwargs
        )


def test_study_pca_path_is_pca_logistic_regression():
    from sklearn.decomposition import PCA

    from scgtl.train import StudyPCA

    rng = np.random.default_rng(1)
    study = rng.normal(size=(40, 25)).astype(np.float32)
    support = np.arange(9)
    y = np.arange(9) % 3
    layer = StudyPCA(torch.as_tensor(study), n_components=5).fit_linear_path(
        torch.as_tensor(study[support]), torch.as_tensor(y), 3
    )
    with torch.no_grad():
        ours = torch.softmax(layer(torch.as_tensor(study)), dim=1).numpy()
    pca = PCA(n_components=5, random_state=0).fit(study)
    regression = LogisticRegression(max_iter=1000).fit(pca.transform(study[support]), y)
    np.testing.assert_allclose(ours, regression.predict_proba(pca.transform(study)), atol=1e-4)


def test_gene_scaling_path_is_logistic_regression_on_scaled_genes():
    from scgtl.train._wide import GeneScaling, scaled_genes_path

    rng = np.random.default_rng(2)
    study = rng.gamma(1.0, 1.0, size=(60, 12)).astype(np.float32)
    study[:, 3] = 1.5  # a gene with no spread keeps sd = 1, as CellTypist
    support, y = np.arange(12), np.arange(12) % 3
    layer = GeneScaling(torch.as_tensor(study)).fit_linear_path(
        torch.as_tensor(study[support]), torch.as_tensor(y), 3
    )
    sd = study.std(axis=0)
    sd[sd == 0] = 1.0
    scaled = (study - study.mean(axis=0)) / sd
    regression = LogisticRegression(max_iter=1000).fit(scaled[support], y)
    with torch.no_grad():
        ours = torch.softmax(layer(torch.as_tensor(study)), dim=1).numpy()
    np.testing.assert_allclose(ours, regression.predict_proba(scaled), atol=1e-4)
    # Inductive: the support's own mean and spread, as CellTypist trains.
    alone = scaled_genes_path(torch.as_tensor(study[support]), torch.as_tensor(y), 3)
    sd_support = study[support].std(axis=0)
    sd_support[sd_support == 0] = 1.0
    on_support = (study - study[support].mean(axis=0)) / sd_support
    reference = LogisticRegression(max_iter=1000).fit(on_support[support], y)
    with torch.no_grad():
        ours = torch.softmax(alone(torch.as_tensor(study)), dim=1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(on_support), atol=1e-4)


def test_pooled_linear_paths_is_the_geometric_mean_of_their_probabilities():
    from scgtl.train import StudyPCA
    from scgtl.train._wide import GeneScaling, pooled_linear_paths

    rng = np.random.default_rng(3)
    study = torch.as_tensor(rng.normal(size=(50, 20)).astype(np.float32))
    y = torch.as_tensor(np.arange(10) % 2)
    fitters = (StudyPCA(study, n_components=4).fit_linear_path, GeneScaling(study).fit_linear_path)
    pooled = pooled_linear_paths(*fitters)(study[:10], y, 2)
    with torch.no_grad():
        each = [torch.log_softmax(fit(study[:10], y, 2)(study), dim=1) for fit in fitters]
        expected = torch.softmax((each[0] + each[1]) / 2, dim=1)
        np.testing.assert_allclose(
            torch.softmax(pooled(study), dim=1).numpy(), expected.numpy(), atol=1e-5
        )


@pytest.mark.parametrize(
    ("transductive", "form"),
    [(True, None), (False, None), (True, "scaled_genes"), (False, "scaled_genes")],
)
def test_wide_form_is_recorded(gtl_model, pbmc_target, transductive, form):
    clf = gtl_model.fine_tune(
        pbmc_target,
        labels_key="bulk_labels",
        k_shot=3,
        units="log1p",
        transductive=transductive,
        plan_kwargs={"wide_form": form, "n_steps": 20},
    )
    expected = form or ("pca" if transductive else "genes")
    assert clf.fit_record_["wide_form"] == expected
    assert clf.fit_record_["wide_weight_source"] == "cross-validation"
    support = pbmc_target.obs_names.isin(clf.fit_record_["support_obs_names"])
    truth = pbmc_target.obs["bulk_labels"].astype(str).to_numpy()[~support]
    predicted = clf.predict(pbmc_target, inplace=False).astype(str).to_numpy()[~support]
    assert (predicted == truth).mean() > 0.5  # 4 classes: chance is about 0.25


@pytest.mark.parametrize("transductive", [True, False])
def test_auto_wide_form_chooses_by_cross_validation(gtl_model, pbmc_target, transductive):
    from scgtl.train._wide import AUTO_WIDE_FORMS

    kwargs = dict(labels_key="bulk_labels", units="log1p", transductive=transductive)
    plan = {"wide_form": "auto", "n_steps": 20}
    clf = gtl_model.fine_tune(pbmc_target, k_shot=3, plan_kwargs=plan, **kwargs)
    record, candidates = clf.fit_record_, AUTO_WIDE_FORMS[transductive]
    losses = record["wide_form_cv_log_loss"]
    assert losses.shape == (len(candidates),)
    assert record["wide_form"] == candidates[int(np.argmin(losses))]
    # The chosen form's own curve holds the least loss of all.
    assert record["wide_cv_log_loss"].min() == pytest.approx(losses.min())
    # Each form alone gives its own least loss, so the choice is between real fits.
    for form, loss in zip(candidates, losses, strict=True):
        alone = gtl_model.fine_tune(
            pbmc_target, k_shot=3, plan_kwargs={**plan, "wide_form": form}, **kwargs
        )
        assert alone.fit_record_["wide_cv_log_loss"].min() == pytest.approx(loss, rel=1e-5)
    # One sample per class: no cross-validation, the first candidate.
    one_shot = gtl_model.fine_tune(pbmc_target, k_shot=1, plan_kwargs=plan, **kwargs)
    assert one_shot.fit_record_["wide_form"] == candidates[0]
    assert "wide_form_cv_log_loss" not in one_shot.fit_record_


def test_transductive_fine_tune(gtl_model, pbmc_target, adata_snapshot):
    snapshot = adata_snapshot(pbmc_target)
    kwargs = dict(labels_key="bulk_labels", k_shot=3, seed=0, units="log1p")
    clf = gtl_model.fine_tune(pbmc_target, transductive=True, **kwargs)
    snapshot.assert_unchanged(pbmc_target)
    assert clf.fit_record_["transductive"] is True and clf.fit_record_["adapted"] is True
    assert clf.fit_record_["adaptation"] == {"n_steps": 150, "replay": 0.5, "seed": 0}
    # The plain call is the same: the study has rows besides the support.
    plain = gtl_model.fine_tune(pbmc_target, **kwargs)
    pd.testing.assert_frame_equal(plain.predict_proba(pbmc_target), clf.predict_proba(pbmc_target))
    support_size = len(clf.fit_record_["support_obs_names"])
    assert clf.fit_record_["n_unlabelled"] == pbmc_target.n_obs - support_size
    # Fine-tuning again on the same study reuses the adaptation instead of adapting again.
    assert gtl_model.adapted_to(pbmc_target, units="log1p") is gtl_model._last_adapted[1]
    support = pbmc_target.obs_names.isin(clf.fit_record_["support_obs_names"])
    truth = pbmc_target.obs["bulk_labels"].astype(str).to_numpy()[~support]
    predicted = clf.predict(pbmc_target, inplace=False).astype(str).to_numpy()[~support]
    assert (predicted == truth).mean() > 0.6  # 4 classes: chance is about 0.25
    # The adaptation fine_tune ran is adapted_to's: seed 0, once per study. Fine-tuning the
    # adapted model gives the same classifier, and adapting it again gives itself.
    adapted = gtl_model.adapted_to(pbmc_target, units="log1p")
    assert adapted is not gtl_model and adapted.adaptation_["seed"] == 0
    assert adapted.adapted_to(pbmc_target, units="log1p") is adapted
    reused = adapted.fine_tune(pbmc_target, transductive=True, **kwargs)
    pd.testing.assert_frame_equal(clf.predict_proba(pbmc_target), reused.predict_proba(pbmc_target))
    first = "hidden.fc_layers.Layer 0.0.weight"
    pretrained = dict(gtl_model.module.encoder.named_parameters())[first]
    assert not torch.equal(pretrained, dict(adapted.module.encoder.named_parameters())[first])
    inductive = gtl_model.fine_tune(pbmc_target, transductive=False, **kwargs)
    assert inductive.fit_record_["transductive"] is False
    assert inductive.fit_record_["adapted"] is False and inductive.fit_record_["adaptation"] is None
    assert inductive.fit_record_["n_unlabelled"] == 0
    # A study labelled everywhere has nothing else to read: the plain call is inductive.
    labelled = pbmc_target[pbmc_target.obs_names.isin(clf.fit_record_["support_obs_names"])]
    alone = gtl_model.fine_tune(labelled, labels_key="bulk_labels", units="log1p")
    assert alone.fit_record_["transductive"] is False and alone.fit_record_["n_unlabelled"] == 0
    with pytest.raises(ValueError, match="needs wide=True"):
        gtl_model.fine_tune(pbmc_target, transductive=True, **kwargs, plan_kwargs={"wide": False})


def test_study_fingerprint_names_rows_genes_and_units(pbmc_target):
    def print_of(adata, units="log1p", layer=None):
        return study_fingerprint(adata, layer=layer, units=units)

    assert print_of(pbmc_target) == print_of(pbmc_target.copy())
    assert print_of(pbmc_target[:100]) != print_of(pbmc_target)
    assert print_of(pbmc_target[:, :100]) != print_of(pbmc_target)
    assert print_of(pbmc_target, units="counts") != print_of(pbmc_target)
    assert print_of(pbmc_target, layer="raw") != print_of(pbmc_target)


def test_transductive_without_corpus_adapts_on_the_study_alone(
    gtl_model, pbmc_target, tmp_path, monkeypatch
):
    gtl_model.save(tmp_path / "model")
    bare = scgtl.GTL.load(tmp_path / "model")
    assert bare.adata is None
    calls = []
    monkeypatch.setattr(bare, "adapt", lambda adata, **kwargs: calls.append(kwargs) or bare)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the measured default for such a model: no warning
        bare.adapted_to(pbmc_target, units="log1p")
    # Without corpus rows to replay, a short adaptation (longer forgets the corpus).
    assert calls == [{"layer": None, "units": "log1p", "n_steps": 100, "replay": 0.0, "seed": 0}]


def test_adaptation_is_redone_once_the_model_changes(gtl_model, pbmc_target):
    model = copy.deepcopy(gtl_model)
    study = pbmc_target[:200]
    first = model.adapted_to(study, units="log1p")
    assert model.adapted_to(study, units="log1p") is first
    with torch.no_grad():
        next(model.module.parameters()).add_(0.01)  # weights changed in place, e.g. by training
    second = model.adapted_to(study, units="log1p")
    assert second is not first
    assert model.adapted_to(study, units="log1p") is second
    assert model.adapted_to(pbmc_target[:100], units="log1p") is not second  # another study
