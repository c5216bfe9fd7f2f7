"""The methods a few-shot benchmark compares, and the interface for adding one.

A method sees one episode at a time as a :class:`FewShotTask` and returns class probabilities
for the query rows. Everything a method may use is on the task: the support labels, the
log-normalised expression of the support and query rows (over all of the target's own genes for
the baselines, the default ``few_shot(baseline_genes="target")``, or over the model's genes),
their PCA coordinates (PCA fit once on all rows of the unlabelled target), the same for every
row of the target (for transductive methods), and, for methods that fine-tune the pre-trained
model, the model and the target with the query rows' labels hidden.

Every method has a regime (:attr:`Method.transductive`): inductive methods learn from the
support set alone; transductive ones also read the expression of the target's unlabelled rows,
query rows included (never their labels): the PCA baselines, whose PCA is fit on every row,
label spreading, self-training, a model adapted to the target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances_argmin
from sklearn.neighbors import KNeighborsClassifier

from scgtl.data import align_genes, get_matrix, read_log_expression

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sklearn.base import ClassifierMixin

    from scgtl._constants import Units
    from scgtl.benchmark._episodes import Episode
    from scgtl.data import GeneAlignment

#: Label given to the rows outside the support set in :meth:`FewShotTask.masked_target`.
HIDDEN_LABEL = "<hidden: query>"

#: Number of principal components of the PCA baselines (fewer when the target is smaller).
N_PCA_COMPONENTS = 50

#: Which genes the baselines can read: the model's, or all of the target's own (the default of
#: :func:`scgtl.benchmark.few_shot`).
BASELINE_GENES: tuple[str, ...] = ("model", "target")

#: The two regimes of a method (:attr:`Method.transductive` false, true), in report order.
REGIMES: tuple[str, ...] = ("inductive", "transductive")

#: Label of the unlabelled rows given to scikit-learn's semi-supervised estimators.
UNLABELLED = -1


def regime_of(method: Method) -> str:
    """The regime of ``method``: ``"transductive"`` or ``"inductive"`` (see :data:`REGIMES`)."""
    return REGIMES[1] if method.transductive else REGIMES[0]


def check_baseline_genes(value: str, *, name: str = "baseline_genes") -> str:
    """Return ``value`` if it is one of :data:`BASELINE_GENES`, else raise naming ``name``."""
    if not isinstance(value, str) or value not in BASELINE_GENES:
        raise ValueError(
            f"{name}={value!r} is not valid; choose 'model' (the model's genes, as the network "
            "reads them) or 'target' (all of the target's own genes)."
        )
    return value


@dataclass
class TargetData:
    """The target of a benchmark, read once and shared by all episodes.

    Parameters
    ----------
    adata
        The target (never modified).
    labels
        Its labels, one string per row.
    labels_key
        The ``.obs`` column the labels came from.
    layer
        Where its expression is (``None``: ``.X``).
    units
        Units of that expression.
    alignment
        How its genes map onto the model's genes.
    model
        The pre-trained model, or ``None`` when only baselines run.
    n_pca_components
        Principal components for the PCA baselines.
    baseline_genes
        Which genes the methods that do not read the model's genes
        (:attr:`Method.reads_model_genes` false) see: ``"model"``, the model's genes (those
        missing from the target zero-filled), or ``"target"``, all of the target's own genes.
        The fine-tuning methods always read the model's genes.
    """

    adata: AnnData
    labels: np.ndarray
    labels_key: str
    layer: str | None
    units: Units
    alignment: GeneAlignment
    model: Any = None
    n_pca_components: int = N_PCA_COMPONENTS
    baseline_genes: Literal["model", "target"] = "model"
    _adapted: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_baseline_genes(self.baseline_genes)

    @cached_property
    def X_log(self) -> np.ndarray:
        """Log-normalised expression of every row over the model's genes (the model's input)."""
        x = read_log_expression(
            self.adata, layer=self.layer, units=self.units, alignment=self.alignment
        )
        return x.numpy()

    @cached_property
    def X_pca(self) -> np.ndarray:
        """PCA coordinates of every row; the PCA is fit on all rows, without labels."""
        return self._pca(self.X_log)

    @property
    def _target_is_model(self) -> bool:
        """Whether the target's genes are exactly the model's, in the model's order."""
        return self.alignment.is_identity

    @cached_property
    def X_log_target(self) -> np.ndarray:
        """Log-normalised expression of every row over all of the target's own genes.

        The same transform as :attr:`X_log` (library size over all of the target's genes); the
        same array when the target's genes are the model's.
        """
        if self._target_is_model:
            return self.X_log
        own = align_genes(self.adata.var_names, self.adata.var_names, warn=False)
        x = read_log_expression(self.adata, layer=self.layer, units=self.units, alignment=own)
        return x.numpy()

    @cached_property
    def X_pca_target(self) -> np.ndarray:
        """PCA coordinates of :attr:`X_log_target`, fit on all rows, without labels."""
        if self._target_is_model:
            return self.X_pca
        return self._pca(self.X_log_target)

    def _pca(self, x: np.ndarray) -> np.ndarray:
        n_components = min(self.n_pca_components, x.shape[0] - 1, x.shape[1])
        return PCA(n_components=n_components, random_state=0).fit_transform(x)

    def genes_for(self, method: Method) -> Literal["model", "target"]:
        """The genes ``method`` reads: ``"target"`` only for a baseline under ``"target"``."""
        if self.baseline_genes == "target" and not method.reads_model_genes:
            return "target"
        return "model"

    def log_expression(self, genes: Literal["model", "target"] = "model") -> np.ndarray:
        """:attr:`X_log` (``genes="model"``) or :attr:`X_log_target` (``"target"``)."""
        target = check_baseline_genes(genes, name="genes") == "target"
        return self.X_log_target if target else self.X_log

    def pca(self, genes: Literal["model", "target"] = "model") -> np.ndarray:
        """:attr:`X_pca` (``genes="model"``) or :attr:`X_pca_target` (``"target"``)."""
        target = check_baseline_genes(genes, name="genes") == "target"
        return self.X_pca_target if target else self.X_pca

    def n_genes(self, genes: Literal["model", "target"] = "model") -> int:
        """Number of genes (columns) of :meth:`log_expression` for ``genes``."""
        if check_baseline_genes(genes, name="genes") == "target":
            return self.adata.n_vars
        return int(self.alignment.reference.size)

    def adapted_model(self, **adapt_kwargs):
        """The model adapted to all rows of the target (``model.adapt``), once per setting.

        Adaptation reads the target's expression only, never its labels, like the PCA of the
        baselines; every episode then fine-tunes the same adapted model.
        """
        key = tuple(sorted(adapt_kwargs.items()))
        if key not in self._adapted:
            self._adapted[key] = self.model.adapt(
                self.unlabelled(), layer=self.layer, units=self.units, **adapt_kwargs
            )
        return self._adapted[key]

    @cached_property
    def transductive_model(self):
        """The model adapted to the target as ``fine_tune(transductive=True)`` adapts it.

        :meth:`scgtl.GTL.adapted_to` on the unlabelled target, once: every episode's
        ``fine_tune(transductive=True)`` then recognises the study and reuses it, exactly as a
        user's repeated calls on one study would.
        """
        return self.model.adapted_to(self.unlabelled(), layer=self.layer, units=self.units)

    def masked(self, support: np.ndarray) -> AnnData:
        """A light AnnData sharing the target's matrix, with labels only on ``support`` rows.

        Every other row is labelled :data:`HIDDEN_LABEL`.
        """
        masked = np.full(self.adata.n_obs, HIDDEN_LABEL, dtype=object)
        masked[support] = self.labels[support]
        obs = pd.DataFrame({self.labels_key: pd.Categorical(masked)}, index=self.adata.obs_names)
        return self._sharing_matrix(obs)

    def unlabelled(self) -> AnnData:
        """A light AnnData sharing the target's matrix, with no ``obs`` column at all."""
        return self._sharing_matrix(pd.DataFrame(index=self.adata.obs_names))

    def _sharing_matrix(self, obs: pd.DataFrame) -> AnnData:
        matrix = get_matrix(self.adata, self.layer)
        var = pd.DataFrame(index=self.adata.var_names)
        if self.layer is None:
            return AnnData(X=matrix, obs=obs, var=var)
        return AnnData(obs=obs, var=var, layers={self.layer: matrix})


