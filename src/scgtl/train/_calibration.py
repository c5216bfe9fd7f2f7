"""Calibrated probabilities and novelty scores of a fine-tuned classifier: the maths.

Two things a few-shot classifier is asked beyond its argmax:

*Is the confidence what it says?* The pooled prediction of a classifier fine-tuned on a few
dozen cells is over- or under-confident depending on the study. Temperature scaling divides
its logits by one number ``T`` fitted on held-out predictions of the support (the
out-of-fold predictions the wide path's cross-validation already makes, so it costs no extra
fit). ``T`` rescales every probability but never changes which class is largest.

*Is the cell like any class of the support at all?* The novelty of a cell is its distance in
the fine-tuned latent space to the nearest class prototype (the mean latent of that class's
support cells), in units of the support's within-class spread: about 1 for a typical support
cell, larger for a cell unlike every class. A threshold on it is calibrated on the support
itself, as a conformal quantile of held-out support cells' novelty.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: ``predict(..., unknown="auto")``'s level: the conformal quantile of held-out support cells'
#: novelty used as the threshold (chosen on seed-1 episodes of the developer targets,
#: ``docs/research/novelty.md``, "How the defaults were chosen"). About this fraction of cells
#: of the support's classes stay below it.
UNKNOWN_LEVEL = 0.95

#: The label :meth:`scgtl.GTLClassifier.predict` gives cells above the novelty threshold.
UNKNOWN_LABEL = "unknown"

#: Bounds of the fitted temperature: beyond them the support says nothing reliable.
TEMPERATURE_BOUNDS = (0.05, 20.0)

#: Standard deviation of the prior on ``log T`` of :func:`fit_temperature` (chosen on seed-1
#: episodes of the developer targets, ``docs/research/novelty.md``, "How the defaults were
#: chosen").
TEMPERATURE_PRIOR = 1.0

#: Smallest spread, so that a support of identical latents gives finite novelty.
_MIN_SPREAD = 1e-6


def class_prototypes(z: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means of ``z`` and the support's pooled within-class spread.

    The spread is the root mean squared distance of a support cell to its class mean, pooled
    over the classes with two or more cells (each class's sum of squares divided by
    ``n_c - 1``, as an unbiased variance). Where every class has a single cell it is half the
    median distance from a prototype to its nearest other prototype, so novelty stays in
    units of "how far classes are apart".

    Parameters
    ----------
    z
        ``(n, n_latent)`` latent codes of the support cells.
    y
        ``(n,)`` integer class codes ``0 .. n_classes - 1``, every class present.
    n_classes
        Number of classes.

    Returns
    -------
    ``(n_classes, n_latent)`` prototypes and the spread (a positive float).
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"Classes {missing} have no support cell; cannot build prototypes.")
    prototypes = np.zeros((n_classes, z.shape[1]))
    np.add.at(prototypes, y, z)
    prototypes /= counts[:, None]
    squares = ((z - prototypes[y]) ** 2).sum(1)
    dof = int((counts - 1).sum())
    if dof > 0:
        spread = math.sqrt(squares.sum() / dof)
    elif n_classes > 1:
        gaps = np.linalg.norm(prototypes[:, None] - prototypes[None], axis=2)
        np.fill_diagonal(gaps, np.inf)
        spread = float(np.median(gaps.min(1))) / 2
    else:
        spread = 1.0
    return prototypes, max(spread, _MIN_SPREAD)


def prototype_novelty(z: np.ndarray, prototypes: np.ndarray, spread: float) -> np.ndarray:
    """Distance of each row of ``z`` to its nearest prototype, divided by ``spread``."""
    z = np.asarray(z, dtype=np.float64)
    squared = (
        (z**2).sum(1)[:, None]
        - 2 * z @ np.asarray(prototypes, dtype=np.float64).T
        + (np.asarray(prototypes, dtype=np.float64) ** 2).sum(1)[None]
    )
    return np.sqrt(np.clip(squared, 0.0, None).min(1)) / float(spread)


def held_out_novelty(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, n_classes: int):
    """Novelty of ``z_test`` against prototypes and spread built on ``(z_train, y_train)``."""
    prototypes, spread = class_prototypes(z_train, y_train, n_classes)
    return prototype_novelty(z_test, prototypes, spread)


def leave_one_out_novelty(z: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Novelty of each support cell against prototypes and spread built without it.

    A cell whose class has no other cell gets NaN (its class would have no prototype).
    """
    y = np.asarray(y, dtype=np.int64)
    out = np.full(len(y), np.nan)
    counts = np.bincount(y, minlength=n_classes)
    for i in np.flatnonzero(counts[y] >= 2):
        keep = np.arange(len(y)) != i
        out[i] = held_out_novelty(z[keep], y[keep], z[i : i + 1], n_classes)[0]
    return out


def conformal_threshold(scores: ArrayLike, level: float = UNKNOWN_LEVEL) -> float:
    """The split-conformal quantile of held-out scores at ``level``.

    The ``ceil((n + 1) level)``-th smallest of the ``n`` finite scores: a new cell exchangeable
    with them scores at most this with probability at least ``level``. When ``n`` is too small
    for the level (``ceil((n + 1) level) > n``) the largest score is returned.

    Raises
    ------
    ValueError
        When no score is finite (e.g. every class of the support has a single cell).
    """
    scores = np.asarray(scores, dtype=np.float64)
    scores = np.sort(scores[np.isfinite(scores)])
    if scores.size == 0:
        raise ValueError(
            "No held-out novelty score to calibrate on: unknown='auto' needs a class with at "
            "least 2 support cells. Pass a number as the threshold instead."
        )
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} must be in (0, 1).")
    rank = math.ceil((scores.size + 1) * level)
    return float(scores[min(rank, scores.size) - 1])


