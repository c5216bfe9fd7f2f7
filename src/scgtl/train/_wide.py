"""The wide path of a fine-tuned classifier and how much it weighs against the network.

A network fine-tuned from a pre-trained encoder can only use what the encoder's latent space
keeps; a task whose signal the corpus never varied (e.g. stimulated vs control cells when the
corpus held no stimulated cells) is lost in it, where a logistic regression on the study's own
genes still finds it. The classifier therefore has a second, *wide* path: a logistic regression
on the study's own genes, fitted on the support set. The two paths are pooled in log-probability
space, ``log p = (1 - w) log p_network + w log p_wide`` (renormalised), and ``w`` is chosen on
the support set itself by cross-validation, so the path that generalises better there weighs
more. Measured on the developer targets (``docs/research/wide_path.md``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from torch import nn

from scgtl.module._classifier import GTLClassifierModule, pool_log_probabilities
from scgtl.train._calibration import fit_temperature, held_out_novelty

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    #: A wide path's fit: ``fit(x_wide, y, n_classes) -> nn.Linear``.
    WideFitter = Callable[[torch.Tensor, torch.Tensor, int], nn.Linear]

#: Candidate weights of the wide path tried by cross-validation.
WIDE_WEIGHT_GRID: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
#: Weight of the wide path when the support has a class with a single sample, where no
#: cross-validation is possible (chosen on the developer targets,
#: ``docs/research/wide_path.md``).
WIDE_WEIGHT_ONE_SHOT = 0.75
#: Principal components of the transductive wide path (as the benchmark's PCA baselines).
N_PCA_COMPONENTS = 50
#: Rows of the study the transductive wide path's PCA is fitted on at most (a random subset
#: above it), so that its cost and memory do not grow with the study.
MAX_PCA_ROWS = 20_000
#: Folds of the cross-validation at most (each fold leaves out one sample per class at k <= 5).
MAX_FOLDS = 5


#: What the wide path's logistic regression reads (``FineTunePlan.wide_form``).
WideForm = Literal["auto", "genes", "scaled_genes", "pca", "pca+scaled_genes"]
WIDE_FORMS: tuple[str, ...] = ("auto", "genes", "scaled_genes", "pca", "pca+scaled_genes")
#: The form of the wide path when ``FineTunePlan.wide_form`` is ``None``, per regime
#: (``transductive``).
DEFAULT_WIDE_FORMS: dict[bool, str] = {True: "pca", False: "genes"}
#: The forms ``wide_form="auto"`` chooses between by cross-validation on the support, per
#: regime; the first is used where there is no cross-validation (a class with one sample).
AUTO_WIDE_FORMS: dict[bool, tuple[str, ...]] = {
    True: ("pca+scaled_genes", "pca", "scaled_genes"),
    False: ("genes", "scaled_genes"),
}


#: The forms that need the study's principal components (a transductive call).
PCA_FORMS: tuple[str, ...] = ("pca", "pca+scaled_genes")


def check_wide_form_regime(wide_form: str | None, *, transductive: bool) -> None:
    """Refuse, before any fit, a form that reads the study's rows in an inductive call."""
    if not transductive and wide_form in PCA_FORMS:
        raise ValueError(
            f"wide_form={wide_form!r} reads the study's other rows, but this call is "
            "inductive (transductive=False, or no rows besides the support); choose "
            "'genes' or 'scaled_genes'."
        )


def wide_fitters(
    form: str, *, transductive: bool, read_study: Callable[[], torch.Tensor]
) -> dict[str, WideFitter]:
    """The wide path's fits by name for ``form`` (``"auto"``: the regime's candidates).

    Parameters
    ----------
    form
        One of :data:`WIDE_FORMS`, not ``None``.
    transductive
        Whether the fits may read the study's rows: ``"scaled_genes"`` then scales by the
        study's spread, else by the support's.
    read_study
        Gives the study's rows over the wide path's genes; called only when a form needs them.
    """
    names = AUTO_WIDE_FORMS[transductive] if form == "auto" else (form,)
    if not transductive:
        inductive = {"genes": fit_linear_path, "scaled_genes": scaled_genes_path}
        return {name: inductive[name] for name in names}
    study = functools.cache(read_study)
    pca = functools.cache(lambda: StudyPCA(study()).fit_linear_path)
    scaled = functools.cache(lambda: GeneScaling(study()).fit_linear_path)
    build = {
        "genes": lambda: fit_linear_path,
        "pca": pca,
        "scaled_genes": scaled,
        "pca+scaled_genes": lambda: pooled_linear_paths(pca(), scaled()),
    }
    return {name: build[name]() for name in names}


