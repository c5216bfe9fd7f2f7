"""Scouts -> guide, as a part of :class:`scgtl.GTL` (the loops live in :mod:`scgtl.train`)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import numpy as np
import torch

from scgtl._docs import doc
from scgtl._progress import progress_enabled
from scgtl._settings import uses_threads
from scgtl.guide import cluster_groups, guide_from_changes, sample_scout_tasks
from scgtl.train import TrainingDisplay, estimate_scout_seconds, run_scouts
from scgtl.train._few_shot import check_head_init, check_training_settings
from scgtl.train._progress import SCOUTS

if TYPE_CHECKING:
    from anndata import AnnData

    from scgtl.guide._guide import Normalization, Statistic, Temperature
    from scgtl.train._few_shot import HeadInit


class GuideMixin:
    """:meth:`compute_guide` of :class:`~scgtl.GTL`: scouts on the corpus, then the guide."""

    @uses_threads
    @doc.dedent
    def compute_guide(
        self,
        adata: AnnData | None = None,
        *,
        n_scouts: int = 60,
        n_way: int = 2,
        k_shot: int = 5,
        n_clusters: int = 30,
        groups_key: str | None = None,
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
        progress: bool | None = None,
        batched: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Run scouts on the corpus and (re)compute the guide, without re-pre-training.

        Each scout copies the pre-trained encoder, adds a fresh head, trains ``n_steps`` on an
        ``n_way``-class, ``k_shot``-per-class problem drawn from the corpus labels (or, without
        labels, from K-means clusters of the latent space), and records ``w_final - w_base``.
        The guide is the mean squared (or absolute) change, min-max normalised, reshaped by
        ``temperature`` and ``scale`` (see :func:`scgtl.guide.guide_from_changes`).

        Parameters
        ----------
        adata
            The corpus; defaults to the AnnData the model was set up with. Must have the model's
            genes (and its labels column if the model was set up with labels).
        n_scouts, n_way, k_shot
            Number of scout problems, classes per problem and samples per class.
        n_clusters
            K of the K-means clustering used when the corpus has no labels.
        groups_key
            An ``obs`` column of the corpus with real labels for the scouts, missing (NaN)
            where a row has none, such as the ``"scout_label"`` column of
            :func:`scgtl.data.concat_studies` (``"<study>: <cell type>"``): the scouts then
            draw their classes from those labels, within and across studies (the GTL paper's
            cousin tasks), and from ``n_clusters`` K-means clusters of the unlabelled rows'
            latent codes. ``None``: the model's ``labels_key``, else clusters of every row.
        n_steps, lr
            Training of each scout (Adam), like fine-tuning.
        statistic
            ``"squared"`` or ``"absolute"`` change.
        normalization
            ``"global"``: one min-max over all encoder weights, so a layer that scouts barely
            move stays nearly fixed (the default: it measured better on the benchmark targets,
            see ``docs/research/recipe.md``, "Ablation"); ``"per_tensor"``: each tensor scaled
            to ``[0, 1]`` on its own, as published.
        temperature, top_p, slope, intercept, scale
            Guide reshaping, see :func:`scgtl.guide.apply_temperature`.
        max_cells
            Scouts draw from a seeded subsample of at most this many corpus observations, which
            bounds memory on large corpora.
        %(param_head_init)s
            Each scout's head starts this way, so scouts move the weights as fine-tuning will.
        seed
            Seed of the subsample, clustering, scout draws and scout training.
        progress
            Show a progress bar (on stderr); default :attr:`scgtl.settings.progress_bar`.
        batched
            Train the scouts in batches, as one batched model (the default), or one after
            another. The guide is the same up to floating-point rounding (see
            :func:`scgtl.train.run_scouts`); batched is several times faster.

        Returns
        -------
        The guide, also stored in :attr:`guide` (and saved with the model).
        """
        settings = {k: v for k, v in locals().items() if k not in ("self", "adata")}
        with TrainingDisplay([SCOUTS], enabled=progress_enabled(progress)) as display:
            return self._compute_guide(adata, display=display, **settings)

    def _compute_guide(
        self, adata: AnnData | None = None, *, display: TrainingDisplay, **settings
    ) -> dict[str, torch.Tensor]:
        """:meth:`compute_guide`, its scouts counted on ``display`` (also ``train()``'s)."""
        options = {**_guide_defaults(), **settings}
        (n_scouts, n_way, k_shot, n_clusters, n_steps, lr, max_cells, head_init, seed) = (
            options[name]
            for name in (
                "n_scouts", "n_way", "k_shot", "n_clusters", "n_steps", "lr", "max_cells",
                "head_init", "seed",
            )
        )  # fmt: skip
        groups_key = options["groups_key"]
        check_training_settings(n_steps=n_steps, lr=lr)
        check_head_init(head_init)
        # Counted in scout steps; reading and clustering the corpus count in the phase's time.
        display.start_phase(SCOUTS, total=n_scouts * n_steps)
        corpus = self._resolve_query(adata, None)[0]
        rng = np.random.default_rng(seed)
        pool = np.sort(rng.choice(corpus.n_obs, size=min(max_cells, corpus.n_obs), replace=False))
        x = self._read_rows(
            corpus,
            layer=self.layer,
            units=self.units,
            indices=pool,
            library_size=self._stored_library_sizes(corpus, self.units),
            warn=False,  # the corpus may have more genes than the model (n_top_genes)
        )
        groups = self._scout_groups(
            corpus, pool, x, n_clusters=n_clusters, seed=seed, groups_key=groups_key
        )
        tasks = sample_scout_tasks(groups, n_scouts=n_scouts, n_way=n_way, k_shot=k_shot, seed=seed)
        changes = run_scouts(
            self.module.encoder,
            x,
            tasks,
            n_latent=self.architecture_["n_latent"],
            n_steps=n_steps,
            lr=lr,
            seed=seed,
            progress=False,  # counted on the display instead
            head_init=head_init,
            batched=options["batched"],
            on_step=lambda scouts: display.advance(SCOUTS, scouts),
        )
        self.guide_ = guide_from_changes(changes, **{name: options[name] for name in _RESHAPING})
        display.end_phase(SCOUTS)
        del options["progress"], options["batched"]  # how it ran, not what it computed
        self.guide_settings_ = {**options, "groups": self._groups_source(groups_key)}
        return self.guide_

    @uses_threads
    def estimate_guide_seconds(self, **guide_kwargs) -> float:
        """Seconds the scouts of ``compute_guide(**guide_kwargs)`` will spend training.

        Measured, not guessed: a few steps of scout training on corpus rows, timed and scaled
        (:func:`scgtl.train.estimate_scout_seconds`), a few tenths of a second. :meth:`train`
        takes it for the scouts' time left before they start. Reading and clustering the
        corpus are not counted. The model and the random generators are left as they were.

        Parameters
        ----------
        **guide_kwargs
            Options of :meth:`compute_guide` (its defaults for those not given).

        Returns
        -------
        The estimated seconds.
        """
        unknown = set(guide_kwargs) - set(_guide_defaults()) - {"adata"}
        if unknown:
            raise TypeError(f"Not options of compute_guide: {sorted(unknown)}.")
        options = {**_guide_defaults(), **guide_kwargs}
        corpus = self._resolve_query(guide_kwargs.get("adata"), None)[0]
        n_rows = options["n_way"] * options["k_shot"]
        # Its own generator: the corpus's rows, not the ones the scouts will draw.
        rows = np.random.default_rng(0).choice(corpus.n_obs, size=min(n_rows, corpus.n_obs))
        x = self._read_rows(
            corpus,
            layer=self.layer,
            units=self.units,
            indices=np.sort(rows),
            library_size=self._stored_library_sizes(corpus, self.units),
            warn=False,
        )
        return estimate_scout_seconds(
            self.module.encoder,
            x,
            n_scouts=options["n_scouts"],
            n_way=options["n_way"],
            n_latent=self.architecture_["n_latent"],
            n_steps=options["n_steps"],
            lr=options["lr"],
            batched=options["batched"],
        )

    def _groups_source(self, groups_key: str | None) -> str:
        """What the scouts drew their classes from, for ``guide_settings_``."""
        if groups_key is not None:
            return f"{groups_key}+kmeans"
        return "labels" if self.labels_key else "kmeans"

    def _scout_groups(
        self,
        corpus: AnnData,
        pool: np.ndarray,
        x: torch.Tensor,
        *,
        n_clusters: int,
        seed: int,
        groups_key: str | None = None,
    ) -> np.ndarray:
        """The pool's labels (``groups_key``'s, else the model's), or K-means clusters elsewhere."""
        key = groups_key or self.labels_key
        if key is None:
            return self._cluster_groups(x, n_clusters=n_clusters, seed=seed)
        if key not in corpus.obs:
            what = "groups_key" if groups_key else "the model's labels column"
            raise KeyError(f"The corpus lacks {what} {key!r}: {list(corpus.obs)}.")
        labels = corpus.obs[key].iloc[pool]
        unlabelled = labels.isna().to_numpy()
        groups = labels.astype(str).to_numpy().astype(object)
        if unlabelled.any():
            clusters = self._cluster_groups(x[unlabelled], n_clusters=n_clusters, seed=seed)
            groups[unlabelled] = [f"cluster {c}" for c in clusters]
        return groups.astype(str)

    def _cluster_groups(self, x: torch.Tensor, *, n_clusters: int, seed: int) -> np.ndarray:
        """K-means clusters of the latent codes of ``x``."""
        self.module.eval()
        latent = torch.cat([self.module.embed(chunk) for chunk in x.split(4096)])
        return cluster_groups(latent.cpu().numpy(), n_clusters=n_clusters, seed=seed)


#: Options of :meth:`GuideMixin.compute_guide` that reshape the scouts' changes into the guide.
_RESHAPING = (
    "statistic", "normalization", "temperature", "top_p", "slope", "intercept", "scale",
)  # fmt: skip


def _guide_defaults() -> dict:
    """The default options of :meth:`GuideMixin.compute_guide`."""
    parameters = inspect.signature(GuideMixin.compute_guide).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.default is not inspect.Parameter.empty and p.name != "adata"
    }
