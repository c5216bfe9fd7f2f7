"""Statistics over episodes: confidence intervals, paired differences and the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

#: Significance level of the verdict.
ALPHA = 0.05

#: Columns of :func:`compare`.
COMPARISON_COLUMNS: tuple[str, ...] = (
    "k", "method", "n_episodes", "mean_difference", "ci_low", "ci_high",
    "wins", "losses", "ties", "p_value",
)  # fmt: skip


#: Equal-width confidence bins of :func:`expected_calibration_error`.
ECE_BINS = 15


#: Columns of :attr:`scgtl.benchmark.FewShotResult.calibration`, in order.
CALIBRATION_COLUMNS: tuple[str, ...] = (
    "method", "regime", "k", "episode", "bin", "n_cells", "confidence_sum", "n_correct",
)  # fmt: skip


def calibration_bins(
    confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells, summed confidence and correct predictions in each equal-width confidence bin.

    The bins split ``[0, 1]`` into ``n_bins`` equal parts, the first closed (``[0, 1/n]``), the
    others ``(a, b]``: the binning of :func:`expected_calibration_error`, which is computed from
    these sums (:func:`binned_calibration_error`). Sums, unlike means, add up over episodes, so
    bins of several episodes can be pooled.

    Parameters
    ----------
    confidence
        Probability of each cell's predicted class.
    correct
        Whether each prediction is right.
    n_bins
        Number of bins.

    Returns
    -------
    ``(n_cells, confidence_sum, n_correct)``, three arrays of length ``n_bins``: the number of
    cells in each bin (integers), the sum of their confidence and the number of them predicted
    right (integers).
    """
    confidence = np.asarray(confidence, dtype=float).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    if confidence.shape != correct.shape:
        raise ValueError(
            f"confidence has {confidence.size} values and correct {correct.size}; one per cell "
            "is needed in both."
        )
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    n_cells = np.bincount(bins, minlength=n_bins)
    confidence_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    n_correct = np.bincount(bins[correct], minlength=n_bins)
    return n_cells, confidence_sum, n_correct


def binned_calibration_error(
    n_cells: np.ndarray, confidence_sum: np.ndarray, n_correct: np.ndarray
) -> float:
    """Expected calibration error from the sums of :func:`calibration_bins` (NaN without cells).

    A bin's ``|accuracy - mean confidence|`` weighted by its share of the cells is
    ``|n_correct - confidence_sum| / total cells``, so the bins of several episodes, summed,
    give the ECE of all their cells pooled.
    """
    n_cells = np.asarray(n_cells, dtype=float)
    total = n_cells.sum()
    if total == 0:
        return np.nan
    gaps = np.abs(np.asarray(n_correct, dtype=float) - np.asarray(confidence_sum, dtype=float))
    return float(gaps[n_cells > 0].sum() / total)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = ECE_BINS
) -> float:
    """Expected calibration error: how far confidence is from accuracy, on average.

    The cells are put into ``n_bins`` equal-width bins of confidence over ``[0, 1]`` (the
    first bin closed, ``[0, 1/n]``, the others ``(a, b]``; see :func:`calibration_bins`); ECE
    is the mean over bins of ``|accuracy - mean confidence|``, weighted by the fraction of cells
    in the bin. ``0`` is perfectly calibrated. NaN without cells.

    Parameters
    ----------
    confidence
        Probability of each cell's predicted class.
    correct
        Whether each prediction is right.
    n_bins
        Number of bins (15, as Guo et al. 2017, "On calibration of modern neural networks").
    """
    return binned_calibration_error(*calibration_bins(confidence, correct, n_bins=n_bins))


