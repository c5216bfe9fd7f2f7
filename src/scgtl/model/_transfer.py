"""Target adaptation and fine-tuning, as a part of :class:`scgtl.GTL`.

The model only orchestrates: reading rows (:mod:`scgtl.data`), the training loops
(:mod:`scgtl.train`) and wrapping the result in a :class:`~scgtl.GTLClassifier`.
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from scgtl._docs import doc
from scgtl._settings import uses_threads
from scgtl.data import (
    align_genes,
    check_anndata,
    check_layer,
    check_units_name,
    row_sampler,
    study_fingerprint,
    support_rows,
)
from scgtl.model._classifier import GTLClassifier
from scgtl.train import (
    MAX_PCA_ROWS,
    StudyPCA,
    add_wide_path,
    calibration_record,
    check_head_init,
    check_training_settings,
    check_wide_weight,
    fine_tune_network,
    fine_tune_networks,
    fit_linear_path,
    fit_masked_reconstruction,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anndata import AnnData

    from scgtl._constants import Units
    from scgtl.model._gtl import GTL
    from scgtl.train._few_shot import ExtraLoss, HeadInit, InputTransform, StepCallback

#: Default number of steps of :meth:`GTL.adapt`.
ADAPT_STEPS = 1000
#: Steps of :meth:`GTL.adapted_to` for a model without its corpus (no rows to replay, as
#: :func:`scgtl.models.load` gives it): longer adaptation on the study alone forgets the corpus.
#: Chosen on seed-1 episodes of the developer targets (docs/research/benchmarks.md, issue 25):
#: 100 steps scored 0.8 points above 1,000 on average, and 0.5 above 300.
ADAPT_STEPS_WITHOUT_REPLAY = 100
#: Fraction of corpus rows in each adaptation batch (:meth:`GTL.adapt`'s default ``replay``).
ADAPT_REPLAY = 0.5
#: Seed of the adaptation that ``fine_tune(transductive=True)`` runs, the same for every
#: fine-tuning seed: one study gives one adapted model, which every fine-tuning of it reuses.
TRANSDUCTIVE_ADAPT_SEED = 0


class TransferMixin:
    """:meth:`adapt` and :meth:`fine_tune` of :class:`~scgtl.GTL`."""

    @uses_threads
    @doc.dedent
    def adapt(
        self,
        adata: AnnData,
        *,
        layer: str | None = None,
        units: Units | None = None,
        n_steps: int = ADAPT_STEPS,
        replay: float = ADAPT_REPLAY,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        seed: int = 0,
    ) -> GTL:
        """Continue pre-training on a target's unlabelled cells; returns a new, adapted model.

        The encoder and decoder take ``n_steps`` more steps of masked-expression reconstruction
        on mini-batches that mix target rows with corpus rows (``replay``), so the encoder learns
        the target's expression patterns without forgetting the corpus's. The model's genes that
        the target lacks are zero-filled in its rows but missing, not silent: they are hidden
        from the encoder and left out of the loss. No label is read: a
        user can adapt on every cell of the study before labelling a few of them. The guide and
        everything else are copied from this model, which is left unchanged; call
        :meth:`compute_guide` on the result to run the scouts again.

        Parameters
        ----------
        adata
            The target; all of its rows are used, labelled or not. Its genes are aligned to the
            model's (missing ones zero-filled); it is not modified.
        %(param_query_layer_units)s
        n_steps
            Optimizer steps (see :func:`scgtl.train.fit_masked_reconstruction`).
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
        (``"n_obs"``), a fingerprint of the target (``"study"``, see
        :func:`scgtl.data.study_fingerprint`) and the loss at every step (``"losses"``).
        """
        check_anndata(adata)
        units = self.units if units is None else units
        check_units_name(units)
        check_training_settings(n_steps=n_steps, lr=lr, weight_decay=weight_decay)
        if not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(f"batch_size={batch_size!r} must be an integer >= 2.")
        if not 0.0 <= replay < 1.0:
            raise ValueError(f"replay={replay!r} must be in [0, 1).")
        if replay > 0 and self.adata is None:
            raise ValueError(
                "replay > 0 needs the corpus: load the model with adata=corpus, or pass replay=0."
            )
        rng = np.random.default_rng(seed)
        n_replay = round(batch_size * replay)
        samplers = [self._row_sampler(adata, layer, units, batch_size - n_replay, rng)]
        if n_replay:
            corpus_sizes = self._stored_library_sizes(self.adata, self.units)
            samplers.append(
                self._row_sampler(
                    self.adata, self.layer, self.units, n_replay, rng, corpus_sizes, warn=False
                )
            )
        adapted = copy.copy(self)
        adapted._last_adapted = None
        adapted.module = copy.deepcopy(self.module)
        adapted.guide_ = None if self.guide_ is None else dict(self.guide_)

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            rows = [(sample(), found) for sample, found in samplers]
            measured = [found.expand(len(x), -1) for x, found in rows]
            return torch.cat([x for x, _ in rows]), torch.cat(measured)

        losses = fit_masked_reconstruction(
            adapted.module, draw, n_steps=n_steps, lr=lr, weight_decay=weight_decay, seed=seed
        )
        adapted.adaptation_ = {
            "n_obs": adata.n_obs,
            "study": study_fingerprint(adata, layer=layer, units=units),
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

    @doc.dedent
    def adapted_to(
        self, adata: AnnData, *, layer: str | None = None, units: Units | None = None
    ) -> GTL:
        """The model adapted to a study, as ``fine_tune(transductive=True)`` adapts it.

        The model itself when it is already adapted to ``adata`` (the result of :meth:`adapt`
        on a study with the same observation and gene names, layer and units, whatever its
        settings); otherwise :meth:`adapt` with its defaults and seed 0, the same for every
        fine-tuning seed, so that every fine-tuning of one study starts from the same adapted
        model. The model keeps the last study it adapted to: asked again for that study, while
        its weights and guide are unchanged, it returns the same adapted model without adapting
        again. A model without its corpus attached (loaded without ``adata=``, as
        :func:`scgtl.models.load` gives it) adapts on the study alone (``replay=0``) for
        :data:`ADAPT_STEPS_WITHOUT_REPLAY` steps (100: longer forgets the corpus).

        Parameters
        ----------
        adata
            The study; every row is read, no label.
        %(param_query_layer_units)s

        Returns
        -------
        A :class:`~scgtl.GTL` whose ``adaptation_`` names this study.
        """
        units = self.units if units is None else units
        study = study_fingerprint(adata, layer=layer, units=units)
        adaptation = self.adaptation_
        if adaptation is not None and adaptation.get("study") == study:
            return self
        # Repeated fine_tune(transductive=True) calls on one study (other seeds, other
        # supports) reuse the adaptation, as long as this model is unchanged.
        key = (study, self._state_token())
        last = self._last_adapted
        if last is not None and last[0] == key:
            return last[1]
        replay, n_steps = ADAPT_REPLAY, ADAPT_STEPS
        if self.adata is None:
            replay, n_steps = 0.0, ADAPT_STEPS_WITHOUT_REPLAY
        adapted = self.adapt(
            adata,
            layer=layer,
            units=units,
            n_steps=n_steps,
            replay=replay,
            seed=TRANSDUCTIVE_ADAPT_SEED,
        )
        self._last_adapted = (key, adapted)
        return adapted

    def _state_token(self) -> tuple:
        """Changes whenever the weights change in place (training) or the guide is replaced."""
        versions = tuple(p._version for p in self.module.parameters())
        return id(self.module), id(self.guide_), versions

    def _row_sampler(self, adata, layer, units, n_rows, rng, library_size=None, *, warn=True):
        """Draws ``n_rows`` random rows of ``adata`` as log expression over the model's genes.

        Returns the sampler and the ``(1, n_genes)`` booleans of the model's genes ``adata``
        has: the others are zero-filled, missing rather than silent, and adaptation leaves them
        out of its loss.
        """
        alignment = align_genes(adata.var_names, self.gene_names, warn=warn)
        found = torch.zeros(1, len(self.gene_names), dtype=torch.bool, device=self.module.device)
        found[0, torch.as_tensor(alignment.reference_index, dtype=torch.long)] = True
        sampler = row_sampler(
            adata,
            layer=layer,
            units=units,
            alignment=alignment,
            n_rows=n_rows,
            rng=rng,
            device=self.module.device,
            library_size=library_size,
        )
        return sampler, found

    @uses_threads
    @doc.dedent
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
        guide: Mapping[str, torch.Tensor] | None = None,
        from_scratch: bool = False,
        n_steps: int = 100,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        head_init: HeadInit = "prototypes",
        wide: bool = True,
        wide_weight: float | None = None,
        transductive: bool | None = None,
        input_transform: InputTransform | None = None,
        extra_loss: ExtraLoss | None = None,
        callback: StepCallback | None = None,
    ) -> GTLClassifier:
        """Learn a few-shot target task; returns a new classifier, this model is unchanged.

        The classifier has two paths. The *network* is the pre-trained encoder and a new head,
        fine-tuned on the support set (guided by the model's guide: GTL). The *wide path* is a
        logistic regression on all of the study's own genes (scikit-learn's defaults, the
        benchmark's ``logreg``), fitted on the same support set: it keeps a signal that the
        corpus never varied, which the network's latent space may have lost. Their predictions
        are pooled, ``log p = (1 - w) log p_network + w log p_wide`` (renormalised), with
        ``w`` chosen on the support itself: the weight whose out-of-fold predictions have the
        least log-loss in a cross-validation over the support (up to 5 stratified folds, each
        fold re-fitting both paths), or ``0.75`` when a class has a single sample. Measured on
        the developer targets in ``docs/research/wide_path.md``.

        Parameters
        ----------
        adata
            The target study. Its genes are aligned to the model's (missing ones zero-filled,
            extra ones dropped, with a warning giving the overlap); it is not modified. Its whole
            matrix is checked against ``units`` before training (NaN/inf, negative or, for
            counts, non-integer values are refused in every row, not only the support's), so
            that :meth:`~scgtl.GTLClassifier.predict` can read all of it.
        labels_key
            ``obs`` column with the target classes.
        k_shot
            Labelled samples per class to train on, drawn with ``seed``. ``None`` (the default):
            every row whose label is present, the others being unlabelled (NaN) — how a
            half-annotated study is given.
        seed
            Seed of the support draw, the head's initialisation and dropout.
        %(param_query_layer_units)s
        support_indices
            Positions of the rows to train on, instead of drawing ``k_shot`` per class (the
            benchmark uses it so every method sees the same support set). Only these rows need
            labels: the others may be missing (NaN).
        use_guide
            Scale each update by the guide (GTL). ``False`` is plain fine-tuning.
        guide
            A guide to use instead of the model's own (same parameter names and shapes), e.g.
            ``scgtl.guide.apply_temperature(model.guide, "warm")``.
        from_scratch
            Start from a randomly initialised network of the same architecture, without guide.
        n_steps, lr, weight_decay
            Full-batch Adam fine-tuning.
        %(param_head_init)s
        wide
            Add the wide path (the default). ``False``: the network alone.
        wide_weight
            Weight ``w`` of the wide path in ``[0, 1]`` (``0``: the network's prediction,
            ``1``: the logistic regression's); ``None`` (the default) chooses it on the support
            as described above, at the cost of re-fitting the network once per fold.
        transductive
            Also learn from the study's other rows, those outside the support (never their
            labels), in two ways: the pre-trained model is first adapted to the study
            (:meth:`adapted_to`: :meth:`adapt`, seed 0, once per study), and the
            wide path is logistic regression on the principal components of the study (50,
            fitted on all of its rows, or 20,000 random ones of a larger study), as the
            benchmark's ``pca_logreg`` baseline, folded into a linear layer on the study's
            genes. ``None`` (the default): whenever the study has rows besides the support
            and ``wide=True``; ``False``: the support alone (inductive); ``True`` needs
            ``wide=True``. The classifier still predicts any query. Measured against the
            inductive call, CellTypist and the transductive baselines in
            ``docs/benchmarks.md``.
        %(param_fit_hooks)s
            The hooks also apply to the cross-validation's fits; ``callback`` sees only the
            final fit's steps.

        Returns
        -------
        A fitted :class:`~scgtl.GTLClassifier`; its ``fit_record_`` holds the support's
        ``obs_names`` (``"support_obs_names"``), the loss at every step, the wide path's weight
        and how it was chosen, whether it learnt from the study's other rows
        (``"transductive"``; ``"n_unlabelled"``: how many rows besides the support it read),
        whether the network started from an adapted model (``"adapted"``; ``"adaptation"``:
        its ``n_steps``, ``replay`` and ``seed``, or ``None``), the calibration and novelty
        reference that :meth:`~scgtl.GTLClassifier.predict` uses (``"temperature"``,
        ``"prototypes"``, ``"novelty_spread"``, ``"reference_prototypes"``,
        ``"reference_novelty_spread"``, ``"support_novelty"``; see
        :class:`~scgtl.GTLClassifier`), and these settings. Unless fine-tuned from scratch, the
        classifier keeps a frozen copy of the encoder it started from, for the novelty score.

        Raises
        ------
        ValueError
            Values impossible in ``units`` anywhere in the matrix, bad labels or settings, or a
            study sharing fewer than 5 percent (or 10) of the model's genes (see
            :func:`scgtl.data.align_genes`).
        """
        units = self.units if units is None else units
        check_units_name(units)
        check_training_settings(n_steps=n_steps, lr=lr, weight_decay=weight_decay)
        check_head_init(head_init)
        check_wide_weight(wide_weight)
        if not isinstance(wide, bool):
            raise TypeError(f"wide={wide!r} must be True or False.")
        if transductive is not None and not isinstance(transductive, bool):
            raise TypeError(f"transductive={transductive!r} must be None, True or False.")
        if wide_weight is not None and not wide:
            raise ValueError(f"wide_weight={wide_weight!r} is given, but wide=False.")
        if transductive and not wide:
            raise ValueError("transductive=True works through the wide path; it needs wide=True.")
        guide = self._fine_tune_guide(use_guide=use_guide, from_scratch=from_scratch, guide=guide)
        check_anndata(adata)
        if labels_key not in adata.obs:
            raise KeyError(
                f"labels_key={labels_key!r} is not a column of adata.obs: {list(adata.obs)}."
            )
        labels = adata.obs[labels_key]
        support = support_rows(
            labels, k_shot=k_shot, seed=seed, support_indices=support_indices, labels_key=labels_key
        )
        check_layer(adata, layer=layer, units=units)
        n_other = adata.n_obs - support.size
        if transductive is None:
            transductive = wide and n_other > 0
        x = self._read_rows(adata, layer=layer, units=units, indices=support)
        # Adapting a network trained from scratch would undo the point of from_scratch.
        adapt = transductive and not from_scratch
        pretrained = self.adapted_to(adata, layer=layer, units=units) if adapt else self
        support_labels = pd.Categorical(labels.iloc[support].astype(str))
        y = torch.as_tensor(support_labels.codes.astype(np.int64), device=x.device)
        fit_settings = {
            "n_classes": len(support_labels.categories),
            "architecture": self.architecture_,
            "seed": seed,
            "head_init": head_init,
            "n_steps": n_steps,
            "lr": lr,
            "weight_decay": weight_decay,
            "guide": guide,
            "input_transform": input_transform,
            "extra_loss": extra_loss,
        }
        encoder = None if from_scratch else pretrained.module.encoder
        fit_network = functools.partial(fine_tune_network, encoder, **fit_settings)
        fit_networks = functools.partial(fine_tune_networks, encoder, **fit_settings)
        network, losses = fit_network(x, y, callback=callback)
        wide_genes = None
        wide_record = {"wide": False, "wide_weight": 0.0, "wide_weight_source": "none"}
        if wide:
            wide_genes = pd.Index(adata.var_names.astype(str))
            x_wide = self._read_rows(
                adata, layer=layer, units=units, indices=support, genes=wide_genes, warn=False
            )
            fit_wide = fit_linear_path
            if transductive:
                rows = _pca_rows(adata.n_obs, seed=seed)
                study = self._read_rows(
                    adata, layer=layer, units=units, indices=rows, genes=wide_genes, warn=False
                )
                fit_wide = StudyPCA(study).fit_linear_path
            wide_record = add_wide_path(
                network, fit_networks, fit_wide, x, x_wide, y, wide_weight=wide_weight, seed=seed
            )
        wide_record["transductive"] = transductive
        wide_record["n_unlabelled"] = n_other if transductive else 0
        wide_record["adapted"] = pretrained.adaptation_ is not None
        wide_record["adaptation"] = _adaptation_summary(pretrained.adaptation_)
        if encoder is not None:
            # The novelty score also reads the latent space fine-tuning started from.
            network.set_reference_encoder(encoder)
        wide_record.update(calibration_record(network, x, y, wide_record))
        return GTLClassifier.from_network(
            network,
            gene_names=self.gene_names,
            classes=support_labels.categories,
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
                **wide_record,
            },
            architecture=self.architecture_,
            wide_gene_names=wide_genes,
        )

    def _fine_tune_guide(self, *, use_guide: bool, from_scratch: bool, guide):
        if guide is not None and (from_scratch or not use_guide):
            raise ValueError("guide= is given, but use_guide=False or from_scratch=True.")
        if from_scratch or not use_guide:
            return None
        if guide is not None:
            return guide
        if self.guide_ is None:
            raise ValueError(
                "This model has no guide yet: call model.train() or model.compute_guide(), "
                "or pass use_guide=False for plain fine-tuning."
            )
        return self.guide_


def _adaptation_summary(adaptation: dict | None) -> dict | None:
    """What the classifier's record keeps of the adaptation its network started from."""
    if adaptation is None:
        return None
    return {name: adaptation[name] for name in ("n_steps", "replay", "seed")}


def _pca_rows(n_obs: int, *, seed: int) -> np.ndarray | None:
    """The rows the transductive PCA is fitted on: all, or a seeded random subset."""
    if n_obs <= MAX_PCA_ROWS:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_obs, MAX_PCA_ROWS, replace=False))
