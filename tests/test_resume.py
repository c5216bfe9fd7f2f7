"""Checkpoint and resume: an interrupted pre-training continues to the same weights (issue 14)."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

import scgtl

#: Small, short: the scouts only have to run (their equality is part of the check).
GUIDE = {"n_scouts": 3, "n_steps": 5, "n_clusters": 3, "k_shot": 2, "progress": False}
EPOCHS = 4


class Interrupt(Callback):
    """Stop training when ``epoch`` (counted from 0) is about to start, as a crash would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.fixture()
def corpus(make_counts):
    adata = make_counts(n_obs=300, n_vars=100)
    scgtl.GTL.setup_anndata(adata, units="counts")
    return adata


def _model(corpus, **kwargs) -> scgtl.GTL:
    torch.manual_seed(0)
    return scgtl.GTL(corpus, **{"n_hidden": 32, "n_latent": 8, **kwargs})


def _train(model, **kwargs) -> None:
    model.train(
        **{
            "max_epochs": EPOCHS,
            "batch_size": 64,
            "enable_progress_bar": False,
            "guide_kwargs": GUIDE,
            **kwargs,
        }
    )


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture()
def uninterrupted(corpus):
    """A pre-training of ``EPOCHS`` epochs, and the split it drew (the resumed run reuses it)."""
    model = _model(corpus)
    _train(model)
    split = [model.train_indices, model.validation_indices, model.test_indices]
    return model, {"external_indexing": split}


@pytest.mark.parametrize("stop", ["crash", "max_epochs"])
def test_resumed_training_equals_uninterrupted_one(corpus, uninterrupted, tmp_path, stop):
    """Stopped after 2 of 4 epochs (a crash, or a shorter run), resumed: the same weights and guide.

    The interrupted run is given the uninterrupted run's split; the resumed run is not, so it
    must take the split from the checkpoint (scvi-tools draws a new one on every call).
    """
    reference, split = uninterrupted
    interrupted = _model(corpus)
    before = _weights(interrupted)
    if stop == "crash":
        with pytest.raises(RuntimeError, match="simulated crash"):
            _train(
                interrupted,
                checkpoint_dir=tmp_path,
                callbacks=[Interrupt(epoch=2)],
                datasplitter_kwargs=split,
            )
        # A failed call leaves the model as it was: untrained, no guide, its initial weights.
        assert not interrupted.is_trained
        assert interrupted.guide is None
        _assert_same(_weights(interrupted), before)
    else:
        _train(interrupted, max_epochs=2, checkpoint_dir=tmp_path, datasplitter_kwargs=split)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no half-written file

    resumed = _model(corpus)
    _train(resumed, checkpoint_dir=tmp_path, resume=True)
    _assert_same(_weights(resumed), _weights(reference))
    # The scouts ran after the resumed pre-training, as after any other.
    assert resumed.guide is not None
    _assert_same(resumed.guide, reference.guide)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == EPOCHS - 1


def test_resuming_a_finished_training_only_runs_the_scouts(corpus, tmp_path):
    model = _model(corpus)
    _train(model, max_epochs=2, checkpoint_dir=tmp_path, compute_guide=False)
    again = _model(corpus)
    _train(again, max_epochs=2, checkpoint_dir=tmp_path, resume=True)
    _assert_same(_weights(again), _weights(model))
    assert again.is_trained and again.guide is not None


def test_an_interrupted_checkpoint_write_keeps_the_previous_checkpoint(
    corpus, tmp_path, monkeypatch
):
    """A failure while writing epoch 2's checkpoint leaves epoch 1's intact and resumable."""
    real_save = pl.Trainer.save_checkpoint

    def failing_save(trainer, filepath, *args, **kwargs):
        if trainer.current_epoch == 1:
            with open(filepath, "wb") as handle:  # a partial file, then the disk "fills up"
                handle.write(b"\x80\x02partial")
            raise OSError("No space left on device")
        return real_save(trainer, filepath, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", failing_save)
    with pytest.raises(OSError, match="No space left"):
        _train(_model(corpus), checkpoint_dir=tmp_path, compute_guide=False)
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 0
    resumed = _model(corpus)
    _train(resumed, max_epochs=2, checkpoint_dir=tmp_path, resume=True, compute_guide=False)
    assert resumed.is_trained


def test_checkpoint_options_are_checked(corpus, tmp_path, make_counts):
    model = _model(corpus)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        _train(model, resume=True)
    with pytest.raises(ValueError, match="must be True or False"):
        _train(model, checkpoint_dir=tmp_path, resume="yes")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="a_file"):
        _train(model, checkpoint_dir=a_file)
    with pytest.raises(FileNotFoundError, match="empty.*last.ckpt"):
        _train(model, checkpoint_dir=tmp_path / "empty", resume=True)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.*not a readable checkpoint"):
        _train(model, checkpoint_dir=garbage, resume=True)
    assert not model.is_trained

    done = tmp_path / "done"
    _train(model, max_epochs=1, checkpoint_dir=done, compute_guide=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        _train(model, checkpoint_dir=done)
    with pytest.raises(ValueError, match=r"done.*does not fit this model.*shape"):
        _train(_model(corpus, n_hidden=16), checkpoint_dir=done, resume=True)
    other = make_counts(n_obs=240, n_vars=100)
    scgtl.GTL.setup_anndata(other, units="counts")
    with pytest.raises(ValueError, match="300 observations; this corpus has 240"):
        _train(_model(other), checkpoint_dir=done, resume=True)


def test_train_logs_its_epochs_and_steps(corpus, tmp_path, caplog):
    """300 cells, scvi-tools' 90 % training split (270), batches of 64: 5 steps an epoch."""
    with caplog.at_level(logging.INFO, logger="scgtl"):
        _train(_model(corpus), max_epochs=2, checkpoint_dir=tmp_path, compute_guide=False)
        _train(_model(corpus), max_epochs=3, checkpoint_dir=tmp_path, resume=True)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("scgtl")]
    assert "Pre-training: 2 epochs x 5 steps = 10 optimiser steps." in messages
    assert (
        "Pre-training: 1 epoch (resumed after epoch 2 of 3) x 5 steps = 5 optimiser steps."
        in messages
    )
