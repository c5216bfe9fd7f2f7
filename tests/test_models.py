"""Pre-trained models (scgtl.models) and the multi-study corpus: masking, scouts, files."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from sklearn.metrics import balanced_accuracy_score

import scgtl
from scgtl import models
from scgtl.data import Study, concat_studies
from scgtl.datasets import ChecksumError
from scgtl.models._api import spec as registry_entry
from scgtl.models._files import MODEL_FILE, model_dir, shipped_dir
from scgtl.module import GTLModule

FAST_GUIDE = {"n_scouts": 6, "n_steps": 20, "n_clusters": 4, "k_shot": 3, "progress": False}


@pytest.fixture(scope="module")
def shipped():
    """The shipped default model, loaded once for the module (tests must not modify it)."""
    return models.load(models.DEFAULT_MODEL)


def _study(name, genes, *, n_obs=24, seed=0, units="counts", species="human", labels=True):
    rng = np.random.default_rng(seed)
    values = rng.poisson(3.0, (n_obs, len(genes))).astype(np.float32)
    if units == "normalized":
        values = values / values.sum(1, keepdims=True) * 1e6
    obs = pd.DataFrame(
        {"cell_type": np.array(["a", "b", "c"])[np.arange(n_obs) % 3]},
        index=[f"{name}_{i}" for i in range(n_obs)],
    )
    adata = ad.AnnData(sparse.csr_matrix(values), obs=obs, var=pd.DataFrame(index=genes))
    return Study(name, adata, units, "cell_type" if labels else None, species, "tissue")


@pytest.fixture()
def two_studies():
    """A human counts study of GENE0..GENE29 and a mouse CPM study of Gene20..Gene49."""
    human = _study("h", [f"GENE{i}" for i in range(30)], labels=False)
    mouse = _study(
        "m", [f"Gene{i}" for i in range(20, 50)], seed=1, units="normalized", species="mouse"
    )
    return human, mouse


# ------------------------------------------------------------------------------ the registry
def test_available_lists_the_shipped_model_with_its_file():
    table = models.available()
    assert models.DEFAULT_MODEL in table.index
    assert list(table.columns) == list(models._api.COLUMNS)
    row = table.loc[models.DEFAULT_MODEL]
    path = shipped_dir(models.DEFAULT_MODEL) / MODEL_FILE
    assert row["shipped"] and row["file_size"] == path.stat().st_size
    assert row["file_size"] <= 15e6  # the wheel stays small
    assert row["sha256"] == scgtl.datasets._download.sha256sum(path)
    assert row["n_genes"] == 2000 and "mouse" in row["species"]


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown model 'nope'.*multi_study"):
        models.load("nope")


def test_shipped_model_loads_in_float32_and_fine_tunes_without_a_corpus(shipped, pbmc_target):
    assert isinstance(shipped, scgtl.GTL) and shipped.adata is None
    assert shipped.guide is not None
    assert all(g.dtype == torch.float32 for g in shipped.guide.values())
    assert all(p.dtype == torch.float32 for p in shipped.module.parameters())
    assert shipped.module.measured.dtype == torch.bool
    assert shipped.module.measured.shape == (12, 2000)
    assert shipped.guide_settings_["groups"] == "scout_label+kmeans"
    clf = shipped.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=5, units="log1p")
    clf.predict(pbmc_target)
    query = ~pbmc_target.obs["scgtl_is_support"]
    score = balanced_accuracy_score(
        pbmc_target.obs["bulk_labels"][query], pbmc_target.obs["scgtl_prediction"][query]
    )
    assert score > 0.6  # four classes: chance is 0.25


# ------------------------------------------------------------------------------ bad files
def _mirrored_spec(tmp_path, *, name="mirrored"):
    """A copy of the shipped model as a model that is not shipped, in a mirror at tmp_path."""
    source = shipped_dir(models.DEFAULT_MODEL) / MODEL_FILE
    target = tmp_path / "mirror" / "models" / name / MODEL_FILE
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)
    spec = dataclasses.replace(
        registry_entry(models.DEFAULT_MODEL), name=name, url=(tmp_path / "remote.pt").as_uri()
    )
    return spec, target


def test_a_model_that_is_not_shipped_comes_from_the_mirror_cache_or_url(tmp_path, monkeypatch):
    spec, mirrored = _mirrored_spec(tmp_path)
    monkeypatch.setitem(models.MODELS, spec.name, spec)
    assert model_dir(spec, data_dir=tmp_path / "mirror") == mirrored.parent
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="download=False"):
        model_dir(spec, data_dir=tmp_path / "none", cache_dir=cache, download=False)
    shutil.copy(mirrored, tmp_path / "remote.pt")  # the "server"
    model = models.load(spec.name, data_dir=tmp_path / "none", cache_dir=cache)
    assert (cache / "models" / spec.name / MODEL_FILE).is_file()
    assert isinstance(model, scgtl.GTL)


def test_tampered_and_truncated_files_are_refused_naming_both_checksums(tmp_path, monkeypatch):
    spec, mirrored = _mirrored_spec(tmp_path)
    monkeypatch.setitem(models.MODELS, spec.name, spec)
    data = bytearray(mirrored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    mirrored.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        models.load(spec.name, data_dir=tmp_path / "mirror")
    message = str(info.value)
    assert str(mirrored) in message and spec.sha256 in message
    assert scgtl.datasets._download.sha256sum(mirrored) in message
    mirrored.write_bytes(bytes(data[:1000]))
    with pytest.raises(ChecksumError, match="truncated"):
        models.load(spec.name, data_dir=tmp_path / "mirror")


def test_a_file_of_the_wrong_kind_is_refused(tmp_path, monkeypatch, shipped, pbmc_target):
    clf = shipped.fine_tune(pbmc_target, labels_key="bulk_labels", k_shot=1, units="log1p")
    clf.save(tmp_path / "mirror" / "models" / "clf")
    path = tmp_path / "mirror" / "models" / "clf" / MODEL_FILE
    spec = dataclasses.replace(
        registry_entry(models.DEFAULT_MODEL),
        name="clf",
        url="file:///nowhere",
        sha256=scgtl.datasets._download.sha256sum(path),
        size=path.stat().st_size,
    )
    monkeypatch.setitem(models.MODELS, "clf", spec)
    with pytest.raises(ValueError, match="holds a GTLClassifier, not a GTL"):
        models.load("clf", data_dir=tmp_path / "mirror")


# ------------------------------------------------------------------------------ compact files
def test_compact_file_is_deterministic_half_precision_and_predicts_alike(
    tmp_path, gtl_model, pbmc_target
):
    first = models.write_compact(gtl_model, tmp_path / "a")
    second = models.write_compact(gtl_model, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    saved = torch.load(first, map_location="cpu", weights_only=False)
    assert all(
        v.dtype == torch.float16
        for v in saved["model_state_dict"].values()
        if isinstance(v, torch.Tensor)
    )
    assert saved["attr_dict"]["history_"] is None
    loaded = scgtl.GTL.load(tmp_path / "a")
    full = gtl_model.get_latent_representation(pbmc_target, units="log1p")
    half = loaded.get_latent_representation(pbmc_target, units="log1p")
    assert np.abs(full - half).max() < 0.05 * np.abs(full).max()
    with pytest.raises(FileExistsError):
        models.write_compact(gtl_model, tmp_path / "a")


# ------------------------------------------------------------------------------ the corpus
def test_concat_studies_joins_genes_keeps_units_and_says_what_was_measured(two_studies):
    human, mouse = two_studies
    corpus = concat_studies([human, mouse])
    assert corpus.n_obs == 48 and corpus.n_vars == 50  # GENE0..GENE49: mouse upper-cased
    measured = corpus.varm["measured"]
    assert measured["h"].sum() == 30 and measured["m"].sum() == 30
    assert measured.loc["GENE25"].all() and not measured.loc["GENE40", "h"]
    assert list(corpus.obs["study"].cat.categories) == ["h", "m"]
    assert (corpus.obs["units"] == ["counts"] * 24 + ["normalized"] * 24).all()
    m_rows = (corpus.obs["study"] == "m").to_numpy()
    # Values are kept as published: the CPM rows still sum to a million.
    np.testing.assert_allclose(np.asarray(corpus.X[m_rows].sum(1)).ravel(), 1e6, rtol=1e-4)
    np.testing.assert_allclose(
        corpus.obs["library_size"].to_numpy()[~m_rows],
        np.asarray(human.adata.X.sum(1)).ravel(),
    )
    labels = corpus.obs["scout_label"]
    assert labels[~m_rows].isna().all() and set(labels[m_rows]) == {"m: a", "m: b", "m: c"}
    assert corpus.uns["studies"].loc["m", "species"] == "mouse"


def test_concat_studies_refuses_bad_studies(two_studies):
    human, mouse = two_studies
    with pytest.raises(ValueError, match="unique"):
        concat_studies([human, human])
    with pytest.raises(ValueError, match="units='log1p'"):
        concat_studies([dataclasses.replace(human, units="log1p")])
    with pytest.raises(KeyError, match="labels_key='nope'"):
        concat_studies([dataclasses.replace(mouse, labels_key="nope")])
    with pytest.raises(ValueError, match="species='rat'"):
        concat_studies([dataclasses.replace(mouse, species="rat")])
    with pytest.raises(ValueError, match="non-integer"):
        concat_studies([dataclasses.replace(mouse, units="counts")])


def test_setup_anndata_refuses_a_bad_measured_table(two_studies):
    corpus = concat_studies(list(two_studies))
    with pytest.raises(ValueError, match="needs batch_key"):
        scgtl.GTL.setup_anndata(corpus.copy(), units="normalized", measured_key="measured")
    with pytest.raises(KeyError, match="'nope' is not in adata.varm"):
        scgtl.GTL.setup_anndata(
            corpus.copy(), units="normalized", batch_key="study", measured_key="nope"
        )
    bad = corpus.copy()
    bad.varm["measured"] = bad.varm["measured"].drop(columns="m")
    with pytest.raises(ValueError, match=r"no column for the studies \['m'\]"):
        scgtl.GTL.setup_anndata(bad, units="normalized", batch_key="study", measured_key="measured")


def test_unmeasured_genes_get_no_gradient():
    torch.manual_seed(0)
    measured = torch.tensor([[True] * 6 + [False] * 4, [True] * 10])
    module = GTLModule(10, n_hidden=8, n_latent=4, units="log1p", measured=measured, mask_rate=0.5)
    module.train()
    x = torch.rand(16, 10) + 0.5
    x[:, 6:] = 0.0  # stored as zero where study 0 did not measure them
    batch = torch.zeros(16, 1, dtype=torch.long)
    tensors = {"X": x, "batch": batch}
    inference = module.inference(**module._get_inference_input(tensors))
    generative = module.generative(inference["z"])
    module.loss(tensors, inference, generative).loss.backward()
    first_layer = module.encoder.hidden.fc_layers[0][0].weight.grad
    assert torch.all(module.decoder.weight.grad[6:] == 0)
    assert torch.all(module.decoder.bias.grad[6:] == 0)
    assert torch.all(first_layer[:, 6:] == 0)
    assert module.decoder.weight.grad[:6].abs().sum() > 0
    assert not inference["scored"][:, 6:].any() and inference["mask"][:, 6:].all()


def test_multi_study_pretraining_masks_and_scouts_draw_from_labels(two_studies):
    corpus = concat_studies(list(two_studies))
    scgtl.GTL.setup_anndata(
        corpus,
        units="normalized",
        batch_key="study",
        measured_key="measured",
        library_size_key="library_size",
        n_top_genes=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = scgtl.GTL(corpus, n_hidden=16, n_latent=8)
        model.train(
            max_epochs=2,
            enable_progress_bar=False,
            guide_kwargs={**FAST_GUIDE, "groups_key": "scout_label"},
        )
    expected = corpus.varm["measured"].loc[model.gene_names, ["h", "m"]].to_numpy().T
    np.testing.assert_array_equal(model.module.measured.numpy(), expected)
    assert model.guide_settings_["groups"] == "scout_label+kmeans"
    groups = model._scout_groups(
        corpus, np.arange(corpus.n_obs), torch.zeros(48, 50), n_clusters=2, seed=0,
        groups_key="scout_label",
    )  # fmt: skip
    assert set(groups[24:]) == {"m: a", "m: b", "m: c"}
    assert all(g.startswith("cluster ") for g in groups[:24])
    _check_replayed_rows_keep_their_studys_genes(model, corpus, two_studies[0].adata)


def _check_replayed_rows_keep_their_studys_genes(model, corpus, target):
    """Adaptation replays corpus rows: each is scored on its own study's genes only."""
    draws = []

    def record(module, draw, **settings):
        draws.extend(draw() for _ in range(5))
        return [0.0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scgtl.model._adaptation, "fit_masked_reconstruction", record)
        model.adapt(target, units="counts", n_steps=1, replay=0.5, batch_size=16)
    panels = {tuple(row) for row in model.module.measured.numpy()}  # the two studies'
    found = model.gene_names.isin(target.var_names)
    seen = set()
    for _, measured in draws:
        target_rows, corpus_rows = measured[:8].numpy(), measured[8:].numpy()
        assert (target_rows == found).all()
        seen |= {tuple(row) for row in corpus_rows}
    assert seen == panels  # both studies were replayed, each with its own genes
    adapted = model.adapt(target, units="counts", n_steps=3, replay=0.5, batch_size=16)
    assert np.isfinite(adapted.adaptation_["losses"]).all()


