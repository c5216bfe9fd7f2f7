"""The benchmark's kNN baseline at small k, and the layout of the accuracy-vs-k plot.

``yan`` (90 embryo cells, six stages, RPKM) comes from tests/conftest.py.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier

from scgtl import benchmark
from scgtl.benchmark import FewShotTask, KNNMethod, _stats, builtin_methods
from scgtl.benchmark._plot import plot_accuracy_vs_k, y_limits

matplotlib.use("Agg")

LONG_TITLE = (
    "scgtl embedded default (pbmc68k_reduced, held-out cell types), pre-trained on six other "
    "cell types of the same study"
)


# ---------------------------------------------------------------------------------- kNN
def _yan_tasks(yan, data, k: int, n_episodes: int = 3) -> list[FewShotTask]:
    episodes = benchmark.make_episodes(data.labels, k_shots=(k,), n_episodes=n_episodes, seed=0)
    return [FewShotTask(e, data) for e in episodes]


def test_knn_neighbours_capped_at_samples_per_class():
    knn = KNNMethod()
    assert [knn.n_neighbors_for(k) for k in (1, 2, 3, 5, 10)] == [1, 2, 3, 5, 5]
    assert KNNMethod(n_neighbors=3).n_neighbors_for(10) == 3
    # The built-in baseline says so in every report.
    description = builtin_methods()["pca_knn"].description
    assert "min(5, k)" in description and "k=1" in description
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_neighbors"):
            KNNMethod(n_neighbors=bad)


def test_knn_at_k1_is_one_nearest_neighbour(yan, yan_target_data):
    knn = KNNMethod()
    for task in _yan_tasks(yan, yan_target_data(yan), k=1):
        # Six classes, one sample each: the support set has 6 rows, but k is 1.
        assert len(task.support_indices) == 6
        proba = knn.fit_predict_proba(task, seed=task.episode.seed)
        one_nn = KNeighborsClassifier(n_neighbors=1).fit(task.X_pca_support, task.y_support)
        predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(axis=1)]
        np.testing.assert_array_equal(predicted, one_nn.predict(task.X_pca_query))
        # 1-NN probabilities are one-hot: no tie for the class order to settle.
        np.testing.assert_array_equal(proba.to_numpy().max(axis=1), 1.0)


def test_knn_at_k3_votes_over_three(yan, yan_target_data):
    knn = KNNMethod()
    task = _yan_tasks(yan, yan_target_data(yan), k=3, n_episodes=1)[0]
    proba = knn.fit_predict_proba(task, seed=task.episode.seed).to_numpy()
    # Probabilities of a 3-neighbour vote are multiples of 1/3.
    np.testing.assert_allclose(proba * 3, np.round(proba * 3), atol=1e-12)


def test_knn_beats_chance_at_k1_on_yan(yan):
    res = benchmark.few_shot(
        None, yan, labels_key="cell_type", k_shots=(1,), n_episodes=5, units="normalized",
        methods=["pca_knn"], progress=False,
    )  # fmt: skip
    scores = res.table["balanced_accuracy"]
    chance = 1 / 6
    # With 5 neighbours among one sample per class it scored exactly chance in every episode.
    assert (scores > 2 * chance).all()
    assert scores.mean() > 4 * chance


# ---------------------------------------------------------------------------------- plot
def _summary(means: dict[str, list[float]], ks=(1, 3, 5, 10), half_width=0.01) -> pd.DataFrame:
    rows = []
    for method, values in means.items():
        for k, m in zip(ks, values, strict=True):
            rows.append({"method": method, "k": k, "n_episodes": 20, "mean": m,
                         "ci_low": m - half_width, "ci_high": m + half_width,
                         "fit_seconds": 0.1})  # fmt: skip
    return pd.DataFrame(rows)


CLOSE = {
    "gtl": [0.82, 0.87, 0.89, 0.90],
    "finetune": [0.83, 0.88, 0.90, 0.91],
    "logreg": [0.81, 0.88, 0.91, 0.91],
    "pca_knn": [0.70, 0.80, 0.86, 0.89],
}


def _inside_figure(fig, artist, pad: float = 0.0) -> bool:
    fig.draw_without_rendering()
    box = artist.get_window_extent()
    figure = fig.get_window_extent()
    return (
        box.x0 >= figure.x0 - pad
        and box.x1 <= figure.x1 + pad
        and box.y0 >= figure.y0 - pad
        and box.y1 <= figure.y1 + pad
    )


def test_long_title_is_wrapped_inside_the_figure():
    import matplotlib.pyplot as plt

    fig = plot_accuracy_vs_k(_summary(CLOSE), chance=0.25, title=LONG_TITLE)
    title = fig.axes[0].title
    assert "\n" in title.get_text()
    assert " ".join(title.get_text().split()) == LONG_TITLE  # wrapped, nothing lost
    assert _inside_figure(fig, title)
    # The legend, beside the axes, stays inside the figure too.
    assert _inside_figure(fig, fig.axes[0].get_legend())
    plt.close(fig)
    # A short title stays on one line.
    fig = plot_accuracy_vs_k(_summary(CLOSE), title="yan")
    assert fig.axes[0].get_title() == "yan"
    plt.close(fig)


def test_title_fits_in_given_axes():
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), layout="constrained")
    plot_accuracy_vs_k(_summary(CLOSE), title=LONG_TITLE, ax=axes[1])
    assert _inside_figure(fig, axes[1].title)
    plt.close(fig)


def test_y_range_follows_data_and_chance_only_in_range():
    import matplotlib.pyplot as plt

    summary = _summary(CLOSE)
    fig = plot_accuracy_vs_k(summary, chance=0.25)
    ax = fig.axes[0]
    bottom, top = ax.get_ylim()
    assert (bottom, top) == pytest.approx(y_limits(summary))
    # The lowest band and the highest band are inside, with little room beyond them.
    assert 0.65 < bottom < 0.69 and 0.92 < top <= 1.0
    labels = [line.get_label() for line in ax.get_lines()]
    assert "chance" not in labels  # 0.25 is far below the data: no line pulling the axis down
    assert "chance 0.25, below axis" in labels
    plt.close(fig)

    # When chance lies within the data's range, the dashed line is drawn.
    low = _summary({"gtl": [0.45, 0.6, 0.7, 0.8], "pca_knn": [0.3, 0.5, 0.6, 0.7]})
    fig = plot_accuracy_vs_k(low, chance=0.4)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert lines["chance"].get_linestyle() == "--"
    assert lines["chance"].get_ydata()[0] == pytest.approx(0.4)
    plt.close(fig)


def test_y_limits_edge_cases():
    # Values at the bounds of [0, 1] do not push the range beyond them.
    assert y_limits(_summary({"a": [0.0, 0.5, 1.0, 1.0]}, half_width=0.0)) == (0.0, 1.0)
    # Identical values still get a visible range.
    bottom, top = y_limits(_summary({"a": [0.5] * 4}, half_width=0.0))
    assert bottom < 0.5 < top
    # No confidence bounds (one episode): the means set the range.
    summary = _summary({"a": [0.6, 0.7, 0.8, 0.9]}).assign(ci_low=np.nan, ci_high=np.nan)
    bottom, top = y_limits(summary)
    assert 0.55 < bottom < 0.6 and 0.9 < top < 0.95


def test_result_plot_of_a_real_run(yan, tmp_path):
    import matplotlib.pyplot as plt

    res = benchmark.few_shot(
        None, yan, labels_key="cell_type", k_shots=(1, 3), n_episodes=3, units="normalized",
        methods=["logreg", "pca_knn"], progress=False,
    )  # fmt: skip
    fig = res.plot(title=LONG_TITLE)
    ax = fig.axes[0]
    summary = _stats.summarize(res.table)
    assert ax.get_ylim() == pytest.approx(y_limits(summary))
    assert _inside_figure(fig, ax.title)
    plt.close(fig)
    # The saved report names the kNN rule.
    paths = res.save(tmp_path / "out", title=LONG_TITLE)
    assert "min(5, k) neighbours" in paths["markdown"].read_text()
