"""Resumable pre-training: Lightning checkpoints written after every epoch, and reading them back.

The checkpoint is Lightning's own (``Trainer.save_checkpoint``: weights, optimiser, loop
counters, callback states), resumed by Lightning's own ``Trainer.fit(ckpt_path=...)``, which
scvi-tools' ``TrainRunner`` passes through. Two things Lightning does not keep are added, so a
resumed run continues exactly as the uninterrupted one would have: the random number generators'
states (mini-batch order, masks, dropout) and scvi-tools' train/validation split, which is drawn
afresh on every call unless ``scvi.settings.seed`` is set.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

if TYPE_CHECKING:
    import lightning.pytorch as pl

#: The checkpoint file :class:`EpochCheckpoint` keeps up to date in its directory.
CHECKPOINT_FILE = "last.ckpt"


def collect_rng_states() -> dict[str, Any]:
    """The states of torch's (CPU and CUDA), numpy's and Python's global generators.

    Only tensors, numbers and strings, so that Lightning can read the checkpoint with
    ``torch.load(weights_only=True)``.
    """
    name, key, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore generator states recorded by :func:`collect_rng_states`."""
    torch.set_rng_state(states["torch"])
    name, key, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
    cuda = states.get("cuda")
    # A checkpoint from another machine may have another number of GPUs: then CUDA starts fresh.
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _data_split(trainer: pl.Trainer) -> list[torch.Tensor] | None:
    """``[train, validation, test]`` indices of scvi-tools' ``DataSplitter``, if it has them."""
    datamodule = trainer.datamodule
    parts = [getattr(datamodule, name, None) for name in ("train_idx", "val_idx", "test_idx")]
    if any(part is None for part in parts):
        return None
    return [torch.as_tensor(np.asarray(part, dtype=np.int64)) for part in parts]


class EpochCheckpoint(Callback):
    """Keep ``dirpath/last.ckpt``, a resumable Lightning checkpoint, after every training epoch.

    The file is written under a temporary name and renamed when complete, so an interruption
    while writing leaves the previous epoch's checkpoint intact. Besides Lightning's own state
    the checkpoint holds this callback's state: the random generators' states and the data split
    (restored by :meth:`load_state_dict` and :func:`read_checkpoint`).

    A plain :class:`~lightning.pytorch.callbacks.Callback` rather than Lightning's
    ``ModelCheckpoint``: scvi-tools' ``Trainer`` adds its own ``SaveCheckpoint`` (which keeps
    model directories, not resumable files, and turns on validation every epoch) whenever
    checkpointing is enabled, and Lightning refuses a ``ModelCheckpoint`` unless it is.

    Parameters
    ----------
    dirpath
        Directory of the checkpoint; created if needed.
    """

    def __init__(self, dirpath: str | os.PathLike):
        super().__init__()
        self.dirpath = Path(dirpath)
        self._split: list[torch.Tensor] | None = None

    @property
    def path(self) -> Path:
        """The checkpoint file, ``dirpath/last.ckpt``."""
        return self.dirpath / CHECKPOINT_FILE

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._split = _data_split(trainer)
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        # Every rank calls it (a collective under DDP); only global rank 0 writes.
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            os.replace(partial, self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": collect_rng_states(), "split": self._split}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before the first resumed epoch draws its batch order.
        set_rng_states(state_dict["rng"])


@dataclass(frozen=True)
class ResumePoint:
    """Where a checkpointed pre-training stopped (:func:`read_checkpoint`).

    Attributes
    ----------
    path
        The checkpoint file.
    epochs_done
        Epochs completed when it was written.
    split
        ``[train, validation, test]`` indices it trained with, or ``None`` if not recorded.
    """

    path: Path
    epochs_done: int
    split: list[np.ndarray] | None


def checkpoint_file(checkpoint_dir: str | os.PathLike, *, resume: bool) -> Path:
    """Check ``checkpoint_dir`` for a pre-training; return its checkpoint file's path.

    Parameters
    ----------
    checkpoint_dir
        Directory the checkpoint is (to be) kept in.
    resume
        Whether the training continues from the checkpoint there.

    Returns
    -------
    ``checkpoint_dir/last.ckpt``.

    Raises
    ------
    NotADirectoryError
        ``checkpoint_dir`` is a file.
    FileNotFoundError
        ``resume=True`` and there is no checkpoint to resume from.
    FileExistsError
        ``resume=False`` and a checkpoint already there would be overwritten.
    """
    directory = Path(checkpoint_dir)
    path = directory / CHECKPOINT_FILE
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"checkpoint_dir={str(directory)!r} is a file, not a directory.")
    if resume and not path.is_file():
        raise FileNotFoundError(
            f"resume=True but there is no checkpoint to resume from: {str(path)!r} does not "
            "exist. Start the training with checkpoint_dir= and resume=False."
        )
    if not resume and path.exists():
        raise FileExistsError(
            f"{str(path)!r} already holds a pre-training checkpoint: pass resume=True to "
            "continue it, or choose another checkpoint_dir (or delete the file) to start afresh."
        )
    return path


