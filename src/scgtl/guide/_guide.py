"""Guide maths: pure functions on dicts of tensors, testable without any training code.

A *guide* maps parameter names to tensors of the parameter's shape with values in ``[0, 1]``:
how much each weight is allowed to move during guided fine-tuning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

Guide = dict[str, torch.Tensor]
Statistic = Literal["squared", "absolute"]
Normalization = Literal["per_tensor", "global"]
Temperature = Literal["room", "warm", "icy", "freeze", "linear"]

#: How the scouts' changes of a weight are summarised (``statistic=`` of ``compute_guide``).
STATISTICS = ("squared", "absolute")
#: How the summarised changes are scaled to [0, 1] (``normalization=``).
NORMALIZATIONS = ("per_tensor", "global")
#: How the guide is reshaped before use (``temperature=``).
TEMPERATURES = ("room", "warm", "icy", "freeze", "linear")


def parameter_changes(
    base: Mapping[str, torch.Tensor], trained: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``trained - base`` for every parameter of ``base``."""
    missing = set(base) - set(trained)
    if missing:
        raise KeyError(f"trained weights lack parameters {sorted(missing)[:5]}.")
    return {name: (trained[name] - value).detach() for name, value in base.items()}


def mean_change(
    changes: Iterable[Mapping[str, torch.Tensor]], *, statistic: Statistic = "squared"
) -> dict[str, torch.Tensor]:
    """Mean over scouts of the squared (or absolute) change of each parameter."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic={statistic!r} is not valid; choose one of {STATISTICS}.")
    total: dict[str, torch.Tensor] = {}
    n = 0
    for change in changes:
        n += 1
        for name, delta in change.items():
            value = delta.square() if statistic == "squared" else delta.abs()
            total[name] = total[name] + value if name in total else value.clone()
    if n == 0:
        raise ValueError("No scout results to average; n_scouts must be >= 1.")
    return {name: value / n for name, value in total.items()}


def _min_max(value: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    span = high - low
    if span <= 0:
        # A tensor no scout moved unevenly carries no preference: let it move fully.
        return torch.ones_like(value)
    return (value - low) / span


def normalize(
    statistic: Mapping[str, torch.Tensor], *, normalization: Normalization = "per_tensor"
) -> Guide:
    """Scale a change statistic to ``[0, 1]``, per tensor (the published form) or globally."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization={normalization!r} is not valid; choose one of {NORMALIZATIONS}."
        )
    if normalization == "per_tensor":
        return {name: _min_max(v, v.min(), v.max()) for name, v in statistic.items()}
    low = min(v.min() for v in statistic.values())
    high = max(v.max() for v in statistic.values())
    return {name: _min_max(v, low, high) for name, v in statistic.items()}


def apply_temperature(
    guide: Mapping[str, torch.Tensor],
    temperature: Temperature = "room",
    *,
    top_p: float = 0.1,
    slope: float = 1.0,
    intercept: float = 0.0,
    scale: float = 1.0,
) -> Guide:
    """Reshape a normalised guide.

    Parameters
    ----------
    guide
        Values in ``[0, 1]``.
    temperature
        ``"room"``: unchanged. ``"warm"``: ``0.5 * G + 0.5`` (every weight keeps at least half
        its step). ``"icy"``: ``max(2 * G - 1, 0)`` (only the upper half moves). ``"freeze"``:
        1 for the top ``top_p`` fraction of each tensor, 0 elsewhere. ``"linear"``:
        ``slope * G + intercept``.
    top_p
        Fraction of each tensor's entries left free by ``"freeze"``, in ``(0, 1]``.
    slope, intercept
        Used by ``"linear"``.
    scale
        Global factor applied last (``scale > 1`` amplifies every guided update).

    Returns
    -------
    A new guide; ``guide`` is not modified.
    """
    if temperature not in TEMPERATURES:
        raise ValueError(f"temperature={temperature!r} is not valid; choose one of {TEMPERATURES}.")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p!r} must be in (0, 1].")
    if scale < 0:
        raise ValueError(f"scale={scale!r} must be >= 0.")
    out = {}
    for name, g in guide.items():
        if temperature == "warm":
            g = 0.5 * g + 0.5
        elif temperature == "icy":
            g = (2.0 * g - 1.0).clamp(min=0.0)
        elif temperature == "freeze":
            g = _top_fraction_mask(g, top_p)
        elif temperature == "linear":
            g = (slope * g + intercept).clamp(min=0.0)
        out[name] = g * scale
    return out


def _top_fraction_mask(g: torch.Tensor, top_p: float) -> torch.Tensor:
    n_keep = max(1, round(top_p * g.numel()))
    threshold = g.flatten().topk(n_keep).values.min()
    return (g >= threshold).to(g.dtype)


def summarize_guide(guide: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per-tensor mean, median and fraction of near-zero entries, for inspection."""
    return {
        name: {
            "mean": float(g.mean()),
            "median": float(g.median()),
            "frac_below_0.1": float((g < 0.1).float().mean()),
            "numel": int(g.numel()),
        }
        for name, g in guide.items()
    }


def guide_from_changes(
    changes: Iterable[Mapping[str, torch.Tensor]],
    *,
    statistic: Statistic = "squared",
    normalization: Normalization = "global",
    temperature: Temperature = "room",
    **temperature_kwargs,
) -> Guide:
    """The guide from the scouts' parameter changes: mean statistic, normalised, reshaped.

    ``mean_change`` -> ``normalize`` -> ``apply_temperature``; the result is on the CPU.

    Parameters
    ----------
    changes
        One ``{name: w_final - w_base}`` per scout.
    statistic, normalization
        See :func:`mean_change` and :func:`normalize`.
    temperature, **temperature_kwargs
        See :func:`apply_temperature` (``top_p``, ``slope``, ``intercept``, ``scale``).

    Returns
    -------
    ``{name: plasticity}``, one tensor per parameter.
    """
    raw = normalize(mean_change(changes, statistic=statistic), normalization=normalization)
    shaped = apply_temperature(raw, temperature, **temperature_kwargs)
    return {name: g.cpu() for name, g in shaped.items()}
