"""What both user-facing models share: gene alignment, batched input, safe save and load."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi.model.base import BaseModelClass

from scgtl.data import align_genes, iter_log_expression_views
from scgtl.data._units import check_units_name

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from scgtl._constants import Units

_MODEL_FILE = "model.pt"

#: Why the last ``setup_anndata`` on an AnnData failed, by ``id`` (AnnData is not hashable),
#: so that building a model on it can say so instead of scvi-tools' "did you make a copy?".
_SETUP_FAILURES: dict[int, tuple[weakref.ref, str]] = {}


@contextlib.contextmanager
def recording_setup_failure(adata: AnnData) -> Iterator[None]:
    """Remember why a ``setup_anndata`` on ``adata`` failed (forget an earlier failure first)."""
    _SETUP_FAILURES.pop(id(adata), None)
    try:
        yield
    except (ValueError, KeyError, TypeError) as err:
        _SETUP_FAILURES[id(adata)] = (weakref.ref(adata), f"{type(err).__name__}: {err}")
        raise


@contextlib.contextmanager
def explaining_setup_failure(adata: AnnData | None, model_name: str) -> Iterator[None]:
    """Turn scvi-tools' error on an AnnData whose last ``setup_anndata`` failed into that error."""
    try:
        yield
    except ValueError as err:
        ref, message = _SETUP_FAILURES.get(id(adata), (None, None))
        if ref is None or ref() is not adata:
            raise
        raise ValueError(
            f"This AnnData is not set up: the last {model_name}.setup_anndata on it failed with"
            f"\n  {message}\nFix that and call {model_name}.setup_anndata again."
        ) from err


@contextlib.contextmanager
def staged_directory(dir_path: str | os.PathLike, *, overwrite: bool) -> Iterator[Path]:
    """A temporary sibling directory to write into, renamed to ``dir_path`` when the block succeeds.

    A failed block leaves neither a half-written directory nor a damaged earlier one; an existing
    ``dir_path`` is an error unless ``overwrite``.
    """
    target = Path(dir_path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, retired / "model")
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def restoring_on_failure(model: BaseModelClass) -> Iterator[None]:
    """Put back a model's weights, history and trained flag if the block fails or is stopped.

    Lightning leaves a half-trained module behind; a model whose weights no longer match
    its guide and history would be worse than the model before the call.
    """
    weights = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    before = {"is_trained_": model.is_trained_, "history_": model.history_}
    training = model.module.training
    try:
        yield
    except BaseException:
        model.module.load_state_dict(weights)
        model.module.train(training)
        for name, value in before.items():
            setattr(model, name, value)
        raise


class ScgtlModelMixin:
    """Shared behaviour of :class:`~scgtl.GTL` and :class:`~scgtl.GTLClassifier`."""

    @property
    def gene_names(self) -> pd.Index:
        """The model's genes, in the order of its input layer."""
        return pd.Index(self.get_var_names())

    def _log_expression_batches(
        self,
        adata: AnnData,
        *,
        layer: str | None,
        units: Units,
        batch_size: int,
        indices: np.ndarray | None = None,
        warn: bool = True,
        library_size: np.ndarray | None = None,
        genes: pd.Index | None = None,
    ) -> Iterator[torch.Tensor]:
        """Batches of rows as log expression over ``genes`` (default: the model's genes)."""
        genes = self.gene_names if genes is None else genes
        for (x,) in self._log_expression_views(
            adata,
            layer=layer,
            units=units,
            batch_size=batch_size,
            indices=indices,
            library_size=library_size,
            gene_lists=((genes, warn),),
        ):
            yield x

    def _log_expression_views(
        self,
        adata: AnnData,
        *,
        layer: str | None,
        units: Units,
        batch_size: int,
        gene_lists: Sequence[tuple[pd.Index, bool]],
        indices: np.ndarray | None = None,
        library_size: np.ndarray | None = None,
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches of rows read once, as log expression over each of ``gene_lists``.

        ``gene_lists`` holds ``(genes, warn)`` pairs: the genes of one view and whether a poor
        overlap of ``adata`` with them warns.
        """
        if not isinstance(adata, AnnData):
            raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1.")
        check_units_name(units)
        alignments = []
        for genes, warn in gene_lists:  # a loop, not a comprehension: warnings point one frame up
            alignments.append(align_genes(adata.var_names, genes, warn=warn))
        yield from iter_log_expression_views(
            adata,
            layer=layer,
            units=units,
            alignments=alignments,
            indices=indices,
            batch_size=batch_size,
            device=self.module.device,
            library_size=library_size,
        )

    def _read_rows(self, adata: AnnData, **kwargs) -> torch.Tensor:
        """Rows of ``adata`` (``indices``: some of them) as one tensor of log expression."""
        return torch.cat(list(self._log_expression_batches(adata, batch_size=4096, **kwargs)))

    def save(self, dir_path: str | os.PathLike, *, overwrite: bool = False, **kwargs) -> None:
        """Save the model to ``dir_path/model.pt`` in scvi-tools' format.

        The directory is written under a temporary name and renamed when complete, so a failed
        save leaves neither a half-written model nor a damaged earlier one.

        Parameters
        ----------
        dir_path
            Directory to create.
        overwrite
            Replace an existing directory; otherwise an existing one is an error.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.save` (e.g. ``save_anndata``).
        """
        with staged_directory(dir_path, overwrite=overwrite) as staging:
            BaseModelClass.save(self, str(staging), overwrite=True, **kwargs)

    @classmethod
    def load(cls, dir_path: str | os.PathLike, adata: AnnData | None = None, **kwargs):
        """Load a model saved by :meth:`save`.

        Parameters
        ----------
        dir_path
            Directory holding ``model.pt``.
        adata
            Optional AnnData to attach (its genes must match the model's); the model loads and
            predicts without one.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load` (``accelerator``, ``device``).

        Raises
        ------
        ValueError
            If ``dir_path`` does not hold a model of this class saved by scgtl.
        """
        _check_model_file(Path(dir_path), cls.__name__)
        scvi_logger = logging.getLogger("scvi")
        level = scvi_logger.level
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*no saved anndata.*")
            # scvi-tools logs "already downloaded" for every local load; it is not news here.
            scvi_logger.setLevel(logging.WARNING)
            try:
                return super().load(str(dir_path), adata=adata, **kwargs)
            finally:
                scvi_logger.setLevel(level)


def _check_model_file(path: Path, class_name: str) -> None:
    """Refuse, before building anything, a directory that is not a saved scgtl model."""
    model_file = path / _MODEL_FILE
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is not a directory holding a saved scgtl {class_name}.")
    if not model_file.is_file():
        raise ValueError(
            f"{str(path)!r} is not a saved scgtl model: it has no {_MODEL_FILE}. "
            f"Save one with {class_name}.save()."
        )
    # model.pt is a pickle, as in every scvi-tools model: load only directories you trust.
    try:
        saved = torch.load(model_file, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{str(model_file)!r} is not a readable scgtl model file: {err}") from err
    attrs = saved.get("attr_dict") if isinstance(saved, dict) else None
    registry = attrs.get("registry_", {}) if isinstance(attrs, dict) else {}
    if not attrs or "scgtl_version_" not in attrs:
        raise ValueError(f"{str(model_file)!r} was not written by scgtl.")
    saved_class = registry.get("model_name")
    if saved_class != class_name:
        raise ValueError(
            f"{str(model_file)!r} holds a {saved_class}, not a {class_name}; load it with "
            f"scgtl.{saved_class}.load()."
        )
