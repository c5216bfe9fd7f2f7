"""The pre-trained model: pre-training, scouts -> guide, and the door to fine-tuning."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scvi
import torch
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField, NumericalObsField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from scgtl._docs import doc
from scgtl._progress import progress_enabled, quiet_lightning
from scgtl._settings import uses_threads
from scgtl._version import package_version
from scgtl.data import (
    N_TOP_GENES,
    check_corpus,
    check_library_sizes,
    training_genes,
)
from scgtl.data._checks import check_measured
from scgtl.model._base import (
    ScgtlModelMixin,
    explaining_setup_failure,
    recording_setup_failure,
)
from scgtl.model._guide import GuideMixin
from scgtl.model._transfer import TransferMixin
from scgtl.module import GTLModule
from scgtl.module._encoder import DROPOUT_RATE, N_HIDDEN, N_LATENT, N_LAYERS
from scgtl.train import (
    DISTRIBUTED_SPLIT_SEED,
    EpochCheckpoint,
    PretrainingProgress,
    ShuffledBlockSplitter,
    TrainingDisplay,
    TrainingLengthLog,
    checkpoint_file,
    read_checkpoint,
    seeded_split,
    split_sizes,
)
from scgtl.train._progress import PRETRAINING, SCOUTS

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from anndata import AnnData

    from scgtl._constants import Units
    from scgtl.train import ResumePoint


@doc.dedent
class GTL(GuideMixin, TransferMixin, ScgtlModelMixin, UnsupervisedTrainingMixin, BaseModelClass):
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

    # ------------------------------------------------------------------ registration
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        layer: str | None = None,
        labels_key: str | None = None,
        batch_key: str | None = None,
        units: Units = "counts",
        library_size_key: str | None = None,
        n_top_genes: int | None = N_TOP_GENES,
        genes: Sequence[str] | None = None,
        measured_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register a pre-training corpus, checking its values against the declared units.

        The model is trained on the corpus's ``n_top_genes`` most variable genes (2,000 by
        default, as the ``scgtl`` command line): pre-training on every gene of a large corpus is
        slow, and a study then misses many of them. The genes are chosen here, once, and kept in
        the registry; ``adata`` itself is not subset.

        Parameters
        ----------
        adata
            Cells or samples x genes; may be backed (``read_h5ad(..., backed="r")``), or
            several files opened as one by :func:`scgtl.data.read_collection`.
        layer
            Layer holding the expression values; ``None`` uses ``adata.X``.
        labels_key
            Optional ``obs`` column of corpus labels: adds a classification term to
            pre-training and defines the scout problems. Without it pre-training is
            self-supervised and scouts come from clusters of the model's latent space.
        batch_key
            Optional ``obs`` column of batches (registered for bookkeeping).
        units
            What the values are: ``"counts"`` (raw counts, integers), ``"normalized"``
            (depth-normalised values such as TPM/FPKM/RPKM) or ``"log1p"`` (already
            ``log1p`` of normalised values, e.g. scanpy's ``adata.raw``). ``counts`` and
            ``normalized`` are library-size normalised and ``log1p``-transformed inside the model.
        library_size_key
            Optional ``obs`` column with each row's total over *all* of its genes, for a corpus
            restricted to some genes (e.g. highly variable ones): the model then normalises by
            the same totals it uses for a query, whose library size is always taken over all of
            its genes. Without it the row sums of the registered matrix are used. Only for
            ``units="counts"`` or ``"normalized"``. Compute the column before subsetting genes,
            e.g. ``adata.obs["total"] = scgtl.data.library_sizes(adata.X)``. Not needed with
            ``n_top_genes``: the model then normalises by the totals over all registered genes.
        n_top_genes
            Pre-train on this many highly variable genes (:func:`scgtl.data.highly_variable_genes`:
            scanpy's ``seurat_v3`` on counts, ``seurat`` otherwise); ``None``: every gene. A
            corpus with no more genes than this keeps all of them. A backed corpus with more
            needs ``n_top_genes=None`` or ``genes``.
        genes
            The genes to pre-train on, instead of choosing them by ``n_top_genes``.
        measured_key
            For a corpus of several studies with different gene panels (e.g. from
            :func:`scgtl.data.concat_studies`): a ``varm`` key holding a genes x studies
            boolean DataFrame, one column per category of ``batch_key`` (which it needs),
            ``True`` where that study measured the gene. A gene that a row's study did not
            measure is then missing, not zero: it is hidden from the encoder and left out of
            the reconstruction loss (:class:`scgtl.module.GTLModule`'s ``measured``), and the
            ``n_top_genes`` are ranked within each study (scanpy's ``batch_key``), so a gene
            counts as variable only where it was measured.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Returns
        -------
        Nothing. Like every scvi-tools model, registration adds ``adata.uns["_scvi_uuid"]``,
        ``adata.uns["_scvi_manager_uuid"]`` and ``adata.obs["_scvi_labels"]`` /
        ``adata.obs["_scvi_batch"]``.

        Raises
        ------
        ValueError
            Empty data, duplicate gene names, NaN/inf or negative values, non-integer values
            declared as counts, or an unknown ``units``.
        KeyError
            Unknown ``layer``, ``labels_key``, ``batch_key``, ``library_size_key``,
            ``measured_key`` or ``genes``.
        """
        with recording_setup_failure(adata):
            check_corpus(
                adata,
                layer=layer,
                units=units,
                labels_key=labels_key,
                batch_key=batch_key,
                library_size_key=library_size_key,
            )
            if measured_key is not None:
                check_measured(adata, measured_key=measured_key, batch_key=batch_key)
            # Kept in the registry (every local here is), so a re-registration reuses it.
            genes = training_genes(
                adata,
                genes=genes,
                n_top_genes=n_top_genes,
                layer=layer,
                units=units,
                batch_key=None if measured_key is None else batch_key,
            )
        setup_method_args = cls._get_setup_method_args(**locals())
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
            NumericalObsField(REGISTRY_KEYS.SIZE_FACTOR_KEY, library_size_key, required=False),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @property
    def gene_names(self) -> pd.Index:
        """The genes the model is trained on (``setup_anndata``'s ``n_top_genes``/``genes``)."""
        genes = self.registry_["setup_args"].get("genes")
        return self._registered_genes if genes is None else pd.Index(genes)

    @property
    def _registered_genes(self) -> pd.Index:
        return pd.Index(self.get_var_names())

    @property
    def measured_key(self) -> str | None:
        """``varm`` key of the corpus's genes x studies "measured" table, or ``None``."""
        return self.registry_["setup_args"].get("measured_key")

    def _measured_genes(self) -> np.ndarray | None:
        """``(n_batch, n_genes)`` booleans: the model's genes each corpus study measured.

        Rows follow the registered batch categories. A model loaded without its corpus gets a
        placeholder of the right shape, which the saved weights then overwrite.
        """
        if self.measured_key is None:
            return None
        if self.adata is None:
            return np.ones((self.summary_stats.n_batch, len(self.gene_names)), dtype=bool)
        batches = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        table = self.adata.varm[self.measured_key]
        studies = [str(c) for c in batches.categorical_mapping]
        return table.loc[self.gene_names, studies].to_numpy(dtype=bool).T

    @property
    def units(self) -> Units:
        """Units of the corpus, the default for queries."""
        return self.registry_["setup_args"]["units"]

    @property
    def layer(self) -> str | None:
        """Layer of the corpus, the default for queries."""
        return self.registry_["setup_args"]["layer"]

    @property
    def labels_key(self) -> str | None:
        """Corpus labels column, or ``None`` for self-supervised pre-training."""
        return self.registry_["setup_args"]["labels_key"]

    @property
    def library_size_key(self) -> str | None:
        """``obs`` column of per-row totals over all genes, or ``None`` (row sums)."""
        return self.registry_["setup_args"].get("library_size_key")

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
            Lightning's hardware settings, e.g. ``accelerator="gpu", devices=4,
            strategy="ddp"`` for four GPUs (``num_nodes=`` for several machines; see
            ``docs/scaling.md``). Under DDP every process runs the same script: each trains on
            its share of every epoch's batches, and each then runs the same seeded scouts and
            holds the same guide. Save from one process only
            (``if model.trainer.is_global_zero: model.save(...)``).
        batch_size
            Mini-batch size of pre-training (per device under DDP). A backed corpus (a
            ``read_h5ad(..., backed="r")`` file or :func:`scgtl.data.read_collection`) on one
            device is read in blocks: the training rows are cut into blocks of 16 neighbouring
            rows, and every epoch deals the blocks out in a new random order, so a mini-batch of
            128 holds 8 blocks from across the corpus (:class:`scgtl.train.ShuffledBlockSampler`):
            runs of neighbouring rows read several times faster than scattered rows, and a file
            stored one study or cell type after another still gives mixed mini-batches. In
            memory, and under DDP, every row of a mini-batch is drawn at random.
        train_size
            Fraction of the corpus used for training (rest: validation), as in scvi-tools.
            Without ``scvi.settings.seed`` the split is drawn with seed
            ``DISTRIBUTED_SPLIT_SEED`` (0), so that a run seeded with ``torch.manual_seed``
            is reproducible and every DDP process has the same split.
        early_stopping
            Stop when the validation loss stops improving (scvi-tools turns it off under DDP).
        lr, weight_decay
            Adam learning rate and weight decay of pre-training. Adam's ``eps`` is PyTorch's
            ``1e-8`` rather than scvi-tools' ``0.01``: with the small gradients of this
            reconstruction loss, ``0.01`` left the encoder barely trained (see
            ``docs/research/recipe.md``, "Ablation").
        plan_kwargs
            Passed to :class:`scvi.train.TrainingPlan` (takes precedence over ``lr``,
            ``weight_decay`` and the ``eps`` above).
        compute_guide
            Run the scouts and compute the guide after pre-training (:meth:`compute_guide`).
        guide_kwargs
            Options of :meth:`compute_guide`.
        enable_progress_bar
            Show one display of the whole call on stderr: a row for the call and one for each
            phase (pre-training epochs, then scouts), each with the time spent and the time left
            (measured: from the epochs done, and for the scouts from one timed step taken before
            pre-training; see :class:`scgtl.train.TrainingDisplay`). Default
            :attr:`scgtl.settings.progress_bar`.
        checkpoint_dir
            Keep a resumable checkpoint of pre-training in this directory
            (``checkpoint_dir/last.ckpt``, Lightning's format, rewritten after every epoch), so
            an interrupted pre-training can be continued with ``resume=True``. A directory that
            already holds a checkpoint needs ``resume=True``.
        resume
            Continue the pre-training saved in ``checkpoint_dir`` (weights, optimiser state,
            epoch, random generators and train/validation split) up to ``max_epochs``, then run
            the scouts as usual. The model must have the checkpoint's architecture and genes,
            and the corpus its size. On one device the result equals an uninterrupted training.
        **trainer_kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train` and on to
            :class:`scvi.train.Trainer` / Lightning (e.g. ``strategy``, ``num_nodes``,
            ``callbacks``, ``datasplitter_kwargs``).

        Raises
        ------
        ValueError
            ``resume=True`` without ``checkpoint_dir``, or a checkpoint that does not fit the
            model or the corpus.
        FileNotFoundError, FileExistsError, NotADirectoryError
            No checkpoint to resume, a checkpoint that ``resume=False`` would overwrite, or a
            ``checkpoint_dir`` that is a file.

        Notes
        -----
        If pre-training fails or is interrupted, the model is left as it was before the call
        (its weights, history and whether it is trained); the checkpoint keeps the progress.
        ``train`` logs (``logging.INFO``) the epochs it runs and the optimiser steps they take,
        then the scouts and their steps.
        """
        if max_epochs is None:
            max_epochs = int(min(100, max(10, 300_000 // max(self.adata.n_obs, 1))))
        start = self._resume_point(checkpoint_dir, resume=resume)
        plan_kwargs = {"lr": lr, "weight_decay": weight_decay, "eps": 1e-8, **(plan_kwargs or {})}
        progress = progress_enabled(enable_progress_bar)
        display = self._training_display(progress, compute_guide, guide_kwargs or {})
        callbacks = [*trainer_kwargs.pop("callbacks", []), TrainingLengthLog()]
        if progress:
            # scvi-tools' own bar writes to stdout, where results go; this one writes to stderr.
            callbacks.append(PretrainingProgress(display))
            trainer_kwargs["simple_progress_bar"] = False
        if checkpoint_dir is not None:
            callbacks.append(EpochCheckpoint(checkpoint_dir))
        if start is not None:
            # scvi-tools' TrainRunner hands ckpt_path to Lightning's Trainer.fit.
            trainer_kwargs["ckpt_path"] = str(start.path)
        trainer_kwargs["datasplitter_kwargs"] = self._datasplitter_kwargs(
            start, batch_size=batch_size, train_size=train_size, trainer_kwargs=trainer_kwargs
        )
        with display:
            with self._unchanged_on_failure(), quiet_lightning():
                super().train(
                    max_epochs=max_epochs,
                    accelerator=accelerator,
                    devices=devices,
                    batch_size=batch_size,
                    train_size=train_size,
                    early_stopping=early_stopping,
                    plan_kwargs=plan_kwargs,
                    enable_progress_bar=progress,
                    callbacks=callbacks,
                    **trainer_kwargs,
                )
            if self.trainer.world_size > 1:
                # scvi-tools moves every process's model to the first device; scouts run alone.
                self.to_device(self.trainer.strategy.root_device)
            self.module.eval()
            if compute_guide:
                self._compute_guide(
                    display=display, **{"progress": progress, **(guide_kwargs or {})}
                )

    def _training_display(
        self, progress: bool, compute_guide: bool, guide_kwargs: dict
    ) -> TrainingDisplay:
        """The display of :meth:`train`; the scouts' time is taken from a timed step first."""
        if not compute_guide:
            return TrainingDisplay([PRETRAINING], enabled=progress)
        # A few tenths of a second, and only for a display someone reads.
        scout_seconds = self.estimate_guide_seconds(**guide_kwargs) if progress else None
        return TrainingDisplay([PRETRAINING, SCOUTS], enabled=progress, scout_seconds=scout_seconds)

    def _resume_point(
        self, checkpoint_dir: str | os.PathLike | None, *, resume: bool
    ) -> ResumePoint | None:
        """Check the checkpoint options; where to resume from (``None``: from the start)."""
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
        weights = {f"module.{k}": v.shape for k, v in self.module.state_dict().items()}
        return read_checkpoint(path, weights=weights, n_obs=self.adata.n_obs)

    def _datasplitter_kwargs(
        self,
        start: ResumePoint | None,
        *,
        batch_size: int,
        train_size: float | None,
        trainer_kwargs: dict,
    ) -> dict:
        """scvi-tools' data splitter options, with the split fixed where it must not be drawn.

        A resumed training keeps its checkpoint's split. scvi-tools draws the split from
        ``scvi.settings.seed``; unset, it would differ from run to run (two runs seeded with
        ``torch.manual_seed`` alike would train on different rows) and between the processes of
        DDP, so the split is then drawn here from a fixed seed.
        """
        kwargs = dict(trainer_kwargs.pop("datasplitter_kwargs", None) or {})
        if start is not None and start.split is not None:
            kwargs["external_indexing"] = start.split
        elif (
            scvi.settings.seed is None
            and trainer_kwargs.get("shuffle_set_split", True)
            and "external_indexing" not in kwargs
        ):
            n_train, n_val = split_sizes(
                self._data_splitter_cls,
                self.adata_manager,
                train_size=train_size,
                validation_size=trainer_kwargs.get("validation_size"),
                batch_size=batch_size,
                **kwargs,
            )
            kwargs["external_indexing"] = seeded_split(
                self.adata.n_obs, n_train, n_val, seed=DISTRIBUTED_SPLIT_SEED
            )
        return kwargs

    @contextlib.contextmanager
    def _unchanged_on_failure(self) -> Iterator[None]:
        """Put back the weights, history and trained flag if pre-training fails or is stopped.

        Lightning leaves a half-trained module behind; a model whose weights no longer match
        its guide and history would be worse than the model before the call.
        """
        weights = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        before = {"is_trained_": self.is_trained_, "history_": self.history_}
        training = self.module.training
        try:
            yield
        except BaseException:
            self.module.load_state_dict(weights)
            self.module.train(training)
            for name, value in before.items():
                setattr(self, name, value)
            raise

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

    def _stored_library_sizes(self, adata: AnnData, units: Units) -> np.ndarray | None:
        """The corpus's per-row totals, for an AnnData that carries the registered column."""
        key = self.library_size_key
        if key is None or units == "log1p" or key not in adata.obs:
            return None
        return check_library_sizes(adata.obs[key], units, key=key)

    def _resolve_query(self, adata: AnnData | None, layer: str | None):
        if adata is not None:
            return adata, layer
        if self.adata is None:
            raise ValueError("This model has no AnnData attached; pass adata=.")
        return self.adata, self.layer if layer is None else layer
