"""The tutorials in ``tutorials/``: stored with their outputs, and each one runs.

The fast tests read the committed notebooks: every code cell was executed, no cell stored an
error, and the first cell is the one Markdown title Sphinx needs. The slow tests execute each
notebook in a fresh kernel (``nbclient``), on a copy in a temporary folder so that the committed
outputs are not rewritten; a cell that raises fails the test. A check cell appended to the copy
then asserts on the notebook's results (keys written, accuracy above chance). The notebooks
read the real data through ``$SCGTL_DATA_DIR`` (the ``shared_data_dir`` fixture skips when it
is absent) and run with small settings: about a minute each on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = ("quickstart", "own_corpus", "should_i_use_gtl", "bulk_recount3")

#: Appended to each executed copy: asserts on the variables the notebook left in its kernel.
CHECKS = {
    "quickstart": """
assert {"scgtl_prediction", "scgtl_confidence", "scgtl_is_support"} <= set(study.obs)
assert {"X_scgtl", "scgtl_proba", "X_umap"} <= set(study.obsm)
assert study.obs["scgtl_is_support"].sum() == 10 * 5
assert model.adata is None  # the shipped model: no corpus, no pre-training
assert accuracy > 0.5, accuracy  # 10 types: chance is 0.1
""",
    "own_corpus": """
assert same_labels and same_proba
assert scores["room (as computed)"] > 0.4, scores  # 9 types: chance is 0.11
assert set(guides["warm"]) == set(model.guide)
# The notebook says a loaded model fine-tunes a collaborator's study without the corpus.
again = loaded_model.fine_tune(
    their_study, labels_key="cell_type", k_shot=1, plan_kwargs={"n_steps": 5, "wide": False}
)
assert set(again.classes_) == set(their_study.obs["cell_type"].astype(str))
""",
    "should_i_use_gtl": """
assert {"gtl", "logreg", "pca_logreg"} <= set(res.table["method"])
assert sorted(res.table["k"].unique()) == [1, 3, 5]
assert len(res.verdicts(regime="inductive")) == 3
assert (res.summary()["mean"] > 0.25).all()  # 4 types: chance is 0.25
""",
    "bulk_recount3": """
assert corpus.shape == (72, 8863) and corpus.uns["scgtl_units"] == "counts"
assert study.uns["scgtl_units"] == "counts" and coverage.uns["scgtl_units"] == "normalized"
truth, predicted = yan.obs["cell_type"][query], yan.obs["scgtl_prediction"][query]
assert balanced_accuracy_score(truth, predicted) > 0.5  # 6 stages: chance is 0.17
assert len(res.verdicts(regime="inductive")) == 1
""",
}


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)


def _outputs(nb: nbformat.NotebookNode, output_type: str) -> list:
    return [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == output_type
    ]


def _images(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for kind in ("display_data", "execute_result")
        for out in _outputs(nb, kind)
    )


def test_tutorials_are_the_documented_ones():
    assert sorted(p.stem for p in TUTORIALS.glob("*.ipynb")) == sorted(NOTEBOOKS)
    assert not (TUTORIALS / "quickstart.md").exists()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_with_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    titles = [
        line
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("# ")
    ]
    assert titles == [first.source.splitlines()[0]], "one '# Title' only"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code), "not executed"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run in order"
    assert not _outputs(nb, "error")
    assert (TUTORIALS / f"{name}.ipynb").stat().st_size < 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_runs(name, shared_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SCGTL_DATA_DIR", str(shared_data_dir))
    monkeypatch.setenv("SCGTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("SCGTL_RECOUNT3_URL", raising=False)
    nb = _read(name)
    nb.cells.append(nbformat.v4.new_code_cell(CHECKS[name]))
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    assert not _outputs(nb, "error")
    if name in ("quickstart", "should_i_use_gtl", "own_corpus"):
        assert _images(nb) >= 1, "the figures were not drawn"
