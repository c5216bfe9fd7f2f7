"""Reliability diagrams (issue 15): the benchmark's calibration bins and ``scgtl.pl.reliability``.

``pbmc_task`` (the embedded default: four held-out cell types of pbmc68k_reduced,
``obs["bulk_labels"]``) and ``_shared_gtl`` (pre-trained on its corpus) come from
tests/conftest.py. Matplotlib runs headless (Agg), where the plots return their Axes.
"""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

import scgtl
from scgtl import benchmark
from scgtl.benchmark._stats import (
    CALIBRATION_COLUMNS,
    ECE_BINS,
    binned_calibration_error,
    calibration_bins,
    expected_calibration_error,
)

matplotlib.use("Agg")

METHODS = ["logreg", "pca_logreg"]
K_SHOTS = (1, 3)
N_EPISODES = 3


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def result(pbmc_task):
    """A real benchmark of two baselines on the embedded default's target (k = 1, 3)."""
    return benchmark.few_shot(
        None, pbmc_task[1], labels_key="bulk_labels", k_shots=K_SHOTS, n_episodes=N_EPISODES,
        units="log1p", methods=METHODS, progress=False,
    )  # fmt: skip


@pytest.fixture()
def predicted(pbmc_predicted):
    """The shared prediction of the default task's target (``pbmc_predicted``), read-only."""
    return pbmc_predicted


def _lines(ax: Axes) -> dict:
    """The method lines of a reliability diagram, by method name (the diagonal left out)."""
    return {line.get_gid(): line for line in ax.get_lines() if line.get_gid() is not None}


# ---------------------------------------------------------------------------------- the bins
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ece_of_the_bins_is_the_ece(seed):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0, 1, 500)
    confidence[:20] = rng.choice([0.0, 1 / 15, 0.5, 1.0], 20)  # bin edges
    correct = rng.uniform(0, 1, 500) < confidence**2
    n, conf_sum, n_correct = calibration_bins(confidence, correct)
    assert n.shape == conf_sum.shape == n_correct.shape == (ECE_BINS,)
    assert n.sum() == 500 and n_correct.sum() == correct.sum()
    assert conf_sum.sum() == pytest.approx(confidence.sum())
    ece = expected_calibration_error(confidence, correct)
    assert binned_calibration_error(n, conf_sum, n_correct) == pytest.approx(ece, abs=1e-12)
    # Bins of two halves, summed, give the ECE of all the cells pooled.
    halves = [
        calibration_bins(confidence[s], correct[s]) for s in (slice(0, 250), slice(250, None))
    ]
    summed = [a + b for a, b in zip(*halves, strict=True)]
    assert binned_calibration_error(*summed) == pytest.approx(ece, abs=1e-12)
    # Independently: the mean over bins of |accuracy - confidence|, weighted by cells.
    bins = np.clip(np.ceil(confidence * 15).astype(int) - 1, 0, 14)
    gaps = [
        (bins == b).sum() * abs(correct[bins == b].mean() - confidence[bins == b].mean())
        for b in np.unique(bins)
    ]
    assert ece == pytest.approx(sum(gaps) / 500)


def test_bins_of_a_hand_computed_example():
    # 0.0 and 1/15 fall in bin 0 (closed), 0.1 in bin 1, 0.95 and 1.0 in bin 14.
    confidence = np.array([0.0, 1 / 15, 0.1, 0.95, 1.0])
    correct = np.array([False, True, False, True, True])
    n, conf_sum, n_correct = calibration_bins(confidence, correct)
    assert n.tolist() == [2, 1] + [0] * 12 + [2]
    assert n_correct.tolist() == [1, 0] + [0] * 12 + [2]
    np.testing.assert_allclose(conf_sum[[0, 1, 14]], [1 / 15, 0.1, 1.95])
    # |1 - 1/15| + |0 - 0.1| + |2 - 1.95| over 5 cells.
    expected = (14 / 15 + 0.1 + 0.05) / 5
    assert binned_calibration_error(n, conf_sum, n_correct) == pytest.approx(expected)
    assert expected_calibration_error(confidence, correct) == pytest.approx(expected)
    assert np.isnan(binned_calibration_error(*calibration_bins([], [])))
    with pytest.raises(ValueError, match="confidence has 2 values and correct 3"):
        calibration_bins([0.5, 0.6], [True, False, True])


