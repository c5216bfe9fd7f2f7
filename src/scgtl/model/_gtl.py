"""The pre-trained model: pre-training, scouts -> guide, and the door to fine-tuning."""

from __future__ import annotations

import copy
import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField, NumericalObsField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from sklearn.cluster import KMeans

from scgtl import __version__
from scgtl.data import (
    align_genes,
    check_labels,
    check_library_sizes,
    check_matrix,
    check_unique_genes,
    check_units_name,
    get_matrix,
    iter_log_expression,
    sample_k_shot,
)
from scgtl.guide import apply_temperature, mean_change, normalize, sample_scout_tasks
from scgtl.model._base import ScgtlModelMixin
from scgtl.model._classifier import GTLClassifier
from scgtl.module import GTLClassifierModule, GTLModule
from scgtl.train import (
    check_head_init,
    check_training_settings,
    fit_few_shot,
    prototype_head,
    run_scouts,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from scgtl._constants import Units
    from scgtl.guide._guide import Normalization, Statistic, Temperature
    from scgtl.train._few_shot import HeadInit

logger = logging.getLogger(__name__)

#: Default number of steps of :meth:`GTL.adapt`.
ADAPT_STEPS = 1000


class GTL(ScgtlModelMixin, UnsupervisedTrainingMixin, BaseModelClass):
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
    n_hidden
        Width of the encoder's hidden layers.
    n_latent
        Size of the latent representation (``obsm["X_scgtl"]``).
    n_layers
        Number of hidden layers.
    dropout_rate
        Dropout of the hidden layers.
    mask_rate
        Fraction of genes hidden from the encoder in each pre-training step.
    classification_weight
        Weight of the classification loss when the corpus is labelled.

    Examples
    --------
    >>> scgtl.GTL.setup_anndata(corpus, units="counts")
    >>> model = scgtl.GTL(corpus)
    >>> model.train(max_epochs=30)
    >>> clf = model.fine_tune(target, labels_key="cell_type", k_shot=5)
    >>> clf.predict(target)
    """

    _module_cls = GTLModule

    def __init__(
        self,
        adata: AnnData | None = None,
        registry: dict | None = None,
        *,
        n_hidden: int = 256,
        n_latent: int = 64,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        mask_rate: float = 0.3,
        classification_weight: float = 1.0,
    ):
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
        n_labels = self.summary_stats.n_labels if self.labels_key is not None else 0
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_labels=n_labels,
            units=self.units,
            mask_rate=mask_rate,
            classification_weight=classification_weight,
            **self.architecture_,
        )
        self.guide_: dict[str, torch.Tensor] | None = None
        self.guide_settings_: dict | None = None
        self.scgtl_version_ = __version__
        self._model_summary_string = (
            f"GTL: {self.summary_stats.n_vars} genes ({self.units}), n_latent={n_latent}, "
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
        **kwargs,
    ) -> None:
        """Register a pre-training corpus, checking its values against the declared units.

        Parameters
        ----------
        adata
            Cells or samples x genes; may be backed (``read_h5ad(..., backed="r")``).
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
            e.g. ``adata.obs["total"] = scgtl.data.library_sizes(adata.X)``.
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
            Unknown ``layer``, ``labels_key``, ``batch_key`` or ``library_size_key``.
        """
        check_units_name(units)
        check_unique_genes(adata.var_names)
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        check_matrix(get_matrix(adata, layer), units, where=where)
        keys = (("labels_key", labels_key), ("batch_key", batch_key))
        for name, key in (*keys, ("library_size_key", library_size_key)):
            if key is not None and key not in adata.obs:
                raise KeyError(f"{name}={key!r} is not a column of adata.obs: {list(adata.obs)}.")
        if labels_key is not None and adata.obs[labels_key].isna().any():
            raise ValueError(f"obs[{labels_key!r}] has missing labels; drop or fill them.")
        if library_size_key is not None:
            check_library_sizes(adata.obs[library_size_key], units, key=library_size_key)
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
    def _setup_args(self) -> dict:
        return self.registry_["setup_args"]

    @property
    def units(self) -> Units:
        """Units of the corpus, the default for queries."""
        return self._setup_args["units"]

    @property
    def layer(self) -> str | None:
        """Layer of the corpus, the default for queries."""
        return self._setup_args["layer"]

    @property
    def labels_key(self) -> str | None:
        """Corpus labels column, or ``None`` for self-supervised pre-training."""
        return self._setup_args["labels_key"]

    @property
    def library_size_key(self) -> str | None:
        """``obs`` column of per-row totals over all genes, or ``None`` (row sums)."""
        return self._setup_args.get("library_size_key")

    @property
    def guide(self) -> dict[str, torch.Tensor] | None:
        """Per-parameter plasticity of the encoder in ``[0, 1]`` (``None`` before training)."""
        return self.guide_

    # ------------------------------------------------------------------ pre-training
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
        **trainer_kwargs,
    ) -> None:
        """Pre-train the encoder, then run the scouts and compute the guide.

        Parameters
        ----------
        max_epochs
            Passes over the corpus; default ``min(100, max(10, 300_000 // n_obs))``.
        accelerator, devices
            Lightning's hardware settings (``"gpu"``, ``devices=2``, ``strategy="ddp"``...).
        batch_size
            Mini-batch size of pre-training.
        train_size
            Fraction of the corpus used for training (rest: validation), as in scvi-tools.
        early_stopping
            Stop when the validation loss stops improving.
        lr, weight_decay
            Adam learning rate and weight decay of pre-training. Adam's ``eps`` is PyTorch's
            ``1e-8`` rather than scvi-tools' ``0.01``: with the small gradients of this
            reconstruction loss, ``0.01`` left the encoder barely trained (see
            ``docs/benchmarks.md``).
        plan_kwargs
            Passed to :class:`scvi.train.TrainingPlan` (takes precedence over ``lr``,
            ``weight_decay`` and the ``eps`` above).
        compute_guide
            Run the scouts and compute the guide after pre-training (:meth:`compute_guide`).
        guide_kwargs
            Options of :meth:`compute_guide`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` / Lightning (e.g. ``strategy``,
            ``enable_progress_bar``).
        """
        if max_epochs is None:
            max_epochs = int(min(100, max(10, 300_000 // max(self.adata.n_obs, 1))))
        plan_kwargs = {"lr": lr, "weight_decay": weight_decay, "eps": 1e-8, **(plan_kwargs or {})}
        super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            batch_size=batch_size,
            train_size=train_size,
            early_stopping=early_stopping,
            plan_kwargs=plan_kwargs,
            **trainer_kwargs,
        )
        self.module.eval()
        if compute_guide:
            self.compute_guide(**(guide_kwargs or {}))

    # ------------------------------------------------------------------ embedding
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
            Defaults to the corpus.
        layer
            Layer to read; defaults to the corpus's layer when ``adata`` is ``None``, else ``X``.
        units
            Units of ``adata``; defaults to the corpus's.
        batch_size
            Observations per batch; only one batch is dense at a time.

        Returns
        -------
        ``(n_obs, n_latent)`` array.
        """
        adata, layer = self._resolve_query(adata, layer)
        self.module.eval()
        chunks = [
            self.module.embed(x).cpu().numpy()
            for x in self._log_expression_batches(
                adata,
                layer=layer,
                units=units or self.units,
                batch_size=batch_size,
                library_size=self._stored_library_sizes(adata, units or self.units),
            )
        ]
        return np.concatenate(chunks, axis=0)

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

    # ------------------------------------------------------------------ scouts -> guide
    def compute_guide(
        self,
        adata: AnnData | None = None,
        *,
        n_scouts: int = 60,
        n_way: int = 2,
        k_shot: int = 5,
        n_clusters: int = 30,
        n_steps: int = 100,
        lr: float = 1e-3,
        statistic: Statistic = "squared",
        normalization: Normalization = "global",
        temperature: Temperature = "room",
        top_p: float = 0.1,
        slope: float = 1.0,
        intercept: float = 0.0,
        scale: float = 1.0,
        max_cells: int = 20_000,
        head_init: HeadInit = "prototypes",
        seed: int = 0,
        progress: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Run scouts on the corpus and (re)compute the guide, without re-pre-training.

        Each scout copies the pre-trained encoder, adds a fresh head, trains ``n_steps`` on an
        ``n_way``-class, ``k_shot``-per-class problem drawn from the corpus labels (or, without
        labels, from K-means clusters of the latent space), and records ``w_final - w_base``.
        The guide is the mean squared (or absolute) change, min-max normalised, reshaped by
        ``temperature`` and ``scale`` (see :func:`scgtl.guide.apply_temperature`).

        Parameters
        ----------
        adata
            The corpus; defaults to the AnnData the model was set up with. Must have the model's
            genes (and its labels column if the model was set up with labels).
        n_scouts, n_way, k_shot
            Number of scout problems, classes per problem and samples per class.
        n_clusters
            K of the K-means clustering used when the corpus has no labels.
        n_steps, lr
            Training of each scout (Adam), like fine-tuning.
        statistic
            ``"squared"`` or ``"absolute"`` change.
        normalization
            ``"global"``: one min-max over all encoder weights, so a layer that scouts barely
            move stays nearly fixed (the default: it measured better on the benchmark targets,
            see ``docs/benchmarks.md``); ``"per_tensor"``: each tensor scaled to ``[0, 1]`` on
            its own, as published.
        temperature, top_p, slope, intercept, scale
            Guide reshaping, see :func:`scgtl.guide.apply_temperature`.
        max_cells
            Scouts draw from a seeded subsample of at most this many corpus observations, which
            bounds memory on large corpora.
        head_init
            How each scout's head starts, as in :meth:`fine_tune`.
        seed
            Seed of the subsample, clustering, scout draws and scout training.
        progress
            Show a progress bar.

        Returns
        -------
        The guide, also stored in :attr:`guide` (and saved with the model).
        """
        check_training_settings(n_steps=n_steps, lr=lr)
        check_head_init(head_init)
        corpus = self._resolve_query(adata, None)[0]
        rng = np.random.default_rng(seed)
        pool = np.sort(rng.choice(corpus.n_obs, size=min(max_cells, corpus.n_obs), replace=False))
        x = torch.cat(
            list(
                self._log_expression_batches(
                    corpus,
                    layer=self.layer,
                    units=self.units,
                    batch_size=4096,
                    indices=pool,
                    library_size=self._stored_library_sizes(corpus, self.units),
                )
            )
        )
        groups = self._scout_groups(corpus, pool, x, n_clusters=n_clusters, seed=seed)
        tasks = sample_scout_tasks(groups, n_scouts=n_scouts, n_way=n_way, k_shot=k_shot, seed=seed)
        changes = run_scouts(
            self.module.encoder,
            x,
            tasks,
            n_latent=self.architecture_["n_latent"],
            n_steps=n_steps,
            lr=lr,
            seed=seed,
            progress=progress,
            head_init=head_init,
        )
        raw = normalize(mean_change(changes, statistic=statistic), normalization=normalization)
        self.guide_ = {
            name: g.cpu()
            for name, g in apply_temperature(
                raw, temperature, top_p=top_p, slope=slope, intercept=intercept, scale=scale
            ).items()
        }
        self.guide_settings_ = {
            "n_scouts": n_scouts,
            "n_way": n_way,
            "k_shot": k_shot,
            "n_clusters": n_clusters,
            "n_steps": n_steps,
            "lr": lr,
            "statistic": statistic,
            "normalization": normalization,
            "temperature": temperature,
            "top_p": top_p,
            "slope": slope,
            "intercept": intercept,
            "scale": scale,
            "max_cells": max_cells,
            "head_init": head_init,
            "seed": seed,
            "groups": "labels" if self.labels_key else "kmeans",
        }
        return self.guide_

    def _scout_groups(
        self, corpus: AnnData, pool: np.ndarray, x: torch.Tensor, *, n_clusters: int, seed: int
    ) -> np.ndarray:
        if self.labels_key is not None:
            if self.labels_key not in corpus.obs:
                raise KeyError(f"The corpus lacks the model's labels column {self.labels_key!r}.")
            return corpus.obs[self.labels_key].astype(str).to_numpy()[pool]
        if not isinstance(n_clusters, int) or n_clusters < 2:
            raise ValueError(f"n_clusters={n_clusters!r} must be an integer >= 2.")
        self.module.eval()
        latent = torch.cat([self.module.embed(chunk) for chunk in x.split(4096)]).cpu().numpy()
        n_clusters = min(n_clusters, latent.shape[0])
        return KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit_predict(latent)

    # ------------------------------------------------------------------ target adaptation
    def adapt(
        self,
        adata: AnnData,
        *,
        layer: str | None = None,
        units: Units | None = None,
        n_steps: int = ADAPT_STEPS,
        replay: float = 0.5,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        seed: int = 0,
    ) -> GTL:
        """Continue pre-training on a target's unlabelled cells; returns a new, adapted model.

        The encoder and decoder take ``n_steps`` more steps of masked-expression reconstruction
        on mini-batches that mix target rows with corpus rows (``replay``), so the encoder learns
        the target's expression patterns without forgetting the corpus's. No label is read: a
        user can adapt on every cell of the study before labelling a few of them. The guide and
        everything else are copied from this model, which is left unchanged; call
        :meth:`compute_guide` on the result to run the scouts again.

        Parameters
        ----------
        adata
            The target; all of its rows are used, labelled or not. Its genes are aligned to the
            model's (missing ones zero-filled); it is not modified.
        layer
            Layer of ``adata`` to read (``None``: ``X``).
        units
            Units of ``adata``'s values; defaults to the corpus's.
        n_steps
            Optimizer steps.
        replay
            Fraction of each mini-batch drawn from the corpus (``0``: target rows only, which
            needs no corpus attached to the model).
        batch_size
            Rows per mini-batch.
        lr, weight_decay
            Adam settings, as in pre-training.
        seed
            Seed of the mini-batch draws and masks.

        Returns
        -------
        A new :class:`~scgtl.GTL` whose ``adaptation_`` records the settings, the target's size
        and the loss at every step.
        """
        _check_target(adata)
        units = self.units if units is None else units
        check_units_name(units)
        check_training_settings(n_steps=n_steps, lr=lr, weight_decay=weight_decay)
        if not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(f"batch_size={batch_size!r} must be an integer >= 2.")
        if not 0.0 <= replay < 1.0:
            raise ValueError(f"replay={replay!r} must be in [0, 1).")
        rng = np.random.default_rng(seed)
        if replay > 0 and self.adata is None:
            raise ValueError(
                "replay > 0 needs the corpus: load the model with adata=corpus, or pass replay=0."
            )
        n_replay = round(batch_size * replay)
        samplers = [
            self._row_sampler(
                adata, layer=layer, units=units, n_rows=batch_size - n_replay, rng=rng
            )
        ]
        if n_replay:
            corpus_sizes = self._stored_library_sizes(self.adata, self.units)
            samplers.append(
                self._row_sampler(
                    self.adata,
                    layer=self.layer,
                    units=self.units,
                    n_rows=n_replay,
                    rng=rng,
                    library_size=corpus_sizes,
                    warn=False,
                )
            )
        adapted = copy.copy(self)
        adapted.module = copy.deepcopy(self.module)
        adapted.guide_ = None if self.guide_ is None else dict(self.guide_)
        module = adapted.module
        optimizer = torch.optim.Adam(
            list(module.encoder.parameters()) + list(module.decoder.parameters()),
            lr=lr,
            weight_decay=weight_decay,
        )
        losses = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module.train()
            for _ in range(n_steps):
                x_log = torch.cat([draw() for draw in samplers])
                loss = module.masked_reconstruction_loss(x_log)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            module.eval()
        adapted.adaptation_ = {
            "n_obs": adata.n_obs,
            "n_steps": n_steps,
            "replay": replay,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": seed,
            "units": units,
            "losses": np.asarray(losses, dtype=np.float32),
        }
        return adapted

    def _row_sampler(
        self,
        adata: AnnData,
        *,
        layer: str | None,
        units: Units,
        n_rows: int,
        rng: np.random.Generator,
        library_size: np.ndarray | None = None,
        warn: bool = True,
    ) -> Callable[[], torch.Tensor]:
        """A function drawing ``n_rows`` random rows of ``adata`` as log expression."""
        alignment = align_genes(adata.var_names, self.gene_names, warn=warn)
        replace = n_rows > adata.n_obs

        def draw() -> torch.Tensor:
            rows = np.sort(rng.choice(adata.n_obs, size=n_rows, replace=replace))
            batches = iter_log_expression(
                adata,
                layer=layer,
                units=units,
                alignment=alignment,
                indices=rows,
                batch_size=n_rows,
                device=self.module.device,
                library_size=library_size,
            )
            return next(batches)

        return draw

    # ------------------------------------------------------------------ fine-tuning
    def fine_tune(
        self,
        adata: AnnData,
        *,
        labels_key: str,
        k_shot: int | None = None,
        seed: int = 0,
        layer: str | None = None,
        units: Units | None = None,
        support_indices: Sequence[int] | np.ndarray | None = None,
        use_guide: bool = True,
        from_scratch: bool = False,
        n_steps: int = 100,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        head_init: HeadInit = "prototypes",
    ) -> GTLClassifier:
        """Learn a few-shot target task; returns a new classifier, this model is unchanged.

        Parameters
        ----------
        adata
            The target study. Its genes are aligned to the model's (missing ones zero-filled,
            extra ones dropped, with a warning giving the overlap); it is not modified.
        labels_key
            ``obs`` column with the target classes.
        k_shot
            Labelled samples per class to train on, drawn with ``seed``.
        seed
            Seed of the support draw, the head's initialisation and dropout.
        layer
            Layer of ``adata`` to read (``None``: ``X``).
        units
            Units of ``adata``'s values; defaults to the corpus's units.
        support_indices
            Positions of the rows to train on, instead of drawing ``k_shot`` per class (the
            benchmark uses it so every method sees the same support set). Only these rows need
            labels: the others may be missing (NaN).
        use_guide
            Scale each update by the guide (GTL). ``False`` is plain fine-tuning.
        from_scratch
            Start from a randomly initialised network of the same architecture, without guide.
        n_steps, lr, weight_decay
            Full-batch Adam fine-tuning.
        head_init
            ``"prototypes"``: the head starts as the nearest-class-mean classifier in the
            encoder's latent space (:func:`scgtl.train.prototype_head`); ``"random"``: PyTorch's
            default initialisation.

        Returns
        -------
        A fitted :class:`~scgtl.GTLClassifier`.
        """
        units = self.units if units is None else units
        check_units_name(units)
        check_training_settings(n_steps=n_steps, lr=lr, weight_decay=weight_decay)
        check_head_init(head_init)
        guide = self._fine_tune_guide(use_guide=use_guide, from_scratch=from_scratch)
        labels = _target_labels(adata, labels_key)
        support = _support_rows(
            labels, k_shot=k_shot, seed=seed, support_indices=support_indices, labels_key=labels_key
        )
        x = torch.cat(
            list(
                self._log_expression_batches(
                    adata, layer=layer, units=units, batch_size=4096, indices=support
                )
            )
        )
        support_labels = pd.Categorical(labels.iloc[support].astype(str))
        classes = support_labels.categories
        y = torch.as_tensor(support_labels.codes.astype(np.int64), device=x.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = GTLClassifierModule(
                self.summary_stats.n_vars, len(classes), **self.architecture_
            ).to(x.device)
            if not from_scratch:
                network.encoder.load_state_dict(copy.deepcopy(self.module.encoder.state_dict()))
            if head_init == "prototypes":
                network.head = prototype_head(network.encoder, x, y, len(classes))
            losses = fit_few_shot(
                network.encoder,
                network.head,
                x,
                y,
                n_steps=n_steps,
                lr=lr,
                weight_decay=weight_decay,
                guide=guide,
            )
        return GTLClassifier.from_network(
            network,
            gene_names=self.gene_names,
            classes=classes,
            labels_key=labels_key,
            layer=layer,
            units=units,
            source=adata,
            fit_record={
                "support_obs_names": adata.obs_names[support].to_numpy(dtype=str),
                "losses": np.asarray(losses, dtype=np.float32),
                "use_guide": guide is not None,
                "from_scratch": from_scratch,
                "k_shot": k_shot,
                "seed": seed,
                "n_steps": n_steps,
                "lr": lr,
                "weight_decay": weight_decay,
                "head_init": head_init,
            },
            architecture=self.architecture_,
        )

    def _fine_tune_guide(self, *, use_guide: bool, from_scratch: bool):
        if from_scratch or not use_guide:
            return None
        if self.guide_ is None:
            raise ValueError(
                "This model has no guide yet: call model.train() or model.compute_guide(), "
                "or pass use_guide=False for plain fine-tuning."
            )
        return self.guide_


def _check_target(adata: AnnData) -> None:
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"The AnnData is empty ({adata.n_obs} obs x {adata.n_vars} vars).")


def _target_labels(adata: AnnData, labels_key: str) -> pd.Series:
    _check_target(adata)
    if labels_key not in adata.obs:
        raise KeyError(
            f"labels_key={labels_key!r} is not a column of adata.obs: {list(adata.obs)}."
        )
    return adata.obs[labels_key]


def _support_rows(
    labels: pd.Series,
    *,
    k_shot: int | None,
    seed: int,
    support_indices,
    labels_key: str,
) -> np.ndarray:
    """Positions of the support set; only the support's labels need to be present."""
    if support_indices is None:
        if k_shot is None:
            raise ValueError("Pass k_shot (labelled samples per class) or support_indices.")
        checked = check_labels(labels, labels_key=labels_key)
        return sample_k_shot(checked, k_shot, seed=seed, labels_key=labels_key)
    support = np.asarray(support_indices)
    if support.ndim != 1 or support.size == 0 or not np.issubdtype(support.dtype, np.integer):
        raise ValueError("support_indices must be a non-empty 1-d array of integer positions.")
    if support.min() < 0 or support.max() >= len(labels):
        raise ValueError(
            f"support_indices must lie in [0, {len(labels)}); got {support.min()}..{support.max()}."
        )
    if np.unique(support).size != support.size:
        raise ValueError("support_indices has duplicates.")
    check_labels(labels.iloc[support], labels_key=labels_key)
    if k_shot is not None:
        warnings.warn("k_shot is ignored when support_indices is given.", UserWarning, stacklevel=3)
    return np.sort(support)
