"""Target adaptation, as a part of :class:`scgtl.GTL`: more pre-training on a study's own rows.

The model only orchestrates: reading rows (:mod:`scgtl.data`) and the loop
(:func:`scgtl.train.fit_masked_reconstruction`).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Self

import numpy as np
import torch
from scvi import REGISTRY_KEYS

from scgtl._docs import doc
from scgtl._settings import uses_threads
from scgtl.data import align_genes, row_sampler, study_fingerprint
from scgtl.data._checks import check_anndata
from scgtl.data._units import check_units_name
from scgtl.train import fit_masked_reconstruction
from scgtl.train._few_shot import check_training_settings

if TYPE_CHECKING:
    from anndata import AnnData

    from scgtl._constants import Units

#: Default number of steps of :meth:`GTL.adapt`: with batches of 128, about one epoch of a
#: 20,000-row corpus. Chosen on the PBMC-only developer models with their corpus (issue 26, item 3;
#: docs/research/benchmarks.md): 150 steps scored 0.6 points above 1,000 on average on seed-1
#: episodes and again on seed 0, as 300 did, in a seventh of the time.
ADAPT_STEPS = 150
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


class AdaptationMixin:
    """:meth:`adapt` and :meth:`adapted_to` of :class:`~scgtl.GTL`."""

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
    ) -> Self:
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
            samplers.append(self._corpus_row_sampler(n_replay, rng))
        adapted = copy.copy(self)
        adapted._last_adapted = None
        adapted.module = copy.deepcopy(self.module)
        adapted.guide_ = None if self.guide_ is None else dict(self.guide_)

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            rows = [sample() for sample in samplers]
            return torch.cat([x for x, _ in rows]), torch.cat([measured for _, measured in rows])

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
    ) -> Self:
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

    def _row_sampler(self, adata, layer, units, n_rows, rng):
        """Draws ``n_rows`` random rows of ``adata`` as log expression over the model's genes.

        Returns a function giving the rows and their ``(n_rows, n_genes)`` booleans of the genes
        they measured: the model's genes ``adata`` lacks are zero-filled, missing rather than
        silent, and adaptation leaves them out of its loss.
        """
        alignment = align_genes(adata.var_names, self.gene_names)
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
        )

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            x = sampler()
            return x, found.expand(len(x), -1)

        return draw

    def _corpus_row_sampler(self, n_rows, rng):
        """Draws corpus rows to replay, each with the genes its own study measured.

        A multi-study corpus (``setup_anndata(measured_key=...)``) zero-fills the genes a study
        did not measure; replayed in adaptation as in pre-training, they stay out of the loss.
        """
        library_size = self._stored_library_sizes(self.adata, self.units)
        alignment = align_genes(self.adata.var_names, self.gene_names, warn=False)
        sampler = row_sampler(
            self.adata,
            layer=self.layer,
            units=self.units,
            alignment=alignment,
            n_rows=n_rows,
            rng=rng,
            device=self.module.device,
            library_size=library_size,
            return_rows=True,
        )
        measured = self.module.measured
        if measured is None:  # one gene panel: every gene measured in every row

            def draw() -> tuple[torch.Tensor, torch.Tensor]:
                x, _ = sampler()
                return x, torch.ones_like(x, dtype=torch.bool)

            return draw
        study = torch.as_tensor(
            self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY), dtype=torch.long
        ).view(-1)

        def draw_by_study() -> tuple[torch.Tensor, torch.Tensor]:
            x, rows = sampler()
            return x, measured[study[torch.as_tensor(rows)]]

        return draw_by_study
