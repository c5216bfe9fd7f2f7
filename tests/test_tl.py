"""``scgtl.tl.gene_plasticity``: the first layer's guide mapped back to the genes (issue 16).

``gtl_model`` (pre-trained on ``pbmc_corpus``, with its guide) comes from tests/conftest.py.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import scgtl
from scgtl.tl import PLASTICITY_SUMMARIES, gene_plasticity

FIRST_LAYER = "hidden.fc_layers.Layer 0.0.weight"
VAR_COLUMNS = [f"scgtl_plasticity{s}" for s in ("", "_mean", "_median", "_max", "_rank")]


def test_one_row_per_model_gene_in_the_model_order(gtl_model):
    frame = gene_plasticity(gtl_model)
    pd.testing.assert_index_equal(frame.index, gtl_model.gene_names)
    assert list(frame.columns) == ["plasticity", *PLASTICITY_SUMMARIES, "rank"]
    # Default guide settings: min-max normalised over the encoder, so every summary is in [0, 1].
    assert gtl_model.guide_settings_["temperature"] == "room"
    summaries = frame[list(PLASTICITY_SUMMARIES)].to_numpy()
    assert np.isfinite(summaries).all()
    assert (summaries >= 0).all() and (summaries <= 1).all()
    assert (frame["max"] >= frame["mean"]).all() and (frame["max"] >= frame["median"]).all()
    # Genes differ: the scouts did not move every gene's weights alike.
    assert frame["mean"].std() > 0


def test_values_are_the_first_layer_guide_summarised_per_gene_column(gtl_model):
    frame = gene_plasticity(gtl_model)
    weight_guide = gtl_model.guide[FIRST_LAYER].double().numpy()
    assert weight_guide.shape == (gtl_model.module.encoder.to_latent.in_features, len(frame))
    np.testing.assert_allclose(frame["mean"], weight_guide.mean(axis=0))
    np.testing.assert_allclose(frame["median"], np.median(weight_guide, axis=0))
    np.testing.assert_allclose(frame["max"], weight_guide.max(axis=0))
    np.testing.assert_array_equal(frame["plasticity"], frame["mean"])


@pytest.mark.parametrize("statistic", PLASTICITY_SUMMARIES)
def test_statistic_chooses_the_plasticity_and_the_rank(gtl_model, statistic):
    frame = gene_plasticity(gtl_model, statistic=statistic)
    np.testing.assert_array_equal(frame["plasticity"], frame[statistic])
    assert frame["rank"].min() == 1
    assert frame["rank"].max() <= len(frame)
    assert frame.loc[frame["rank"] == 1, statistic].iloc[0] == frame[statistic].max()
    by_rank = frame.sort_values("rank")[statistic].to_numpy()
    assert (np.diff(by_rank) <= 0).all()


def test_writes_the_documented_var_columns_with_nan_for_other_genes(gtl_model, adata_snapshot):
    genes = list(gtl_model.gene_names[:6]) + ["NOT_IN_MODEL_1", "NOT_IN_MODEL_2"]
    adata = ad.AnnData(
        np.ones((3, len(genes)), dtype=np.float32),
        var=pd.DataFrame({"kept": np.arange(len(genes))}, index=genes),
    )
    adata.obs["label"] = ["a", "b", "a"]
    snapshot = adata_snapshot(adata)
    frame = gene_plasticity(gtl_model, adata=adata)

    assert list(adata.var.columns) == ["kept", *VAR_COLUMNS]
    shared = genes[:6]
    np.testing.assert_allclose(adata.var.loc[shared, "scgtl_plasticity"], frame.loc[shared, "mean"])
    np.testing.assert_allclose(
        adata.var.loc[shared, "scgtl_plasticity_max"], frame.loc[shared, "max"]
    )
    np.testing.assert_array_equal(
        adata.var.loc[shared, "scgtl_plasticity_rank"], frame.loc[shared, "rank"]
    )
    assert adata.var.loc[genes[6:], VAR_COLUMNS].isna().all().all()
    # Everything else is as the caller left it.
    without_new_columns = adata.copy()
    without_new_columns.var = adata.var[["kept"]]
    snapshot.assert_unchanged(without_new_columns)


def test_key_added_names_the_var_columns(gtl_model):
    adata = ad.AnnData(np.zeros((2, 4), dtype=np.float32))
    adata.var_names = list(gtl_model.gene_names[:4])
    gene_plasticity(gtl_model, adata=adata, key_added="plast", statistic="max")
    assert list(adata.var.columns) == [
        "plast",
        "plast_mean",
        "plast_median",
        "plast_max",
        "plast_rank",
    ]
    np.testing.assert_array_equal(adata.var["plast"], adata.var["plast_max"])


def test_refuses_adata_without_any_model_gene_and_leaves_it_unchanged(gtl_model):
    adata = ad.AnnData(np.zeros((2, 3), dtype=np.float32))
    adata.var_names = ["ENSG00000000001", "ENSG00000000002", "ENSG00000000003"]
    with pytest.raises(ValueError, match="shares no gene with the model"):
        gene_plasticity(gtl_model, adata=adata)
    assert adata.var.columns.empty


def test_refuses_an_unknown_statistic(gtl_model):
    with pytest.raises(ValueError, match="statistic='sum' is not valid"):
        gene_plasticity(gtl_model, statistic="sum")


def test_a_model_without_a_guide_says_to_compute_it(pbmc_corpus):
    scgtl.GTL.setup_anndata(pbmc_corpus, units="log1p")
    untrained = scgtl.GTL(pbmc_corpus, n_hidden=16, n_latent=4)
    with pytest.raises(ValueError, match=r"no guide yet.*train\(\).*compute_guide\(\)"):
        gene_plasticity(untrained)


def test_a_classifier_asks_for_the_pretrained_model(gtl_model, pbmc_target):
    clf = gtl_model.fine_tune(
        pbmc_target, labels_key="bulk_labels", k_shot=1, plan_kwargs={"n_steps": 2, "wide": False}
    )
    with pytest.raises(TypeError, match="pass the pre-trained scgtl.GTL"):
        gene_plasticity(clf)
    with pytest.raises(TypeError, match="got dict"):
        gene_plasticity({FIRST_LAYER: torch.zeros(2, 2)})


@pytest.mark.parametrize("temperature", ["freeze", "warm"])
def test_follows_the_guide_the_model_will_fine_tune_with(gtl_model, temperature):
    # A reshaped guide (as compute_guide(temperature=...) stores it) is what the numbers describe.
    original = gtl_model.guide_
    try:
        gtl_model.guide_ = scgtl.guide.apply_temperature(original, temperature, top_p=0.25)
        frame = gene_plasticity(gtl_model)
    finally:
        gtl_model.guide_ = original
    reshaped = scgtl.guide.apply_temperature(original, temperature, top_p=0.25)[FIRST_LAYER]
    np.testing.assert_allclose(frame["mean"], reshaped.double().mean(dim=0).numpy())
    if temperature == "freeze":  # 0/1 guide: the mean is the fraction of free weights
        assert set(np.unique(frame["max"])) <= {0.0, 1.0}
    else:  # "warm": every weight keeps at least half its step
        assert frame["mean"].min() >= 0.5
