"""CellTypist as a benchmark method: the real package, trained on each episode's support set.

CellTypist (Domínguez Conde et al., Science 2022) is what many users would train on a few
labelled cells: a logistic regression on every gene, scaled per gene. It is an optional extra,
``pip install 'scgtl[celltypist]'``. CellTypist 1.7.1 passes ``multi_class="ovr"`` to
scikit-learn's ``LogisticRegression``, a keyword that scikit-learn 1.8 removed; the extra
therefore asks for ``scikit-learn<1.8`` while scgtl itself accepts any scikit-learn >= 1.4.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData
from packaging.version import Version

from scgtl._constants import TARGET_SUM
from scgtl.benchmark._methods import FewShotTask, Method, TargetData

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The first scikit-learn without ``LogisticRegression(multi_class=)``, which CellTypist passes.
SKLEARN_WITHOUT_MULTI_CLASS = Version("1.8")

#: How to install a working CellTypist beside scgtl.
INSTALL_HINT = "pip install 'scgtl[celltypist]' (celltypist with scikit-learn<1.8)"


def celltypist_problem() -> str | None:
    """Why CellTypist cannot run here (a sentence), or ``None`` when it can.

    Reads the installed versions only; nothing is imported.
    """
    try:
        celltypist = importlib.metadata.version("celltypist")
    except importlib.metadata.PackageNotFoundError:
        return f"CellTypist is not installed; {INSTALL_HINT}."
    sklearn = importlib.metadata.version("scikit-learn")
    if Version(sklearn) >= SKLEARN_WITHOUT_MULTI_CLASS:
        return (
            f"CellTypist {celltypist} passes multi_class='ovr' to LogisticRegression, which "
            f"scikit-learn {SKLEARN_WITHOUT_MULTI_CLASS} removed, and scikit-learn {sklearn} is "
            f"installed; {INSTALL_HINT}."
        )
    return None


def log1p_cp10k(x_log: np.ndarray) -> np.ndarray:
    """Rows as CellTypist requires them: log1p of expression scaled to 10,000 per row.

    ``x_log`` is the benchmark's log-normalised expression (``log1p`` of rows scaled to
    :data:`~scgtl._constants.TARGET_SUM` for counts and normalised units; the user's own
    log1p values for ``units="log1p"``, whose depth is unknown). Each row is brought back to
    the linear scale, rescaled to 10,000 and logged again, in float64 so that CellTypist's check
    of the sum holds; a row without expression stays zero.
    """
    linear = np.expm1(np.asarray(x_log, dtype=np.float64))
    totals = linear.sum(axis=1, keepdims=True)
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(linear * scale)


@contextlib.contextmanager
def _quiet_celltypist() -> Iterator[None]:
    """CellTypist logs every step at INFO; keep only its warnings during a fit.

    Two FutureWarnings of CellTypist's own calls (scikit-learn's ``multi_class``, scanpy's
    ``__version__``) are its business, not the benchmark user's, and are hidden too.
    """
    logger = logging.getLogger("celltypist")
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="'multi_class' was deprecated")
            warnings.filterwarnings("ignore", message="`__version__` is deprecated")
            yield
    finally:
        logger.setLevel(before)


class CellTypistMethod(Method):
    """CellTypist trained on the support set, with its defaults (the real package).

    Each episode runs ``celltypist.train`` on the support rows (per-gene scaling, logistic
    regression, no feature selection) and ``celltypist.annotate`` on the query rows (best
    match, no majority voting). Both see log1p expression scaled to 10,000 per cell, over all of
    the target's own genes under ``few_shot(baseline_genes="target")``. CellTypist's
    one-vs-rest probabilities are normalised to sum to one per row; the predicted class is
    unchanged. An inductive method: it reads the support set alone.

    Needs the optional extra, ``pip install 'scgtl[celltypist]'``; :func:`celltypist_problem`
    says why it cannot run otherwise.

    Parameters
    ----------
    name
        Identifier in the results table.
    description
        One line for reports.
    **train_kwargs
        Further keyword arguments of ``celltypist.train`` (e.g. ``feature_selection=True``).
    """

    def __init__(self, name: str = "celltypist", *, description: str = "", **train_kwargs):
        self.name = name
        # (target data, genes, its rows as CellTypist reads them): converted once per target.
        self._converted: tuple[TargetData, str, np.ndarray] | None = None
        self.description = description or (
            "CellTypist 1.7 (the package): logistic regression on scaled genes, trained on "
            "the support"
        )
        self.train_kwargs = train_kwargs

    def prepare(self, data: TargetData) -> None:
        """Refuse early, naming the conflict, when CellTypist cannot run."""
        problem = celltypist_problem()
        if problem is not None:
            raise ImportError(problem)
        self._rows(data, data.genes_for(self))

    def _rows(self, data: TargetData, genes: str) -> np.ndarray:
        """Every row of the target over ``genes`` as CellTypist reads them (:func:`log1p_cp10k`)."""
        cached = self._converted
        if cached is None or cached[0] is not data or cached[1] != genes:
            rows = log1p_cp10k(data.log_expression(genes)).astype(np.float32)
            self._converted = cached = (data, genes, rows)
        return cached[2]

    def fit_predict_proba(self, task: FewShotTask, *, seed: int) -> pd.DataFrame:
        """Train CellTypist on the support rows; probabilities of the query rows."""
        genes = _gene_names(task)
        rows = self._rows(task.data, task.genes)
        with _quiet_celltypist():
            import celltypist

            model = celltypist.train(
                rows[task.support_indices],
                labels=np.asarray(task.y_support, dtype=str),
                genes=genes,
                n_jobs=1,
                **self.train_kwargs,
            )
            query = AnnData(X=rows[task.query_indices], var=pd.DataFrame(index=genes))
            result = celltypist.annotate(query, model=model, majority_voting=False)
        proba = result.probability_matrix
        proba = proba.div(proba.sum(axis=1).replace(0.0, 1.0), axis=0)
        return pd.DataFrame(proba.to_numpy(), columns=[str(c) for c in proba.columns])

    def __repr__(self) -> str:
        return f"CellTypistMethod(name={self.name!r}, train_kwargs={self.train_kwargs!r})"


def _gene_names(task: FewShotTask) -> np.ndarray:
    """Names of the columns of the task's expression (the target's genes or the model's)."""
    data = task.data
    if task.genes == "target":
        return np.asarray(data.adata.var_names, dtype=str)
    return np.asarray(data.alignment.reference, dtype=str)