def pool_calibration(calibration: pd.DataFrame) -> pd.DataFrame:
    """The calibration bins summed over episodes, per method, ``k`` and bin.

    Parameters
    ----------
    calibration
        Rows of :data:`CALIBRATION_COLUMNS` (:attr:`scgtl.benchmark.FewShotResult.calibration`).

    Returns
    -------
    Columns ``method``, ``regime``, ``k``, ``bin``, ``n_episodes``, ``n_cells``,
    ``confidence_sum``, ``n_correct``, ``confidence`` (mean confidence of the bin's cells) and
    ``accuracy`` (their fraction predicted right); the last two NaN in an empty bin. Methods in
    the order they first appear.
    """
    keys = ["method", "regime", "k", "bin"]
    pooled = calibration.groupby(keys, sort=False).agg(
        n_episodes=("episode", "nunique"),
        n_cells=("n_cells", "sum"),
        confidence_sum=("confidence_sum", "sum"),
        n_correct=("n_correct", "sum"),
    )
    pooled = pooled.reset_index().sort_values(["k", "bin"], kind="stable")
    order = {m: i for i, m in enumerate(dict.fromkeys(calibration["method"]))}
    pooled = pooled.sort_values("method", key=lambda m: m.map(order), kind="stable")
    filled = pooled["n_cells"].where(pooled["n_cells"] > 0)
    pooled["confidence"] = pooled["confidence_sum"] / filled
    pooled["accuracy"] = pooled["n_correct"] / filled
    return pooled.reset_index(drop=True)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest of ``n`` finite scores (the largest if beyond).

    The same split-conformal rule as :func:`scgtl.train.conformal_threshold`, for baselines
    that the benchmark scores the way ``predict(unknown="auto")`` does.
    """
    scores = np.sort(np.asarray(scores, dtype=float)[np.isfinite(scores)])
    if scores.size == 0:
        raise ValueError("No finite score to calibrate a threshold on.")
    rank = int(np.ceil((scores.size + 1) * level))
    return float(scores[min(rank, scores.size) - 1])


def mean_ci(values: np.ndarray, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of the mean (``NaN`` bounds for one value)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, np.nan, np.nan
    sem = float(values.std(ddof=1)) / np.sqrt(values.size)
    if sem == 0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, df=values.size - 1)) * sem
    return mean, mean - half, mean + half


def paired_p_value(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (1 when all are zero)."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return np.nan
    if np.count_nonzero(d) == 0:
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def summarize(
    table: pd.DataFrame, *, metric: str = "balanced_accuracy", confidence: float = 0.95
) -> pd.DataFrame:
    """Mean and confidence interval of ``metric`` per method and ``k``.

    Returns
    -------
    Columns ``method``, ``k``, ``n_episodes``, ``mean``, ``ci_low``, ``ci_high``,
    ``fit_seconds`` (mean per fit); methods in the order they first appear in ``table``.
    """
    rows = []
    order = list(dict.fromkeys(table["method"]))
    for (method, k), group in table.groupby(["method", "k"], sort=False):
        mean, low, high = mean_ci(group[metric].to_numpy(), confidence=confidence)
        rows.append(
            {
                "method": method,
                "k": int(k),
                "n_episodes": int(group[metric].notna().sum()),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "fit_seconds": float(group["fit_seconds"].mean()),
            }
        )
    out = pd.DataFrame(rows)
    out["_order"] = out["method"].map({m: i for i, m in enumerate(order)})
    return out.sort_values(["k", "_order"]).drop(columns="_order").reset_index(drop=True)


def compare(
    table: pd.DataFrame,
    *,
    reference: str,
    metric: str = "balanced_accuracy",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Paired per-episode differences ``reference - method`` for every other method and ``k``.

    Returns
    -------
    Columns ``k``, ``method``, ``n_episodes``, ``mean_difference``, ``ci_low``, ``ci_high``
    (t-interval of the mean difference), ``wins``, ``losses``, ``ties`` (episodes where the
    reference is better, worse, equal) and ``p_value`` (two-sided Wilcoxon signed-rank test).
    """
    wide = table.pivot_table(index=["k", "episode"], columns="method", values=metric)
    rows = []
    others = [m for m in dict.fromkeys(table["method"]) if m != reference]
    if reference not in wide.columns:
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    for k, block in wide.groupby(level="k"):
        for method in others:
            d = (block[reference] - block[method]).dropna().to_numpy()
            mean, low, high = mean_ci(d, confidence=confidence)
            rows.append(
                {
                    "k": int(k),
                    "method": method,
                    "n_episodes": int(d.size),
                    "mean_difference": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "wins": int((d > 0).sum()),
                    "losses": int((d < 0).sum()),
                    "ties": int((d == 0).sum()),
                    "p_value": paired_p_value(d),
                }
            )
    return pd.DataFrame(rows)


def best_baselines(summary: pd.DataFrame, *, reference: str | None) -> pd.Series:
    """For each ``k``, the method other than ``reference`` with the highest mean."""
    others = summary[summary["method"] != reference].dropna(subset=["mean"])
    if others.empty:
        return pd.Series(dtype=object)
    idx = others.groupby("k")["mean"].idxmax()
    return others.loc[idx].set_index("k")["method"]


def verdict(
    *,
    k: int,
    reference: str,
    baseline: str,
    reference_mean: float,
    baseline_mean: float,
    comparison: pd.Series,
    metric: str = "balanced_accuracy",
    alpha: float = ALPHA,
) -> str:
    """One plain-language line: does ``reference`` beat, tie or lose to ``baseline`` at ``k``?"""
    diff, p = comparison["mean_difference"], comparison["p_value"]
    if np.isfinite(p) and p < alpha and diff > 0:
        word = "beats"
    elif np.isfinite(p) and p < alpha and diff < 0:
        word = "loses to"
    else:
        word = "ties with"
    ci = (
        f" [95% CI {comparison['ci_low']:+.3f}, {comparison['ci_high']:+.3f}]"
        if np.isfinite(comparison["ci_low"])
        else ""
    )
    n = int(comparison["n_episodes"])
    note = " (too few episodes for a paired test to reach p<0.05)" if n < 6 else ""
    return (
        f"k={k}: {reference} {word} the best baseline, {baseline} "
        f"({metric} {reference_mean:.3f} vs {baseline_mean:.3f}; paired difference "
        f"{diff:+.3f}{ci}, Wilcoxon p={p:.2g}, {n} episodes){note}."
    )


def verdicts(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    *,
    reference: str,
    metric: str = "balanced_accuracy",
    alpha: float = ALPHA,
) -> list[str]:
    """The verdict line of every ``k`` (empty when ``reference`` did not run)."""
    if reference not in set(summary["method"]) or comparisons.empty:
        return []
    best = best_baselines(summary, reference=reference)
    means = summary.set_index(["method", "k"])["mean"]
    lines = []
    for k, baseline in best.items():
        row = comparisons[(comparisons["k"] == k) & (comparisons["method"] == baseline)]
        if row.empty:
            continue
        lines.append(
            verdict(
                k=int(k),
                reference=reference,
                baseline=baseline,
                reference_mean=float(means[(reference, k)]),
                baseline_mean=float(means[(baseline, k)]),
                comparison=row.iloc[0],
                metric=metric,
                alpha=alpha,
            )
        )
    return lines