# ------------------------------------------------------------------------- the benchmark's bins
def test_benchmark_keeps_the_bins_of_every_method_and_episode(result):
    bins = result.calibration
    assert list(bins.columns) == list(CALIBRATION_COLUMNS)
    assert len(bins) == len(METHODS) * len(K_SHOTS) * N_EPISODES * ECE_BINS
    assert set(bins["method"]) == set(METHODS)
    assert dict(zip(bins["method"], bins["regime"], strict=True)) == result.regimes
    assert sorted(bins["bin"].unique()) == list(range(ECE_BINS))
    # Every query cell of every episode is in one bin; each episode's bins give its ECE.
    scores = result.table.set_index(["method", "k", "episode"])
    for key, group in bins.groupby(["method", "k", "episode"]):
        assert group["n_cells"].sum() == scores.loc[key, "n_query"]
        ece = binned_calibration_error(
            group["n_cells"], group["confidence_sum"], group["n_correct"]
        )
        assert ece == pytest.approx(scores.loc[key, "ece"], abs=1e-12)
    # The results table keeps its columns.
    assert "n_cells" not in result.table.columns and "bin" not in result.table.columns


def test_reliability_pools_the_episodes(result):
    pooled = result.reliability(k=3)
    assert len(pooled) == len(METHODS) * ECE_BINS
    assert list(dict.fromkeys(pooled["method"])) == METHODS
    part = result.calibration.query("k == 3 and method == 'logreg'")
    sums = part.groupby("bin")[["n_cells", "confidence_sum", "n_correct"]].sum()
    logreg = pooled.query("method == 'logreg'").set_index("bin")
    np.testing.assert_array_equal(logreg["n_cells"], sums["n_cells"])
    filled = sums["n_cells"] > 0
    np.testing.assert_allclose(
        logreg["accuracy"][filled], (sums["n_correct"] / sums["n_cells"])[filled]
    )
    assert logreg["accuracy"][~filled].isna().all()
    assert (logreg["n_episodes"] == N_EPISODES).all()
    # The default k is the largest; methods pick and order.
    assert (result.reliability()["k"] == max(K_SHOTS)).all()
    assert list(dict.fromkeys(result.reliability(methods=METHODS[::-1])["method"])) == METHODS[::-1]
    ece = result.pooled_ece(k=3)
    assert list(ece.index) == METHODS
    assert ece["logreg"] == pytest.approx(
        binned_calibration_error(sums["n_cells"], sums["confidence_sum"], sums["n_correct"])
    )


def test_reliability_refuses_bad_k_and_methods(result):
    with pytest.raises(ValueError, match=r"k=5 is not a k of the calibration bins.*\[1, 3\]"):
        result.reliability(k=5)
    with pytest.raises(ValueError, match=r"\['gtl'\] not among the methods"):
        result.reliability(methods=["logreg", "gtl"])


def test_calibration_survives_save_and_older_results_load(result, tmp_path):
    paths = result.save(tmp_path / "out")
    assert paths["calibration"].name == "calibration.csv"
    table = pd.read_csv(paths["csv"])
    assert list(table.columns) == list(result.table.columns)
    bins = pd.read_csv(paths["calibration"])
    pd.testing.assert_frame_equal(bins, result.calibration, check_dtype=False)
    reloaded = benchmark.FewShotResult(table=table, reference=None, calibration=bins)
    pd.testing.assert_series_equal(reloaded.pooled_ece(), result.pooled_ece())
    # A result of an older results.csv (no bins) still loads, with an empty table of bins.
    older = benchmark.FewShotResult(table=table, reference=None)
    assert older.calibration.empty
    assert list(older.calibration.columns) == list(CALIBRATION_COLUMNS)
    older_paths = older.save(tmp_path / "older")
    assert "calibration" not in older_paths
    assert not (tmp_path / "older" / "calibration.csv").exists()
    with pytest.raises(ValueError, match="no calibration bins"):
        older.reliability()
    with pytest.raises(ValueError, match=r"calibration lacks the columns \['n_correct'\]"):
        benchmark.FewShotResult(
            table=table, reference=None, calibration=bins.drop(columns="n_correct")
        )


