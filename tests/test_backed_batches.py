"""A backed corpus pre-trains in shuffled blocks of neighbouring rows (issue 14, part 1)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch
from scvi import REGISTRY_KEYS
from torch.utils.data import BatchSampler

import scgtl
from scgtl.train import ShuffledBlockSampler, ShuffledBlockSplitter


def _epochs(sampler: ShuffledBlockSampler, seed: int, n: int = 2) -> list[list[list[int]]]:
    torch.manual_seed(seed)
    return [list(sampler) for _ in range(n)]


def test_batches_are_blocks_of_neighbouring_rows_in_shuffled_order():
    rows = np.random.default_rng(0).permutation(100)  # a training split, as scvi-tools draws it
    epochs = _epochs(ShuffledBlockSampler(rows, batch_size=16, block_size=4), seed=0)
    for epoch in epochs:
        assert [len(batch) for batch in epoch] == [16] * 6 + [4]
        # Every row once per epoch.
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(100))
        for batch in epoch:
            read = rows[batch]
            assert list(read) == sorted(read)  # read in row order
            starts = np.unique(read // 4)
            assert len(starts) == len(batch) // 4  # whole blocks of 4 neighbouring rows
        first = rows[epoch[0]] // 4
        assert np.ptp(first) > 4  # blocks from across the corpus, not one run
    assert epochs[0] != epochs[1]  # a new order every epoch


def test_one_block_per_batch_follows_the_training_rows():
    rows = np.random.default_rng(1).permutation(120)[:90]  # 30 rows went to validation
    sampler = ShuffledBlockSampler(rows, batch_size=20, block_size=20, drop_last=True)
    (epoch,) = _epochs(sampler, seed=0, n=1)
    in_order = np.sort(rows)
    assert len(epoch) == 4  # the last 10 rows make a short batch, dropped
    for batch in epoch:
        read = rows[batch]
        (start,) = np.flatnonzero(in_order == read[0])
        np.testing.assert_array_equal(read, in_order[start : start + 20])


def test_block_order_is_fixed_by_the_seed():
    sampler = ShuffledBlockSampler(np.arange(200), batch_size=10)
    assert _epochs(sampler, seed=3) == _epochs(sampler, seed=3)
    assert _epochs(sampler, seed=3) != _epochs(sampler, seed=4)


@pytest.mark.parametrize("size", [0, -1, 2.0, True])
def test_bad_sizes_are_refused(size):
    with pytest.raises(ValueError, match="batch_size"):
        ShuffledBlockSampler(np.arange(10), batch_size=size)
    with pytest.raises(ValueError, match="block_size"):
        ShuffledBlockSampler(np.arange(10), batch_size=4, block_size=size)


@pytest.fixture()
def backed(make_counts, tmp_path) -> tuple[ad.AnnData, ad.AnnData]:
    corpus = make_counts(n_obs=90, n_vars=30)
    corpus.write_h5ad(tmp_path / "corpus.h5ad")
    return corpus, ad.read_h5ad(tmp_path / "corpus.h5ad", backed="r")


def _registered(adata: ad.AnnData) -> scgtl.GTL:
    scgtl.GTL.setup_anndata(adata, units="counts")
    return scgtl.GTL(adata, n_hidden=16, n_latent=4)


def test_backed_loader_reads_the_blocks_rows(backed, monkeypatch):
    corpus, on_disk = backed
    splitter = ShuffledBlockSplitter(
        _registered(on_disk).adata_manager, train_size=0.8, batch_size=16
    )
    splitter.setup()
    loader = splitter.train_dataloader()
    assert isinstance(loader.sampler, ShuffledBlockSampler)
    batches = []
    sample = ShuffledBlockSampler.__iter__

    def recorded(sampler):
        for batch in sample(sampler):
            batches.append(batch)
            yield batch

    monkeypatch.setattr(ShuffledBlockSampler, "__iter__", recorded)
    read = list(loader)
    assert [len(batch) for batch in batches] == [16, 16, 16, 16, 8]  # 72 training rows
    for positions, batch in zip(batches, read, strict=True):
        rows = splitter.train_idx[positions]
        np.testing.assert_array_equal(batch[REGISTRY_KEYS.X_KEY].numpy(), corpus.X[rows].toarray())


def test_in_memory_and_distributed_loaders_are_scvi_tools_own(backed):
    corpus, on_disk = backed
    in_memory = ShuffledBlockSplitter(_registered(corpus).adata_manager, batch_size=16)
    in_memory.setup()
    assert not in_memory.reads_in_blocks
    assert isinstance(in_memory.train_dataloader().sampler, BatchSampler)
    distributed = ShuffledBlockSplitter(
        _registered(on_disk).adata_manager, batch_size=16, distributed_sampler=True
    )
    assert not distributed.reads_in_blocks


def test_backed_training_reads_in_blocks(backed):
    _, on_disk = backed
    model = _registered(on_disk)
    model.train(max_epochs=1, batch_size=16, compute_guide=False, enable_progress_bar=False)
    assert isinstance(model.trainer.train_dataloader.sampler, ShuffledBlockSampler)
    assert all(torch.isfinite(w).all() for w in model.module.state_dict().values())


def test_backed_training_resumes_to_the_same_weights(backed, tmp_path):
    """Block order comes from the random state a checkpoint restores."""
    _, on_disk = backed
    options = {"batch_size": 16, "compute_guide": False, "enable_progress_bar": False}

    def model() -> scgtl.GTL:
        torch.manual_seed(0)
        return _registered(on_disk)

    uninterrupted = model()
    uninterrupted.train(max_epochs=3, **options)
    split = [
        uninterrupted.train_indices,
        uninterrupted.validation_indices,
        uninterrupted.test_indices,
    ]
    model().train(
        max_epochs=1,
        checkpoint_dir=tmp_path,
        datasplitter_kwargs={"external_indexing": split},
        **options,
    )
    resumed = model()
    resumed.train(max_epochs=3, checkpoint_dir=tmp_path, resume=True, **options)
    for name, weight in uninterrupted.module.state_dict().items():
        assert torch.equal(resumed.module.state_dict()[name], weight), name
