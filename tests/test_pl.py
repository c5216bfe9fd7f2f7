"""``scgtl.pl``: what each plot draws, returns, saves and refuses (issue 16).

``gtl_model`` (pre-trained on ``pbmc_corpus``) and ``pbmc_target`` (four held-out cell types of
pbmc68k_reduced, ``obs["bulk_labels"]``) come from tests/conftest.py. Matplotlib runs headless
(Agg), where the plots return their Axes instead of showing them.
"""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

import scgtl
from scgtl import benchmark

matplotlib.use("Agg")

PNG = b"\x89PNG"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture()
def predicted(pbmc_predicted):
    """The shared prediction of the default task's target (``pbmc_predicted``), read-only."""
    return pbmc_predicted


@pytest.fixture(scope="module")
def baseline_result(pbmc_task):
    """A real benchmark of two baselines on ``pbmc_target`` (k = 1, 3; 3 episodes)."""
    return benchmark.few_shot(
        None, pbmc_task[1], labels_key="bulk_labels", k_shots=(1, 3), n_episodes=3,
        units="log1p", methods=["logreg", "pca_knn"], progress=False,
    )  # fmt: skip


# ---------------------------------------------------------------------------------- guide
def test_guide_violins_one_per_encoder_tensor(gtl_model):
    ax = scgtl.pl.guide(gtl_model)
    assert isinstance(ax, Axes)
    violins = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(violins) == len(gtl_model.guide) == 4
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "hidden 1 weight\n128 × 765"
    assert labels[2] == "to_latent weight\n32 × 128"
    assert ax.get_ylabel() == "guide value"


def test_guide_histograms_and_a_guide_given_directly(gtl_model):
    reshaped = scgtl.guide.apply_temperature(gtl_model.guide, "warm")
    ax = scgtl.pl.guide(reshaped, kind="hist", bins=20, show=False)
    assert len(ax.patches) == 4  # one step outline per tensor
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[1] == "hidden 1 bias 128"
    assert ax.get_xlim()[1] >= 1.0  # warm guides lie in [0.5, 1]
    assert ax.get_yscale() == "log"


def test_guide_draws_into_given_axes_and_refuses_a_bad_kind(gtl_model):
    fig, (left, right) = plt.subplots(1, 2)
    assert scgtl.pl.guide(gtl_model, ax=right) is right
    assert not left.collections
    n_figures = len(plt.get_fignums())
    with pytest.raises(ValueError, match="kind='box' is not valid"):
        scgtl.pl.guide(gtl_model, kind="box")
    assert len(plt.get_fignums()) == n_figures


def test_guide_of_a_model_without_guide_says_to_compute_it(pbmc_corpus):
    scgtl.GTL.setup_anndata(pbmc_corpus, units="log1p")
    with pytest.raises(ValueError, match="compute_guide"):
        scgtl.pl.guide(scgtl.GTL(pbmc_corpus, n_hidden=16, n_latent=4))


# ---------------------------------------------------------------------------------- save, show
def test_save_writes_a_png_where_asked(gtl_model, tmp_path):
    scgtl.pl.guide(gtl_model, save=tmp_path / "guide.png")
    assert (tmp_path / "guide.png").read_bytes()[:4] == PNG
    scgtl.pl.guide(gtl_model, save=str(tmp_path / "sub" / "no_extension"))
    assert (tmp_path / "sub" / "no_extension.png").read_bytes()[:4] == PNG
    assert not plt.get_fignums()  # figures the plot made are closed once saved, as in scanpy


def test_save_true_uses_scanpys_figure_folder(gtl_model, tmp_path):
    import scanpy as sc

    # scanpy's settings are class properties, which monkeypatch cannot restore.
    before = sc.settings.figdir, sc.settings.file_format_figs
    try:
        sc.settings.figdir, sc.settings.file_format_figs = tmp_path / "figures", "png"
        scgtl.pl.guide(gtl_model, save=True)
    finally:
        sc.settings.figdir, sc.settings.file_format_figs = before
    assert (tmp_path / "figures" / "scgtl_guide.png").read_bytes()[:4] == PNG