# --------------------------------------------------------------------------------- the plot
def test_plot_of_a_benchmark_draws_the_pooled_bins(result, tmp_path):
    ax = scgtl.pl.reliability(result, k=3, save=tmp_path / "reliability")
    assert isinstance(ax, Axes)
    lines = _lines(ax)
    assert list(lines) == METHODS
    pooled = result.reliability(k=3)
    ece = result.pooled_ece(k=3)
    for method, line in lines.items():
        part = result.calibration.query("k == 3 and method == @method")
        sums = part.groupby("bin")[["n_cells", "confidence_sum", "n_correct"]].sum()
        sums = sums[sums["n_cells"] > 0]
        np.testing.assert_allclose(line.get_xdata(), sums["confidence_sum"] / sums["n_cells"])
        np.testing.assert_allclose(line.get_ydata(), sums["n_correct"] / sums["n_cells"])
        assert line.get_label() == f"{method} (ECE {ece[method]:.3f})"
        assert pooled.query("method == @method")["n_cells"].sum() == sums["n_cells"].sum()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "perfectly calibrated" in legend
    assert ax.get_title() == f"k=3, {N_EPISODES} episodes pooled"
    assert (tmp_path / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_of_saved_bins_and_chosen_methods(result, tmp_path):
    result.calibration.to_csv(tmp_path / "calibration.csv", index=False)
    bins = pd.read_csv(tmp_path / "calibration.csv")
    _, ax = plt.subplots()
    drawn = scgtl.pl.reliability(bins, methods=["pca_logreg"], counts=False, title="t", ax=ax)
    assert drawn is ax
    assert list(_lines(ax)) == ["pca_logreg"]
    assert ax.get_title() == "t"
    reference = _lines(scgtl.pl.reliability(result, methods=["pca_logreg"]))["pca_logreg"]
    np.testing.assert_allclose(_lines(ax)["pca_logreg"].get_ydata(), reference.get_ydata())


def test_plot_refuses_bad_inputs(result, predicted):
    with pytest.raises(ValueError, match=r"k=10 is not a k .*\[1, 3\]"):
        scgtl.pl.reliability(result, k=10)
    with pytest.raises(ValueError, match=r"\['scratch'\] not among the methods"):
        scgtl.pl.reliability(result, methods=["scratch"])
    with pytest.raises(ValueError, match="labels_key= applies to an AnnData only"):
        scgtl.pl.reliability(result, labels_key="bulk_labels")
    with pytest.raises(ValueError, match="k= applies to a benchmark result only"):
        scgtl.pl.reliability(predicted, labels_key="bulk_labels", k=3)
    with pytest.raises(ValueError, match="labels_key= is required"):
        scgtl.pl.reliability(predicted)
    with pytest.raises(KeyError, match="labels_key='cell_type' is not a column"):
        scgtl.pl.reliability(predicted, labels_key="cell_type")
    with pytest.raises(KeyError, match=r"confidence_key='conf' is not a column.*predict"):
        scgtl.pl.reliability(predicted, labels_key="bulk_labels", confidence_key="conf")
    with pytest.raises(TypeError, match="FewShotResult"):
        scgtl.pl.reliability({"table": result.table})


def test_plot_of_a_prediction(predicted, adata_snapshot, tmp_path):
    snapshot = adata_snapshot(predicted)
    ax = scgtl.pl.reliability(predicted, labels_key="bulk_labels", save=tmp_path / "p.png")
    (line,) = _lines(ax).values()
    query = predicted.obs[~predicted.obs["scgtl_is_support"]]
    confidence = query["scgtl_confidence"].to_numpy(dtype=float)
    correct = (query["scgtl_prediction"].astype(str) == query["bulk_labels"].astype(str)).to_numpy()
    n, conf_sum, n_correct = calibration_bins(confidence, correct)
    filled = n > 0
    np.testing.assert_allclose(line.get_xdata(), conf_sum[filled] / n[filled])
    np.testing.assert_allclose(line.get_ydata(), n_correct[filled] / n[filled])
    ece = expected_calibration_error(confidence, correct)
    assert ax.get_title() == f"ECE {ece:.3f}, {len(query):,} cells, support left out"
    # Above chance on the four held-out types, so the points are not all at the bottom.
    assert correct.mean() > 0.25
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    snapshot.assert_unchanged(predicted)


def test_plot_of_a_prediction_leaves_out_unknown_and_missing_truth(predicted):
    adata = predicted.copy()
    truth = adata.obs["bulk_labels"].astype(str).to_numpy().astype(object)
    prediction = adata.obs["scgtl_prediction"].astype(str).to_numpy().astype(object)
    truth[:10], prediction[10:20], truth[20:30] = np.nan, "unknown", "unknown"
    adata.obs["truth"] = pd.Categorical(truth)
    adata.obs["scgtl_prediction"] = pd.Categorical(prediction)
    ax = scgtl.pl.reliability(adata, labels_key="truth", exclude_support=False, counts=False)
    assert ax.get_title().endswith(f"{adata.n_obs - 30:,} cells")
    everything = scgtl.pl.reliability(predicted, labels_key="bulk_labels", exclude_support=False)
    assert everything.get_title().endswith(f"{predicted.n_obs:,} cells")