@dataclass
class FewShotTask:
    """What a method sees in one episode.

    Attributes
    ----------
    episode
        The episode: ``k``, its index, its seed and the support and query rows.
    data
        The shared target data; use the properties below rather than this.
    genes
        The genes of the expression properties below: ``"model"``, the model's genes, or
        ``"target"``, all of the target's own genes (what :func:`scgtl.benchmark.few_shot` gives
        a baseline by default, ``baseline_genes="target"``; see :meth:`TargetData.genes_for`).
    """

    episode: Episode
    data: TargetData = field(repr=False)
    genes: Literal["model", "target"] = "model"

    def __post_init__(self) -> None:
        check_baseline_genes(self.genes, name="genes")

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes of this episode, sorted; the columns of the returned probabilities."""
        return self.episode.classes

    @property
    def support_indices(self) -> np.ndarray:
        """Rows of the target in the support set."""
        return self.episode.support

    @property
    def query_indices(self) -> np.ndarray:
        """Rows of the target in the query set."""
        return self.episode.query

    @property
    def y_support(self) -> np.ndarray:
        """Labels of the support rows (strings)."""
        return self.data.labels[self.episode.support]

    @property
    def X_support(self) -> np.ndarray:
        """Log-normalised expression of the support rows over the task's :attr:`genes`."""
        return self.X_all[self.episode.support]

    @property
    def X_query(self) -> np.ndarray:
        """Log-normalised expression of the query rows over the task's :attr:`genes`."""
        return self.X_all[self.episode.query]

    @property
    def X_pca_support(self) -> np.ndarray:
        """PCA coordinates of the support rows (PCA fit on the unlabelled target)."""
        return self.X_pca_all[self.episode.support]

    @property
    def X_pca_query(self) -> np.ndarray:
        """PCA coordinates of the query rows."""
        return self.X_pca_all[self.episode.query]

    @property
    def X_all(self) -> np.ndarray:
        """Log-normalised expression of every row of the target, for transductive methods.

        Rows are the target's rows: the support, the query and any rows of classes left out at
        this ``k``. Their labels are not part of it; only :attr:`y_support` holds labels.
        """
        return self.data.log_expression(self.genes)

    @property
    def X_pca_all(self) -> np.ndarray:
        """PCA coordinates of every row of the target (see :attr:`X_all`)."""
        return self.data.pca(self.genes)

    @property
    def model(self):
        """The pre-trained model (``None`` when the benchmark runs baselines only)."""
        return self.data.model

    @property
    def labels_key(self) -> str:
        """The ``.obs`` column holding the labels."""
        return self.data.labels_key

    def masked_target(self) -> AnnData:
        """The target with the label of every row outside the support set hidden.

        Those rows are labelled :data:`HIDDEN_LABEL`, a class that never appears in the support
        set. The result shares the target's expression matrix; nothing is copied and the
        caller's AnnData is untouched.
        """
        return self.data.masked(self.episode.support)

    def query_adata(self) -> AnnData:
        """A view of the target's query rows."""
        return self.data.adata[self.episode.query]