def test_a_failed_save_leaves_no_file(gtl_model, tmp_path):
    with pytest.raises(ValueError, match="not supported"):
        scgtl.pl.guide(gtl_model, save=tmp_path / "guide.notaformat")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="save=3 is not valid"):
        scgtl.pl.guide(gtl_model, save=3)


def test_show_returns_none_and_show_false_the_axes(gtl_model):
    assert scgtl.pl.guide(gtl_model, show=True) is None  # plt.show() is a no-op under Agg
    assert isinstance(scgtl.pl.guide(gtl_model, show=False), Axes)


# ---------------------------------------------------------------------------------- plasticity
def _top_to_bottom(ax) -> list[str]:
    """The y tick labels of ``ax``, from the top of the axes down."""
    ticks = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    return [t.get_text() for t in ticks]


def test_gene_plasticity_two_panels_of_the_ranked_genes(gtl_model):
    frame = scgtl.tl.gene_plasticity(gtl_model)
    fig = scgtl.pl.gene_plasticity(gtl_model, n_genes=7)
    assert isinstance(fig, Figure)
    most, least = fig.axes[:2]
    assert len(most.patches) == len(least.patches) == 7
    ranked = frame["plasticity"].sort_values(ascending=False, kind="stable")
    # Read top to bottom, each panel lists its genes from the most to the least plastic.
    assert _top_to_bottom(most) == list(ranked.index[:7])
    assert _top_to_bottom(least) == list(ranked.index[-7:])
    bars = sorted(most.patches, key=lambda bar: -bar.get_y())
    np.testing.assert_allclose([bar.get_width() for bar in bars], ranked.to_numpy()[:7])
    assert most.get_xlabel() == "mean guide of the gene's first-layer weights"


def test_gene_plasticity_of_a_frame_and_into_given_axes(gtl_model, tmp_path):
    frame = scgtl.tl.gene_plasticity(gtl_model, statistic="max")
    fig, axes = plt.subplots(2, 1)
    returned = scgtl.pl.gene_plasticity(frame, n_genes=3, ax=axes, save=tmp_path / "p.png")
    assert returned is fig
    assert len(axes[0].patches) == len(axes[1].patches) == 3
    assert axes[0].get_xlabel().startswith("max guide")
    assert (tmp_path / "p.png").read_bytes()[:4] == PNG
    with pytest.raises(ValueError, match="column='rank' is not valid"):
        scgtl.pl.gene_plasticity(frame, column="rank")
    with pytest.raises(ValueError, match="n_genes=0"):
        scgtl.pl.gene_plasticity(frame, n_genes=0)
    with pytest.raises(ValueError, match="two Axes"):
        scgtl.pl.gene_plasticity(frame, ax=[axes[0]])


# ---------------------------------------------------------------------------------- accuracy vs k
def test_accuracy_vs_k_draws_the_benchmark_curves(baseline_result, tmp_path):
    ax = scgtl.pl.accuracy_vs_k(baseline_result, title="baselines", save=tmp_path / "acc.png")
    assert isinstance(ax, Axes)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"logreg", "pca_knn (transductive)"} <= set(lines)
    assert lines["pca_knn (transductive)"].get_linestyle() == "--"
    np.testing.assert_array_equal(lines["logreg"].get_xdata(), [1, 3])
    means = baseline_result.summary().query("method == 'logreg'").sort_values("k")["mean"]
    np.testing.assert_allclose(lines["logreg"].get_ydata(), means)
    assert ax.get_title() == "baselines"
    assert (tmp_path / "acc.png").read_bytes()[:4] == PNG