def fit_temperature(
    log_proba: np.ndarray, y: np.ndarray, *, prior_scale: float | None = TEMPERATURE_PRIOR
) -> float:
    """The temperature ``T`` that best fits ``softmax(log_proba / T)`` to ``y``.

    The most probable ``T`` under a log-normal prior, ``log T ~ N(0, prior_scale^2)``: it
    minimises the summed log-loss plus ``(log T)^2 / (2 prior_scale^2)``. The prior matters
    only with few held-out cells, where the log-loss alone runs ``T`` to a bound (all held-out
    cells right: ``T -> 0``, one confidently wrong: ``T -> inf``).

    Parameters
    ----------
    log_proba
        ``(n, n_classes)`` held-out log-probabilities (or logits) of the support cells.
    y
        ``(n,)`` integer class codes.
    prior_scale
        Standard deviation of the prior on ``log T``; ``None``: no prior (maximum likelihood).

    Returns
    -------
    ``T`` within :data:`TEMPERATURE_BOUNDS` (``1.0`` when the log-loss does not depend on it,
    e.g. every prediction uniform).
    """
    log_proba = np.asarray(log_proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    rows = np.arange(len(y))
    penalty = 0.0 if prior_scale is None else 1.0 / (2.0 * float(prior_scale) ** 2)

    def loss(log_t: float) -> float:
        nll = -log_softmax(log_proba / math.exp(log_t), axis=1)[rows, y].sum()
        return float(nll + penalty * log_t**2)

    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    if not np.isfinite(loss(0.0)) or abs(loss(low) - loss(high)) < 1e-12:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best = minimize_scalar(loss, bounds=(low, high), method="bounded")
    return float(math.exp(best.x))


def check_unknown(unknown) -> None:
    """Reject a value of ``predict``'s ``unknown`` other than ``None``, a number >= 0 or "auto"."""
    valid = "None, 'auto' or a novelty threshold (a finite number >= 0)"
    if unknown is None or (isinstance(unknown, str) and unknown == "auto"):
        return
    if isinstance(unknown, bool) or not isinstance(unknown, int | float | np.integer | np.floating):
        raise ValueError(f"unknown={unknown!r} is not valid; give {valid}.")
    if not math.isfinite(float(unknown)) or float(unknown) < 0:
        raise ValueError(f"unknown={unknown!r} is not valid; give {valid}.")


def calibration_record(network, x, y, wide_record: dict) -> dict:
    """The ``fit_record_`` entries of calibration and novelty for a fine-tuned ``network``.

    Parameters
    ----------
    network
        The fitted :class:`~scgtl.module.GTLClassifierModule` (evaluation mode).
    x
        ``(n, n_genes)`` log expression of the support rows (a tensor on the network's device).
    y
        Their integer class codes (a tensor).
    wide_record
        What :func:`~scgtl.train.add_wide_path` recorded (``{}`` without a wide path): its
        cross-validated temperature and held-out novelty are used when it has them.

    Returns
    -------
    ``"prototypes"`` (``(n_classes, n_latent)`` float32, each class's mean latent of the final
    network), ``"novelty_spread"`` (:func:`class_prototypes`), ``"support_novelty"`` (held-out
    novelty of each support cell: the cross-validation's where it ran, else
    :func:`leave_one_out_novelty` in the final network's latent space), ``"novelty_source"``
    (``"cross-validation"`` or ``"leave-one-out"``), ``"temperature"`` (``1.0`` without
    cross-validation) and ``"temperature_source"`` (``"cross-validation"`` or ``"none"``).
    When ``network`` keeps a reference encoder, also ``"reference_prototypes"`` and
    ``"reference_novelty_spread"``, the same in its latent space; the support's held-out
    novelty then adds each cell's leave-one-out novelty there (that space does not depend on
    the support, so no fold is needed).
    """
    n_classes = network.head.out_features
    codes = y.cpu().numpy()
    with torch.no_grad():
        z = network.encoder(x).cpu().numpy()
    prototypes, spread = class_prototypes(z, codes, n_classes)
    record = {
        "prototypes": prototypes.astype(np.float32),
        "novelty_spread": float(spread),
        "temperature": 1.0,
        "temperature_source": "none",
    }
    if "support_novelty" in wide_record:
        record.update(
            support_novelty=np.asarray(wide_record["support_novelty"], dtype=np.float64),
            novelty_source=wide_record["novelty_source"],
        )
    else:
        record.update(
            support_novelty=leave_one_out_novelty(z, codes, n_classes),
            novelty_source="leave-one-out",
        )
    if network.has_reference:
        with torch.no_grad():
            z_reference = network.reference_latent(x).cpu().numpy()
        reference_prototypes, reference_spread = class_prototypes(z_reference, codes, n_classes)
        record.update(
            reference_prototypes=reference_prototypes.astype(np.float32),
            reference_novelty_spread=float(reference_spread),
            support_novelty=record["support_novelty"]
            + leave_one_out_novelty(z_reference, codes, n_classes),
        )
    if "temperature" in wide_record:
        record.update(
            temperature=float(wide_record["temperature"]),
            temperature_source=wide_record["temperature_source"],
        )
    return record
