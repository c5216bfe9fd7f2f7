"""The pipeline commands ``scgtl pretrain``, ``fine-tune`` and ``predict``, run in-process.

End to end on real data: pre-train on a slice of ``mudan_pbmcA`` (unlabelled PBMC), fine-tune on
``mudan_ref`` (nine sorted PBMC populations, ``obs["cell_type"]``), predict, and read the output
file back. One pre-trained model and one classifier are shared by the module's tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from scgtl._cli import main

#: The classes of mudan_ref's obs["cell_type"].
N_CLASSES = 9
LABELS = "cell_type"


def run_cli(argv: list[str]) -> int:
    """The exit status of ``scgtl argv``, whether it returns or exits through argparse."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_info:
        return exit_info.code


def run_quietly(argv: list[str]) -> tuple[int, str, str]:
    """``run_cli`` with its stdout and stderr captured (for module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(argv)
    return rc, out.getvalue(), err.getvalue()


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_fails(argv, message, capsys) -> str:
    """Exit status 2 and ``message`` on stderr, in one line after argparse's usage, if any."""
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    error_lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def ref_file(shared_data_dir):
    """mudan_ref.h5ad itself (read-only): the study to fine-tune on and to annotate."""
    return shared_data_dir / "mudan_ref.h5ad"


@pytest.fixture(scope="module")
def corpus_file(shared_data_dir, tmp_path_factory):
    """300 random cells of mudan_pbmcA (counts), without the genes expressed in < 10 of them."""
    corpus = ad.read_h5ad(shared_data_dir / "mudan_pbmcA.h5ad")
    corpus = corpus[np.random.default_rng(0).choice(corpus.n_obs, 300, replace=False)]
    # Genes nearly absent from so few cells make scanpy's seurat_v3 gene selection fail.
    expressed = np.asarray((corpus.X > 0).sum(axis=0)).ravel() >= 10
    path = tmp_path_factory.mktemp("corpus") / "corpus.h5ad"
    corpus[:, expressed].copy().write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def partial_file(ref_file, tmp_path_factory):
    """mudan_ref as a half-annotated study: 5 cells per class marked in obs["is_labelled"] keep
    their label in obs["cell_type"], every other label is missing; the truth is in obs["truth"]."""
    study = ad.read_h5ad(ref_file)
    rng = np.random.default_rng(3)
    labelled = np.zeros(study.n_obs, dtype=bool)
    for label in study.obs[LABELS].cat.categories:
        rows = np.flatnonzero(study.obs[LABELS].to_numpy() == label)
        labelled[rng.choice(rows, 5, replace=False)] = True
    study.obs["truth"] = study.obs[LABELS].copy()
    study.obs["is_labelled"] = labelled
    study.obs[LABELS] = study.obs[LABELS].where(labelled)
    path = tmp_path_factory.mktemp("partial") / "partial.h5ad"
    study.write_h5ad(path)
    return path


# ---------------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def pretrained(corpus_file, tmp_path_factory):
    """``scgtl pretrain`` on the corpus slice: (model dir, stdout, stderr)."""
    out = tmp_path_factory.mktemp("pretrain") / "gtl"
    rc, stdout, stderr = run_quietly(
        ["pretrain", "--corpus", corpus_file, "--n-top-genes", 300, "--max-epochs", 2,
         "--n-scouts", 8, "--seed", 0, "--out", out, "--quiet"]
    )  # fmt: skip
    assert rc == 0, stderr
    return out, stdout, stderr


@pytest.fixture(scope="module")
def gtl_dir(pretrained):
    return pretrained[0]


@pytest.fixture(scope="module")
def fine_tuned(gtl_dir, ref_file, tmp_path_factory):
    """``scgtl fine-tune --k-shot 3`` on mudan_ref: (classifier dir, stdout, stderr, sha256 of
    mudan_ref before)."""
    before = sha256(ref_file)
    out = tmp_path_factory.mktemp("fine_tune") / "clf"
    rc, stdout, stderr = run_quietly(
        ["fine-tune", "--model", gtl_dir, "--target", ref_file, "--labels-key", LABELS,
         "--k-shot", 3, "--seed", 1, "--out", out]
    )  # fmt: skip
    assert rc == 0, stderr
    return out, stdout, stderr, before


