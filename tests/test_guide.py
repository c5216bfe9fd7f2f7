"""Guide maths and the guided update: pure tensor behaviour."""

import numpy as np
import pytest
import torch
from torch import nn

from scgtl.guide import (
    apply_temperature,
    mean_change,
    normalize,
    parameter_changes,
    sample_scout_tasks,
)
from scgtl.train import GuidedUpdate, fit_few_shot, prototype_head, run_scouts
from scgtl.train._few_shot import check_head_init


def test_mean_change_squared_and_absolute():
    changes = [{"w": torch.tensor([1.0, -2.0])}, {"w": torch.tensor([3.0, 0.0])}]
    assert torch.equal(mean_change(changes, statistic="squared")["w"], torch.tensor([5.0, 2.0]))
    assert torch.equal(mean_change(changes, statistic="absolute")["w"], torch.tensor([2.0, 1.0]))
    with pytest.raises(ValueError, match="statistic='cubed'"):
        mean_change(changes, statistic="cubed")
    with pytest.raises(ValueError, match="n_scouts must be >= 1"):
        mean_change([])


def test_parameter_changes_is_trained_minus_base():
    base = {"a": torch.ones(2)}
    out = parameter_changes(base, {"a": torch.tensor([3.0, 0.5])})
    assert torch.equal(out["a"], torch.tensor([2.0, -0.5]))


def test_normalize_per_tensor_and_global():
    stat = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([10.0, 20.0])}
    per = normalize(stat)
    assert torch.allclose(per["a"], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(per["b"], torch.tensor([0.0, 1.0]))
    glob = normalize(stat, normalization="global")
    assert float(glob["a"].max()) < 0.11 and float(glob["b"].max()) == 1.0
    constant = normalize({"c": torch.full((3,), 7.0)})
    assert torch.equal(constant["c"], torch.ones(3))


def test_temperatures():
    g = {"w": torch.linspace(0, 1, 101)}
    assert torch.equal(apply_temperature(g, "room")["w"], g["w"])
    warm = apply_temperature(g, "warm")["w"]
    assert float(warm.min()) == pytest.approx(0.5) and float(warm.max()) == pytest.approx(1.0)
    icy = apply_temperature(g, "icy")["w"]
    assert float(icy[:50].max()) == 0.0 and float(icy[-1]) == pytest.approx(1.0)
    frozen = apply_temperature(g, "freeze", top_p=0.1)["w"]
    assert set(frozen.unique().tolist()) == {0.0, 1.0}
    assert int(frozen.sum()) == 10
    lin = apply_temperature(g, "linear", slope=0.5, intercept=0.25, scale=2.0)["w"]
    assert float(lin[0]) == pytest.approx(0.5) and float(lin[-1]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="temperature='boiling'"):
        apply_temperature(g, "boiling")
    with pytest.raises(ValueError, match="top_p"):
        apply_temperature(g, "freeze", top_p=0)


def _adam_step(guide_value: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    layer(torch.ones(4, 3)).pow(2).sum().backward()
    if guide_value is None:
        optimizer.step()
    else:
        guide = {"weight": torch.full_like(layer.weight, guide_value)}
        with GuidedUpdate(dict(layer.named_parameters()), guide).step():
            optimizer.step()
    return before, layer.weight.detach()


def test_guided_update_scales_the_adam_update():
    before, free = _adam_step(None)
    _, half = _adam_step(0.5)
    _, frozen = _adam_step(0.0)
    assert torch.equal(frozen, before)
    assert torch.allclose(half - before, 0.5 * (free - before), atol=1e-7)
    assert not torch.allclose(free, before)


def test_guided_update_rejects_mismatched_guides():
    layer = nn.Linear(3, 2)
    with pytest.raises(KeyError, match="nope"):
        GuidedUpdate(dict(layer.named_parameters()), {"nope": torch.ones(1)})
    with pytest.raises(ValueError, match="shape"):
        GuidedUpdate(dict(layer.named_parameters()), {"weight": torch.ones(3, 3)})


def test_fit_few_shot_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(10, 5) + 3, torch.randn(10, 5) - 3])
    y = torch.repeat_interleave(torch.arange(2), 10)
    encoder, head = nn.Linear(5, 4), nn.Linear(4, 2)
    losses = fit_few_shot(encoder, head, x, y, n_steps=50, lr=1e-2)
    assert len(losses) == 50 and losses[-1] < 0.2 * losses[0]
    assert (head(encoder(x)).argmax(1) == y).all()
    with pytest.raises(ValueError, match="n_steps=0"):
        fit_few_shot(encoder, head, x, y, n_steps=0)


def test_scout_tasks_are_balanced_seeded_and_valid():
    groups = np.repeat(np.array(["a", "b", "c", "d"]), [10, 10, 10, 2])
    tasks = sample_scout_tasks(groups, n_scouts=20, n_way=2, k_shot=3, seed=1)
    assert len(tasks) == 20
    for task in tasks:
        assert task.indices.size == 6 and np.unique(task.indices).size == 6
        assert "d" not in task.groups  # too small for k_shot=3
        for code, group in enumerate(task.groups):
            assert set(groups[task.indices[task.labels == code]]) == {group}
    again = sample_scout_tasks(groups, n_scouts=20, n_way=2, k_shot=3, seed=1)
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(tasks, again, strict=True))
    with pytest.raises(ValueError, match="n_way=4 needs 4"):
        sample_scout_tasks(groups, n_scouts=1, n_way=4, k_shot=3)


def test_prototype_head_is_the_nearest_class_mean_classifier():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(6, 4), nn.Dropout(0.5))
    encoder.train()
    x = torch.randn(30, 6)
    y = torch.arange(3).repeat(10)
    head = prototype_head(encoder, x, y, 3)
    assert encoder.training  # mode restored
    encoder.eval()
    with torch.no_grad():
        z = encoder(x)
        means = torch.stack([z[y == c].mean(0) for c in range(3)])
        nearest = torch.cdist(z, means).argmin(1)
        assert torch.equal(head(z).argmax(1), nearest)
    with pytest.raises(ValueError, match=r"Classes \[2\]"):
        prototype_head(encoder, x[y < 2], y[y < 2], 3)
    with pytest.raises(ValueError, match="head_init='zeros'"):
        check_head_init("zeros")


def test_scouts_with_either_head_init_leave_the_encoder_unchanged():
    torch.manual_seed(0)
    encoder = nn.Linear(5, 3)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    x = torch.randn(20, 5)
    groups = np.repeat(np.array(["a", "b"]), 10)
    tasks = sample_scout_tasks(groups, n_scouts=2, n_way=2, k_shot=3, seed=0)
    for head_init in ("prototypes", "random"):
        scouts = run_scouts(
            encoder, x, tasks, n_latent=3, n_steps=5, progress=False, head_init=head_init
        )
        changes = list(scouts)
        assert len(changes) == 2 and all(float(c["weight"].abs().sum()) > 0 for c in changes)
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k])