class Method(ABC):
    """A few-shot classification method, as the benchmark calls it.

    Subclass it, give it a ``name`` and implement :meth:`fit_predict_proba`::

        class RandomForest(scgtl.benchmark.Method):
            name = "random_forest"

            def fit_predict_proba(self, task, *, seed):
                rf = RandomForestClassifier(random_state=seed)
                return rf.fit(task.X_support, task.y_support).predict_proba(task.X_query)

    For a scikit-learn classifier, :class:`SklearnMethod` does the same in one line.
    """

    #: Short identifier, used in the results table (e.g. ``"pca_logreg"``).
    name: str = ""
    #: One line describing the method, for reports.
    description: str = ""
    #: Whether the method needs the pre-trained model (``task.model``).
    needs_model: bool = False
    #: The method's regime. ``True`` (transductive) when it reads the expression of the
    #: target's unlabelled rows, query rows included (never their labels), before predicting
    #: them: a PCA fit on every row of the target (the PCA baselines: the query rows shape the
    #: components their classifier then reads), label spreading, self-training, a network
    #: adapted to the whole target. ``False`` (inductive) when everything it learns comes from
    #: the support set alone. :func:`scgtl.benchmark.few_shot` compares each method only with
    #: the reference of its own regime.
    transductive: bool = False

    @property
    def reads_model_genes(self) -> bool:
        """Whether the method reads the model's genes even under ``baseline_genes="target"``.

        By default, the methods that need the model (:attr:`needs_model`): the fine-tuning
        methods read the target through the model. Every other method is a baseline, and reads
        all of the target's own genes under :func:`scgtl.benchmark.few_shot`'s default
        ``baseline_genes="target"``. Override it (a class attribute will do) to change that.
        """
        return self.needs_model

    @abstractmethod
    def fit_predict_proba(self, task: FewShotTask, *, seed: int) -> np.ndarray | pd.DataFrame:
        """Learn from the support set of ``task`` and return probabilities for its query rows.

        Parameters
        ----------
        task
            The episode.
        seed
            The episode's seed, for any randomness of the method.

        Returns
        -------
        ``(n_query, n_classes)`` probabilities: an array whose columns follow ``task.classes``,
        or a DataFrame whose columns are class names.
        """

    def prepare(self, data: TargetData) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Work shared by every episode, done once before them and left out of the timings."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _with_seed(estimator: ClassifierMixin, seed: int) -> ClassifierMixin:
    """A fresh clone of ``estimator``, seeded if it takes a ``random_state``."""
    estimator = clone(estimator)
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed % 2**32)
    return estimator


