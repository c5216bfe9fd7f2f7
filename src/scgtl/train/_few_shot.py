"""Short full-batch training of an encoder + head on a few labelled samples.

Scouts and guided fine-tuning both use it; research variants plug into it through its hooks
(``input_transform``, ``extra_loss``, ``callback``) instead of copying it. A k-shot support set
is a few dozen rows, so a plain loop on the model's device is used instead of a Lightning
``Trainer``, whose start-up cost would dominate runs of a hundred steps repeated for every
scout.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from scgtl._docs import doc
from scgtl.module import GTLClassifierModule
from scgtl.train._batched_scouts import fit_networks_batched, supports_batched_scouts
from scgtl.train._guided import GuidedUpdate

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    #: ``input_transform(x) -> x``, applied to the support rows before every forward pass.
    InputTransform = Callable[[torch.Tensor], torch.Tensor]
    #: ``extra_loss(encoder, head) -> scalar``, added to the cross-entropy at every step.
    ExtraLoss = Callable[[nn.Module, nn.Module], torch.Tensor]
    #: ``callback(step, loss)``, called after every optimiser step.
    StepCallback = Callable[[int, float], None]

HeadInit = Literal["prototypes", "random"]
HEAD_INITS: tuple[str, ...] = ("prototypes", "random")


def check_training_settings(*, n_steps: int, lr: float, weight_decay: float = 0.0) -> None:
    """Reject step counts and rates that cannot train anything."""
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps={n_steps!r} must be an integer >= 1.")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} must be > 0.")
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay!r} must be >= 0.")


def check_head_init(head_init: str) -> None:
    """Reject an unknown head initialisation."""
    if head_init not in HEAD_INITS:
        raise ValueError(f"head_init={head_init!r} is not one of {list(HEAD_INITS)}.")


@torch.no_grad()
def prototype_head(
    encoder: nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int
) -> nn.Linear:
    """A linear head that starts as the nearest-class-mean classifier in latent space.

    With class means ``mu_c`` of ``encoder(x)`` (evaluation mode) and their spread
    ``t = mean_c |mu_c - mean(mu)|^2``, the logits ``(z . mu_c - |mu_c|^2 / 2) / t`` equal
    ``-|z - mu_c|^2 / (2 t)`` up to a term shared by all classes. Fine-tuning then starts from
    a sensible classifier instead of a random one, which matters most with one or a few
    samples per class.

    Parameters
    ----------
    encoder
        Maps ``x`` to the latent space; its mode is restored afterwards.
    x, y
        Support samples and their integer class codes ``0 .. n_classes - 1``.
    n_classes
        Number of classes; each must have at least one sample.

    Returns
    -------
    A new ``nn.Linear(n_latent, n_classes)`` on ``x``'s device.
    """
    was_training = encoder.training
    encoder.eval()
    z = encoder(x)
    encoder.train(was_training)
    counts = torch.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"Classes {missing} have no support sample; cannot build prototypes.")
    means = torch.zeros(n_classes, z.shape[1], dtype=z.dtype, device=z.device)
    means.index_add_(0, y, z)
    means /= counts.unsqueeze(1).to(z.dtype)
    spread = ((means - means.mean(0)) ** 2).sum(1).mean().clamp(min=1e-6)
    head = nn.Linear(z.shape[1], n_classes).to(x.device)
    head.weight.copy_(means / spread)
    head.bias.copy_(-(means**2).sum(1) / (2 * spread))
    return head


@doc.dedent
def fit_few_shot(
    encoder: nn.Module,
    head: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_steps: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    guide: Mapping[str, torch.Tensor] | None = None,
    input_transform: InputTransform | None = None,
    extra_loss: ExtraLoss | None = None,
    callback: StepCallback | None = None,
) -> list[float]:
    """Train ``head(encoder(x))`` on labels ``y`` with Adam, full batch, in place.

    Parameters
    ----------
    encoder, head
        Modules trained together; ``guide`` (keyed by ``encoder``'s parameter names) scales the
        encoder's updates, the head is never guided.
    x
        ``(n, n_genes)`` log expression.
    y
        ``(n,)`` integer class codes.
    n_steps, lr, weight_decay
        Adam settings.
    guide
        Per-parameter plasticity in ``[0, 1]``; ``None`` trains without guidance.
    %(param_fit_hooks)s

    Returns
    -------
    The training loss (cross-entropy plus ``extra_loss``) at every step.
    """
    check_training_settings(n_steps=n_steps, lr=lr, weight_decay=weight_decay)
    parameters = list(encoder.parameters()) + list(head.parameters())
    # foreach: one kernel per operation over all tensors instead of one per tensor; the same
    # values bit for bit, 1.4x faster scouts on the 2-core machine (the Adam step dominates).
    optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, foreach=True)
    guided = GuidedUpdate(dict(encoder.named_parameters()), guide) if guide else None
    encoder.train()
    head.train()
    losses = []
    for step in range(n_steps):
        optimizer.zero_grad(set_to_none=True)
        inputs = x if input_transform is None else input_transform(x)
        loss = F.cross_entropy(head(encoder(inputs)), y)
        if extra_loss is not None:
            loss = loss + extra_loss(encoder, head)
        loss.backward()
        if guided is None:
            optimizer.step()
        else:
            with guided.step():
                optimizer.step()
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, losses[-1])
    encoder.eval()
    head.eval()
    return losses


@doc.dedent
def fine_tune_network(
    encoder: nn.Module | None,
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    *,
    architecture: Mapping[str, Any],
    seed: int = 0,
    head_init: HeadInit = "prototypes",
    **fit_kwargs,
) -> tuple[GTLClassifierModule, list[float]]:
    """A new classifier network (encoder + head) trained on a support set.

    The network copies ``encoder``'s weights (``None``: a random initialisation), gets a head
    for ``n_classes`` (initialised by ``head_init``) and is trained by :func:`fit_few_shot`.
    Everything random (initialisation, dropout, hooks that draw from torch) is seeded by
    ``seed`` without touching the global random state.

    Parameters
    ----------
    encoder
        The pre-trained encoder to copy; it is not modified.
    x, y
        Support rows (log expression) and their integer class codes ``0 .. n_classes - 1``.
    n_classes
        Number of classes.
    architecture
        The encoder's architecture (``n_latent``, ``n_hidden``, ``n_layers``, ``dropout_rate``).
    seed
        Seed of the initialisation and of training.
    %(param_head_init)s
    **fit_kwargs
        Options of :func:`fit_few_shot` (``n_steps``, ``lr``, ``weight_decay``, ``guide`` and
        the hooks).

    Returns
    -------
    The trained network (evaluation mode) and the loss at every step.
    """
    check_head_init(head_init)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _initial_network(encoder, x, y, n_classes, architecture, head_init)
        losses = fit_few_shot(network.encoder, network.head, x, y, **fit_kwargs)
    return network.eval(), losses


def _initial_network(
    encoder: nn.Module | None,
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    architecture: Mapping[str, Any],
    head_init: HeadInit,
) -> GTLClassifierModule:
    """A new network with ``encoder``'s weights and its starting head, from the global RNG."""
    network = GTLClassifierModule(x.shape[1], n_classes, **architecture).to(x.device)
    if encoder is not None:
        network.encoder.load_state_dict(copy.deepcopy(encoder.state_dict()))
    if head_init == "prototypes":
        network.head = prototype_head(network.encoder, x, y, n_classes)
    return network


#: Options of :func:`fit_few_shot` that only a sequential fit can honour (Python hooks).
_SEQUENTIAL_ONLY = ("input_transform", "extra_loss", "callback")


@doc.dedent
def fine_tune_networks(
    encoder: nn.Module | None,
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    n_classes: int,
    *,
    architecture: Mapping[str, Any],
    seed: int = 0,
    head_init: HeadInit = "prototypes",
    batched: bool = True,
    **fit_kwargs,
) -> list[tuple[GTLClassifierModule, list[float]]]:
    """:func:`fine_tune_network` on several support sets, trained at once where possible.

    Every network starts as :func:`fine_tune_network` starts it with ``seed``, so all of them
    start from the same weights and dropout stream; only their support sets differ (e.g. the
    folds of a cross-validation). When the support sets have one shape, ``encoder`` is given,
    it trains as one batched model (no buffers, plain dropout) and no hook is set, they are
    trained as one model over stacked copies of the weights
    (:func:`~scgtl.train.fit_networks_batched`, as the batched scouts): the same networks up
    to floating-point rounding, several times faster. Otherwise one after another.

    Parameters
    ----------
    encoder
        The pre-trained encoder to copy; it is not modified. ``None``: a random initialisation.
    xs, ys
        The support sets: rows (log expression) and integer class codes ``0 .. n_classes - 1``.
    n_classes
        Number of classes.
    architecture
        The encoder's architecture (``n_latent``, ``n_hidden``, ``n_layers``, ``dropout_rate``).
    seed
        Seed of the initialisation and of training, the same for every support set.
    %(param_head_init)s
    batched
        ``False``: always one after another.
    **fit_kwargs
        Options of :func:`fit_few_shot`.

    Returns
    -------
    One ``(network, losses)`` per support set, as :func:`fine_tune_network` returns them.
    """
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"Give as many label vectors as support sets ({len(xs)} and {len(ys)}).")
    settings = {"architecture": architecture, "seed": seed, "head_init": head_init}
    if not (batched and _batchable(encoder, xs, ys, fit_kwargs)):
        return [
            fine_tune_network(encoder, x, y, n_classes, **settings, **fit_kwargs)
            for x, y in zip(xs, ys, strict=True)
        ]
    check_head_init(head_init)
    check_training_settings(
        n_steps=fit_kwargs.get("n_steps", 100),
        lr=fit_kwargs.get("lr", 1e-3),
        weight_decay=fit_kwargs.get("weight_decay", 0.0),
    )
    starts = [
        _network_start(encoder, x, y, n_classes, **settings) for x, y in zip(xs, ys, strict=True)
    ]
    networks, generators = zip(*starts, strict=True)
    weights, losses = fit_networks_batched(
        networks[0].encoder,
        [network.head for network in networks],
        torch.stack(list(xs)),
        torch.stack(list(ys)),
        generators,
        **{key: value for key, value in fit_kwargs.items() if value is not None},
    )
    for j, network in enumerate(networks):
        with torch.no_grad():
            for part in ("encoder", "head"):
                module = getattr(network, part)
                module.load_state_dict({name: w[j] for name, w in weights[part].items()})
        network.eval()
    return [(network, losses[:, j].tolist()) for j, network in enumerate(networks)]


def _batchable(encoder, xs, ys, fit_kwargs) -> bool:
    """Whether :func:`fine_tune_networks` can train these support sets as one model."""
    if encoder is None or any(fit_kwargs.get(name) is not None for name in _SEQUENTIAL_ONLY):
        return False
    shapes = {(tuple(x.shape), tuple(y.shape)) for x, y in zip(xs, ys, strict=True)}
    return len(shapes) == 1 and supports_batched_scouts(encoder)


def _network_start(
    encoder: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    *,
    architecture: Mapping[str, Any],
    seed: int,
    head_init: HeadInit,
) -> tuple[GTLClassifierModule, torch.Generator]:
    """A network as :func:`fine_tune_network` builds it before training, and its dropout stream.

    On the CPU the generator continues from where the seeded global generator stands after the
    network is built, where :func:`fit_few_shot`'s dropout would draw from; on other devices,
    whose dropout kernels draw differently, it is seeded with ``seed``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _initial_network(encoder, x, y, n_classes, architecture, head_init)
        generator = torch.Generator(device=x.device)
        if x.device.type == "cpu":
            generator.set_state(torch.get_rng_state())
        else:
            generator.manual_seed(seed)
    return network, generator
