"""The ``scgtl benchmark`` command line, run in-process through ``main([...])``."""

from __future__ import annotations

import pandas as pd
import pytest

from scgtl import benchmark
from scgtl._cli import main
from scgtl.benchmark._default import DEFAULT_LABELS_KEY

OUTPUTS = [
    "accuracy_vs_k.png",
    "calibration.csv",
    "reliability.png",
    "results.csv",
    "summary.md",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory, pbmc_task):
    """The embedded default's corpus and target (conftest's ``pbmc_task``) as .h5ad files."""
    folder = tmp_path_factory.mktemp("cli_data")
    corpus, target = pbmc_task
    # Copies: writing may convert string columns in place, and pbmc_task is shared by the run.
    corpus.copy().write_h5ad(folder / "corpus.h5ad")
    target.copy().write_h5ad(folder / "target.h5ad")
    return folder / "corpus.h5ad", folder / "target.h5ad"


def _check_outputs(out, *, methods, n_rows):
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    table = pd.read_csv(out / "results.csv")
    assert list(dict.fromkeys(table["method"])) == methods
    assert len(table) == n_rows
    assert table["balanced_accuracy"].between(0, 1).all()
    assert (out / "accuracy_vs_k.png").read_bytes()[:4] == b"\x89PNG"
    return (out / "summary.md").read_text(), table


@pytest.mark.slow
def test_corpus_then_saved_model(files, tmp_path, capsys):
    corpus, target = files
    out = tmp_path / "results"
    rc = main(
        ["benchmark", "--corpus", str(corpus), "--units", "log1p", "--n-hvg", "300",
         "--labels-key-corpus", DEFAULT_LABELS_KEY, "--max-epochs", "2",
         "--target", str(target), "--labels-key", DEFAULT_LABELS_KEY,
         "--k-shots", "1", "3", "--n-episodes", "2", "--seed", "1",
         "--out", str(out), "--save-model", str(tmp_path / "model"), "--quiet"]
    )  # fmt: skip
    assert rc == 0
    defaults = list(benchmark.DEFAULT_METHODS)
    if benchmark.celltypist_problem() is not None:  # the test extra installs CellTypist
        defaults.remove("celltypist")
    md, table = _check_outputs(out, methods=defaults, n_rows=len(defaults) * 2 * 2)
    assert "## Inductive" in md and "## Transductive" in md
    assert "### Verdict" in md and "k=3: gtl" in md
    printed = capsys.readouterr().out
    # Verdicts are printed per regime: gtl for the inductive one, the plain call
    # (gtl_transductive) for the transductive one.
    assert "[inductive] k=1: gtl" in printed and "results.csv" in printed
    assert "[transductive] k=1: gtl_transductive" in printed
    # The saved model runs the same episodes again through --model.
    out2 = tmp_path / "again"
    rc = main(
        ["benchmark", "--model", str(tmp_path / "model"), "--target", str(target),
         "--labels-key", DEFAULT_LABELS_KEY, "--k-shots", "1", "3", "--n-episodes", "2",
         "--seed", "1", "--methods", "gtl", "logreg", "--out", str(out2), "--quiet"]
    )  # fmt: skip
    assert rc == 0
    _, table2 = _check_outputs(out2, methods=["gtl", "logreg"], n_rows=2 * 2 * 2)
    cols = ["method", "k", "episode", "seed", "balanced_accuracy"]
    expected = table[table["method"].isin(["gtl", "logreg"])][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(table2[cols], expected)


@pytest.mark.slow
def test_embedded_default(tmp_path):
    out = tmp_path / "default"
    rc = main(
        ["benchmark", "--k-shots", "3", "--n-episodes", "2",
         "--methods", "gtl", "pca_logreg", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert rc == 0
    md, table = _check_outputs(out, methods=["gtl", "pca_logreg"], n_rows=2 * 2)
    assert "embedded default" in md and "multi_study" in md
    assert set(table["n_classes"]) == {10}
    # Ten PBMC types, chance 0.1: both are far above it, from the shipped model, no pre-training.
    assert (table.groupby("method")["balanced_accuracy"].mean() > 0.4).all()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "x.h5ad"], "--target needs a pre-trained model"),
        (["--corpus", "c.h5ad"], "--target is required"),
        (["--corpus", "c.h5ad", "--model", "m"], "not both"),
        (["--max-epochs", "2"], "--max-epochs only applies to pre-training on --corpus"),
        (["--k-shots", "0"], "0 must be >= 1"),
        (["--n-episodes", "two"], "'two' is not an integer"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_labels_key_and_files(files, capsys):
    corpus, target = files
    with pytest.raises(SystemExit):
        main(["benchmark", "--corpus", str(corpus), "--target", str(target)])
    assert "--labels-key is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["benchmark", "--corpus", "nope.h5ad", "--target", str(target), "--labels-key", "x"])
    assert "--corpus nope.h5ad is not a file" in capsys.readouterr().err


def test_library_errors_are_reported(files, tmp_path, capsys):
    corpus, target = files
    rc = main(
        ["benchmark", "--methods", "magic", "--out", str(tmp_path), "--quiet"]
    )  # fmt: skip
    assert rc == 1
    assert "Unknown method 'magic'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "benchmark" in capsys.readouterr().out
