"""Many scouts trained at once: one batched model over stacked copies of the encoder's weights.

A scout is a hundred full-batch steps on ten cells. Run one after another, its time goes to
moving the first layer's weights, gradient and Adam state through memory at every step (about
2 MB each at 2,000 genes x 256 hidden units), to per-tensor Adam kernels and to Python
overhead; the arithmetic is tiny (see ``docs/research/speed.md``, "Scouts"). Three changes, none
of which changes what a scout computes (and :class:`_Linear`, which keeps the largest gradient in
its weight's layout):

- **Batched.** The copies of a chunk of scouts are stacked along a new first dimension and
  trained as one model: ``torch.func.vmap`` over ``functional_call``, and one fused Adam over the
  stacked tensors. Adam is elementwise and the summed loss gives every copy the gradient of
  its own scout's loss, so this is each scout's own run, step for step.
- **Only the genes a scout sees.** A gene that is zero in all of a scout's cells gives its
  column of the input layer's weight a zero gradient at every step, and Adam without weight
  decay leaves such a weight exactly where it was. So each copy of the input layer holds only
  the columns of the genes its cells express (typically 20-50 % of 2,000 highly variable
  genes in single-cell data) and the other columns' change is exactly zero, as in the
  sequential run.
- **Masks drawn outside vmap.** The only random operation allowed inside a scout's step is
  ``nn.Dropout``. Its masks are drawn from one generator per scout, which starts where the
  sequential run's global generator stands when that scout starts training, in the same order
  and with the same call as torch's CPU dropout (``bernoulli_(1 - p)``, then ``/ (1 - p)``). On
  the CPU the masks are the sequential run's, bit for bit. Any other random operation makes
  ``vmap`` raise (``randomness="error"``).

What remains different is rounding: batched and smaller matrix products, and the fused Adam
kernel, sum in another order. Adam divides by the root of a running mean of squared gradients,
so entries whose gradient is tiny and dominated by rounding move by up to ``lr`` per step
whichever way rounding tips them; the sequential run itself moves as much between 1 and 2
threads.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from scgtl.train._guided import GuidedUpdate, check_guide

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

#: Memory the stacked copies of one chunk of scouts may take (weights, gradients, Adam state).
SCOUT_MEMORY_BYTES = 256 * 2**20

#: Tensors held per trainable value and scout: weight, gradient, Adam's two moments.
_COPIES_PER_VALUE = 4

#: Devices with a fused (single-kernel) Adam.
_FUSED_ADAM_DEVICES = ("cpu", "cuda")


class _GivenMaskDropout(nn.Module):
    """``nn.Dropout`` whose scaled mask is given as the buffer ``mask`` (drawn outside vmap)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.ones(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training else x


class _Linear(nn.Module):
    """``nn.Linear`` computed as ``(weight @ x.T).T``, optionally on given inputs.

    The same values as ``F.linear``, but under ``vmap`` autograd then computes the weight's
    gradient ``grad_out.T @ x`` in the weight's own layout; through ``F.linear`` it came out
    transposed and was copied at every step (a third of the time of a step).

    Parameters
    ----------
    layer
        The layer replaced (its weights are replaced again by ``functional_call``).
    given_input
        Compute on the buffer ``inputs`` instead of the argument: the input layer of a scout
        gets its support rows restricted to the genes they express, gathered once, and its
        weight holds only those genes' columns.
    """

    def __init__(self, layer: nn.Linear, *, given_input: bool = False):
        super().__init__()
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone())
        self.given_input = given_input
        self.register_buffer("inputs", torch.zeros(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.given_input:
            x = self.inputs
        out = (self.weight @ x.transpose(-1, -2)).transpose(-1, -2)
        return out if self.bias is None else out + self.bias


class _ScoutNetwork(nn.Module):
    """``head(encoder(x))``: one module, so one ``functional_call`` covers both."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@dataclass(frozen=True)
class DropoutSite:
    """One ``nn.Dropout`` of the network, in the order its forward pass calls them."""

    name: str
    p: float
    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class NetworkProbe:
    """What one training-mode forward pass of a scout network showed.

    Attributes
    ----------
    dropouts
        The dropouts called, in call order, with their input shapes.
    input_layer
        Name of the ``nn.Linear`` that reads the genes themselves (its input equals ``x``), if
        exactly one does and its weight is not shared; ``None`` otherwise.
    """

    dropouts: tuple[DropoutSite, ...]
    input_layer: str | None


def supports_batched_scouts(encoder: nn.Module) -> bool:
    """Whether :func:`fit_scouts_batched` can train copies of ``encoder``.

    Buffers (BatchNorm's running statistics) are updated in place during training, which
    ``vmap`` cannot do for stacked copies; dropout variants other than ``nn.Dropout`` draw
    masks of other shapes.
    """
    if next(encoder.buffers(), None) is not None:
        return False
    return not any(
        isinstance(m, nn.modules.dropout._DropoutNd) and type(m) is not nn.Dropout
        for m in encoder.modules()
    )


@torch.no_grad()
def probe_network(network: nn.Module, x: torch.Tensor) -> NetworkProbe:
    """Run ``network`` once in training mode on ``x`` and record its dropouts and input layer.

    The global random state and the network's mode are left as they were.

    Raises
    ------
    ValueError
        When one dropout module is called more than once per pass.
    """
    sites: list[DropoutSite] = []
    readers: list[str] = []
    handles = []
    for name, module in network.named_modules():
        if type(module) is nn.Dropout and module.p > 0:

            def record_dropout(module, inputs, output, name=name):
                site = DropoutSite(name, module.p, tuple(inputs[0].shape), inputs[0].dtype)
                sites.append(site)

            handles.append(module.register_forward_hook(record_dropout))
        elif type(module) is nn.Linear and module.in_features == x.shape[-1]:

            def record_reader(module, inputs, name=name):
                # Compared by value: a layer may get a copy of x (FCLayers concatenates).
                if inputs[0].shape == x.shape and torch.equal(inputs[0], x):
                    readers.append(name)

            handles.append(module.register_forward_pre_hook(record_reader))
    was_training = network.training
    try:
        with torch.random.fork_rng(devices=[]):
            network.train()(x)
    finally:
        network.train(was_training)
        for handle in handles:
            handle.remove()
    names = [site.name for site in sites]
    if len(set(names)) < len(names):
        raise ValueError("A dropout module is called more than once per forward pass.")
    return NetworkProbe(tuple(sites), _unshared_single(network, readers))


def _unshared_single(network: nn.Module, readers: list[str]) -> str | None:
    """The one layer reading the genes, unless there are several or its weight is shared."""
    if len(set(readers)) != 1 or len(readers) != 1:
        return None
    weight = network.get_submodule(readers[0]).weight
    uses = sum(p is weight for _, p in network.named_parameters(remove_duplicate=False))
    return readers[0] if uses == 1 else None


def _common_probe(probes: Sequence[NetworkProbe]) -> NetworkProbe:
    """The scouts' probe, without an input layer unless every scout's pass found the same."""
    if all(probe == probes[0] for probe in probes):
        return probes[0]
    return NetworkProbe(probes[0].dropouts, None)


def expressed_genes(x: torch.Tensor) -> torch.Tensor:
    """Per scout, the genes expressed in any of its cells, padded to one length.

    Parameters
    ----------
    x
        ``(n_scouts, n, n_genes)`` support rows.

    Returns
    -------
    ``(n_scouts, m)`` gene indices, ``m`` the largest number of expressed genes of any scout.
    A scout with fewer is padded with one of its unexpressed genes, which is harmless: that
    column gets a zero gradient too.
    """
    expressed = (x != 0).any(dim=1)
    width = int(expressed.sum(dim=1).max().clamp(min=1))
    # Expressed genes first, each in increasing order, then the unexpressed ones.
    order = torch.argsort((~expressed).to(torch.int8), dim=1, stable=True)
    genes = order[:, :width].clone()
    n_expressed = expressed.sum(dim=1, keepdim=True)
    padding = torch.arange(width, device=x.device).expand_as(genes) >= n_expressed
    genes[padding] = order[:, -1:].expand_as(genes)[padding]
    return genes


def draw_masks(
    sites: Sequence[DropoutSite], generators: Sequence[torch.Generator], device: torch.device
) -> dict[str, torch.Tensor]:
    """Each scout's dropout masks for one step, stacked: ``{buffer name: (n_scouts, *shape)}``.

    Drawn exactly as torch's CPU dropout draws them (``bernoulli_(1 - p)``, then divided by
    ``1 - p``), one site after the other for each scout, so each generator advances as the
    global one does in a sequential scout.
    """
    per_scout = []
    for generator in generators:
        masks = []
        for site in sites:
            mask = torch.empty(site.shape, dtype=site.dtype, device=device)
            mask.bernoulli_(1 - site.p, generator=generator)
            masks.append(mask.div_(1 - site.p))
        per_scout.append(masks)
    return {
        f"{site.name}.mask": torch.stack([masks[j] for masks in per_scout])
        for j, site in enumerate(sites)
    }


def _template(network: nn.Module, probe: NetworkProbe, subset: bool) -> nn.Module:
    """A copy of ``network`` to call with stacked weights.

    Its linear layers become :class:`_Linear` (the input layer reading only the given genes
    if ``subset``) and its dropouts take given masks.
    """
    template = copy.deepcopy(network)
    replacements: dict[str, nn.Module] = {
        name: _Linear(module, given_input=subset and name == probe.input_layer)
        for name, module in template.named_modules()
        if type(module) is nn.Linear
    }
    replacements.update({site.name: _GivenMaskDropout(site.p) for site in probe.dropouts})
    for name, module in replacements.items():
        parent_name, _, child = name.rpartition(".")
        setattr(template.get_submodule(parent_name), child, module)
    return template.train()


def fit_scouts_batched(
    encoder: nn.Module,
    heads: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    n_steps: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    on_step: Callable[[], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Train one copy of ``encoder`` per head at once, as :func:`~scgtl.train.fit_few_shot` would.

    Parameters
    ----------
    encoder
        The shared starting point; not modified.
    heads
        One head per scout (the same architecture); not modified.
    x
        ``(n_scouts, n, n_genes)``: each scout's support rows.
    y
        ``(n_scouts, n)``: each scout's integer class codes.
    generators
        One per scout, where the scout's dropout masks are drawn from (see :func:`draw_masks`).
    n_steps, lr, weight_decay
        Adam settings, as in :func:`~scgtl.train.fit_few_shot`.
    on_step
        Called after every optimiser step (of all the scouts at once), e.g. to show progress.

    Returns
    -------
    The trained encoder weights, ``{name: (n_scouts, *shape)}``.
    """
    weights, _ = fit_networks_batched(
        encoder,
        heads,
        x,
        y,
        generators,
        n_steps=n_steps,
        lr=lr,
        weight_decay=weight_decay,
        on_step=on_step,
    )
    return weights["encoder"]


def fit_networks_batched(
    encoder: nn.Module,
    heads: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    n_steps: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    guide: Mapping[str, torch.Tensor] | None = None,
    on_step: Callable[[], None] | None = None,
) -> tuple[dict[str, dict[str, torch.Tensor]], torch.Tensor]:
    """Train ``head_j(encoder_j(x_j))`` for every ``j`` at once from copies of one encoder.

    The batched form of :func:`~scgtl.train.fit_few_shot` without hooks, used for the scouts
    (:func:`fit_scouts_batched`) and for the cross-validation folds of guided fine-tuning
    (:func:`~scgtl.train.fine_tune_networks`).

    Parameters
    ----------
    encoder
        The shared starting point; not modified.
    heads
        One head per copy (the same architecture); not modified.
    x
        ``(n_copies, n, n_genes)``: each copy's support rows.
    y
        ``(n_copies, n)``: each copy's integer class codes.
    generators
        One per copy, where its dropout masks are drawn from (see :func:`draw_masks`).
    n_steps, lr, weight_decay
        Adam settings, as in :func:`~scgtl.train.fit_few_shot`.
    guide
        Per-parameter plasticity of the encoder, shared by every copy (keyed by ``encoder``'s
        parameter names); every copy's updates are scaled by it as
        :class:`~scgtl.train.GuidedUpdate` scales one network's.
    on_step
        Called after every optimiser step (of all the copies at once).

    Returns
    -------
    The trained weights, ``{"encoder": {name: (n_copies, *shape)}, "head": {...}}``, and the
    loss of every copy at every step, ``(n_steps, n_copies)``.
    """
    network = _ScoutNetwork(encoder, heads[0])
    probe = _common_probe([probe_network(network, x_copy) for x_copy in x])
    # Weight decay moves weights whose gradient is zero, so then every gene takes part.
    subset = probe.input_layer is not None and weight_decay == 0
    template = _template(network, probe, subset)
    params = _stacked_parameters(network, heads)
    scales = _stacked_guide(guide, params)
    buffers = {}
    if subset:
        input_weight = f"{probe.input_layer}.weight"
        genes = expressed_genes(x)
        buffers[f"{probe.input_layer}.inputs"] = torch.gather(
            x, 2, genes.unsqueeze(1).expand(-1, x.shape[1], -1)
        )
        full_weight = params[input_weight]
        params[input_weight] = _columns(full_weight, genes)
        if input_weight in scales:
            scales[input_weight] = _columns(scales[input_weight], genes)
    for p in params.values():
        p.requires_grad_(True)
    losses = _train(
        template,
        params,
        buffers,
        x,
        y,
        probe.dropouts,
        generators,
        n_steps,
        lr,
        weight_decay,
        scales,
        on_step,
    )
    if subset:
        trained = params[input_weight].detach()
        params[input_weight] = _put_columns(full_weight, genes, trained)
    weights: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "head": {}}
    for name, p in params.items():
        part, _, rest = name.partition(".")
        weights[part][rest] = p.detach()
    return weights, losses


def _stacked_guide(
    guide: Mapping[str, torch.Tensor] | None, params: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The guide keyed as the stacked parameters and expanded to their shape."""
    if not guide:
        return {}
    prefix = "encoder."
    check_guide(
        {k.removeprefix(prefix): p.shape[1:] for k, p in params.items() if k.startswith(prefix)},
        guide,
    )
    scales = {}
    for name, g in guide.items():
        stacked = params[prefix + name]
        scales[prefix + name] = g.to(device=stacked.device, dtype=stacked.dtype).expand_as(stacked)
    return scales


def _train(
    template: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    sites: Sequence[DropoutSite],
    generators: Sequence[torch.Generator],
    n_steps: int,
    lr: float,
    weight_decay: float,
    scales: dict[str, torch.Tensor],
    on_step: Callable[[], None] | None = None,
) -> torch.Tensor:
    """The few-shot loop of :func:`~scgtl.train.fit_few_shot` on stacked copies, in place.

    ``scales`` guides the parameters it names (``p <- p_old + g * (p_new - p_old)`` after
    every step). Returns the loss of every copy at every step, ``(n_steps, n_copies)``.
    """
    # One Adam over the stacked tensors is the per-copy Adams side by side: every operation
    # of its step is elementwise and the step count is shared. Fused: one pass over memory
    # per tensor instead of about ten.
    fused = x.device.type in _FUSED_ADAM_DEVICES
    optimizer = torch.optim.Adam(
        params.values(), lr=lr, weight_decay=weight_decay, fused=fused or None
    )
    # The guided update of every other loop, on the stacked copies' tensors.
    guided = GuidedUpdate(params, scales)

    def copy_loss(p, b, x_copy, y_copy):
        return F.cross_entropy(functional_call(template, (p, b), (x_copy,)), y_copy)

    # The sum's gradient with respect to copy j's weights is copy j's own gradient.
    losses = vmap(copy_loss, randomness="error")
    history = torch.empty(n_steps, x.shape[0])
    for step in range(n_steps):
        optimizer.zero_grad(set_to_none=True)
        masks = draw_masks(sites, generators, x.device)
        loss = losses(params, {**buffers, **masks}, x, y)
        loss.sum().backward()
        with guided.step():
            optimizer.step()
        history[step] = loss.detach().cpu()
        if on_step is not None:
            on_step()
    return history


def _stacked_parameters(
    network: _ScoutNetwork, heads: Sequence[nn.Module]
) -> dict[str, torch.Tensor]:
    """One copy of the encoder's weights per head, and the heads' weights, stacked."""
    n = len(heads)
    stacked = {
        f"encoder.{name}": p.detach().expand(n, *p.shape).clone()
        for name, p in network.encoder.named_parameters()
    }
    for name, _ in network.head.named_parameters():
        values = [dict(head.named_parameters())[name].detach() for head in heads]
        stacked[f"head.{name}"] = torch.stack(values)
    return stacked


def _columns(weight: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
    """``weight[j][:, genes[j]]`` for every scout ``j``."""
    return torch.gather(weight, 2, genes.unsqueeze(1).expand(-1, weight.shape[1], -1))


def _put_columns(weight: torch.Tensor, genes: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``weight`` with ``columns`` (as from :func:`_columns`) written back at ``genes``."""
    index = genes.unsqueeze(1).expand(-1, weight.shape[1], -1)
    return weight.detach().scatter(2, index, columns)


def scout_batch_size(
    encoder: nn.Module, n_scouts: int, *, memory_bytes: int = SCOUT_MEMORY_BYTES
) -> int:
    """How many scouts to stack at once so their copies stay within ``memory_bytes``.

    Counts each trainable value four times (weight, gradient and Adam's two moments) and
    every gene of the input layer; the support rows and activations of ten cells are small
    beside them. The scouts are then split into chunks of equal size (up to one).
    """
    values = sum(p.numel() * p.element_size() for p in encoder.parameters())
    fitting = max(1, memory_bytes // max(1, _COPIES_PER_VALUE * values))
    n_chunks = math.ceil(n_scouts / fitting)
    return max(1, math.ceil(n_scouts / n_chunks))