def test_corpus_studies_refuses_unknown_names():
    with pytest.raises(ValueError, match=r"exclude=\['Nobody_2020'\] names no study"):
        models.corpus_studies(exclude=["Nobody_2020"])
    with pytest.raises(ValueError, match="Unknown species"):
        models.corpus_studies(species=["rat"])


def test_build_corpus_holds_every_public_study(shared_data_dir):
    corpus = models.build_corpus(data_dir=shared_data_dir, exclude=["Baron_2016"])
    studies = corpus.obs["study"].cat.categories
    assert len(studies) == 11 and "Baron_2016" not in studies
    assert corpus.n_obs == 10_099 - 255
    assert set(studies) == set(registry_entry(models.DEFAULT_MODEL).studies) - {"Baron_2016"}
    measured = corpus.varm["measured"]
    assert measured["Zheng_2017_sorted"].sum() == 8863
    assert measured.loc["CD3E"].all()  # mouse Cd3e matched by upper-casing
    assert corpus.obs["scout_label"].isna().sum() == 2896  # mudan_pbmcA has no labels


# ------------------------------------------------------------------------------ command line
def _cli(argv):
    from scgtl._cli import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_info:
        return exit_info.code


def test_scgtl_models_lists_what_available_lists(capsys):
    assert _cli(["models"]) == 0
    out = capsys.readouterr().out
    assert models.DEFAULT_MODEL in out and "n_genes" in out and "2000" in out
    assert _cli(["models", "--out", "x"]) == 2
    assert "only apply to `scgtl models build`" in capsys.readouterr().err
    assert _cli(["models", "build"]) == 2
    assert "needs --out DIR" in capsys.readouterr().err