@pytest.fixture(scope="module")
def clf_dir(fine_tuned):
    return fine_tuned[0]


def _balanced_accuracy(adata, truth: str, key: str) -> float:
    rows = ~adata.obs[f"{key}_is_support"].to_numpy()
    return balanced_accuracy_score(
        adata.obs[truth].astype(str)[rows], adata.obs[f"{key}_prediction"].astype(str)[rows]
    )


# ---------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_pretrain_saves_a_gtl_model(pretrained):
    from scgtl.model import GTL

    out, stdout, stderr = pretrained
    model = GTL.load(out)
    assert len(model.gene_names) == 300
    assert model.units == "counts" and model.labels_key is None
    assert model.guide is not None and model.guide_settings_["n_scouts"] == 8
    assert model.history["reconstruction_loss_train"].shape[0] == 2  # --max-epochs
    assert f"to {out}" in stdout
    assert stderr == ""  # --quiet: no progress bars, no messages
    # Nothing but the model directory is left beside it (no staging directory).
    assert [p.name for p in out.parent.iterdir()] == [out.name]


@pytest.mark.slow
def test_k_shot_fine_tune_then_predict(fine_tuned, ref_file, tmp_path, capsys):
    from scgtl.model import GTLClassifier

    clf_path, stdout, stderr, ref_sha = fine_tuned
    clf = GTLClassifier.load(clf_path)
    assert clf.labels_key == LABELS and len(clf.classes_) == N_CLASSES
    assert len(clf.fit_record_["support_obs_names"]) == 3 * N_CLASSES
    assert clf.fit_record_["k_shot"] == 3 and clf.fit_record_["seed"] == 1
    assert f"to {clf_path}" in stdout
    assert f"learnt {N_CLASSES} classes of 'cell_type' from 27 cells" in stderr
    assert "warning: Aligned query genes" in stderr  # warnings: one line, the command's name

    output = tmp_path / "out" / "annotated.h5ad"
    assert run_cli(["predict", "--model", clf_path, "--input", ref_file, "--output", output]) == 0
    assert f"Wrote {output}" in capsys.readouterr().out
    assert sha256(ref_file) == ref_sha  # neither fine-tune nor predict touched the input
    assert [p.name for p in output.parent.iterdir()] == [output.name]

    annotated, original = ad.read_h5ad(output), ad.read_h5ad(ref_file)
    assert annotated.shape == original.shape
    assert (annotated.obs_names == original.obs_names).all()
    assert (annotated.X != original.X).nnz == 0
    for column in ["prediction", "confidence", "is_support"]:
        assert f"scgtl_{column}" in annotated.obs
    assert annotated.obsm["scgtl_proba"].shape == (original.n_obs, N_CLASSES)
    assert list(annotated.obsm["scgtl_proba"].columns) == clf.classes_
    np.testing.assert_allclose(annotated.obsm["scgtl_proba"].sum(axis=1), 1.0, rtol=1e-4)
    assert annotated.obsm["X_scgtl"].shape == (original.n_obs, clf.module.encoder.n_latent)
    assert annotated.uns["scgtl"]["n_genes_model"] == 300
    predicted = annotated.obs["scgtl_prediction"]
    assert set(predicted.cat.categories) == set(clf.classes_)
    assert annotated.obs["scgtl_confidence"].between(1 / N_CLASSES, 1).all()
    support = annotated.obs_names[annotated.obs["scgtl_is_support"].to_numpy()]
    assert sorted(support) == sorted(clf.fit_record_["support_obs_names"])
    # Nine classes, chance 1/9 = 0.11; 3 cells per class from a 2-epoch model.
    assert _balanced_accuracy(annotated, LABELS, "scgtl") > 0.3


