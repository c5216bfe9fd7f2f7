"""The pieces that moved out of the model class, and the hooks research variants plug into."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch import nn

from scgtl.data import (
    align_genes,
    read_log_expression,
    row_sampler,
    support_rows,
)
from scgtl.data._checks import check_anndata, check_corpus
from scgtl.guide import (
    apply_temperature,
    cluster_groups,
    guide_from_changes,
    mean_change,
    normalize,
)
from scgtl.module import GTLClassifierModule, GTLModule, MLPEncoder
from scgtl.train import fine_tune_network, fit_few_shot, fit_masked_reconstruction


def _separable(n_per_class: int = 10, n_genes: int = 20, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n_per_class, n_genes, generator=gen)
    y = torch.arange(2).repeat_interleave(n_per_class)
    x[y == 1, :5] += 2.0
    return x, y


def _net(n_genes: int = 20, seed: int = 0):
    torch.manual_seed(seed)
    return MLPEncoder(n_genes, 8, n_hidden=16), nn.Linear(8, 2)


def test_callback_sees_every_step_and_loss():
    x, y = _separable()
    seen = []
    losses = fit_few_shot(*_net(), x, y, n_steps=7, callback=lambda s, loss: seen.append((s, loss)))
    assert [s for s, _ in seen] == list(range(7))
    assert [loss for _, loss in seen] == losses


def test_constant_extra_loss_is_added_without_changing_training():
    x, y = _separable()
    torch.manual_seed(1)
    plain = fit_few_shot(*_net(), x, y, n_steps=10)
    torch.manual_seed(1)
    extra = fit_few_shot(*_net(), x, y, n_steps=10, extra_loss=lambda enc, head: torch.tensor(2.5))
    np.testing.assert_allclose(np.asarray(extra) - 2.5, plain, rtol=0, atol=1e-5)


def test_extra_loss_gradients_reach_the_encoder():
    x, y = _separable()
    encoder, head = _net()
    start = {k: p.detach().clone() for k, p in encoder.named_parameters()}

    def pull_to_start(enc, _head):
        return 100.0 * sum(((p - start[k]) ** 2).sum() for k, p in enc.named_parameters())

    fit_few_shot(encoder, head, x, y, n_steps=30, lr=1e-2, extra_loss=pull_to_start)
    pulled = sum((p - start[k]).abs().sum() for k, p in encoder.named_parameters())
    encoder2, head2 = _net()
    fit_few_shot(encoder2, head2, x, y, n_steps=30, lr=1e-2)
    free = sum((p - start[k]).abs().sum() for k, p in encoder2.named_parameters())
    assert pulled < 0.5 * free


def test_input_transform_is_applied_to_the_support_rows():
    x, y = _separable()
    calls = []

    def blank(inputs):
        calls.append(inputs.shape)
        return torch.zeros_like(inputs)

    losses = fit_few_shot(*_net(), x, y, n_steps=40, lr=1e-2, input_transform=blank)
    assert calls == [tuple(x.shape)] * 40
    learned = fit_few_shot(*_net(), x, y, n_steps=40, lr=1e-2)
    # With every gene blanked the classes cannot be told apart: the loss stays near log 2.
    assert losses[-1] > 0.6 > learned[-1]


def test_fine_tune_network_copies_the_encoder_and_is_seeded():
    x, y = _separable()
    encoder, _ = _net()
    before = {k: p.detach().clone() for k, p in encoder.state_dict().items()}
    arch = {"n_latent": 8, "n_hidden": 16}
    net_a, losses_a = fine_tune_network(encoder, x, y, 2, architecture=arch, seed=3, n_steps=5)
    net_b, losses_b = fine_tune_network(encoder, x, y, 2, architecture=arch, seed=3, n_steps=5)
    assert isinstance(net_a, GTLClassifierModule) and not net_a.training
    assert losses_a == losses_b
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key])
    zero = {k: torch.zeros_like(p) for k, p in encoder.named_parameters()}
    frozen, _ = fine_tune_network(
        encoder, x, y, 2, architecture=arch, seed=3, n_steps=5, guide=zero
    )
    for key, value in frozen.encoder.state_dict().items():
        assert torch.equal(value, before[key])


def test_classifier_network_is_a_plain_module():
    from scvi.module.base import BaseModuleClass

    net = GTLClassifierModule(20, 3, n_latent=8, n_hidden=16)
    assert not isinstance(net, BaseModuleClass)
    out = net(torch.rand(4, 20))
    assert out["z"].shape == (4, 8) and out["logits"].shape == (4, 3)
    assert net.device == torch.device("cpu")


def test_masked_reconstruction_fit_is_seeded_and_lowers_the_loss():
    x, _ = _separable(n_per_class=32)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        module = GTLModule(20, n_latent=8, n_hidden=16, units="log1p")
        rng = np.random.default_rng(0)

        def draw(rng=rng):
            return x[torch.as_tensor(rng.choice(x.shape[0], size=16))]

        losses.append(fit_masked_reconstruction(module, draw, n_steps=60, lr=1e-2, seed=5))
        assert not module.training
    assert losses[0] == losses[1]
    assert np.mean(losses[0][-10:]) < np.mean(losses[0][:10])


def test_guide_from_changes_is_the_documented_composition():
    gen = torch.Generator().manual_seed(0)
    changes = [{"w": torch.randn(3, 4, generator=gen), "b": torch.randn(4, generator=gen)}]
    changes.append({k: v * 2 for k, v in changes[0].items()})
    expected = apply_temperature(normalize(mean_change(changes), normalization="global"), "warm")
    got = guide_from_changes(changes, temperature="warm")
    assert set(got) == {"w", "b"}
    for name in got:
        torch.testing.assert_close(got[name], expected[name])


def test_cluster_groups():
    rng = np.random.default_rng(0)
    latent = np.concatenate([rng.normal(0, 0.1, (20, 3)), rng.normal(5, 0.1, (20, 3))])
    groups = cluster_groups(latent, n_clusters=2, seed=0)
    assert groups.shape == (40,)
    assert len(set(groups[:20])) == 1 and len(set(groups[20:])) == 1 and groups[0] != groups[-1]
    np.testing.assert_array_equal(groups, cluster_groups(latent, n_clusters=2, seed=0))
    assert len(set(cluster_groups(latent[:3], n_clusters=30))) <= 3
    with pytest.raises(ValueError, match="n_clusters=1"):
        cluster_groups(latent, n_clusters=1)


def test_support_rows():
    labels = pd.Series(["a", "b", None, "a", "b", "a"])
    with pytest.raises(ValueError, match="missing labels"):
        support_rows(labels, k_shot=1, seed=0)
    np.testing.assert_array_equal(
        support_rows(labels, k_shot=None, seed=0, support_indices=[4, 0]), [0, 4]
    )
    with pytest.raises(ValueError, match="duplicates"):
        support_rows(labels, k_shot=None, seed=0, support_indices=[0, 0, 1])
    with pytest.raises(ValueError, match=r"lie in \[0, 6\)"):
        support_rows(labels, k_shot=None, seed=0, support_indices=[0, 9])
    np.testing.assert_array_equal(support_rows(labels, k_shot=None, seed=0), [0, 1, 3, 4, 5])
    with pytest.raises(ValueError, match="no label at all"):
        support_rows(pd.Series([None, None]), k_shot=None, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        support_rows(pd.Series(["a", None, "a"]), k_shot=None, seed=0)
    full = pd.Series(["a", "b", "a", "b", "a", "b"])
    drawn = support_rows(full, k_shot=2, seed=1)
    assert sorted(full.iloc[drawn]) == ["a", "a", "b", "b"]
    np.testing.assert_array_equal(drawn, support_rows(full, k_shot=2, seed=1))


def test_row_sampler_draws_seeded_rows_as_log_expression():
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(2.0, (30, 6)).astype(np.float32))
    adata = AnnData(counts)
    alignment = align_genes(adata.var_names, adata.var_names)
    draws = []
    for _ in range(2):
        draw = row_sampler(
            adata,
            layer=None,
            units="counts",
            alignment=alignment,
            n_rows=8,
            rng=np.random.default_rng(4),
        )
        draws.append(draw())
    torch.testing.assert_close(draws[0], draws[1])
    everything = read_log_expression(adata, layer=None, units="counts", alignment=alignment)
    rows = np.sort(np.random.default_rng(4).choice(30, size=8, replace=False))
    torch.testing.assert_close(draws[0], everything[rows])
    more = row_sampler(
        adata,
        layer=None,
        units="counts",
        alignment=alignment,
        n_rows=50,
        rng=np.random.default_rng(0),
    )
    assert more().shape == (50, 6)


def test_check_anndata_and_corpus_name_the_problem():
    with pytest.raises(TypeError, match="Expected an AnnData, got ndarray"):
        check_anndata(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="empty"):
        check_anndata(AnnData(np.zeros((0, 3))))
    adata = AnnData(np.ones((4, 3), dtype=np.float32))
    with pytest.raises(KeyError, match="labels_key='nope'"):
        check_corpus(adata, layer=None, units="counts", labels_key="nope")
    with pytest.raises(ValueError, match="units"):
        check_corpus(adata, layer=None, units="tpm")