def _proba_frame(estimator: ClassifierMixin, x: np.ndarray) -> pd.DataFrame:
    """``predict_proba`` with the estimator's classes as columns."""
    return pd.DataFrame(estimator.predict_proba(x), columns=[str(c) for c in estimator.classes_])


class SklearnMethod(Method):
    """Any scikit-learn classifier with ``predict_proba``, on log expression or on PCA.

    Parameters
    ----------
    name
        Identifier in the results table.
    estimator
        An unfitted classifier; it is cloned (and seeded, if it has ``random_state``) for every
        episode.
    representation
        ``"log"``: log-normalised expression (over the target's own genes, or the model's with
        ``few_shot(baseline_genes="model")``), an inductive method; ``"pca"``: PCA coordinates,
        the PCA fit on every row of the unlabelled target, query rows included, so a
        transductive method (see :attr:`transductive`).
    description
        One line for reports.

    Examples
    --------
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> rf = scgtl.benchmark.SklearnMethod("random_forest", RandomForestClassifier())
    >>> methods = [*scgtl.benchmark.DEFAULT_METHODS, rf]
    >>> res = scgtl.benchmark.few_shot(model, target, labels_key="cell_type", methods=methods)
    """

    def __init__(
        self,
        name: str,
        estimator: ClassifierMixin,
        *,
        representation: Literal["log", "pca"] = "log",
        description: str = "",
    ):
        if representation not in ("log", "pca"):
            raise ValueError(
                f"representation={representation!r} is not valid; choose 'log' or 'pca'."
            )
        if not hasattr(estimator, "predict_proba"):
            raise TypeError(f"{type(estimator).__name__} has no predict_proba.")
        self.name = name
        self.estimator = estimator
        self.representation = representation
        self.description = description or f"{type(estimator).__name__} on {representation}"

    @property
    def transductive(self) -> bool:
        """Whether the method reads the PCA (``representation="pca"``).

        The PCA is fit on every row of the target, query rows included (without their labels),
        so the query rows shape the coordinates the classifier learns from and predicts on.
        """
        return self.representation == "pca"

    def prepare(self, data: TargetData) -> None:
        """Read (and project) the target once."""
        genes = data.genes_for(self)
        _ = data.pca(genes) if self.representation == "pca" else data.log_expression(genes)

    def _data(self, task: FewShotTask) -> tuple[np.ndarray, np.ndarray]:
        if self.representation == "pca":
            return task.X_pca_support, task.X_pca_query
        return task.X_support, task.X_query

    def _estimator(self, task: FewShotTask, seed: int) -> ClassifierMixin:
        return _with_seed(self.estimator, seed)

    def fit_predict_proba(self, task: FewShotTask, *, seed: int) -> pd.DataFrame:
        """Fit a clone of the estimator on the support rows; probabilities of the query rows."""
        x_support, x_query = self._data(task)
        estimator = self._estimator(task, seed).fit(x_support, task.y_support)
        return _proba_frame(estimator, x_query)

    def __repr__(self) -> str:
        return (
            f"SklearnMethod(name={self.name!r}, estimator={self.estimator!r}, "
            f"representation={self.representation!r})"
        )