@pytest.mark.slow
# Cells called "unknown" count as errors in the balanced accuracy; sklearn warns about the class.
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_support_key_and_partial_annotation(gtl_dir, partial_file, tmp_path, capsys):
    from scgtl.model import GTLClassifier

    study = ad.read_h5ad(partial_file)
    marked = study.obs_names[study.obs["is_labelled"].to_numpy()]
    by_key, by_labels = tmp_path / "by_key", tmp_path / "by_labels"
    common = ["fine-tune", "--model", gtl_dir, "--target", partial_file, "--labels-key", LABELS]
    assert run_cli([*common, "--support-key", "is_labelled", "--out", by_key, "--quiet"]) == 0
    # Neither --k-shot nor --support-key: every labelled cell, the same ones here.
    assert run_cli([*common, "--out", by_labels, "--quiet"]) == 0
    for path in (by_key, by_labels):
        record = GTLClassifier.load(path).fit_record_
        assert sorted(record["support_obs_names"]) == sorted(marked)
        assert record["k_shot"] is None
    capsys.readouterr()

    output = tmp_path / "annotated.h5ad"
    argv = ["predict", "--model", by_key, "--input", partial_file, "--output", output]
    assert run_cli([*argv, "--key-added", "ann", "--unknown", "auto", "--quiet"]) == 0
    annotated = ad.read_h5ad(output)
    assert "scgtl_prediction" not in annotated.obs
    assert (annotated.obs["ann_is_support"] == annotated.obs["is_labelled"]).all()
    predicted = annotated.obs["ann_prediction"]
    assert "unknown" in predicted.cat.categories
    assert (predicted == "unknown").sum() == annotated.uns["ann"]["n_unknown"]
    assert _balanced_accuracy(annotated, "truth", "ann") > 0.3
    # The study's own columns are written back as they were read.
    pd.testing.assert_frame_equal(annotated.obs[study.obs.columns], study.obs)


@pytest.mark.slow
def test_predict_overwrites_only_when_told(clf_dir, ref_file, tmp_path, capsys):
    study = tmp_path / "study.h5ad"
    study.write_bytes(ref_file.read_bytes())
    argv = ["predict", "--model", clf_dir, "--input", study]
    assert_fails([*argv, "--output", study], "is the --input file", capsys)
    assert_fails([*argv, "--output", tmp_path / "." / "study.h5ad"], "is the --input", capsys)
    existing = tmp_path / "existing.h5ad"
    existing.write_text("earlier results")
    assert_fails([*argv, "--output", existing], "already exists; pass --overwrite", capsys)
    assert existing.read_text() == "earlier results"
    assert sha256(study) == sha256(ref_file)
    # Told to, it replaces the input by its annotated copy.
    assert run_cli([*argv, "--output", study, "--overwrite", "--quiet"]) == 0
    assert "scgtl_prediction" in ad.read_h5ad(study).obs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.h5ad", "study.h5ad"]


@pytest.mark.slow
def test_pretrain_on_a_backed_corpus(corpus_file, tmp_path):
    from scgtl.model import GTL

    small = tmp_path / "small.h5ad"
    ad.read_h5ad(corpus_file)[:, :400].copy().write_h5ad(small)
    before = sha256(small)
    out = tmp_path / "gtl"
    assert run_cli(
        ["pretrain", "--corpus", small, "--backed", "--n-top-genes", 0, "--max-epochs", 1,
         "--n-scouts", 2, "--out", out, "--quiet"]
    ) == 0  # fmt: skip
    assert len(GTL.load(out).gene_names) == 400  # --n-top-genes 0: every gene
    assert sha256(small) == before


