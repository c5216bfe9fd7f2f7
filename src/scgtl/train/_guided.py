"""The guided update: one small optimiser-side component."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


def check_guide(shapes: Mapping[str, torch.Size], guide: Mapping[str, torch.Tensor]) -> None:
    """Reject a guide naming a parameter not in ``shapes`` or shaped unlike it.

    Parameters
    ----------
    shapes
        The shape of every parameter that may be guided, by name.
    guide
        Per-parameter plasticity, by the same names.
    """
    unknown = sorted(set(guide) - set(shapes))
    if unknown:
        raise KeyError(f"The guide names parameters the network does not have: {unknown[:5]}.")
    for name, g in guide.items():
        if g.shape != shapes[name]:
            raise ValueError(
                f"Guide for {name!r} has shape {tuple(g.shape)}, parameter has "
                f"{tuple(shapes[name])}."
            )


class GuidedUpdate:
    """Scale every optimiser update of the guided parameters by their guide.

    After each optimiser step, ``p <- p_old + G * (p_new - p_old)``. Scaling the *update* rather
    than the gradient keeps the guide meaningful for adaptive optimisers such as Adam, which
    would otherwise normalise a scaled gradient back to a full step.

    Parameters
    ----------
    parameters
        Named parameters to guide, e.g. ``dict(module.encoder.named_parameters())``, or any
        leaf tensors an optimiser steps (the scouts' stacked copies).
    guide
        A tensor of the same shape per parameter name. Parameters without a guide entry
        are left unguided.

    Examples
    --------
    >>> guided = GuidedUpdate(dict(encoder.named_parameters()), guide)
    >>> loss.backward()
    >>> with guided.step():
    ...     optimizer.step()
    """

    def __init__(self, parameters: Mapping[str, torch.Tensor], guide: Mapping[str, torch.Tensor]):
        check_guide({name: p.shape for name, p in parameters.items()}, guide)
        self._params = [parameters[name] for name in guide]
        self._guides = [
            g.to(device=p.device, dtype=p.dtype)
            for p, g in zip(self._params, guide.values(), strict=True)
        ]
        # Reused at every step: fresh tensors of the first layer's size cost page faults.
        self._before = [p.detach().clone() for p in self._params]

    @contextmanager
    def step(self) -> Iterator[None]:
        """Snapshot the guided parameters, let the caller step, then scale the update."""
        if not self._params:
            yield
            return
        with torch.no_grad():
            torch._foreach_copy_(self._before, self._params)
        yield
        with torch.no_grad():
            # p_old + G (p_new - p_old) in one pass over memory: lerp(p_old, p_new, G).
            torch._foreach_lerp_(self._before, self._params, self._guides)
            torch._foreach_copy_(self._params, self._before)
