"""The built-in methods of the benchmark, by name, and how a call's ``methods=`` resolves.

Kept apart from :mod:`scgtl.benchmark._methods` (the method classes), so that CellTypist's
method, built on those classes, is listed here without an import cycle.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier

from scgtl.benchmark._celltypist import CellTypistMethod, celltypist_problem
from scgtl.benchmark._methods import (
    FineTuneMethod,
    KNNMethod,
    Method,
    SemiSupervisedMethod,
    SklearnMethod,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


#: Neighbours of the kNN graph of the ``pca_label_spreading`` baseline (scikit-learn's default).
LABEL_SPREADING_NEIGHBORS = 7


def builtin_methods() -> dict[str, Method]:
    """Fresh instances of the built-in methods, by name, in report order.

    All but ``gtl_network`` (GTL's network without the wide path, an ablation, run when named)
    are :data:`DEFAULT_METHODS`; ``celltypist`` needs the CellTypist package, an optional extra
    (:class:`~scgtl.benchmark.CellTypistMethod`). Inductive: ``gtl``, ``finetune``,
    ``scratch``, ``logreg``, ``celltypist``, ``gtl_network``; transductive:
    ``gtl_transductive`` (``fine_tune(transductive=True)``) and the four ``pca_*``.
    """
    methods: list[Method] = [
        FineTuneMethod(
            "gtl",
            use_guide=True,
            transductive=False,
            description=(
                "GTL from the support alone: guided fine-tuning of the pre-trained model, "
                "pooled with a logistic regression on the study's genes "
                "(model.fine_tune(transductive=False))"
            ),
        ),
        FineTuneMethod(
            "finetune",
            use_guide=False,
            wide=False,
            description="transfer learning: fine-tuning of the pre-trained model, no guide",
        ),
        FineTuneMethod(
            "scratch",
            use_guide=False,
            from_scratch=True,
            wide=False,
            description="the same network trained from a random initialisation",
        ),
        SklearnMethod(
            "logreg",
            LogisticRegression(max_iter=1000),
            representation="log",
            description="logistic regression on log-normalised expression",
        ),
        SklearnMethod(
            "pca_logreg",
            LogisticRegression(max_iter=1000),
            representation="pca",
            description="logistic regression on PCA of all target rows (transductive)",
        ),
        KNNMethod("pca_knn"),
        SemiSupervisedMethod(
            "pca_label_spreading",
            LabelSpreading(kernel="knn", n_neighbors=LABEL_SPREADING_NEIGHBORS),
            representation="pca",
            description=(
                "label spreading on the kNN graph "
                f"({LABEL_SPREADING_NEIGHBORS} neighbours) of all target rows' PCA; rows the "
                "graph does not link to the support take the nearest support row's class "
                "(transductive)"
            ),
        ),
        SemiSupervisedMethod(
            "pca_self_training",
            SelfTrainingClassifier(LogisticRegression(max_iter=1000)),
            representation="pca",
            description=(
                "self-training logistic regression on PCA of the target, all target rows "
                "(transductive)"
            ),
        ),
        FineTuneMethod(
            "gtl_transductive",
            use_guide=True,
            transductive=True,
            description=(
                "GTL with fine_tune(transductive=True), reading the study's unlabelled cells: "
                "fine-tuned from the model adapted to the unlabelled target, the wide path on "
                "the PCA of all target rows (transductive)"
            ),
        ),
        FineTuneMethod(
            "gtl_network",
            use_guide=True,
            wide=False,
            description="GTL's guided network alone, without the wide path (wide=False)",
        ),
        CellTypistMethod("celltypist"),
    ]
    by_name = {m.name: m for m in methods}
    order = [*DEFAULT_METHODS, *(name for name in by_name if name not in DEFAULT_METHODS)]
    return {name: by_name[name] for name in order}


#: Names of the methods :func:`scgtl.benchmark.few_shot` runs by default, in report order: GTL
#: from the support alone and reading the study's other cells (``transductive=True``), the two
#: ablations, and every peer a user would reach for.
DEFAULT_METHODS: tuple[str, ...] = (
    "gtl",
    "gtl_transductive",
    "finetune",
    "scratch",
    "logreg",
    "pca_logreg",
    "pca_knn",
    "pca_label_spreading",
    "pca_self_training",
    "celltypist",
)

#: The methods that fine-tune the pre-trained model's network.
NETWORK_METHODS: tuple[str, ...] = ("gtl", "finetune", "scratch")


def resolve_methods(methods: Sequence[str | Method] | None, *, has_model: bool) -> list[Method]:
    """Turn names and :class:`Method` instances into a list of methods with unique names.

    ``None`` means the methods of :data:`DEFAULT_METHODS` (the fine-tuning ones only when there
    is a model).
    """
    builtins = builtin_methods()
    if methods is None:
        defaults = [builtins[name] for name in _runnable_defaults()]
        return [m for m in defaults if has_model or not m.needs_model]
    if isinstance(methods, str | Method):
        methods = [methods]
    resolved: list[Method] = []
    for m in methods:
        if isinstance(m, str):
            if m not in builtins:
                raise ValueError(
                    f"Unknown method {m!r}; built-in methods are {list(builtins)}, or pass a "
                    "scgtl.benchmark.Method instance."
                )
            m = builtins[m]
        elif not isinstance(m, Method):
            raise TypeError(
                f"methods must hold method names or scgtl.benchmark.Method instances, not "
                f"{type(m).__name__}."
            )
        if not isinstance(m.name, str) or not m.name:
            raise ValueError(f"{m!r} has no name; set its `name` attribute.")
        if m.needs_model and not has_model:
            raise ValueError(
                f"Method {m.name!r} fine-tunes a pre-trained model, but model=None was given."
            )
        resolved.append(m)
    if not resolved:
        raise ValueError("methods is empty; give at least one method.")
    names = [m.name for m in resolved]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"Method names must be unique; repeated: {dupes}.")
    return resolved


def _runnable_defaults() -> list[str]:
    """:data:`DEFAULT_METHODS` without ``celltypist`` where it cannot run, with a warning why."""
    problem = celltypist_problem()
    if problem is None:
        return list(DEFAULT_METHODS)
    warnings.warn(f"The benchmark runs without 'celltypist': {problem}", stacklevel=4)
    return [name for name in DEFAULT_METHODS if name != "celltypist"]