def resume_point(
    checkpoint_dir: str | os.PathLike | None,
    *,
    resume: bool,
    module: torch.nn.Module,
    n_obs: int,
) -> ResumePoint | None:
    """Check ``train``'s checkpoint options; where to resume from (``None``: from the start).

    Parameters
    ----------
    checkpoint_dir, resume
        :meth:`scgtl.GTL.train`'s options.
    module
        The module to be trained: a checkpoint must hold weights of its shapes.
    n_obs
        Rows of the corpus: a checkpoint's split must be of a corpus this size.

    Returns
    -------
    The checkpoint to resume, or ``None`` to train from the start.

    Raises
    ------
    ValueError
        ``resume`` not a bool, ``resume=True`` without ``checkpoint_dir``, or a checkpoint that
        does not fit (see :func:`read_checkpoint`); and :func:`checkpoint_file`'s errors.
    """
    if not isinstance(resume, bool):
        raise ValueError(f"resume={resume!r} must be True or False.")
    if checkpoint_dir is None:
        if resume:
            raise ValueError(
                "resume=True needs checkpoint_dir=, the directory an earlier "
                "train(checkpoint_dir=...) kept its checkpoint in."
            )
        return None
    path = checkpoint_file(checkpoint_dir, resume=resume)
    if not resume:
        return None
    weights = {f"module.{k}": v.shape for k, v in module.state_dict().items()}
    return read_checkpoint(path, weights=weights, n_obs=n_obs)


def read_checkpoint(path: Path, *, weights: dict[str, torch.Size], n_obs: int) -> ResumePoint:
    """Read a checkpoint written by :class:`EpochCheckpoint` and check that it fits the model.

    Checking here gives an error that names the file, before Lightning starts.

    Parameters
    ----------
    path
        The checkpoint file.
    weights
        The shapes of the training plan's tensors (``module.<name>``), as the model has them.
    n_obs
        Observations of the corpus the training reads.

    Returns
    -------
    Where the training stopped, and the split it used.

    Raises
    ------
    ValueError
        An unreadable file, not a checkpoint of ``train(checkpoint_dir=...)``, or one of
        another architecture, other genes or another corpus size.
    """
    # Tensors and plain values only, as Lightning itself reads it when it resumes.
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{str(path)!r} is not a readable checkpoint: {err}") from err
    states = checkpoint.get("callbacks", {}) if isinstance(checkpoint, dict) else {}
    ours = states.get(EpochCheckpoint.__qualname__)
    if ours is None or "state_dict" not in checkpoint:
        raise ValueError(f"{str(path)!r} was not written by scgtl's train(checkpoint_dir=...).")
    _check_weights(path, checkpoint["state_dict"], weights)
    split = None
    if ours.get("split") is not None:
        split = [part.numpy() for part in ours["split"]]
        n_saved = sum(len(part) for part in split)
        if n_saved != n_obs:
            raise ValueError(
                f"{str(path)!r} was written while training on {n_saved} observations; this "
                f"corpus has {n_obs}. Resume with the corpus the checkpoint was written for."
            )
    # Lightning records the epoch that had just ended (counted from 0).
    return ResumePoint(path=path, epochs_done=int(checkpoint["epoch"]) + 1, split=split)


def _check_weights(path: Path, saved: dict, expected: dict[str, torch.Size]) -> None:
    """Refuse a checkpoint whose tensors differ from the model's, naming the first difference."""
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    if missing or extra:
        differences = [f"lacks {missing[:3]}"] if missing else []
        differences += [f"has extra {extra[:3]}"] if extra else []
        raise ValueError(
            f"{str(path)!r} does not fit this model: it {' and '.join(differences)} (another "
            "architecture or pre-training objective)."
        )
    for name, shape in expected.items():
        if saved[name].shape != shape:
            raise ValueError(
                f"{str(path)!r} does not fit this model: {name} has shape "
                f"{tuple(saved[name].shape)} there and {tuple(shape)} here (other genes or "
                "another architecture)."
            )
