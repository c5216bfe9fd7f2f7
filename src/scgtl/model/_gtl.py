"""The pre-trained model: pre-training, scouts -> guide, and the door to fine-tuning."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import torch
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from scgtl._docs import doc
from scgtl._progress import progress_enabled, quiet_lightning
from scgtl._settings import uses_threads
from scgtl._version import package_version
from scgtl.model._adaptation import AdaptationMixin
from scgtl.model._base import ScgtlModelMixin, explaining_setup_failure, restoring_on_failure
from scgtl.model._corpus import CorpusMixin
from scgtl.model._guide import GuideMixin
from scgtl.model._transfer import TransferMixin
from scgtl.module import GTLModule
from scgtl.module._encoder import DROPOUT_RATE, N_HIDDEN, N_LATENT, N_LAYERS
from scgtl.train import (
    EpochCheckpoint,
    PretrainingProgress,
    ShuffledBlockSplitter,
    TrainingDisplay,
    TrainingLengthLog,
)
from scgtl.train._checkpoint import resume_point
from scgtl.train._distributed import datasplitter_kwargs
from scgtl.train._progress import PRETRAINING, SCOUTS

if TYPE_CHECKING:
    from anndata import AnnData

    from scgtl._constants import Units
    from scgtl.train._checkpoint import ResumePoint


@doc.dedent
class GTL(
    CorpusMixin,
    GuideMixin,
    AdaptationMixin,
    TransferMixin,
    ScgtlModelMixin,
    UnsupervisedTrainingMixin,
    BaseModelClass,
):
    """Guided Transfer Learning model for RNA-seq.

    Pre-trains an encoder on a corpus by masked-expression reconstruction (plus classification
    when the corpus is labelled), learns from many small scout problems how much each encoder
    weight should move (the guide), and fine-tunes on a user's few-shot task with updates scaled
    by that guide (:meth:`fine_tune`).

    Parameters
    ----------
    adata
        Corpus registered with :meth:`setup_anndata`. ``None`` together with ``registry`` is
        how :meth:`load` rebuilds a saved model.
    registry
        A saved registry (used by :meth:`load`).
    %(param_architecture)s
    mask_rate
        Fraction of genes hidden from the encoder in each pre-training step.
    classification_weight
        Weight of the classification loss when the corpus is labelled.
    **module_kwargs
        Further options of the module class ``_module_cls``: a subclass that pre-trains with
        another objective sets ``_module_cls`` to its own module (as scvi-tools models do) and
        passes that module's options here.

    Examples
    --------
    >>> scgtl.GTL.setup_anndata(corpus, units="counts")
    >>> model = scgtl.GTL(corpus)
    >>> model.train(max_epochs=30)
    >>> clf = model.fine_tune(target, labels_key="cell_type", k_shot=5)
    >>> clf.predict(target)
    """

    _module_cls = GTLModule
    # scvi-tools' DataSplitter; a backed corpus trains in shuffled blocks of neighbouring rows.
    _data_splitter_cls = ShuffledBlockSplitter

    def __init__(
        self,
        adata: AnnData | None = None,
        registry: dict | None = None,
        *,
        n_hidden: int = N_HIDDEN,
        n_latent: int = N_LATENT,
        n_layers: int = N_LAYERS,
        dropout_rate: float = DROPOUT_RATE,
        mask_rate: float = 0.3,
        classification_weight: float = 1.0,
        **module_kwargs,
    ):
        with explaining_setup_failure(adata, type(self).__name__):
            super().__init__(adata, registry)
        for name, value in (("n_hidden", n_hidden), ("n_latent", n_latent), ("n_layers", n_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1.")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate={dropout_rate!r} must be in [0, 1).")
        self.architecture_ = {
            "n_hidden": n_hidden,
            "n_latent": n_latent,
            "n_layers": n_layers,
            "dropout_rate": dropout_rate,
        }
        genes = self.registry_["setup_args"].get("genes")
        # The registered matrix has every corpus gene; the module reads the chosen ones.
        gene_index = (
            {} if genes is None else {"gene_index": self._registered_genes.get_indexer(genes)}
        )
        measured = self._measured_genes()
        self.module = self._module_cls(
            n_input=len(self.gene_names),
            n_labels=self.summary_stats.n_labels if self.labels_key is not None else 0,
            units=self.units,
            mask_rate=mask_rate,
            classification_weight=classification_weight,
            **self.architecture_,
            **gene_index,
            **({} if measured is None else {"measured": measured}),
            **module_kwargs,
        )
        self.guide_: dict[str, torch.Tensor] | None = None
        self.guide_settings_: dict | None = None
        # What adapt() did, on an adapted model; None otherwise.
        self.adaptation_: dict | None = None
        # The last study adapted_to() adapted this model to, and the result: (key, model).
        self._last_adapted: tuple | None = None
        self.scgtl_version_ = package_version()
        self._model_summary_string = (
            f"GTL: {len(self.gene_names)} genes ({self.units}), n_latent={n_latent}, "
            f"n_hidden={n_hidden}, n_layers={n_layers}, labels: {self.labels_key}"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def load(cls, dir_path: str | os.PathLike, adata: AnnData | None = None, **kwargs) -> GTL:
        """Load a model saved by :meth:`save` (or a compact shipped file, see :mod:`scgtl.models`).

        Parameters
        ----------
        dir_path
            Directory holding ``model.pt``.
        adata
            Optional corpus to attach (its genes must match the model's); the model loads,
            fine-tunes and predicts without one.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load` (``accelerator``, ``device``).

        Returns
        -------
        The model. Weights and guide are float32, also where the file stores them in half
        precision (the shipped models do).

        Raises
        ------
        ValueError
            If ``dir_path`` does not hold a GTL saved by scgtl.
        """
        model = super().load(dir_path, adata=adata, **kwargs)
        if model.guide_ is not None:
            model.guide_ = {name: g.float() for name, g in model.guide_.items()}
        return model

    @property
    def guide(self) -> dict[str, torch.Tensor] | None:
        """Per-parameter plasticity of the encoder in ``[0, 1]`` (``None`` before training)."""
        return self.guide_

    # ------------------------------------------------------------------ pre-training
    @uses_threads
    def train(
        self,
        max_epochs: int | None = None,
        *,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        batch_size: int = 128,
        train_size: float | None = None,
        early_stopping: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        plan_kwargs: dict | None = None,
        compute_guide: bool = True,
        guide_kwargs: dict | None = None,
        enable_progress_bar: bool | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        **trainer_kwargs,
    ) -> None:
        """Pre-train the encoder, then run the scouts and compute the guide.

        Parameters
        ----------
        max_epochs
            Passes over the corpus; default ``min(100, max(10, 300_000 // n_obs))``. When
            resuming, the total including the epochs already done.
        accelerator, devices
            Lightning's, e.g. ``accelerator="gpu", devices=4, strategy="ddp"`` (``docs/scaling.md``;
            save from one process: ``if model.trainer.is_global_zero: model.save(...)``).
        batch_size
            Mini-batch size (per device). A backed corpus is read in shuffled blocks of
            neighbouring rows (:class:`scgtl.train.ShuffledBlockSampler`), several times faster.
        train_size
            Fraction of the corpus used for training (rest: validation), as in scvi-tools.
            Without ``scvi.settings.seed`` the split is drawn with seed 0, the same in every
            run and every DDP process.
        early_stopping
            Stop when the validation loss stops improving (scvi-tools turns it off under DDP).
        lr, weight_decay
            Adam learning rate and weight decay. Adam's ``eps`` is ``1e-8``, not scvi-tools'
            ``0.01``, which left this encoder barely trained (``docs/research/recipe.md``).
        plan_kwargs
            Passed to :class:`scvi.train.TrainingPlan` (over ``lr``, ``weight_decay``, ``eps``).
        compute_guide, guide_kwargs
            Run the scouts and compute the guide after pre-training, with these options of
            :meth:`compute_guide`.
        enable_progress_bar
            Show pre-training and scouts with their time left on stderr
            (:class:`scgtl.train.TrainingDisplay`); default :attr:`scgtl.settings.progress_bar`.
        checkpoint_dir
            Keep a resumable checkpoint (``checkpoint_dir/last.ckpt``, Lightning's format)
            after every epoch. A directory that already holds one needs ``resume=True``.
        resume
            Continue the pre-training saved in ``checkpoint_dir`` (weights, optimiser, epoch,
            random generators, split) up to ``max_epochs``, then run the scouts. On one device
            the result equals an uninterrupted training.
        **trainer_kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train` and on to
            :class:`scvi.train.Trainer` (``strategy``, ``callbacks``, ``datasplitter_kwargs``...).

        Raises
        ------
        ValueError, FileNotFoundError, FileExistsError, NotADirectoryError
            A ``checkpoint_dir`` and ``resume`` that do not fit (``resume=True`` without a
            checkpoint, one that ``resume=False`` would overwrite, another model's).

        Notes
        -----
        A failed or interrupted pre-training leaves the model as it was (the checkpoint keeps
        the progress). Epochs, steps and scouts are logged at ``logging.INFO``.
        """
        max_epochs = default_max_epochs(self.adata.n_obs) if max_epochs is None else max_epochs
        start = resume_point(
            checkpoint_dir, resume=resume, module=self.module, n_obs=self.adata.n_obs
        )
        plan_kwargs = {"lr": lr, "weight_decay": weight_decay, "eps": 1e-8, **(plan_kwargs or {})}
        progress = progress_enabled(enable_progress_bar)
        display = self._training_display(progress, compute_guide, guide_kwargs or {})
        trainer_kwargs = self._trainer_kwargs(
            trainer_kwargs,
            display=display,
            start=start,
            checkpoint_dir=checkpoint_dir,
            batch_size=batch_size,
            train_size=train_size,
        )
        with display:
            with restoring_on_failure(self), quiet_lightning():
                super().train(
                    max_epochs=max_epochs,
                    accelerator=accelerator,
                    devices=devices,
                    batch_size=batch_size,
                    train_size=train_size,
                    early_stopping=early_stopping,
                    plan_kwargs=plan_kwargs,
                    enable_progress_bar=progress,
                    **trainer_kwargs,
                )
            self._after_pretraining()
            if compute_guide:
                self._compute_guide(
                    display=display, **{"progress": progress, **(guide_kwargs or {})}
                )

    def _after_pretraining(self) -> None:
        """Leave the module on one device, in evaluation mode, for the scouts."""
        if self.trainer.world_size > 1:
            # scvi-tools moves every process's model to the first device; scouts run alone.
            self.to_device(self.trainer.strategy.root_device)
        self.module.eval()

    def _trainer_kwargs(
        self,
        trainer_kwargs: dict,
        *,
        display: TrainingDisplay,
        start: ResumePoint | None,
        checkpoint_dir: str | os.PathLike | None,
        batch_size: int,
        train_size: float | None,
    ) -> dict:
        """``train``'s options for scvi-tools' trainer: callbacks, checkpoint and data split."""
        kwargs = dict(trainer_kwargs)
        callbacks = [*kwargs.pop("callbacks", []), TrainingLengthLog()]
        if display.enabled:
            # scvi-tools' own bar writes to stdout, where results go; this one writes to stderr.
            callbacks.append(PretrainingProgress(display))
            kwargs["simple_progress_bar"] = False
        if checkpoint_dir is not None:
            callbacks.append(EpochCheckpoint(checkpoint_dir))
        if start is not None:
            # scvi-tools' TrainRunner hands ckpt_path to Lightning's Trainer.fit.
            kwargs["ckpt_path"] = str(start.path)
        kwargs["datasplitter_kwargs"] = datasplitter_kwargs(
            self._data_splitter_cls,
            self.adata_manager,
            start,
            batch_size=batch_size,
            train_size=train_size,
            trainer_kwargs=kwargs,
        )
        return {**kwargs, "callbacks": callbacks}

    def _training_display(
        self, progress: bool, compute_guide: bool, guide_kwargs: dict
    ) -> TrainingDisplay:
        """The display of :meth:`train`; the scouts' time is taken from a timed step first."""
        if not compute_guide:
            return TrainingDisplay([PRETRAINING], enabled=progress)
        # A few tenths of a second, and only for a display someone reads.
        scout_seconds = self.estimate_guide_seconds(**guide_kwargs) if progress else None
        return TrainingDisplay([PRETRAINING, SCOUTS], enabled=progress, scout_seconds=scout_seconds)

    # ------------------------------------------------------------------ embedding
    @uses_threads
    @doc.dedent
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        *,
        layer: str | None = None,
        units: Units | None = None,
        batch_size: int = 1024,
    ) -> np.ndarray:
        """Latent representation of every observation, batch by batch.

        Parameters
        ----------
        adata
            Any AnnData; its genes are aligned to the model's (see :func:`scgtl.data.align_genes`).
            Defaults to the corpus (and then ``layer`` to the corpus's layer).
        %(param_query_layer_units)s
        %(param_batch_size)s

        Returns
        -------
        ``(n_obs, n_latent)`` array.
        """
        is_corpus = adata is None
        adata, layer = self._resolve_query(adata, layer)
        units = units or self.units
        self.module.eval()
        batches = self._log_expression_batches(
            adata,
            layer=layer,
            units=units,
            batch_size=batch_size,
            library_size=self._stored_library_sizes(adata, units),
            warn=not is_corpus,
        )
        return np.concatenate([self.module.embed(x).cpu().numpy() for x in batches], axis=0)

    def _resolve_query(self, adata: AnnData | None, layer: str | None):
        if adata is not None:
            return adata, layer
        if self.adata is None:
            raise ValueError("This model has no AnnData attached; pass adata=.")
        return self.adata, self.layer if layer is None else layer


def default_max_epochs(n_obs: int) -> int:
    """``train``'s default: about 300,000 rows seen, in 10 to 100 epochs."""
    return int(min(100, max(10, 300_000 // max(n_obs, 1))))
