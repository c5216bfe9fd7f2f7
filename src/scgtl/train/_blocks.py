"""Pre-training from disk in shuffled blocks of neighbouring rows (issue 14, part 1).

A backed ``.h5ad`` file (or a :class:`scgtl.data.CorpusCollection`) reads a mini-batch of
scattered rows row by row, each read a separate seek into the file; a block of neighbouring
rows is read from a few HDF5 chunks, several times faster (``benchmarks/corpus_memory.py``
times a whole epoch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from scvi import settings
from scvi.dataloaders import DataSplitter
from torch.utils.data import Sampler, default_convert

if TYPE_CHECKING:
    from collections.abc import Iterator

    from scvi.dataloaders import AnnDataLoader


#: Neighbouring rows read together: a mini-batch of 128 gathers 8 blocks from across the corpus.
BLOCK_SIZE = 16


class ShuffledBlockSampler(Sampler[list[int]]):
    """Mini-batches made of blocks of neighbouring rows, in a new random order every epoch.

    The rows of a training set are sorted and cut into blocks of ``block_size`` neighbouring
    rows; every epoch the blocks are shuffled and dealt out, ``batch_size`` rows at a time, so a
    mini-batch holds ``batch_size / block_size`` blocks from random places in the corpus: reads
    stay a few runs of neighbouring rows (several times faster from disk than scattered rows,
    ``benchmarks/corpus_memory.py``) while a corpus stored sorted by study or cell type still
    gives mixed mini-batches. The order is drawn from PyTorch's global generator (one draw per
    epoch, as :class:`~torch.utils.data.RandomSampler` does), so ``scvi.settings.seed`` and a
    resumed checkpoint's random state fix it.

    Parameters
    ----------
    rows
        Row of the corpus at each position of the data set (scvi-tools' training indices).
    batch_size
        Rows per mini-batch.
    block_size
        Neighbouring rows per block (at most ``batch_size``).
    drop_last
        Leave out the last mini-batch when it is shorter than ``batch_size``.

    Yields
    ------
    Positions in ``rows`` (what a :class:`torch.utils.data.Subset` over the corpus takes)
    of one mini-batch, in the order of their rows.
    """

    def __init__(
        self,
        rows: np.ndarray,
        *,
        batch_size: int,
        block_size: int = BLOCK_SIZE,
        drop_last: bool = False,
    ):
        for name, value in (("batch_size", batch_size), ("block_size", block_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        super().__init__()
        self.rows = np.asarray(rows)
        self.batch_size, self.drop_last = batch_size, drop_last
        block_size = min(block_size, batch_size)
        in_row_order = np.argsort(self.rows, kind="stable")
        self.blocks = [
            in_row_order[start : start + block_size]
            for start in range(0, len(in_row_order), block_size)
        ]

    def __len__(self) -> int:
        n_rows = len(self.rows)
        return n_rows // self.batch_size if self.drop_last else -(-n_rows // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        generator = torch.Generator().manual_seed(seed)
        # A short last block stays last, so that it never splits a mini-batch's blocks.
        short = bool(self.blocks) and len(self.blocks[-1]) < len(self.blocks[0])
        n_whole = len(self.blocks) - short
        order = torch.randperm(n_whole, generator=generator).tolist()
        order += list(range(n_whole, len(self.blocks)))
        dealt = np.concatenate([self.blocks[i] for i in order]) if order else np.array([], int)
        for batch in range(len(self)):
            positions = dealt[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield positions[np.argsort(self.rows[positions], kind="stable")].tolist()


def _one_mini_batch(elements: list[dict]) -> dict:
    """The mini-batch a loader of batch size one got from a sampler of whole mini-batches."""
    (mini_batch,) = elements
    # What PyTorch does to a sample when batching is off, as in scvi-tools' own loaders.
    return default_convert(mini_batch)


class ShuffledBlockSplitter(DataSplitter):
    """scvi-tools' :class:`~scvi.dataloaders.DataSplitter`, training in shuffled blocks on disk.

    For a backed corpus (``adata.isbacked``) on one device the training loader takes its
    mini-batches from :class:`ShuffledBlockSampler`. In memory, and under DDP (scvi-tools'
    ``BatchDistributedSampler`` shares the batches between the processes), it is
    ``DataSplitter`` unchanged. Validation and test loaders are unchanged.

    Parameters
    ----------
    adata_manager, **kwargs
        As :class:`~scvi.dataloaders.DataSplitter`.
    """

    def train_dataloader(self) -> AnnDataLoader:
        """The training loader; blocks of neighbouring rows for a backed corpus."""
        if not self.reads_in_blocks:
            return super().train_dataloader()
        options = dict(self.data_loader_kwargs)
        batch_size = options.pop("batch_size", None) or settings.batch_size
        options.pop("distributed_sampler", None)
        sampler = ShuffledBlockSampler(
            self.train_idx, batch_size=batch_size, drop_last=self.drop_last
        )
        # AnnDataLoader keeps PyTorch's batching for a sampler it is given: batches of one
        # element, each element a whole mini-batch read with one call; unwrap it.
        return self.data_loader_cls(
            self.adata_manager,
            indices=self.train_idx,
            sampler=sampler,
            batch_size=1,
            collate_fn=_one_mini_batch,
            load_sparse_tensor=self.load_sparse_tensor,
            pin_memory=self.pin_memory,
            **options,
        )

    @property
    def reads_in_blocks(self) -> bool:
        """Whether training batches are blocks: a backed corpus, not under DDP.

        Also not when ``datasplitter_kwargs`` choose the loader's sampler or batching.
        """
        backed = bool(getattr(self.adata_manager.adata, "isbacked", False))
        chosen = {"sampler", "collate_fn", "iter_ndarray"} & set(self.data_loader_kwargs)
        return (
            backed and not self.data_loader_kwargs.get("distributed_sampler", False) and not chosen
        )
