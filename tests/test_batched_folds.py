"""Guided fine-tuning of several support sets at once (the wide path's cross-validation folds).

``fine_tune_networks`` trains the folds' networks as one batched model (issue 14: fine-tune +
predict within half an epoch); it must give :func:`fine_tune_network`'s networks up to rounding.
"""

import functools

import numpy as np
import pytest
import torch

from scgtl.module import MLPEncoder
from scgtl.train import (
    GuidedUpdate,
    add_wide_path,
    fine_tune_network,
    fine_tune_networks,
    fit_linear_path,
    support_folds,
)

ARCHITECTURE = {"n_latent": 8, "n_hidden": 32, "n_layers": 1, "dropout_rate": 0.2}
N_GENES, N_CLASSES, K_SHOT = 40, 3, 5

#: As in test_batched_scouts: batched products and the fused Adam round differently, and Adam
#: turns rounding in near-zero gradients into steps of up to ``lr``; measured 1.6e-5 of the
#: largest change of the encoder here (every parameter, heads included).
RELATIVE_TOLERANCE = 5e-4


def _support(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    rates = torch.rand(N_CLASSES, N_GENES, generator=generator) * 0.6
    # Sparse counts: some genes are zero in all of a fold's cells.
    rates[:, :5] = 0.0
    y = torch.arange(N_CLASSES).repeat_interleave(K_SHOT)
    x = torch.log1p(torch.poisson(rates[y], generator=generator))
    return x, y


def _encoder(seed: int = 0) -> MLPEncoder:
    torch.manual_seed(seed)
    return MLPEncoder(N_GENES, **ARCHITECTURE)


def _guide(encoder: MLPEncoder, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    guide = {
        name: torch.rand(p.shape, generator=generator) for name, p in encoder.named_parameters()
    }
    # Rigid weights must stay exactly where they are in either run.
    guide["hidden.fc_layers.Layer 0.0.weight"][:, 10:20] = 0.0
    return guide


def _folds(x, y, seed=0):
    folds = support_folds(y.numpy(), seed=seed)
    return [x[train] for train, _ in folds], [y[train] for train, _ in folds]


def _fit(batched: bool, **options):
    x, y = _support()
    encoder = _encoder()
    xs, ys = _folds(x, y)
    settings = {"architecture": ARCHITECTURE, "seed": 3, "n_steps": 30, **options}
    return encoder, fine_tune_networks(encoder, xs, ys, N_CLASSES, batched=batched, **settings)


def _assert_same_networks(encoder, expected, actual):
    start = encoder.state_dict()
    scale = max(
        float((network.encoder.state_dict()[name] - start[name]).abs().max())
        for network, _ in expected
        for name in start
    )
    assert scale > 0
    for (want, want_losses), (got, got_losses) in zip(expected, actual, strict=True):
        for name, value in want.state_dict().items():
            torch.testing.assert_close(
                got.state_dict()[name], value, rtol=0, atol=RELATIVE_TOLERANCE * scale
            )
        np.testing.assert_allclose(got_losses, want_losses, rtol=0, atol=1e-4)
        assert not got.training


@pytest.mark.parametrize("guided", [False, True])
def test_batched_folds_match_one_network_after_another(guided):
    encoder = _encoder()
    options = {"guide": _guide(encoder)} if guided else {}
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    _, sequential = _fit(False, **options)
    _, batched = _fit(True, **options)
    _assert_same_networks(encoder, sequential, batched)
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k])


def test_the_sequential_path_is_fine_tune_network_itself():
    x, y = _support()
    encoder = _encoder()
    xs, ys = _folds(x, y)
    settings = {"architecture": ARCHITECTURE, "seed": 3, "n_steps": 10}
    fitted = fine_tune_networks(encoder, xs, ys, N_CLASSES, batched=False, **settings)
    for (network, losses), x_fold, y_fold in zip(fitted, xs, ys, strict=True):
        alone, alone_losses = fine_tune_network(encoder, x_fold, y_fold, N_CLASSES, **settings)
        assert losses == alone_losses
        for name, value in alone.state_dict().items():
            assert torch.equal(network.state_dict()[name], value)


