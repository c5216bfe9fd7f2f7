"""The Markdown report of a few-shot benchmark and the files the CLI writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scgtl.benchmark._methods import REGIMES

if TYPE_CHECKING:
    from scgtl.benchmark import FewShotResult  # the public name: typing only

#: File names written by :meth:`scgtl.benchmark.FewShotResult.save`.
RESULTS_CSV = "results.csv"
SUMMARY_MD = "summary.md"
PLOT_PNG = "accuracy_vs_k.png"
CALIBRATION_CSV = "calibration.csv"

_TITLES = {
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "auroc": "AUROC",
    "ece": "Expected calibration error (ECE, 15 equal-width bins; lower is better)",
}


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame``, as the benchmark's reports write them.

    No dependency on ``tabulate`` (which :meth:`pandas.DataFrame.to_markdown` needs): each
    cell is written with :class:`str`, the index is left out.

    Parameters
    ----------
    frame
        The table; its columns become the header row.

    Returns
    -------
    The table's lines, joined by newlines (no trailing newline).
    """
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.to_numpy()]
    return "\n".join([header, rule, *body])


def _fmt_mean_ci(mean: float, low: float, high: float) -> str:
    if not np.isfinite(mean):
        return "–"
    if not np.isfinite(low):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _fmt_difference(diff: float, p: float) -> str:
    if not np.isfinite(diff):
        return "–"
    return f"{diff:+.3f} (p={p:.2g})"


#: One sentence per regime, for the report.
REGIME_SENTENCES = {
    "inductive": "Inductive methods learn from the support set alone (its expression and labels).",
    "transductive": (
        "Transductive methods also read the expression of the study's unlabelled rows, query "
        "rows included, never their labels (a PCA or kNN graph of every row, self-training, a "
        "model adapted to the target)."
    ),
}

#: How the report names each regime's reference argument of :func:`scgtl.benchmark.few_shot`.
_REFERENCE_ARGUMENT = {"inductive": "reference", "transductive": "transductive_reference"}


def _wide(summary: pd.DataFrame, cell, *, regime_column: bool = False) -> pd.DataFrame:
    """Methods as rows, ``k=...`` as columns, each cell made by ``cell(row)``.

    With ``regime_column``, a ``regime`` column follows ``method``.
    """
    frame = summary.assign(_cell=summary.apply(cell, axis=1))
    wide = frame.pivot(index="method", columns="k", values="_cell")
    wide = wide.reindex(index=list(dict.fromkeys(summary["method"])))
    wide.columns = [f"k={k}" for k in wide.columns]
    wide = wide.fillna("–").reset_index()
    if regime_column:
        regimes = summary.drop_duplicates("method").set_index("method")["regime"]
        wide.insert(1, "regime", wide["method"].map(regimes))
    return wide


def _of_regime(frame: pd.DataFrame, regime: str | None) -> pd.DataFrame:
    return frame if regime is None else frame[frame["regime"] == regime]


def metric_table(result: FewShotResult, metric: str, *, regime: str | None = None) -> pd.DataFrame:
    """Mean [95% CI] of ``metric`` per method (rows) and ``k`` (columns).

    The methods of ``regime`` only; ``None``: every method, with a ``regime`` column.
    """
    summary = _of_regime(result.summary(metric=metric), regime)
    if summary.empty:
        return pd.DataFrame()
    return _wide(
        summary,
        lambda r: _fmt_mean_ci(r["mean"], r["ci_low"], r["ci_high"]),
        regime_column=regime is None,
    )


def difference_table(
    result: FewShotResult, metric: str, *, regime: str | None = None
) -> pd.DataFrame:
    """Paired difference reference - method (with p-value) per method and ``k``.

    Within ``regime`` (against its reference); ``None``: both regimes, with a ``regime`` column.
    """
    comparisons = _of_regime(result.comparisons(metric=metric), regime)
    if comparisons.empty:
        return pd.DataFrame()
    return _wide(
        comparisons,
        lambda r: _fmt_difference(r["mean_difference"], r["p_value"]),
        regime_column=regime is None,
    )


def time_table(result: FewShotResult) -> pd.DataFrame:
    """Mean seconds per fit, per method (with its regime) and ``k``."""
    summary = result.summary()
    return _wide(summary, lambda r: f"{r['fit_seconds']:.2f}", regime_column=True)


def _baseline_genes_note(settings: dict) -> str:
    """With ``baseline_genes="target"``, a sentence saying which genes the baselines read."""
    if settings.get("baseline_genes") != "target":
        return ""
    return (
        f" The baselines read all {settings.get('n_genes_baselines', '?')} of the target's own "
        "genes (`baseline_genes='target'`); the fine-tuning methods read the model's genes."
    )


