"""The result of a few-shot benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scgtl.benchmark import _report, _stats
from scgtl.benchmark._plot import plot_accuracy_vs_k

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from scgtl.benchmark._episodes import Episode


@dataclass
class FewShotResult:
    """Per-episode scores of every method, with the statistics and plots built on them.

    Attributes
    ----------
    table
        Tidy scores, one row per method, ``k`` and episode: ``method``, ``k``, ``episode``,
        ``seed``, ``n_classes``, ``n_support``, ``n_query``, ``balanced_accuracy``, ``macro_f1``,
        ``auroc`` (only when some episode has two classes) and ``fit_seconds`` (training on the
        support set plus predicting the query set).
    reference
        The method the others are compared with (``"gtl"`` when it ran).
    metric
        The metric of the summary, comparisons, verdicts and plot.
    settings
        How the benchmark was run (``k_shots``, ``n_episodes``, ``seed``, sizes, methods...).
    episodes
        The episodes, with their support and query rows.
    confidence
        Level of the confidence intervals.
    """

    table: pd.DataFrame
    reference: str
    metric: str = "balanced_accuracy"
    settings: dict = field(default_factory=dict)
    episodes: list[Episode] = field(default_factory=list, repr=False)
    confidence: float = 0.95

    def _metric(self, metric: str | None) -> str:
        metric = metric or self.metric
        if metric not in self.table.columns:
            raise ValueError(f"metric={metric!r} is not a column of the results table.")
        return metric

    def summary(self, metric: str | None = None) -> pd.DataFrame:
        """Mean and confidence interval per method and ``k``, with the paired differences.

        Returns
        -------
        One row per ``k`` and method: ``k``, ``method``, ``n_episodes``, ``mean``, ``ci_low``,
        ``ci_high``, ``fit_seconds``, then the paired difference reference − method over
        episodes (``difference``, ``difference_ci_low``, ``difference_ci_high``, ``p_value``;
        empty for the reference itself) and ``best_baseline`` (the best method other than the
        reference at that ``k``).
        """
        metric = self._metric(metric)
        summary = _stats.summarize(self.table, metric=metric, confidence=self.confidence)
        comparisons = self.comparisons(metric=metric).rename(
            columns={
                "mean_difference": "difference",
                "ci_low": "difference_ci_low",
                "ci_high": "difference_ci_high",
                "n_episodes": "n_paired",
            }
        )
        keep = ["k", "method", "difference", "difference_ci_low", "difference_ci_high", "p_value"]
        if comparisons.empty:
            merged = summary.assign(**{c: np.nan for c in keep[2:]})
        else:
            merged = summary.merge(comparisons[keep], on=["k", "method"], how="left")
        best = _stats.best_baselines(summary, reference=self.reference)
        merged["best_baseline"] = [
            best.get(k) == m for k, m in zip(merged["k"], merged["method"], strict=True)
        ]
        return merged[["k", *[c for c in merged.columns if c != "k"]]]

    def comparisons(self, metric: str | None = None) -> pd.DataFrame:
        """Paired per-episode differences reference − method, see :func:`_stats.compare`."""
        return _stats.compare(
            self.table,
            reference=self.reference,
            metric=self._metric(metric),
            confidence=self.confidence,
        )

    def verdicts(self, metric: str | None = None) -> list[str]:
        """One plain-language verdict line per ``k``.

        Each says whether the reference beats, ties with or loses to the best other method at
        that ``k`` (significance: two-sided Wilcoxon signed-rank test at p<0.05).
        """
        metric = self._metric(metric)
        summary = _stats.summarize(self.table, metric=metric, confidence=self.confidence)
        return _stats.verdicts(
            summary, self.comparisons(metric=metric), reference=self.reference, metric=metric
        )

    def plot(
        self, metric: str | None = None, *, title: str | None = None, ax: Axes | None = None
    ) -> Figure:
        """Mean ``metric`` against ``k``, one line per method, with 95% confidence bands.

        The y range follows the plotted means and bands (with a margin), so that close methods
        stay apart; for balanced accuracy with one number of classes, a dashed chance line is
        drawn when it falls in that range and named in the legend otherwise. A long ``title`` is
        wrapped to fit the figure.

        Returns
        -------
        The matplotlib figure.
        """
        metric = self._metric(metric)
        summary = _stats.summarize(self.table, metric=metric, confidence=self.confidence)
        chance = None
        if metric == "balanced_accuracy":
            levels = np.unique(1.0 / self.table["n_classes"].to_numpy())
            chance = float(levels[0]) if levels.size == 1 else None
        return plot_accuracy_vs_k(summary, metric=metric, chance=chance, title=title, ax=ax)

    def to_markdown(self, *, title: str | None = None) -> str:
        """The report as Markdown: settings, tables, paired differences and verdicts."""
        return _report.to_markdown(self, title=title)

    def save(self, out_dir: str | Path, *, title: str | None = None) -> dict[str, Path]:
        """Write ``results.csv``, ``summary.md`` and ``accuracy_vs_k.png`` into ``out_dir``.

        Returns
        -------
        The paths written, keyed ``"csv"``, ``"markdown"`` and ``"plot"``.
        """
        return _report.save(self, out_dir, title=title)

    def __repr__(self) -> str:
        methods = list(dict.fromkeys(self.table["method"]))
        ks = sorted(self.table["k"].unique().tolist())
        head = (
            f"FewShotResult: {len(methods)} methods {methods}, k={ks}, "
            f"{self.settings.get('n_episodes', '?')} episodes per k"
        )
        return "\n".join([head, *self.verdicts()])
