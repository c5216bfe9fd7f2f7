"""Research variants plug into the model through public hooks and module classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import scgtl
from scgtl.module import GTLModule


def _fine_tune(model, target, *, transductive=None, **plan_kwargs):
    return model.fine_tune(
        target,
        labels_key="bulk_labels",
        k_shot=3,
        seed=0,
        transductive=transductive,
        plan_kwargs=plan_kwargs,
    )


def test_a_plan_object_and_its_dict_fine_tune_alike(gtl_model, pbmc_target):
    kwargs = dict(labels_key="bulk_labels", k_shot=3, seed=0, transductive=False)
    as_dict = gtl_model.fine_tune(pbmc_target, **kwargs, plan_kwargs={"n_steps": 7})
    as_plan = gtl_model.fine_tune(pbmc_target, **kwargs, plan_kwargs=scgtl.FineTunePlan(n_steps=7))
    assert as_dict.fit_record_["n_steps"] == as_plan.fit_record_["n_steps"] == 7
    assert len(as_dict.fit_record_["losses"]) == 7
    pd.testing.assert_frame_equal(as_dict.predict_proba(), as_plan.predict_proba())


@pytest.mark.parametrize(
    ("plan_kwargs", "error", "match"),
    [
        ({"n_step": 5}, TypeError, r"unknown settings \['n_step'\]; valid: \['n_steps'"),
        ("fast", TypeError, "must be None, a dict or a scgtl.FineTunePlan"),
        ({"n_steps": 0}, ValueError, "n_steps=0 must be an integer >= 1"),
        ({"wide": "yes"}, TypeError, "wide='yes' must be True or False"),
        ({"wide": False, "wide_weight": 0.5}, ValueError, "wide_weight=0.5 is given"),
    ],
)
def test_bad_plans_are_refused_by_name(gtl_model, pbmc_target, plan_kwargs, error, match):
    with pytest.raises(error, match=match):
        gtl_model.fine_tune(
            pbmc_target, labels_key="bulk_labels", k_shot=3, plan_kwargs=plan_kwargs
        )


def test_fine_tune_callback_sees_every_recorded_loss(gtl_model, pbmc_target):
    seen = []
    clf = _fine_tune(gtl_model, pbmc_target, n_steps=12, callback=lambda s, loss: seen.append(loss))
    assert len(seen) == 12
    np.testing.assert_allclose(clf.fit_record_["losses"], seen, rtol=1e-6)


def test_fine_tune_with_a_given_guide(gtl_model, pbmc_target):
    zero = {name: torch.zeros_like(g) for name, g in gtl_model.guide.items()}
    clf = _fine_tune(gtl_model, pbmc_target, guide=zero, transductive=False)
    pretrained = gtl_model.module.encoder.state_dict()
    for name, value in clf.module.encoder.state_dict().items():
        assert torch.equal(value, pretrained[name]), name
    same = _fine_tune(gtl_model, pbmc_target, guide=gtl_model.guide)
    default = _fine_tune(gtl_model, pbmc_target)
    pd.testing.assert_frame_equal(same.predict_proba(), default.predict_proba())
    with pytest.raises(ValueError, match="guide= is given, but use_guide=False"):
        _fine_tune(gtl_model, pbmc_target, guide=zero, use_guide=False)


def test_fine_tune_extra_loss_and_input_transform(gtl_model, pbmc_target):
    pretrained = {k: p.detach().clone() for k, p in gtl_model.module.encoder.named_parameters()}

    def drift(model):
        params = model.module.encoder.named_parameters()
        return float(sum((p.detach() - pretrained[k]).abs().sum() for k, p in params))

    def pull(encoder, head):
        params = encoder.named_parameters()
        return 1e3 * sum(((p - pretrained[k]) ** 2).sum() for k, p in params)

    plain = _fine_tune(gtl_model, pbmc_target, use_guide=False)
    pulled = _fine_tune(gtl_model, pbmc_target, use_guide=False, extra_loss=pull)
    assert drift(pulled) < 0.5 * drift(plain)
    shapes = []
    record = lambda x: shapes.append(tuple(x.shape)) or x  # noqa: E731
    _fine_tune(gtl_model, pbmc_target, n_steps=3, input_transform=record, wide=False)
    n_genes = gtl_model.summary_stats.n_vars
    assert shapes == [(12, n_genes)] * 3
    # With the wide path, the hook also runs in the 3 cross-validation fits (8 of 12 rows each).
    shapes.clear()
    _fine_tune(gtl_model, pbmc_target, n_steps=3, input_transform=record)
    assert shapes == [(12, n_genes)] * 3 + [(8, n_genes)] * 9


class WideDecoderModule(GTLModule):
    """A variant objective: the decoder reconstructs through a hidden layer."""

    def __init__(self, n_input: int, *, n_decoder_hidden: int, **kwargs):
        super().__init__(n_input, **kwargs)
        self.decoder = nn.Sequential(
            nn.Linear(self.encoder.n_latent, n_decoder_hidden),
            nn.ReLU(),
            nn.Linear(n_decoder_hidden, n_input),
        )


class WideDecoderGTL(scgtl.GTL):
    _module_cls = WideDecoderModule


def test_a_module_class_plugs_in_a_pretraining_objective(
    pbmc_corpus, pbmc_target, fast_guide, tmp_path
):
    WideDecoderGTL.setup_anndata(pbmc_corpus, units="log1p")
    model = WideDecoderGTL(pbmc_corpus, n_latent=16, n_hidden=32, n_decoder_hidden=24)
    assert isinstance(model.module, WideDecoderModule)
    assert model.module.decoder[0].out_features == 24
    model.train(
        max_epochs=2, enable_progress_bar=False, guide_kwargs={**fast_guide, "progress": False}
    )
    assert set(model.guide) == {k for k, _ in model.module.encoder.named_parameters()}
    clf = _fine_tune(model, pbmc_target)
    assert clf.predict(pbmc_target, inplace=False).shape == (pbmc_target.n_obs,)
    model.save(tmp_path / "wide")
    loaded = WideDecoderGTL.load(tmp_path / "wide", adata=pbmc_corpus)
    assert isinstance(loaded.module, WideDecoderModule)
    np.testing.assert_array_equal(
        loaded.get_latent_representation(pbmc_target), model.get_latent_representation(pbmc_target)
    )


def test_fine_tune_on_a_half_annotated_study(gtl_model, pbmc_target):
    """k_shot=None learns from every labelled row; NaN marks the unlabelled ones."""
    rng = np.random.default_rng(0)
    truth = pbmc_target.obs["bulk_labels"].astype(str).to_numpy()
    labelled = rng.random(pbmc_target.n_obs) < 0.1
    study = pbmc_target.copy()
    study.obs["manual"] = pd.Categorical(np.where(labelled, truth, None))
    clf = gtl_model.fine_tune(study, labels_key="manual", seed=0)
    assert set(clf.fit_record_["support_obs_names"]) == set(study.obs_names[labelled])
    assert clf.fit_record_["k_shot"] is None
    assert sorted(clf.classes_) == sorted(set(truth[labelled]))
    predicted = clf.predict(study)
    assert study.obs["scgtl_is_support"].to_numpy().tolist() == labelled.tolist()
    unlabelled = ~labelled
    accuracy = (predicted.to_numpy()[unlabelled] == truth[unlabelled]).mean()
    assert accuracy > 0.6  # 4 classes