def test_fine_tune_takes_a_model_name(tmp_path, pbmc_target, capsys):
    study = tmp_path / "study.h5ad"
    pbmc_target.write_h5ad(study)
    argv = ["fine-tune", "--model", models.DEFAULT_MODEL, "--target", study,
            "--labels-key", "bulk_labels", "--k-shot", "3", "--target-units", "log1p",
            "--out", tmp_path / "clf", "--quiet"]  # fmt: skip
    assert _cli(argv) == 0
    clf = scgtl.GTLClassifier.load(tmp_path / "clf")
    assert list(clf.gene_names) == list(models.load(models.DEFAULT_MODEL).gene_names)
    assert _cli([*argv[:2], "no_such_model", *argv[3:]]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and models.DEFAULT_MODEL in err


def test_adaptation_leaves_a_studys_missing_genes_out_of_its_loss(shipped, pbmc_target):
    adapted = shipped.adapt(pbmc_target, units="log1p", n_steps=5, replay=0.0, weight_decay=0.0)
    found = shipped.gene_names.isin(pbmc_target.var_names)
    assert 0 < found.sum() < len(found)  # 202 of 2,000 genes
    before, after = shipped.module.decoder.weight, adapted.module.decoder.weight
    # Zero-filled genes get no gradient: their decoder rows do not move; the measured ones do.
    assert torch.equal(before[~found], after[~found])
    assert not torch.equal(before[found], after[found])


# ------------------------------------------------------------------------------ Hugging Face Hub
def _hub_cache(cache, repo_id: str, folder, commit: str = "0" * 40):
    """Lay ``folder``'s files out as huggingface_hub's cache holds a downloaded repository."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_a_hub_folder_is_scvi_hubs_and_loads_back_offline(tmp_path, shipped, pbmc_target):
    from scvi.hub import HubModel

    folder = tmp_path / "hub"
    hub_model = models.save_hub_folder(
        shipped, folder, description="The shipped model.", tissues=["PBMC"], repo_id="lab/gtl"
    )
    assert isinstance(hub_model, HubModel)
    assert sorted(p.name for p in folder.iterdir()) == sorted(models._hub.HUB_FILES)
    assert (hub_model.metadata.model_cls_name, hub_model.metadata.model_parent_module) == (
        "GTL",
        "scgtl",
    )
    card = (folder / "README.md").read_text()
    assert "tissue:PBMC" in card and 'scgtl.models.load("hf:lab/gtl")' in card
    cache = tmp_path / "hf_cache"
    _hub_cache(cache, "lab/gtl", folder)
    loaded = models.load("hf:lab/gtl", cache_dir=cache, download=False)
    assert isinstance(loaded, scgtl.GTL) and loaded.guide_ is not None
    np.testing.assert_array_equal(
        loaded.get_latent_representation(pbmc_target, units="log1p"),
        shipped.get_latent_representation(pbmc_target, units="log1p"),
    )
    with pytest.raises(FileExistsError):
        models.save_hub_folder(shipped, folder, description="again")


def test_fine_tune_takes_a_hub_id(tmp_path, monkeypatch, shipped, pbmc_target):
    import huggingface_hub.constants

    cache = tmp_path / "hf_cache"
    models.save_hub_folder(shipped, tmp_path / "hub", description="x")
    _hub_cache(cache, "lab/gtl", tmp_path / "hub")
    # The command line reads the default cache; offline, as the tests are.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    study = tmp_path / "study.h5ad"
    pbmc_target.write_h5ad(study)
    argv = ["fine-tune", "--model", "hf://lab/gtl", "--target", study,
            "--labels-key", "bulk_labels", "--k-shot", "3", "--target-units", "log1p",
            "--out", tmp_path / "clf", "--quiet"]  # fmt: skip
    assert _cli(argv) == 0
    clf = scgtl.GTLClassifier.load(tmp_path / "clf")
    assert list(clf.gene_names) == list(shipped.gene_names)


def test_hub_models_of_another_kind_or_not_cached_are_refused(tmp_path, shipped):
    folder = tmp_path / "hub"
    models.save_hub_folder(shipped, folder, description="x")
    metadata = folder / models._hub.METADATA_FILE
    fields = json.loads(metadata.read_text())
    metadata.write_text(
        json.dumps({**fields, "model_cls_name": "SCVI", "model_parent_module": "scvi.model"})
    )
    cache = tmp_path / "hf_cache"
    _hub_cache(cache, "lab/scvi", folder)
    with pytest.raises(ValueError, match=r"holds a scvi\.model\.SCVI, not an scgtl\.GTL"):
        models.load_from_hub("lab/scvi", cache_dir=cache, local_files_only=True)
    with pytest.raises(FileNotFoundError, match="lab/absent"):
        models.load_from_hub("lab/absent", cache_dir=cache, local_files_only=True)
    with pytest.raises(ValueError, match="not a hub id"):
        models.load("hf:no-owner", cache_dir=cache, download=False)


def test_push_to_hub_uploads_the_hub_folder_through_scvi_hub(tmp_path, monkeypatch, shipped):
    """The upload itself needs the network: huggingface_hub's calls are recorded instead."""
    import huggingface_hub
    from huggingface_hub import ModelCard

    calls = {}
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo, **kw: calls.update(repo=kw))
    monkeypatch.setattr(ModelCard, "push_to_hub", lambda self, repo, **kw: calls.update(card=repo))
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "upload_file",
        lambda self, **kw: calls.update(file=kw["path_in_repo"]),
    )

    def upload_folder(self, *, folder_path, repo_id, **kw):
        calls["folder"] = sorted(p.name for p in Path(folder_path).iterdir())

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    models.push_to_hub(shipped, "lab/gtl", description="x", token="t", private=True)
    assert calls["repo"]["private"] is True and calls["card"] == "lab/gtl"
    assert calls["file"] == models._hub.METADATA_FILE
    assert calls["folder"] == sorted(models._hub.HUB_FILES)
    with pytest.raises(ValueError, match="not a hub id"):
        models.push_to_hub(shipped, "no-owner", description="x")
