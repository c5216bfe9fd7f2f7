"""``scgtl.models.available`` and ``scgtl.models.load``: pre-trained models to start from."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pandas as pd

from scgtl.models._files import model_dir
from scgtl.models._hub import HUB_PREFIX, is_hub_id, load_from_hub
from scgtl.models._registry import MODELS

if TYPE_CHECKING:
    from scgtl.model import GTL
    from scgtl.models._registry import ModelSpec

#: The columns of :func:`available`, in order.
COLUMNS = (
    "corpus", "studies", "tissues", "species", "n_obs", "n_genes", "units", "file_size",
    "sha256", "shipped", "url",
)  # fmt: skip


def available() -> pd.DataFrame:
    """The pre-trained models scgtl can load, one row per model.

    Returns
    -------
    A DataFrame indexed by model name, with the columns ``corpus`` (what it was trained on),
    ``studies``, ``tissues``, ``species`` (comma-separated), ``n_obs`` (corpus cells),
    ``n_genes`` (model genes), ``units`` (what a query may hold), ``file_size`` (bytes of
    ``model.pt``), ``sha256``, ``shipped`` (inside the package, else downloaded) and ``url``.

    Examples
    --------
    >>> scgtl.models.available()
    >>> model = scgtl.models.load(scgtl.models.available().index[0])
    """
    rows = {
        spec.name: {
            "corpus": spec.corpus,
            "studies": ", ".join(spec.studies),
            "tissues": ", ".join(spec.tissues),
            "species": ", ".join(spec.species),
            "n_obs": spec.n_obs,
            "n_genes": spec.n_genes,
            "units": spec.units,
            "file_size": spec.size,
            "sha256": spec.sha256,
            "shipped": spec.shipped,
            "url": spec.url or "",
        }
        for spec in MODELS.values()
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS))
    table.index.name = "name"
    return table


def spec(name: str) -> ModelSpec:
    """The registry entry of ``name``, or an error listing the names there are."""
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(
            f"Unknown model {name!r}; scgtl.models.available() lists {sorted(MODELS)}, "
            f"and a model shared on the Hugging Face Hub is named {HUB_PREFIX}owner/repo."
        )
    return MODELS[name]


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    **kwargs,
) -> GTL:
    """Load a pre-trained model by name, ready for ``fine_tune``, ``predict`` and the benchmark.

    A shipped model is read from inside the package; another is looked for in the mirror
    (``data_dir`` or ``$SCGTL_DATA_DIR``, as ``models/<name>/model.pt``), then the cache
    (``cache_dir``, ``$SCGTL_CACHE_DIR`` or ``~/.cache/scgtl``), then downloaded from its URL
    into the cache. Every file is checked against the registry's sha256 before it is read.
    A hub id, ``"hf:owner/repo"`` (``@revision`` optional), loads a model shared on the Hugging
    Face Hub instead (:func:`load_from_hub`).
    The model has no corpus attached: ``fine_tune(..., transductive=True)`` adapts it on the
    study's own cells alone (100 steps, see :meth:`scgtl.GTL.adapted_to`).

    Parameters
    ----------
    name
        A name of :func:`available`, or a hub id ``"hf:owner/repo[@revision]"``.
    data_dir, cache_dir
        The mirror and the cache, as for :mod:`scgtl.datasets` (for a hub id, ``cache_dir`` is
        the Hugging Face cache, by default ``$HF_HUB_CACHE``).
    download
        Fetch a model that is neither shipped, mirrored nor cached.
    **kwargs
        Passed to :meth:`scgtl.GTL.load` (``accelerator``, ``device``).

    Returns
    -------
    The :class:`~scgtl.GTL`, its guide computed.

    Raises
    ------
    ValueError
        An unknown name, or a file that is not a saved scgtl GTL.
    ChecksumError
        A file whose sha256 is not the registry's (tampered with or truncated); the message
        names the file and both checksums.
    """
    from scgtl.model import GTL

    if is_hub_id(name):
        return load_from_hub(
            name.removeprefix(HUB_PREFIX),
            cache_dir=cache_dir,
            local_files_only=not download,
            **kwargs,
        )
    directory = model_dir(spec(name), data_dir=data_dir, cache_dir=cache_dir, download=download)
    return GTL.load(directory, **kwargs)