def check_wide_form(wide_form: str | None) -> None:
    """Reject a wide form that is not one of :data:`WIDE_FORMS` (``None`` is the default)."""
    if wide_form is not None and wide_form not in WIDE_FORMS:
        raise ValueError(
            f"wide_form={wide_form!r} is not valid; choose None or one of {WIDE_FORMS}."
        )


def check_wide_weight(wide_weight: float | None) -> None:
    """Reject a weight outside ``[0, 1]``."""
    if wide_weight is None:
        return
    if isinstance(wide_weight, bool) or not isinstance(wide_weight, int | float):
        raise TypeError(f"wide_weight={wide_weight!r} must be None or a number in [0, 1].")
    if not 0.0 <= float(wide_weight) <= 1.0:
        raise ValueError(f"wide_weight={wide_weight!r} must be None or a number in [0, 1].")


def fit_linear_path(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> nn.Linear:
    """scikit-learn's ``LogisticRegression(max_iter=1000)`` on ``x``, as an ``nn.Linear``.

    The same estimator as the benchmark's ``logreg`` baseline (scikit-learn defaults, L2 with
    ``C=1``), so that a wide weight of 1 is that baseline. For two classes the single decision
    function becomes two logits ``(0, w x + b)``, which give the same probabilities.

    Parameters
    ----------
    x
        ``(n, n_genes)`` log expression of the support rows.
    y
        ``(n,)`` integer class codes ``0 .. n_classes - 1``, every class present.
    n_classes
        Number of classes.

    Returns
    -------
    A linear layer ``n_genes -> n_classes`` on ``x``'s device and dtype.
    """
    codes = y.cpu().numpy()
    if np.unique(codes).size != n_classes:
        raise ValueError(f"Every one of the {n_classes} classes needs a support sample.")
    with warnings.catch_warnings():
        # A handful of samples in thousands of dimensions is separable; lbfgs converging
        # slowly there changes nothing that matters.
        warnings.simplefilter("ignore", ConvergenceWarning)
        regression = LogisticRegression(max_iter=1000).fit(x.cpu().numpy(), codes)
    coef, intercept = regression.coef_, regression.intercept_
    if n_classes == 2:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    layer = nn.Linear(x.shape[1], n_classes).to(device=x.device, dtype=x.dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(coef))
        layer.bias.copy_(torch.as_tensor(intercept))
    return layer


def support_folds(y: np.ndarray, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The cross-validation folds of a support set, as ``(train, test)`` positions.

    Stratified folds, ``min(k_min, MAX_FOLDS)`` of them (``k_min``: samples of the smallest
    class), so each fold leaves out about one sample per class when ``k <= 5``.

    Parameters
    ----------
    y
        Integer class codes of the support rows; the smallest class needs 2 samples.
    seed
        Seed of the fold assignment.
    """
    n_folds = min(int(np.bincount(y).min()), MAX_FOLDS)
    if n_folds < 2:
        raise ValueError("Cross-validation needs at least 2 samples of every class.")
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed % 2**32)
    return list(folds.split(np.zeros(len(y)), y))


def cross_validated_log_proba(
    fit_predict: Callable[[np.ndarray, np.ndarray], torch.Tensor],
    y: np.ndarray,
    *,
    seed: int,
) -> np.ndarray:
    """Out-of-fold log-probabilities of every support row, over :func:`support_folds`.

    Parameters
    ----------
    fit_predict
        ``fit_predict(train_positions, test_positions)`` fits on the first positions of the
        support and returns ``(len(test_positions), n_classes)`` logits of the second.
    y
        Integer class codes of the support rows; the smallest class needs 2 samples.
    seed
        Seed of the fold assignment.

    Returns
    -------
    ``(n_support, n_classes)`` log-probabilities.
    """
    folds = support_folds(y, seed=seed)
    return _out_of_fold([fit_predict(train, test) for train, test in folds], folds, len(y))


def _out_of_fold(
    fold_logits: Sequence[torch.Tensor], folds: Sequence[tuple[np.ndarray, np.ndarray]], n: int
) -> np.ndarray:
    """Each fold's held-out logits as log-probabilities, in the support's row order."""
    out = np.zeros((n, fold_logits[0].shape[1]))
    for logits, (_, test) in zip(fold_logits, folds, strict=True):
        out[test] = F.log_softmax(logits.detach().double(), dim=1).cpu().numpy()
    return out


def choose_wide_weight(
    network_log_proba: np.ndarray,
    wide_log_proba: np.ndarray,
    y: np.ndarray,
    grid: Sequence[float] = WIDE_WEIGHT_GRID,
) -> tuple[float, np.ndarray]:
    """The weight of ``grid`` whose pooled out-of-fold predictions have the least log-loss.

    Returns
    -------
    The chosen weight and the mean log-loss at each weight of ``grid``.
    """
    losses = []
    for weight in grid:
        pooled = pool_log_probabilities(
            torch.as_tensor(np.ascontiguousarray(network_log_proba)),
            torch.as_tensor(np.ascontiguousarray(wide_log_proba)),
            weight,
        )
        losses.append(float(F.cross_entropy(pooled, torch.as_tensor(y, dtype=torch.long))))
    losses = np.asarray(losses)
    return float(grid[int(np.argmin(losses))]), losses


class StudyPCA:
    """PCA of a study's unlabelled rows, for a transductive wide path.

    The wide path then is logistic regression on the study's principal components, as the
    benchmark's ``pca_logreg`` baseline, folded back into a linear layer on the genes:
    ``coef @ components @ (x - mean) + b``, so the classifier reads genes as before.

    Parameters
    ----------
    x
        ``(n_rows, n_genes)`` log expression of the study's rows (labelled or not).
    n_components
        Components at most (fewer with fewer rows or genes).
    """

    def __init__(self, x: torch.Tensor, *, n_components: int = N_PCA_COMPONENTS):
        values = x.cpu().numpy()
        n_components = max(1, min(n_components, values.shape[0] - 1, values.shape[1]))
        self.pca = PCA(n_components=n_components, random_state=0).fit(values)

    def fit_linear_path(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> nn.Linear:
        """:func:`fit_linear_path` on the principal components of ``x``, as a layer on genes."""
        scores = torch.as_tensor(self.pca.transform(x.cpu().numpy()), dtype=x.dtype)
        on_components = fit_linear_path(scores, y.cpu(), n_classes)
        components = torch.as_tensor(self.pca.components_, dtype=x.dtype)
        mean = torch.as_tensor(self.pca.mean_, dtype=x.dtype)
        layer = nn.Linear(x.shape[1], n_classes).to(device=x.device, dtype=x.dtype)
        with torch.no_grad():
            weight = on_components.weight @ components
            layer.weight.copy_(weight)
            layer.bias.copy_(on_components.bias - weight @ mean)
        return layer


class GeneScaling:
    """Genes scaled to unit variance, for a wide path as CellTypist's.

    Logistic regression on the scaled genes is folded back into a linear layer on the genes:
    ``coef @ ((x - mean) / sd) + b`` is ``(coef / sd) @ x + (b - coef @ (mean / sd))``, so the
    classifier reads genes as before. Genes with no variance keep ``sd = 1``, as CellTypist does.

    Parameters
    ----------
    x
        ``(n_rows, n_genes)`` log expression of the rows whose mean and spread scale the genes:
        the study's rows (a transductive wide path) or the support's.
    """

    def __init__(self, x: torch.Tensor):
        values = x.detach().double()
        self.mean = values.mean(dim=0)
        sd = values.std(dim=0, correction=0)
        self.sd = torch.where(sd > 0, sd, torch.ones_like(sd))

    def fit_linear_path(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> nn.Linear:
        """:func:`fit_linear_path` on the scaled genes of ``x``, as a layer on the genes."""
        scaled = (x.detach().double().cpu() - self.mean.cpu()) / self.sd.cpu()
        on_scaled = fit_linear_path(scaled.to(x.dtype), y.cpu(), n_classes)
        scale = (1.0 / self.sd).to(x.dtype)
        layer = nn.Linear(x.shape[1], n_classes).to(device=x.device, dtype=x.dtype)
        with torch.no_grad():
            weight = on_scaled.weight * scale.to(on_scaled.weight.device)
            layer.weight.copy_(weight)
            layer.bias.copy_(on_scaled.bias - weight @ self.mean.to(weight))
        return layer


def scaled_genes_path(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> nn.Linear:
    """Logistic regression on genes scaled by the support's own mean and spread.

    CellTypist's rule, as an inductive wide path.
    """
    return GeneScaling(x).fit_linear_path(x, y, n_classes)


def pooled_linear_paths(
    *fitters: Callable[[torch.Tensor, torch.Tensor, int], nn.Linear],
) -> Callable[[torch.Tensor, torch.Tensor, int], nn.Linear]:
    """A wide path that pools several, equally weighted, in log-probability space.

    The renormalised geometric mean of softmaxes is the softmax of the mean logits, so the pool
    of linear layers is one linear layer with their mean weights and biases.
    """

    def fit(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> nn.Linear:
        layers = [fitter(x, y, n_classes) for fitter in fitters]
        pooled = nn.Linear(x.shape[1], n_classes).to(device=x.device, dtype=x.dtype)
        with torch.no_grad():
            pooled.weight.copy_(torch.stack([layer.weight for layer in layers]).mean(dim=0))
            pooled.bias.copy_(torch.stack([layer.bias for layer in layers]).mean(dim=0))
        return pooled

    return fit


def add_wide_path(
    network: GTLClassifierModule,
    fit_networks: Callable[
        [Sequence[torch.Tensor], Sequence[torch.Tensor]], list[tuple[GTLClassifierModule, list]]
    ],
    fit_wide: WideFitter | Mapping[str, WideFitter],
    x: torch.Tensor,
    x_wide: torch.Tensor,
    y: torch.Tensor,
    *,
    wide_weight: float | None,
    seed: int,
) -> dict:
    """Fit the wide path on the support, choose its weight, attach both to ``network``.

    Parameters
    ----------
    network
        The fitted network; it receives the wide path (:meth:`set_wide_path`).
    fit_networks
        ``fit_networks(xs, ys) -> [(network, losses), ...]``, re-fits the network on every
        fold's training rows (:func:`~scgtl.train.fine_tune_networks`: at once where it can).
    fit_wide
        ``fit_wide(x_wide, y, n_classes) -> nn.Linear`` (:func:`fit_linear_path` or
        :meth:`StudyPCA.fit_linear_path`), or several such fits by name: the cross-validation
        then chooses the fit and its weight together (the least out-of-fold log-loss), and the
        first one is used where there is no cross-validation.
    x, x_wide
        The support rows over the network's genes and over the wide path's genes.
    y
        Their integer class codes.
    wide_weight
        A fixed weight, or ``None``: chosen by :func:`choose_wide_weight` on out-of-fold
        predictions (:func:`cross_validated_log_proba`), :data:`WIDE_WEIGHT_ONE_SHOT` when a
        class has a single sample.
    seed
        Seed of the fold assignment.

    Returns
    -------
    The ``fit_record_`` entries of the wide path: ``"wide"``, ``"wide_weight"``,
    ``"wide_weight_source"``, with several fits ``"wide_form"`` (the name of the one used) and
    ``"wide_form_cv_log_loss"`` (with cross-validation: each fit's least out-of-fold log-loss,
    in their order), and, with cross-validation, ``"wide_weight_grid"``,
    ``"wide_cv_log_loss"``, ``"temperature"`` (fitted on the pooled out-of-fold predictions at
    the chosen weight, :func:`~scgtl.train.fit_temperature`), ``"support_log_proba"`` (those
    pooled out-of-fold log-probabilities, ``(n_support, n_classes)``), ``"support_novelty"`` (each
    support cell's novelty against the prototypes of the fold that left it out,
    :func:`~scgtl.train.held_out_novelty`) and their sources (``"temperature_source"``,
    ``"novelty_source"``: ``"cross-validation"``).
    """
    n_classes = network.head.out_features
    fitters = dict(fit_wide) if isinstance(fit_wide, Mapping) else {None: fit_wide}
    form = next(iter(fitters))
    record = {"wide": True}
    if wide_weight is not None:
        record.update(wide_weight=float(wide_weight), wide_weight_source="given")
    elif int(torch.bincount(y).min()) < 2:
        record.update(wide_weight=WIDE_WEIGHT_ONE_SHOT, wide_weight_source="one-shot default")
    else:
        codes = y.cpu().numpy()
        folds = support_folds(codes, seed=seed)
        network_logits, fold_novelty = _network_folds(network, fit_networks, x, y, folds)
        network_log_proba = _out_of_fold(network_logits, folds, len(codes))
        choices = {
            name: _cross_validated_weight(
                network_log_proba, fitter, x_wide, y, folds, n_classes=n_classes
            )
            for name, fitter in fitters.items()
        }
        form = min(choices, key=lambda name: choices[name][1].min())
        weight, cv_losses, pooled = choices[form]
        if len(fitters) > 1:
            record["wide_form_cv_log_loss"] = np.array([c[1].min() for c in choices.values()])
        record.update(
            wide_weight=weight,
            wide_weight_source="cross-validation",
            wide_weight_grid=np.asarray(WIDE_WEIGHT_GRID),
            wide_cv_log_loss=cv_losses,
            temperature=fit_temperature(pooled.numpy(), codes),
            temperature_source="cross-validation",
            support_log_proba=pooled.numpy().astype(np.float32),
            support_novelty=fold_novelty,
            novelty_source="cross-validation",
        )
    if form is not None:
        record["wide_form"] = form
    network.set_wide_path(fitters[form](x_wide, y, n_classes), record["wide_weight"])
    return record


def _cross_validated_weight(
    network_log_proba: np.ndarray,
    fit_wide: WideFitter,
    x_wide: torch.Tensor,
    y: torch.Tensor,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    n_classes: int,
) -> tuple[float, np.ndarray, torch.Tensor]:
    """One wide fit's out-of-fold predictions pooled with the network's.

    Returns the chosen weight, the log-loss at every weight, and the pooled log-probabilities
    at the chosen one.
    """

    def wide_fold(train, test):
        with torch.no_grad():
            return fit_wide(x_wide[train], y[train], n_classes)(x_wide[test])

    codes = y.cpu().numpy()
    wide_log_proba = _out_of_fold(
        [wide_fold(train, test) for train, test in folds], folds, len(codes)
    )
    weight, cv_losses = choose_wide_weight(network_log_proba, wide_log_proba, codes)
    pooled = pool_log_probabilities(
        torch.as_tensor(network_log_proba), torch.as_tensor(wide_log_proba), weight
    )
    return weight, cv_losses, pooled


def _network_folds(
    network: GTLClassifierModule,
    fit_networks: Callable,
    x: torch.Tensor,
    y: torch.Tensor,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[list[torch.Tensor], np.ndarray]:
    """The network re-fitted on every fold: held-out logits and novelty of each support row."""
    codes = y.cpu().numpy()
    n_classes = network.head.out_features
    fitted = fit_networks([x[train] for train, _ in folds], [y[train] for train, _ in folds])
    logits, novelty = [], np.full(len(codes), np.nan)
    for (fold_network, _), (train, test) in zip(fitted, folds, strict=True):
        with torch.no_grad():
            out = fold_network(x[test])
            z_train = fold_network.encoder(x[train])
        # Held-out support cells against the fold's prototypes: how far a cell the network
        # was not trained on lies, what "unknown='auto'" calibrates on.
        novelty[test] = held_out_novelty(
            z_train.cpu().numpy(), codes[train], out["z"].cpu().numpy(), n_classes
        )
        logits.append(out["logits"])
    return logits, novelty
