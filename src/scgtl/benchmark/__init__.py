"""Honest few-shot benchmarks: GTL beside the simple baselines, on the same episodes.

:func:`few_shot` draws seeded episodes from a labelled target (``k`` samples per class as the
support set, every other sample as the query set) and runs every method on each of them:

``gtl``
    guided fine-tuning of the pre-trained model from the support set alone
    (``model.fine_tune(..., transductive=False)``);
``gtl_transductive``
    ``model.fine_tune(..., transductive=True)``: it also reads the study's unlabelled cells (the
    model adapted to the study, the wide path on the study's PCA);
``finetune``
    plain transfer learning, the same fine-tuning without the guide;
``scratch``
    the same network trained from a random initialisation;
``logreg``
    logistic regression on log-normalised expression;
``pca_logreg``
    logistic regression on 50 principal components, the PCA fit on the unlabelled target;
``pca_knn``
    k-nearest neighbours on those components, ``min(5, k)`` neighbours (1-NN at ``k=1``);
``pca_label_spreading``
    scikit-learn's ``LabelSpreading`` on the kNN graph (7 neighbours) of all target rows' PCA;
``pca_self_training``
    ``SelfTrainingClassifier`` around that logistic regression, on the same components;
``celltypist``
    the CellTypist package trained on the support set (:class:`CellTypistMethod`), where the
    optional extra is installed (``pip install 'scgtl[celltypist]'``); the default run leaves it
    out with a warning naming why where it cannot run.

These are :data:`DEFAULT_METHODS`; ``gtl_network`` (the guided network without the wide path)
runs when named. Each method says its regime in :attr:`Method.transductive`. Inductive methods
(``gtl``, ``finetune``, ``scratch``, ``logreg``, ``celltypist``) learn from the support set
alone; transductive ones also read the expression of the target's unlabelled rows, query rows
included, never their labels: ``gtl_transductive``, the four ``pca_*`` baselines (their PCA is
fit on every row) and any model adapted to the target (``FineTuneMethod(..., adapt={})``).
Each regime is compared with its own reference: ``gtl`` for the inductive methods, and a
transductive GTL (``few_shot(..., transductive_reference=...)``; by default the first
transductive method that needs the model) for the transductive ones.

All methods see the same log-normalisation (the model's own input transform). By default the
baselines (every method that does not need the model) read all of the target's own genes, as a
user without the model would, and the fine-tuning methods read the model's genes (those the
target lacks zero-filled); ``few_shot(..., baseline_genes="model")`` gives every method the
model's genes. :class:`FewShotResult` holds the tidy per-episode table (with each method's
``regime``) and gives the summary (mean and 95% CI per method and ``k``, paired differences to
the reference of the method's regime with Wilcoxon p-values), a plain-language verdict per
regime and ``k``, a plot and a Markdown report with an inductive and a transductive section.

Novel types and calibration
---------------------------
:func:`novelty` leaves one class out of each episode's support and scores GTL's novelty score
(``predict(unknown="auto")``) and ``pca_logreg``'s ``1 - max probability`` on the query:
AUROC for the left-out class, balanced accuracy on the known classes with and without
``unknown``, the fraction of left-out cells called unknown; :func:`summarize_novelty` averages
them over left-out classes. Every few-shot result also has an ``ece`` column, the expected
calibration error of each method's confidence (15 equal-width bins).

Adding a method
---------------
Subclass :class:`Method`: give it a ``name`` and a ``fit_predict_proba(task, *, seed)`` that
learns from ``task.X_support`` / ``task.y_support`` (or ``task.X_pca_support``, or, for a
transductive method, ``task.X_pca_all`` and ``task.support_indices``, or
``task.masked_target()``) and returns probabilities for the query rows, columns in
``task.classes`` order (or a DataFrame with class names as columns)::

    from sklearn.ensemble import RandomForestClassifier

    class RandomForest(scgtl.benchmark.Method):
        name = "random_forest"

        def fit_predict_proba(self, task, *, seed):
            rf = RandomForestClassifier(random_state=seed).fit(task.X_support, task.y_support)
            return rf.predict_proba(task.X_query)

    methods = [*scgtl.benchmark.DEFAULT_METHODS, RandomForest()]
    res = scgtl.benchmark.few_shot(model, target, labels_key="cell_type", methods=methods)

Any scikit-learn classifier also fits in one line:
``SklearnMethod("random_forest", RandomForestClassifier(), representation="pca")``, and any
semi-supervised one (``-1`` for unlabelled rows) in
``SemiSupervisedMethod("pca_label_propagation", LabelPropagation())``.

A loop of one's own
-------------------
The pieces of :func:`few_shot` and :func:`novelty` serve a study that scores something they do
not (the research scripts of ``benchmarks/`` do): :func:`make_episodes` draws the same seeded
episodes, :func:`left_out_episodes` leaves one class out of each as :func:`novelty` does,
:class:`TargetData` reads the target once and :class:`FewShotTask` gives one episode's
support, query and PCA to a :class:`Method`; :func:`quiet` silences the per-fit warnings, and
:func:`markdown_table` writes a table as the reports do.
"""

from scgtl.benchmark._builtin import DEFAULT_METHODS, builtin_methods
from scgtl.benchmark._celltypist import CellTypistMethod, celltypist_problem
from scgtl.benchmark._default import (
    DEFAULT_LABELS_KEY,
    DEFAULT_SPLIT,
    default_task,
    embedded_study,
    pretrain_default,
    run_default,
)
from scgtl.benchmark._episodes import Episode, episode_seed, make_episodes
from scgtl.benchmark._few_shot import few_shot, quiet, score
from scgtl.benchmark._methods import (
    FewShotTask,
    FineTuneMethod,
    KNNMethod,
    Method,
    SemiSupervisedMethod,
    SklearnMethod,
    TargetData,
)
from scgtl.benchmark._novelty import (
    NOVELTY_COLUMNS,
    left_out_episodes,
    novelty,
    summarize_novelty,
)
from scgtl.benchmark._pretrain import LIBRARY_SIZE_KEY, pretrain, select_genes
from scgtl.benchmark._report import markdown_table
from scgtl.benchmark._result import FewShotResult
from scgtl.benchmark._stats import expected_calibration_error

__all__ = [
    "CellTypistMethod",
    "DEFAULT_LABELS_KEY",
    "DEFAULT_METHODS",
    "DEFAULT_SPLIT",
    "Episode",
    "FewShotResult",
    "FewShotTask",
    "FineTuneMethod",
    "KNNMethod",
    "LIBRARY_SIZE_KEY",
    "Method",
    "SemiSupervisedMethod",
    "SklearnMethod",
    "TargetData",
    "builtin_methods",
    "celltypist_problem",
    "default_task",
    "embedded_study",
    "episode_seed",
    "expected_calibration_error",
    "pretrain_default",
    "few_shot",
    "left_out_episodes",
    "make_episodes",
    "markdown_table",
    "NOVELTY_COLUMNS",
    "novelty",
    "summarize_novelty",
    "pretrain",
    "quiet",
    "run_default",
    "score",
    "select_genes",
]