def test_weights_with_zero_guide_do_not_move_in_the_batched_run():
    encoder = _encoder()
    guide = _guide(encoder)
    _, batched = _fit(True, guide=guide)
    name = "hidden.fc_layers.Layer 0.0.weight"
    start = encoder.state_dict()[name]
    for network, _ in batched:
        weight = network.encoder.state_dict()[name]
        assert torch.equal(weight[:, 10:20], start[:, 10:20])
        assert not torch.equal(weight[:, 20:], start[:, 20:])


def test_batched_folds_are_deterministic_and_seeded():
    _, first = _fit(True)
    _, again = _fit(True)
    _, other = _fit(True, seed=4)
    for (a, _), (b, _), (c, _) in zip(first, again, other, strict=True):
        for name, value in a.state_dict().items():
            assert torch.equal(b.state_dict()[name], value)
        assert not torch.equal(c.head.weight, a.head.weight)


def test_uneven_folds_and_hooks_fall_back_to_one_after_another():
    x, y = _support()
    encoder = _encoder()
    xs, ys = [x[:9], x[:12]], [y[:9] % 2, y[:12] % 2]
    settings = {"architecture": ARCHITECTURE, "seed": 1, "n_steps": 5}
    uneven = fine_tune_networks(encoder, xs, ys, 2, **settings)
    for (network, _), x_fold, y_fold in zip(uneven, xs, ys, strict=True):
        alone, _ = fine_tune_network(encoder, x_fold, y_fold, 2, **settings)
        assert torch.equal(network.head.weight, alone.head.weight)
    seen = []
    xs, ys = _folds(x, y)
    fine_tune_networks(
        encoder, xs, ys, N_CLASSES, input_transform=lambda rows: seen.append(1) or rows, **settings
    )
    assert len(seen) == len(xs) * settings["n_steps"]


def test_bad_fold_lists_are_refused():
    x, y = _support()
    with pytest.raises(ValueError, match="as many label vectors"):
        fine_tune_networks(_encoder(), [x], [y, y], N_CLASSES, architecture=ARCHITECTURE)
    with pytest.raises(ValueError, match="n_steps"):
        fine_tune_networks(
            _encoder(), [x, x], [y, y], N_CLASSES, architecture=ARCHITECTURE, n_steps=0
        )


def test_wide_path_choice_is_the_same_with_batched_folds():
    x, y = _support()
    encoder = _encoder()
    guide = _guide(encoder)
    records = []
    for batched in (False, True):
        settings = {"architecture": ARCHITECTURE, "seed": 0, "n_steps": 30, "guide": guide}
        network, _ = fine_tune_network(encoder, x, y, N_CLASSES, **settings)
        fit_networks = functools.partial(
            fine_tune_networks, encoder, n_classes=N_CLASSES, batched=batched, **settings
        )
        records.append(
            add_wide_path(network, fit_networks, fit_linear_path, x, x, y, wide_weight=None, seed=0)
        )
    sequential, batched = records
    assert batched["wide_weight"] == sequential["wide_weight"]
    np.testing.assert_allclose(
        batched["wide_cv_log_loss"], sequential["wide_cv_log_loss"], atol=1e-4
    )
    np.testing.assert_allclose(batched["support_novelty"], sequential["support_novelty"], atol=1e-3)
    assert np.isfinite(batched["support_novelty"]).all()


def test_guided_update_scales_every_update():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    guide = {"weight": torch.rand(3, 4), "bias": torch.zeros(3)}
    start = {name: p.detach().clone() for name, p in layer.named_parameters()}
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(5, 4)).pow(2).sum().backward()
    full = {name: p.detach() - 0.1 * p.grad for name, p in layer.named_parameters()}
    with GuidedUpdate(dict(layer.named_parameters()), guide).step():
        optimizer.step()
    for name, p in layer.named_parameters():
        expected = start[name] + guide[name] * (full[name] - start[name])
        torch.testing.assert_close(p.detach(), expected)
    assert torch.equal(layer.bias.detach(), start["bias"])
