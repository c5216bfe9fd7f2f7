"""The result of a few-shot benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scgtl.benchmark import _report, _stats
from scgtl.benchmark._methods import REGIMES
from scgtl.benchmark._plot import plot_accuracy_vs_k

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from scgtl.benchmark._episodes import Episode


@dataclass
class FewShotResult:
    """Per-episode scores of every method, with the statistics and plots built on them.

    The methods fall into two regimes (:attr:`scgtl.benchmark.Method.transductive`): inductive
    methods learn from the support set alone; transductive ones also read the expression of
    the study's unlabelled rows, query rows included, never their labels. Each regime is
    compared with its own reference only: :meth:`comparisons`, :meth:`verdicts` and the
    report never set a transductive method against the inductive reference, nor the reverse.
    A regime without a reference is reported without differences or verdicts.

    Attributes
    ----------
    table
        Tidy scores, one row per method, ``k`` and episode: ``method``, ``regime``
        (``"inductive"`` or ``"transductive"``, one value per method), ``k``, ``episode``,
        ``seed``, ``n_classes``, ``n_support``, ``n_query``, ``balanced_accuracy``, ``macro_f1``,
        ``ece`` (expected calibration error of the largest probability, 15 equal-width bins;
        lower is better), ``auroc`` (only when some episode has two classes) and
        ``fit_seconds`` (training on the support set plus predicting the query set). A table
        without ``regime`` (an older ``results.csv``) takes the regimes of
        ``settings["regimes"]``, else inductive.
    reference
        The inductive reference, compared with the other inductive methods (``"gtl"`` when it
        ran); ``None``: the inductive methods are not compared.
    metric
        The metric of the summary, comparisons, verdicts and plot.
    settings
        How the benchmark was run (``k_shots``, ``n_episodes``, ``seed``, sizes, methods,
        ``regimes``...).
    episodes
        The episodes, with their support and query rows.
    confidence
        Level of the confidence intervals.
    transductive_reference
        The transductive reference, compared with the other transductive methods; ``None``:
        the transductive methods are not compared.
    calibration
        The confidence bins of the ``ece`` column, 15 rows per method, ``k`` and episode (the
        equal-width bins of :func:`~scgtl.benchmark._stats.calibration_bins`): ``method``,
        ``regime``, ``k``, ``episode``, ``bin`` (0 to 14), ``n_cells`` (query cells whose
        confidence, the largest probability, falls in the bin), ``confidence_sum`` (the sum of
        their confidence) and ``n_correct`` (those predicted right). Sums add up over episodes:
        :meth:`reliability` pools them for a reliability diagram
        (:func:`scgtl.pl.reliability`). Empty for a result without bins (one built from an
        older ``results.csv``); ``None`` is taken as empty.
    """

    table: pd.DataFrame
    reference: str | None
    metric: str = "balanced_accuracy"
    settings: dict = field(default_factory=dict)
    episodes: list[Episode] = field(default_factory=list, repr=False)
    confidence: float = 0.95
    transductive_reference: str | None = None
    calibration: pd.DataFrame | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.calibration = _check_calibration(self.calibration)
        if "regime" in self.table.columns:
            per_method = self.table.groupby("method", sort=False)["regime"].nunique()
            mixed = sorted(per_method.index[per_method > 1])
            if mixed:
                raise ValueError(f"Methods {mixed} have more than one regime in the table.")
        regimes = self.regimes
        unknown = sorted(set(regimes.values()) - set(REGIMES))
        if unknown:
            raise ValueError(f"Unknown regimes {unknown}; choose among {list(REGIMES)}.")
        for regime, reference in self.references.items():
            if reference is not None and regimes.get(reference, regime) != regime:
                argument = "reference" if regime == "inductive" else "transductive_reference"
                raise ValueError(
                    f"{argument}={reference!r} is a method of the {regimes[reference]} "
                    f"regime; the {regime} reference must be {regime}."
                )

    @property
    def regimes(self) -> dict[str, str]:
        """The regime of every method (``"inductive"`` or ``"transductive"``), in table order."""
        if "regime" in self.table.columns:
            known = dict(zip(self.table["method"], self.table["regime"], strict=True))
        else:
            known = self.settings.get("regimes", {})
        methods = dict.fromkeys(self.table["method"])
        return {m: str(known.get(m, REGIMES[0])) for m in methods}

    @property
    def references(self) -> dict[str, str | None]:
        """The reference of each regime (``None`` where it has none), keyed by regime."""
        return {REGIMES[0]: self.reference, REGIMES[1]: self.transductive_reference}

    def methods_of(self, regime: str) -> list[str]:
        """The methods of ``regime``, in table order."""
        return [m for m, r in self.regimes.items() if r == _check_regime(regime)]

    def _metric(self, metric: str | None) -> str:
        metric = metric or self.metric
        if metric not in self.table.columns:
            raise ValueError(f"metric={metric!r} is not a column of the results table.")
        return metric

    def _summarize(self, metric: str) -> pd.DataFrame:
        """:func:`_stats.summarize` with each method's ``regime`` after ``method``."""
        summary = _stats.summarize(self.table, metric=metric, confidence=self.confidence)
        summary.insert(1, "regime", summary["method"].map(self.regimes))
        return summary

    def summary(self, metric: str | None = None) -> pd.DataFrame:
        """Mean and confidence interval per method and ``k``, with the paired differences.

        Returns
        -------
        One row per ``k`` and method: ``k``, ``method``, ``regime``, ``n_episodes``, ``mean``,
        ``ci_low``, ``ci_high``, ``fit_seconds``, then the paired difference between the
        reference of the method's regime and the method over episodes (``difference``,
        ``difference_ci_low``, ``difference_ci_high``, ``p_value``; empty for the references
        and in a regime without a reference) and ``best_baseline`` (whether the method is the
        best of its regime at that ``k``, the regime's reference left out: the method the
        verdict names).
        """
        metric = self._metric(metric)
        summary = self._summarize(metric)
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
        best = {}
        for regime, reference in self.references.items():
            part = summary[summary["regime"] == regime]
            for k, method in _stats.best_baselines(part, reference=reference).items():
                best[(regime, k)] = method
        merged["best_baseline"] = [
            best.get((r, k)) == m
            for r, k, m in zip(merged["regime"], merged["k"], merged["method"], strict=True)
        ]
        return merged[["k", *[c for c in merged.columns if c != "k"]]]

    def comparisons(self, metric: str | None = None) -> pd.DataFrame:
        """Paired per-episode differences reference − method, within each regime.

        Each regime's reference is compared with the other methods of its regime only (see
        :func:`_stats.compare`); a regime without a reference gives no rows.

        Returns
        -------
        Columns ``k``, ``method``, ``regime``, ``reference``, ``n_episodes``,
        ``mean_difference``, ``ci_low``, ``ci_high``, ``wins``, ``losses``, ``ties``,
        ``p_value``; the inductive rows first.
        """
        metric = self._metric(metric)
        columns = ["k", "method", "regime", "reference", *_stats.COMPARISON_COLUMNS[2:]]
        regimes = self.table["method"].map(self.regimes)
        frames = []
        for regime, reference in self.references.items():
            if reference is None:
                continue
            part = self.table[regimes == regime]
            comparison = _stats.compare(
                part, reference=reference, metric=metric, confidence=self.confidence
            )
            if not comparison.empty:
                frames.append(comparison.assign(regime=regime, reference=reference))
        if not frames:
            return pd.DataFrame(columns=columns)
        return pd.concat(frames, ignore_index=True)[columns]

    def verdicts(self, metric: str | None = None, *, regime: str | None = None) -> list[str]:
        """One plain-language verdict line per regime with a reference and ``k``.

        Each says whether the regime's reference beats, ties with or loses to the best other
        method *of the same regime* at that ``k`` (significance: two-sided Wilcoxon
        signed-rank test at p<0.05).

        Parameters
        ----------
        metric
            The metric (default :attr:`metric`).
        regime
            ``"inductive"`` or ``"transductive"``: that regime's lines only. ``None``: the
            lines of both, inductive first.
        """
        metric = self._metric(metric)
        wanted = REGIMES if regime is None else (_check_regime(regime),)
        summary = self._summarize(metric)
        comparisons = self.comparisons(metric=metric)
        lines = []
        for name in wanted:
            reference = self.references[name]
            if reference is None:
                continue
            lines += _stats.verdicts(
                summary[summary["regime"] == name],
                comparisons[comparisons["regime"] == name],
                reference=reference,
                metric=metric,
            )
        return lines

    def plot(
        self, metric: str | None = None, *, title: str | None = None, ax: Axes | None = None
    ) -> Figure:
        """Mean ``metric`` against ``k``, one line per method, with 95% confidence bands.

        Transductive methods are drawn with dashed lines, their legend entries marked
        "(transductive)". The y range follows the plotted means and bands (with a margin), so
        that close methods stay apart; for balanced accuracy with one number of classes, a grey
        dashed chance line is drawn when it falls in that range and named in the legend
        otherwise. A long ``title`` is wrapped to fit the figure.

        Returns
        -------
        The matplotlib figure.
        """
        metric = self._metric(metric)
        summary = self._summarize(metric)
        chance = None
        if metric == "balanced_accuracy":
            levels = np.unique(1.0 / self.table["n_classes"].to_numpy())
            chance = float(levels[0]) if levels.size == 1 else None
        return plot_accuracy_vs_k(summary, metric=metric, chance=chance, title=title, ax=ax)

    def reliability(
        self, *, k: int | None = None, methods: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The calibration bins of one ``k``, pooled over its episodes: a reliability diagram.

        Parameters
        ----------
        k
            Support samples per class (default: the largest ``k`` with bins).
        methods
            The methods, in this order (default: every method, in table order).

        Returns
        -------
        One row per method and bin (15 per method): ``method``, ``regime``, ``k``, ``bin``,
        ``n_episodes``, ``n_cells``, ``confidence_sum``, ``n_correct`` (summed over episodes),
        ``confidence`` (the bin's mean confidence) and ``accuracy`` (its fraction of correct
        predictions), the last two NaN in an empty bin.
        """
        if self.calibration.empty:
            raise ValueError(
                "This result has no calibration bins (a table without them, e.g. an older "
                "results.csv); run scgtl.benchmark.few_shot again, or pass the calibration.csv "
                "that FewShotResult.save writes as calibration=."
            )
        available = sorted(int(v) for v in self.calibration["k"].unique())
        k = available[-1] if k is None else k
        if k not in available:
            raise ValueError(
                f"k={k!r} is not a k of the calibration bins; choose among {available}."
            )
        part = self.calibration[self.calibration["k"] == k]
        names = list(dict.fromkeys(part["method"]))
        if methods is not None:
            methods = [methods] if isinstance(methods, str) else list(methods)
            unknown = [m for m in methods if m not in names]
            if unknown or not methods:
                raise ValueError(
                    f"methods={methods!r}: {unknown or 'none given'} not among the methods with "
                    f"bins at k={k}: {names}."
                )
            order = {m: i for i, m in enumerate(methods)}
            part = part[part["method"].isin(methods)]
            part = part.sort_values("method", key=lambda m: m.map(order), kind="stable")
        return _stats.pool_calibration(part)

    def pooled_ece(
        self, *, k: int | None = None, methods: Sequence[str] | None = None
    ) -> pd.Series:
        """Expected calibration error of each method's query cells of all episodes pooled.

        Computed from the summed bins of :meth:`reliability` (same ``k`` and ``methods``). The
        ``ece`` column of :attr:`table` is per episode; its mean over episodes weights each
        episode alike, the pooled ECE each cell.

        Returns
        -------
        The ECE of each method, indexed by method name (in :meth:`reliability`'s order).
        """
        bins = self.reliability(k=k, methods=methods)
        return pd.Series(
            {
                method: _stats.binned_calibration_error(
                    group["n_cells"], group["confidence_sum"], group["n_correct"]
                )
                for method, group in bins.groupby("method", sort=False)
            },
            name="ece",
            dtype=float,
        ).rename_axis("method")

    def to_markdown(self, *, title: str | None = None) -> str:
        """The report as Markdown: settings, then an inductive and a transductive section.

        Each section holds its regime's mean [95% CI] table, the paired differences against
        the regime's reference and its verdicts.
        """
        return _report.to_markdown(self, title=title)

    def save(self, out_dir: str | Path, *, title: str | None = None) -> dict[str, Path]:
        """Write ``results.csv``, ``summary.md`` and ``accuracy_vs_k.png`` into ``out_dir``.

        When the result has calibration bins, also ``calibration.csv`` (:attr:`calibration`;
        ``pd.read_csv`` of it is the table again, to pass back as ``calibration=``).

        Returns
        -------
        The paths written, keyed ``"csv"``, ``"markdown"``, ``"plot"`` and, with bins,
        ``"calibration"``.
        """
        return _report.save(self, out_dir, title=title)

    def __repr__(self) -> str:
        methods = list(dict.fromkeys(self.table["method"]))
        ks = sorted(self.table["k"].unique().tolist())
        head = (
            f"FewShotResult: {len(methods)} methods {methods}, k={ks}, "
            f"{self.settings.get('n_episodes', '?')} episodes per k"
        )
        lines = [f"[{r}] {line}" for r in REGIMES for line in self.verdicts(regime=r)]
        return "\n".join([head, *lines])


def _check_calibration(calibration: pd.DataFrame | None) -> pd.DataFrame:
    """The calibration bins, or an empty table of their columns for ``None``."""
    columns = list(_stats.CALIBRATION_COLUMNS)
    if calibration is None:
        return pd.DataFrame(columns=columns)
    if not isinstance(calibration, pd.DataFrame):
        raise TypeError(
            f"calibration must be a DataFrame of columns {columns} or None; got "
            f"{type(calibration).__name__}."
        )
    missing = [c for c in columns if c not in calibration.columns]
    if missing:
        raise ValueError(f"calibration lacks the columns {missing}; it needs {columns}.")
    return calibration


def _check_regime(regime: str) -> str:
    if regime not in REGIMES:
        raise ValueError(f"regime={regime!r} is not valid; choose among {list(REGIMES)}.")
    return regime