def _regime_section(result: FewShotResult, regime: str) -> list[str]:
    """The section of one regime: its table, differences and verdicts."""
    reference = result.references[regime]
    lines = [f"## {regime.capitalize()}", "", REGIME_SENTENCES[regime]]
    if not result.methods_of(regime):
        return [*lines, f"No {regime} method ran.", ""]
    if reference is None:
        lines.append(
            f"No {regime} reference ran (see `{_REFERENCE_ARGUMENT[regime]}=` of "
            "`scgtl.benchmark.few_shot`), so this table has no paired differences or verdicts."
        )
    elif len(result.methods_of(regime)) == 1:
        lines.append(f"`{reference}` is the only {regime} method: nothing to compare it with.")
    else:
        lines.append(f"Every other {regime} method is compared with `{reference}`.")
    heading = _TITLES.get(result.metric, result.metric)
    lines += ["", f"### {heading} (mean [95% CI])", ""]
    lines += [markdown_table(metric_table(result, result.metric, regime=regime)), ""]
    diffs = difference_table(result, result.metric, regime=regime)
    if not diffs.empty:
        lines += [
            f"### Paired difference `{reference}` − method (mean over episodes, Wilcoxon p)",
            "",
            markdown_table(diffs),
            "",
            "### Verdict",
            "",
        ]
        lines += [f"- {v}" for v in result.verdicts(regime=regime)] + [""]
    return lines


def to_markdown(result: FewShotResult, *, title: str | None = None) -> str:
    """The benchmark as a Markdown report.

    The settings and methods, then an "Inductive" and a "Transductive" section (each with its
    mean [95% CI] table, its paired differences against its own reference and its verdicts),
    then the other metrics and the fit times of every method.
    """
    s = result.settings
    own_genes = s.get("baseline_genes") == "target"
    shared = "episodes and preprocessing" if own_genes else "episodes, genes and preprocessing"
    lines = [f"# {title or 'Few-shot benchmark'}", ""]
    lines += [
        f"- Target: {s.get('n_obs', '?')} samples, labels `obs[{s.get('labels_key')!r}]` "
        f"({s.get('n_classes', '?')} classes); {s.get('n_genes_shared', '?')} of "
        f"{s.get('n_genes', '?')} model genes found in the target; units `{s.get('units')}`."
        + _baseline_genes_note(s),
        f"- Episodes: {s.get('n_episodes')} per k for k in {list(s.get('k_shots', []))}, seed "
        f"{s.get('seed')}. Support: k samples of every class; query: every other sample of "
        f"those classes. All methods see the same {shared}.",
        f"- Wall time of the episodes: {s.get('wall_seconds', float('nan')):.0f} s"
        + (f" ({s['n_threads']} thread)." if s.get("n_threads") == 1 else "."),
    ]
    if "pretrain_seconds" in s:
        lines.append(f"- Pre-training: {s['pretrain_seconds']:.0f} s.")
    if "task" in s:
        lines.append(f"- Task: {s['task']}.")
    dropped = s.get("classes_left_out") or {}
    for k, classes in dropped.items():
        names = ", ".join(f"`{c}`" for c in classes)
        lines.append(f"- At k={k}, classes too small to evaluate were left out: {names}.")
    lines += ["", "Methods:", ""]
    regimes = result.regimes
    descriptions = s.get("methods") or dict.fromkeys(regimes, "")
    for name, description in descriptions.items():
        tag = f"`{name}` ({regimes.get(name, '?')})"
        lines.append(f"- {tag}: {description}" if description else f"- {tag}")
    lines.append("")
    for regime in REGIMES:
        lines += _regime_section(result, regime)
    for extra in ("macro_f1", "auroc", "ece"):
        if extra in result.table.columns and extra != result.metric:
            lines += [f"## {_TITLES[extra]} (mean [95% CI]), every method", ""]
            lines += [markdown_table(metric_table(result, extra)), ""]
    lines += ["## Seconds per fit (mean; training plus prediction of the query)", ""]
    lines += [markdown_table(time_table(result)), ""]
    return "\n".join(lines)


def save(result: FewShotResult, out_dir: str | Path, *, title: str | None = None) -> dict:
    """Write ``results.csv``, ``summary.md`` and ``accuracy_vs_k.png`` into ``out_dir``.

    ``calibration.csv`` too when the result has calibration bins.

    Returns
    -------
    The paths, keyed ``"csv"``, ``"markdown"``, ``"plot"`` and, with bins, ``"calibration"``.
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / RESULTS_CSV, "markdown": out / SUMMARY_MD, "plot": out / PLOT_PNG}
    result.table.to_csv(paths["csv"], index=False)
    if not result.calibration.empty:
        paths["calibration"] = out / CALIBRATION_CSV
        result.calibration.to_csv(paths["calibration"], index=False)
    paths["markdown"].write_text(to_markdown(result, title=title) + "\n")
    fig = result.plot(title=title)
    fig.savefig(paths["plot"], dpi=110)
    plt.close(fig)
    return paths
