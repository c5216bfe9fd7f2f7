"""Progress goes to stderr, results to stdout, and one setting silences every bar."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scvi
import torch

import scgtl
from scgtl.train import TrainingDisplay, estimate_scout_seconds


def _train(corpus, fast_guide, **kwargs):
    scgtl.GTL.setup_anndata(corpus, units="log1p")
    model = scgtl.GTL(corpus, n_hidden=16, n_latent=8)
    model.train(max_epochs=2, guide_kwargs={**fast_guide, "n_scouts": 3}, **kwargs)
    return model


def test_bars_go_to_stderr(pbmc_corpus, fast_guide, capsys):
    _train(pbmc_corpus, fast_guide, enable_progress_bar=True)
    out, err = capsys.readouterr()
    # One display for the whole call, a row per phase.
    steps = 3 * fast_guide["n_steps"]
    for row in ("train()", "Pre-training: epoch 2/2", f"Scouts: scout step {steps}/{steps}"):
        assert row in err
        assert row not in out
    assert "left 0:00:00" in err  # both phases over


@pytest.mark.parametrize("switch", ["argument", "setting"])
def test_one_switch_silences_every_bar(pbmc_corpus, pbmc_target, fast_guide, capsys, switch):
    kwargs = {"enable_progress_bar": False} if switch == "argument" else {}
    try:
        if switch == "setting":
            scgtl.settings.progress_bar = False
        model = _train(pbmc_corpus, fast_guide, **kwargs)
        if switch == "setting":
            scgtl.benchmark.few_shot(
                model,
                pbmc_target,
                labels_key="bulk_labels",
                k_shots=1,
                n_episodes=1,
                methods=["gtl", "logreg"],
            )
    finally:
        scgtl.settings.progress_bar = True
    out, err = capsys.readouterr()
    for text in ("Epoch", "epoch", "train()", "Scouts", "few-shot benchmark"):
        assert text not in out and text not in err


def test_train_prints_no_lightning_banner_or_tip(pbmc_corpus, fast_guide, capfd):
    """A notebook user sees no "GPU available" lines and no advertisement; warnings still show."""
    lightning = logging.getLogger("lightning.pytorch")
    level = lightning.level
    lightning.setLevel(logging.INFO)  # as in a fresh kernel (the CLI tests raise it for good)
    try:
        _train(pbmc_corpus, fast_guide, enable_progress_bar=False)
        printed = "".join(capfd.readouterr())
        assert lightning.level == logging.INFO  # the caller's logging settings are restored
    finally:
        lightning.setLevel(level)
    for banner in ("GPU available", "TPU available", "Tip:", "litlogger", "`Trainer.fit` stopped"):
        assert banner not in printed, banner


def test_progress_setting_rejects_non_booleans():
    with pytest.raises(ValueError, match="progress_bar='no'"):
        scgtl.settings.progress_bar = "no"
    assert scgtl.settings.progress_bar is True


def test_train_logs_the_scouts(pbmc_corpus, fast_guide, caplog):
    with caplog.at_level(logging.INFO, logger="scgtl"):
        _train(pbmc_corpus, fast_guide, enable_progress_bar=False)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("scgtl")]
    steps = fast_guide["n_steps"]
    assert f"Scouts: 3 scouts x {steps} optimiser steps, batched, up to 3 at a time." in messages


def test_the_display_does_not_change_the_model(pbmc_corpus, fast_guide):
    """The timed scout step before pre-training leaves weights and random draws alone."""
    scvi.settings.seed = 0
    shown = _train(pbmc_corpus.copy(), fast_guide, enable_progress_bar=True)
    scvi.settings.seed = 0
    hidden = _train(pbmc_corpus.copy(), fast_guide, enable_progress_bar=False)
    for name, weight in shown.module.state_dict().items():
        torch.testing.assert_close(weight, hidden.module.state_dict()[name], rtol=0, atol=0)
    for name, guide in shown.guide.items():
        torch.testing.assert_close(guide, hidden.guide[name], rtol=0, atol=0)


@pytest.mark.parametrize("batched", [True, False])
def test_scout_time_estimate(pbmc_corpus, batched):
    encoder = torch.nn.Sequential(torch.nn.Linear(pbmc_corpus.n_vars, 16), torch.nn.ReLU())
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    rng_state = torch.get_rng_state()
    x = torch.as_tensor(pbmc_corpus.X[:10].toarray(), dtype=torch.float32)
    seconds = estimate_scout_seconds(
        encoder, x, n_scouts=7, n_way=2, n_latent=16, n_steps=50, batched=batched
    )
    assert np.isfinite(seconds) and seconds > 0
    assert torch.equal(torch.get_rng_state(), rng_state)
    for name, weight in encoder.state_dict().items():
        assert torch.equal(weight, before[name])


def test_time_left_comes_from_the_phases(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("scgtl.train._progress.time.perf_counter", lambda: now[0])
    display = TrainingDisplay(["Pre-training", "Scouts"], enabled=False, scout_seconds=30.0)
    display.start_phase("Pre-training", total=10, done=2)  # resumed after 2 epochs
    assert display.seconds_left("Pre-training") is None  # no epoch timed yet
    assert display.seconds_left("train()") is None
    now[0] += 4.0
    display.advance("Pre-training")  # the first epoch: 4 s, 7 left
    assert display.seconds_left("Pre-training") == pytest.approx(28.0)
    now[0] += 2.0
    display.advance("Pre-training")  # later epochs: 2 s each, 6 left (the first left out)
    assert display.seconds_left("Pre-training") == pytest.approx(12.0)
    assert display.seconds_left("Scouts") == pytest.approx(30.0)  # the timed step's estimate
    assert display.seconds_left("train()") == pytest.approx(42.0)
    display.end_phase("Pre-training")
    display.start_phase("Scouts", total=600)
    now[0] += 10.0
    assert display.seconds_left("Scouts") == pytest.approx(20.0)  # estimate less time spent
    display.advance("Scouts", 60)  # a batched step of 60 scouts
    now[0] += 1.0
    display.advance("Scouts", 60)
    assert display.seconds_left("Scouts") == pytest.approx(8.0)  # 60 steps a second, 480 left
    display.end_phase("Scouts")
    assert display.seconds_left("train()") == 0.0


def test_run_scouts_reports_every_step(pbmc_corpus):
    encoder = torch.nn.Sequential(torch.nn.Linear(pbmc_corpus.n_vars, 16), torch.nn.ReLU())
    x = torch.as_tensor(pbmc_corpus.X[:40].toarray(), dtype=torch.float32)
    groups = np.repeat(np.arange(4), 10)
    tasks = scgtl.guide.sample_scout_tasks(groups, n_scouts=5, n_way=2, k_shot=3, seed=0)
    for batched, batch_size in ((True, 2), (False, None)):
        stepped = []
        changes = scgtl.train.run_scouts(
            encoder, x, tasks, n_latent=16, n_steps=7, progress=False, batched=batched,
            batch_size=batch_size, on_step=stepped.append,
        )  # fmt: skip
        assert len(list(changes)) == 5
        assert sum(stepped) == 5 * 7
        assert set(stepped) == ({2, 1} if batched else {1})  # chunks of 2, 2 and 1 scouts


def test_display_rejects_unknown_phases():
    with pytest.raises(ValueError, match="'Fine-tuning'"):
        TrainingDisplay(["Fine-tuning"])


def test_guide_time_estimate_takes_compute_guides_options(gtl_model):
    seconds = gtl_model.estimate_guide_seconds(n_scouts=4, n_steps=10)
    assert np.isfinite(seconds) and seconds > 0
    with pytest.raises(TypeError, match="n_scout"):
        gtl_model.estimate_guide_seconds(n_scout=4)
