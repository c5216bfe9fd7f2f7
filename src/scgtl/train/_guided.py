"""The guided update: one small optimiser-side component."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from torch import nn


class GuidedUpdate:
    """Scale every optimiser update of the guided parameters by their guide.

    After each optimiser step, ``p <- p_old + G * (p_new - p_old)``. Scaling the *update* rather
    than the gradient keeps the guide meaningful for adaptive optimisers such as Adam, which
    would otherwise normalise a scaled gradient back to a full step.

    Parameters
    ----------
    parameters
        Named parameters to guide, e.g. ``dict(module.encoder.named_parameters())``.
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

    def __init__(self, parameters: Mapping[str, nn.Parameter], guide: Mapping[str, torch.Tensor]):
        unknown = sorted(set(guide) - set(parameters))
        if unknown:
            raise KeyError(f"The guide names parameters the network does not have: {unknown[:5]}.")
        self._params, self._guides = [], []
        for name, g in guide.items():
            p = parameters[name]
            if g.shape != p.shape:
                raise ValueError(
                    f"Guide for {name!r} has shape {tuple(g.shape)}, parameter has "
                    f"{tuple(p.shape)}."
                )
            self._params.append(p)
            self._guides.append(g.to(device=p.device, dtype=p.dtype))
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