class KNNMethod(SklearnMethod):
    """k-nearest neighbours on PCA of the target, with at most ``k`` neighbours per episode.

    Each episode votes over ``min(n_neighbors, k)`` neighbours, where ``k`` is the episode's
    number of support samples *per class* (not the size of the support set). With a fixed 5
    neighbours, an episode with one sample per class would give one vote to each of 5 different
    classes: a five-way tie, settled by class order rather than by distance (on the benchmark's
    targets it scored chance, or far below what 1-nearest neighbour scores). Capped at
    ``k``, the method is the 1-nearest-neighbour classifier at ``k=1`` and votes over 3
    neighbours at ``k=3``.

    Parameters
    ----------
    name
        Identifier in the results table.
    n_neighbors
        Neighbours at most (scikit-learn's default, 5); fewer when ``k`` is smaller.
    description
        One line for reports.
    """

    def __init__(self, name: str = "pca_knn", *, n_neighbors: int = 5, description: str = ""):
        valid = isinstance(n_neighbors, int | np.integer) and not isinstance(n_neighbors, bool)
        if not valid or n_neighbors < 1:
            raise ValueError(f"n_neighbors={n_neighbors!r} is not valid; give an integer >= 1.")
        super().__init__(
            name,
            KNeighborsClassifier(n_neighbors=int(n_neighbors)),
            representation="pca",
            description=description
            or (
                f"k-nearest neighbours on PCA of all target rows, min({int(n_neighbors)}, k) "
                "neighbours (1-nearest neighbour at k=1; transductive)"
            ),
        )

    def n_neighbors_for(self, k: int) -> int:
        """Neighbours used in an episode with ``k`` support samples per class."""
        return min(int(self.estimator.get_params()["n_neighbors"]), int(k))

    def _estimator(self, task: FewShotTask, seed: int) -> ClassifierMixin:
        estimator = clone(self.estimator)
        return estimator.set_params(n_neighbors=self.n_neighbors_for(task.episode.k))


class SemiSupervisedMethod(SklearnMethod):
    """A scikit-learn semi-supervised classifier, fit on every row of the target (transductive).

    In each episode the estimator sees all rows of the target (:attr:`FewShotTask.X_pca_all` or
    :attr:`FewShotTask.X_all`): the support rows with their labels and every other row with
    :data:`UNLABELLED` (``-1``). The labels of the rows outside the support set are never read.
    The query rows' probabilities are the estimator's transductive label distributions
    (``label_distributions_``, for ``LabelSpreading`` and ``LabelPropagation``), otherwise its
    ``predict_proba`` on the query rows (e.g. ``SelfTrainingClassifier``).

    A kNN graph may fall into parts, and labels spread only within a part: query rows of a part
    without a support row get an all-zero label distribution, whose argmax would be the first
    class, a tie settled by class order (on ``yan`` with 7 neighbours, one of three episodes at
    ``k=1`` left 51 of its 84 query rows so). Those rows take the class of their nearest support
    row instead (Euclidean, in the same representation), with probability one.

    Parameters
    ----------
    name
        Identifier in the results table.
    estimator
        An unfitted semi-supervised classifier that takes ``-1`` for unlabelled rows; it is
        cloned for every episode (and seeded, if it has ``random_state``).
    representation
        ``"pca"`` (default): PCA coordinates of the target; ``"log"``: log-normalised expression.
    description
        One line for reports.

    Examples
    --------
    >>> from sklearn.semi_supervised import LabelPropagation
    >>> lp = scgtl.benchmark.SemiSupervisedMethod("pca_label_propagation", LabelPropagation())
    """

    transductive = True

    def __init__(
        self,
        name: str,
        estimator: ClassifierMixin,
        *,
        representation: Literal["log", "pca"] = "pca",
        description: str = "",
    ):
        super().__init__(
            name,
            estimator,
            representation=representation,
            description=description
            or f"{type(estimator).__name__} on {representation}, all target rows (transductive)",
        )

    def _estimator(self, task: FewShotTask, seed: int) -> ClassifierMixin:
        estimator = _with_seed(self.estimator, seed)
        params = estimator.get_params(deep=False)
        if params.get("kernel") == "knn" and "n_neighbors" in params:
            # scikit-learn's kNN graph needs fewer neighbours than rows.
            n_rows = task.data.adata.n_obs
            estimator.set_params(n_neighbors=max(1, min(int(params["n_neighbors"]), n_rows - 1)))
        return estimator

    def fit_predict_proba(self, task: FewShotTask, *, seed: int) -> pd.DataFrame:
        """Fit on all rows, only the support labelled; probabilities of the query rows."""
        x = task.X_pca_all if self.representation == "pca" else task.X_all
        classes = list(task.classes)
        y = np.full(x.shape[0], UNLABELLED, dtype=np.int64)
        y[task.support_indices] = [classes.index(c) for c in task.y_support]
        estimator = self._estimator(task, seed).fit(x, y)
        columns = [classes[int(c)] for c in estimator.classes_]
        query = task.query_indices
        if not hasattr(estimator, "label_distributions_"):
            proba = estimator.predict_proba(x[query])
            return pd.DataFrame(np.asarray(proba, dtype=float), columns=columns)
        proba = np.array(estimator.label_distributions_[query], dtype=float)
        unreached = ~(proba.sum(axis=1) > 0)
        if unreached.any():
            # No path of the graph leads from these rows to a support row: they take the class
            # of their nearest support row (one-hot), not the first class by a tie.
            support = task.support_indices
            nearest = y[support[pairwise_distances_argmin(x[query[unreached]], x[support])]]
            proba[unreached] = 0.0
            proba[np.flatnonzero(unreached), np.searchsorted(estimator.classes_, nearest)] = 1.0
        return pd.DataFrame(proba, columns=columns)

    def __repr__(self) -> str:
        return (
            f"SemiSupervisedMethod(name={self.name!r}, estimator={self.estimator!r}, "
            f"representation={self.representation!r})"
        )