def test_accuracy_vs_k_of_a_saved_table_is_the_results_plot(baseline_result, tmp_path):
    baseline_result.table.to_csv(tmp_path / "results.csv", index=False)
    table = pd.read_csv(tmp_path / "results.csv")
    _, ax = plt.subplots()
    assert scgtl.pl.accuracy_vs_k(table, ax=ax) is ax
    reference = baseline_result.plot().axes[0]  # the same drawing, through FewShotResult.plot
    for ours, theirs in zip(ax.get_lines(), reference.get_lines(), strict=True):
        assert ours.get_label() == theirs.get_label()
        np.testing.assert_allclose(ours.get_ydata(), theirs.get_ydata())
    with pytest.raises(TypeError, match="FewShotResult"):
        scgtl.pl.accuracy_vs_k({"table": table})


# ---------------------------------------------------------------------------------- confusion
def test_confusion_matrix_is_sklearns_without_the_support(predicted, adata_snapshot):
    snapshot = adata_snapshot(predicted)
    ax = scgtl.pl.confusion_matrix(predicted, truth_key="bulk_labels")
    query = predicted.obs[~predicted.obs["scgtl_is_support"]]
    classes = list(predicted.obs["bulk_labels"].cat.categories)
    expected = sklearn_confusion_matrix(
        query["bulk_labels"].astype(str), query["scgtl_prediction"].astype(str),
        labels=classes, normalize="true",
    )  # fmt: skip
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    np.testing.assert_allclose(ax.images[0].get_array().sum(axis=1), 1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert ax.get_title() == f"{len(query):,} cells, support left out"
    assert len(ax.texts) == len(classes) ** 2
    # Above chance on the held-out cell types: the diagonal (recall) averages over 1 / 4.
    assert np.diag(expected).mean() > 1 / len(classes)
    snapshot.assert_unchanged(predicted)


def test_confusion_matrix_counts_and_support_choice(predicted):
    counts = scgtl.pl.confusion_matrix(
        predicted, truth_key="bulk_labels", normalize=None, exclude_support=False
    )
    assert counts.images[0].get_array().sum() == predicted.n_obs
    assert counts.get_title() == f"{predicted.n_obs:,} cells"
    query = scgtl.pl.confusion_matrix(predicted, truth_key="bulk_labels", normalize=None)
    n_support = int(predicted.obs["scgtl_is_support"].sum())
    assert n_support == 12  # 3 cells of each of the 4 classes
    assert query.images[0].get_array().sum() == predicted.n_obs - n_support


def test_confusion_matrix_rows_are_the_truths_classes_only(predicted):
    adata = predicted.copy()
    # A truth with one class the classifier never learned, and NaN for some cells.
    truth = adata.obs["bulk_labels"].astype(str).to_numpy().astype(object)
    truth[:5], truth[5:10] = "unseen type", np.nan
    adata.obs["truth"] = pd.Categorical(truth)
    ax = scgtl.pl.confusion_matrix(adata, truth_key="truth", normalize=None)
    rows = [t.get_text() for t in ax.get_yticklabels()]
    columns = [t.get_text() for t in ax.get_xticklabels()]
    assert "unseen type" in rows and set(columns) == set(rows)
    kept = ~adata.obs["scgtl_is_support"] & adata.obs["truth"].notna()
    assert ax.images[0].get_array().sum() == kept.sum()


def test_confusion_matrix_refuses_missing_columns(predicted):
    with pytest.raises(KeyError, match="truth_key='cell_type' is not a column"):
        scgtl.pl.confusion_matrix(predicted, truth_key="cell_type")
    with pytest.raises(KeyError, match=r"prediction_key='other_prediction'.*predict\(adata\)"):
        scgtl.pl.confusion_matrix(
            predicted, truth_key="bulk_labels", prediction_key="other_prediction"
        )
    adata = predicted.copy()
    adata.obs["mine"] = adata.obs["scgtl_prediction"]
    with pytest.raises(KeyError, match="'mine_is_support'.*exclude_support=False"):
        scgtl.pl.confusion_matrix(adata, truth_key="bulk_labels", prediction_key="mine")
    with pytest.raises(ValueError, match="normalize='rows' is not valid"):
        scgtl.pl.confusion_matrix(predicted, truth_key="bulk_labels", normalize="rows")