# ---------------------------------------------------------------------------------- errors
def test_missing_files_and_existing_outputs(corpus_file, tmp_path, capsys):
    out = tmp_path / "model"
    assert_fails(
        ["pretrain", "--corpus", tmp_path / "nope.h5ad", "--out", out], "nope.h5ad is not a file",
        capsys,
    )  # fmt: skip
    out.mkdir()
    assert_fails(
        ["pretrain", "--corpus", corpus_file, "--out", out], "already exists; pass --overwrite",
        capsys,
    )  # fmt: skip
    assert_fails(
        ["fine-tune", "--model", tmp_path / "nowhere", "--target", corpus_file,
         "--labels-key", LABELS, "--out", tmp_path / "clf"],
        "nowhere is not a directory", capsys,
    )  # fmt: skip
    assert_fails(
        ["predict", "--model", out, "--input", corpus_file, "--output", tmp_path / "a.h5ad"],
        "is not a saved scgtl model (it has no model.pt)", capsys,
    )  # fmt: skip
    garbage = tmp_path / "garbage.h5ad"
    garbage.write_text("not hdf5")
    assert_fails(
        ["pretrain", "--corpus", garbage, "--out", tmp_path / "m2"],
        f"--corpus {garbage} could not be read as .h5ad", capsys,
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.h5ad", "model"]


def test_pretrain_reports_what_the_data_refuses(corpus_file, tmp_path, capsys):
    out = tmp_path / "gtl"
    base = ["pretrain", "--corpus", corpus_file, "--out", out, "--n-top-genes", 300, "--quiet"]
    # Counts declared as log1p: refused by scgtl's units check, before any training.
    assert_fails([*base, "--units", "log1p"], "declared units='log1p' but holds values", capsys)
    assert_fails([*base, "--labels-key", "nope"], "labels_key='nope' is not a column", capsys)
    assert_fails([*base, "--layer", "nope"], "nope", capsys)
    assert_fails([*base, "--backed"], "--backed leaves the matrix on disk", capsys)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.slow
def test_model_directories_of_the_wrong_kind(gtl_dir, clf_dir, ref_file, tmp_path, capsys):
    assert_fails(
        ["fine-tune", "--model", clf_dir, "--target", ref_file, "--labels-key", LABELS,
         "--out", tmp_path / "clf"],
        "holds a fine-tuned classifier (GTLClassifier), not a pre-trained GTL model", capsys,
    )  # fmt: skip
    err = assert_fails(
        ["predict", "--model", gtl_dir, "--input", ref_file, "--output", tmp_path / "a.h5ad"],
        "holds a pre-trained GTL model (GTL), not a fine-tuned classifier", capsys,
    )  # fmt: skip
    assert "needs a directory written by scgtl fine-tune" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--target-units", "log1p"], "declared units='log1p' but holds values up to"),
        (["--k-shot", 100], "k_shot=100 but these classes of obs['cell_type'] have fewer"),
        (["--support-key", "cell_type"], "--support-key 'cell_type' must be a boolean column"),
        (["--support-key", "nope"], "--support-key 'nope' is not a column of the study's obs"),
        (["--no-transductive", "--corpus", "{ref}"], "--corpus is not read with --no-transductive"),
        (["--corpus", "{ref}"], "does not fit the model in"),
    ],
)
def test_fine_tune_reports_bad_settings(gtl_dir, ref_file, tmp_path, capsys, options, message):
    options = [str(ref_file) if o == "{ref}" else o for o in options]
    out = tmp_path / "clf"
    assert_fails(
        ["fine-tune", "--model", gtl_dir, "--target", ref_file, "--labels-key", LABELS,
         "--out", out, "--quiet", *options],
        message, capsys,
    )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_bad_option_values(capsys):
    assert_fails(
        ["predict", "--unknown", "maybe"], "'maybe' is neither 'auto' nor a number", capsys
    )
    assert_fails(["pretrain", "--n-top-genes", "-1"], "-1 must be >= 0", capsys)
    assert_fails(
        ["fine-tune", "--k-shot", "3", "--support-key", "x"], "not allowed with argument", capsys
    )


# ---------------------------------------------------------------------------------- help
def test_help_loads_no_heavy_library():
    code = (
        "import contextlib, io, json, sys\nfrom scgtl._cli import main\n"
        "for command in (['--help'], ['pretrain', '--help'], ['fine-tune', '--help'],"
        " ['predict', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n            main(command)\n        except SystemExit:\n            pass\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert not loaded & {"torch", "sklearn", "scvi", "scanpy", "anndata"}


def test_help_defaults_are_the_library_defaults(capsys):
    from scgtl._cli import _predict, _pretrain
    from scgtl._constants import DEFAULT_KEY_ADDED
    from scgtl.data import N_TOP_GENES
    from scgtl.model import GTL

    assert _pretrain.DEFAULT_N_TOP_GENES == N_TOP_GENES
    assert inspect.signature(GTL.setup_anndata).parameters["n_top_genes"].default == N_TOP_GENES
    assert (
        _pretrain.DEFAULT_N_SCOUTS
        == inspect.signature(GTL.compute_guide).parameters["n_scouts"].default
    )
    assert _predict.DEFAULT_KEY_ADDED == DEFAULT_KEY_ADDED
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert f"default {N_TOP_GENES})" in capsys.readouterr().out