class FineTuneMethod(Method):
    """Fine-tune the pre-trained model on the support set (``model.fine_tune``).

    Parameters
    ----------
    name
        Identifier in the results table.
    use_guide
        Scale updates by the guide (GTL) or not (plain transfer learning).
    from_scratch
        Train the same network from a random initialisation instead of the pre-trained weights.
    adapt
        Options of ``model.adapt`` (``{}`` for its defaults): fine-tune a model first adapted to
        the unlabelled rows of the whole target (once per target, shared by all episodes)
        instead of the pre-trained model. ``None``: no adaptation.
    description
        One line for reports.
    **fine_tune_kwargs
        Further keyword arguments of ``model.fine_tune``. ``transductive`` is ``False`` unless
        given (``model.fine_tune``'s own default reads the study's other rows): a method's
        regime is fixed, so that the benchmark reports it beside baselines of the same regime.

    Examples
    --------
    GTL with target adaptation, as a method of its own beside the defaults:

    >>> adapted = scgtl.benchmark.FineTuneMethod("gtl_adapted", adapt={})
    >>> methods = [*scgtl.benchmark.DEFAULT_METHODS, adapted]
    """

    needs_model = True

    @property
    def transductive(self) -> bool:
        """Whether the method reads the unlabelled target rows.

        True with ``adapt`` set, or with ``fine_tune``'s ``transductive=True``.
        """
        return self.adapt is not None or bool(self.fine_tune_kwargs.get("transductive", False))

    def __init__(
        self,
        name: str,
        *,
        use_guide: bool = True,
        from_scratch: bool = False,
        adapt: dict | None = None,
        description: str = "",
        **fine_tune_kwargs,
    ):
        if adapt is not None and not isinstance(adapt, dict):
            raise TypeError(f"adapt={adapt!r} must be None or a dict of model.adapt options.")
        if adapt is not None and from_scratch:
            raise ValueError("adapt= and from_scratch=True exclude each other.")
        self.name = name
        self.use_guide = use_guide
        self.from_scratch = from_scratch
        self.adapt = adapt
        self.description = description
        self.fine_tune_kwargs = fine_tune_kwargs

    def prepare(self, data: TargetData) -> None:
        """Adapt the model to the target once, for ``adapt`` or ``transductive=True``.

        ``fine_tune(transductive=True)`` adapts the model to the study; the adapted model is
        made here, once per target, and every episode's ``fine_tune`` recognises it.
        """
        if data.model is not None:
            self.starting_model(data)

    def starting_model(self, data: TargetData):
        """The model this method fine-tunes: adapted to the target, or as pre-trained.

        A variant that fine-tunes more than once per episode (e.g. again with pseudo-labels)
        starts every fit from this model, so that a target is adapted to only once.
        """
        if self.adapt is not None:
            return data.adapted_model(**self.adapt)
        if self.fine_tune_kwargs.get("transductive", False) and not self.from_scratch:
            return data.transductive_model
        return data.model

    def fit_predict_proba(self, task: FewShotTask, *, seed: int) -> pd.DataFrame:
        """Fine-tune on the support rows (:meth:`fit`); probabilities of the query rows."""
        return self.fit(task, seed=seed).predict_proba(task.query_adata(), layer=task.data.layer)

    def fit(self, task: FewShotTask, *, seed: int):
        """The classifier ``model.fine_tune`` makes for one episode.

        The model sees the target with the query rows' labels hidden, and the support set as
        ``support_indices``. A variant that post-processes the classifier's predictions calls
        it from its own :meth:`fit_predict_proba`.
        """
        if task.model is None:
            raise ValueError(f"Method {self.name!r} needs a pre-trained model; none was given.")
        data = task.data
        return self.starting_model(data).fine_tune(
            task.masked_target(),
            labels_key=data.labels_key,
            support_indices=task.support_indices,
            seed=seed,
            layer=data.layer,
            units=data.units,
            **self.fine_tune_arguments(self.options(task, seed=seed)),
        )

    @staticmethod
    def fine_tune_arguments(options: dict) -> dict:
        """A flat dict of :meth:`options` as ``model.fine_tune``'s keyword arguments.

        The plan's settings (:class:`scgtl.FineTunePlan`) go into ``plan_kwargs``, merged
        with any ``plan_kwargs`` the options hold; the rest stay as they are.
        """
        from scgtl.model import FineTunePlan  # the model layer loads torch; only methods use it

        options = dict(options)
        plan = {k: options.pop(k) for k in FineTunePlan.setting_names() if k in options}
        return {**options, "plan_kwargs": {**options.pop("plan_kwargs", {}), **plan}}

    def options(self, task: FewShotTask, *, seed: int) -> dict:
        """Options of ``model.fine_tune`` for one episode (besides the support set).

        One flat dict: ``fine_tune``'s own options and its plan's settings
        (:class:`scgtl.FineTunePlan`: ``use_guide``, ``extra_loss``...), which :meth:`fit`
        passes as ``plan_kwargs``. A research variant overrides this to add what depends on
        the episode, e.g. a hook seeded by ``seed`` or reading ``task``'s unlabelled rows.
        """
        return {
            "use_guide": self.use_guide,
            "from_scratch": self.from_scratch,
            "transductive": False,
            **self.fine_tune_kwargs,
        }

    def __repr__(self) -> str:
        return (
            f"FineTuneMethod(name={self.name!r}, use_guide={self.use_guide}, "
            f"from_scratch={self.from_scratch}, adapt={self.adapt!r})"
        )


def probabilities(
    proba: np.ndarray | pd.DataFrame, classes: Sequence[str], *, n_query: int, name: str
) -> np.ndarray:
    """Check a method's output and return it as ``(n_query, len(classes))`` in class order."""
    if isinstance(proba, pd.DataFrame):
        columns = [str(c) for c in proba.columns]
        unknown = sorted(set(columns) - set(classes))
        if unknown:
            raise ValueError(
                f"Method {name!r} returned probabilities for unknown classes {unknown}."
            )
        frame = pd.DataFrame(np.asarray(proba, dtype=float), columns=columns)
        proba = frame.reindex(columns=list(classes), fill_value=0.0).to_numpy()
    proba = np.asarray(proba, dtype=float)
    if proba.shape != (n_query, len(classes)):
        raise ValueError(
            f"Method {name!r} returned probabilities of shape {proba.shape}; expected "
            f"{(n_query, len(classes))} (query rows x classes)."
        )
    if not np.isfinite(proba).all():
        raise ValueError(f"Method {name!r} returned non-finite probabilities.")
    return proba
