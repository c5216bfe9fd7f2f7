"""Sharing a model on the Hugging Face Hub, in scvi-tools' hub format (:mod:`scvi.hub`).

A hub folder is what :class:`scvi.hub.HubModel` reads: ``model.pt`` (here the compact form of
:func:`~scgtl.models.write_compact`), ``_scvi_required_metadata.json`` (its
:class:`~scvi.hub.HubMetadata`: class ``GTL`` of module ``scgtl``) and a ``README.md`` model card.
scvi-tools pushes it (:meth:`~scvi.hub.HubModel.push_to_huggingface_hub`) and
``huggingface_hub`` downloads and caches it; scgtl only checks what it holds and loads it.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scgtl.model._base import staged_directory
from scgtl.models._files import MODEL_FILE, write_compact

if TYPE_CHECKING:
    from scvi.hub import HubModel

    from scgtl.model import GTL

#: scvi-tools' name for the hub metadata file (``scvi.hub._constants``); a README is the card.
METADATA_FILE = "_scvi_required_metadata.json"
CARD_FILE = "README.md"
HUB_FILES = (MODEL_FILE, METADATA_FILE, CARD_FILE)
#: What a hub id is written with where a registry name or a directory may also stand.
HUB_PREFIX = "hf:"
_INSTALL = "pip install 'scgtl[hub]'"


def is_hub_id(name: object) -> bool:
    """Whether ``name`` is a hub id, ``hf:owner/repo`` (or ``hf://owner/repo``, ``@revision``)."""
    return isinstance(name, str) and name.startswith(HUB_PREFIX)


def parse_hub_id(name: str) -> tuple[str, str | None]:
    """``"hf:owner/repo@rev"`` as ``("owner/repo", "rev")``; the revision may be left out."""
    repo = name[len(HUB_PREFIX) :].lstrip("/")
    repo, _, revision = repo.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(
            f"{name!r} is not a hub id; write {HUB_PREFIX}owner/repo (optionally @revision)."
        )
    return repo, revision or None


def save_hub_folder(
    model: GTL,
    directory: str | os.PathLike,
    *,
    description: str,
    license_info: str = "mit",
    tissues: Sequence[str] = (),
    repo_id: str | None = None,
    overwrite: bool = False,
) -> HubModel:
    """Write ``model`` as an scvi-tools hub folder, ready for the Hugging Face Hub.

    The folder holds the compact model file (half-precision weights and guide, no corpus, no
    history: :func:`~scgtl.models.write_compact`), scvi-tools' hub metadata and a model card.
    Written under a temporary name and renamed when complete.

    Parameters
    ----------
    model
        A pre-trained :class:`~scgtl.GTL` with its guide.
    directory
        The folder to write.
    description
        What the model was pre-trained on, for the card.
    license_info
        The licence of the weights, for the card's header.
    tissues
        The corpus's tissues, as the card's ``tissue:`` tags.
    repo_id
        ``owner/name`` it will be shared as, for the card's example.
    overwrite
        Replace an existing folder.

    Returns
    -------
    The :class:`scvi.hub.HubModel` of the folder: ``push_to_huggingface_hub`` shares it
    (or call :func:`push_to_hub`).
    """
    hub = _hub_module()
    if getattr(model, "guide_", None) is None:
        raise ValueError(
            "The model has no guide: run model.compute_guide() before sharing it, so that "
            "fine_tune can use it."
        )
    with staged_directory(directory, overwrite=overwrite) as staging:
        compact = write_compact(model, staging / "compact")
        shutil.move(compact, staging / MODEL_FILE)
        (staging / "compact").rmdir()
        metadata = _metadata(model)
        card = _model_card(model, description, license_info, tissues, repo_id)
        hub.HubModel(str(staging), metadata=metadata, model_card=card).save(overwrite=True)
    return hub.HubModel(str(directory))


def push_to_hub(
    model: GTL,
    repo_id: str,
    *,
    description: str,
    token: str | None = None,
    private: bool = False,
    license_info: str = "mit",
    tissues: Sequence[str] = (),
    folder: str | os.PathLike | None = None,
) -> HubModel:
    """Share ``model`` on the Hugging Face Hub as ``repo_id``, through scvi-tools' hub.

    The hub folder of :func:`save_hub_folder` is written (to ``folder``, else a temporary one)
    and uploaded by :meth:`scvi.hub.HubModel.push_to_huggingface_hub`, which creates the
    repository if it does not exist. :func:`load_from_hub` (or ``scgtl.models.load("hf:" +
    repo_id)``) reads it back.

    Parameters
    ----------
    model
        A pre-trained :class:`~scgtl.GTL` with its guide.
    repo_id
        ``owner/name`` of the model repository.
    description, license_info, tissues
        As for :func:`save_hub_folder`.
    token
        A Hugging Face token with write access; ``None`` uses the logged-in one (``hf auth login``
        or ``$HF_TOKEN``).
    private
        Create the repository as private.
    folder
        Keep the hub folder here (it must not exist); by default it is removed after the upload.

    Returns
    -------
    The pushed :class:`scvi.hub.HubModel`.
    """
    parse_hub_id(HUB_PREFIX + repo_id)
    scratch = None
    if folder is None:
        import tempfile

        scratch = tempfile.mkdtemp(prefix="scgtl-hub-")
        folder = Path(scratch) / "model"
    try:
        hub_model = save_hub_folder(
            model,
            folder,
            description=description,
            license_info=license_info,
            tissues=tissues,
            repo_id=repo_id,
        )
        with warnings.catch_warnings():
            # scvi-tools adds its own model classes to its collections and warns for others.
            warnings.filterwarnings("ignore", message="No collection found for this model")
            # push_anndata=False: there is no AnnData to share, and it is the branch of
            # push_to_huggingface_hub that uploads the folder's files.
            hub_model.push_to_huggingface_hub(
                repo_id,
                repo_token=token,
                repo_create=True,
                repo_create_kwargs={"private": private, "exist_ok": True},
                push_anndata=False,
            )
        return hub_model
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def load_from_hub(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    **kwargs,
) -> GTL:
    """Load a :class:`~scgtl.GTL` shared on the Hugging Face Hub (by :func:`push_to_hub`).

    ``huggingface_hub`` downloads the hub folder's three files into its cache (``cache_dir``,
    else ``$HF_HUB_CACHE``) and reads them from there afterwards, offline too
    (``local_files_only=True`` or ``$HF_HUB_OFFLINE=1``). The folder's scvi-tools metadata must
    name scgtl's ``GTL``.

    Parameters
    ----------
    repo_id
        ``owner/name`` of the model repository.
    revision
        A branch, tag or commit; pin a commit for a reproducible analysis.
    cache_dir
        The Hugging Face cache to use.
    local_files_only
        Read the cache only, never the network.
    **kwargs
        Passed to :meth:`scgtl.GTL.load` (``accelerator``, ``device``).

    Returns
    -------
    The :class:`~scgtl.GTL`, its guide computed, no corpus attached.

    Raises
    ------
    ImportError
        ``huggingface_hub`` is not installed (``pip install 'scgtl[hub]'``).
    FileNotFoundError
        The repository (or revision) is not in the cache and the network may not be used.
    ValueError
        The repository holds another kind of model (e.g. an scvi-tools ``SCVI``).
    """
    from scgtl.model import GTL

    repo_id, pinned = parse_hub_id(HUB_PREFIX + repo_id)
    folder = _download(repo_id, revision or pinned, cache_dir, local_files_only)
    metadata = _hub_module().HubModel(str(folder), model_card=_card_or_blank(folder)).metadata
    if (metadata.model_parent_module, metadata.model_cls_name) != ("scgtl", "GTL"):
        raise ValueError(
            f"Hub model {repo_id} holds a {metadata.model_parent_module}."
            f"{metadata.model_cls_name}, not an scgtl.GTL (scvi.hub.HubModel loads scvi-tools' "
            "models; scgtl.models.load reads pre-trained scgtl models)."
        )
    return GTL.load(folder, **kwargs)


def _download(repo_id: str, revision, cache_dir, local_files_only: bool) -> Path:
    """The snapshot folder of ``repo_id`` in the Hugging Face cache, downloaded if need be."""
    _hub_module()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=list(HUB_FILES),
            local_files_only=local_files_only,
        )
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"Hub model {repo_id} (revision {revision or 'main'}) is not in the Hugging Face "
            f"cache {cache_dir or '(default)'} and the network may not be used: {err}"
        ) from err
    folder = Path(folder)
    missing = [name for name in (MODEL_FILE, METADATA_FILE) if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"Hub model {repo_id} has no {', '.join(missing)}: it is not an scvi-tools hub "
            "model (scgtl.models.push_to_hub writes one)."
        )
    return folder


def _card_or_blank(folder: Path):
    """The folder's model card, or an empty one (the card is not needed to load the model)."""
    from huggingface_hub import ModelCard

    card = folder / CARD_FILE
    return ModelCard(card.read_text()) if card.is_file() else ModelCard("")


def _metadata(model: GTL):
    """scvi-tools' hub metadata of a GTL: the versions it was saved with and its class."""
    from importlib.metadata import version

    hub = _hub_module()
    return hub.HubMetadata(
        scvi_version=model.registry["scvi_version"],
        anndata_version=version("anndata"),
        model_cls_name=type(model).__name__,
        model_parent_module="scgtl",
    )


def _model_card(
    model: GTL, description: str, license_info: str, tissues: Sequence[str], repo_id: str | None
):
    """A model card with scvi-tools' hub tags and how to load the model with scgtl.

    scvi-tools' card template (``HubModelCardHelper``) knows its own model classes only, so the
    card is written here with ``huggingface_hub``'s card classes and the same tags.
    """
    from importlib.metadata import version

    from huggingface_hub import ModelCard, ModelCardData

    tags = [
        "biology", "genomics", "single-cell", "scgtl", "model_cls_name:GTL",
        f"scvi_version:{model.registry['scvi_version']}", f"anndata_version:{version('anndata')}",
        "modality:rna", *(f"tissue:{tissue}" for tissue in tissues),
    ]  # fmt: skip
    header = ModelCardData(license=license_info, library_name="scvi-tools", tags=tags)
    n_genes = model.summary_stats["n_vars"]
    shared_as = repo_id or "OWNER/NAME"
    settings = json.dumps(model.init_params_.get("non_kwargs", {}), indent=2, default=str)
    return ModelCard(
        f"---\n{header.to_yaml()}\n---\n\n"
        "# A Guided Transfer Learning model (scgtl)\n\n"
        f"{description}\n\n"
        f"A pre-trained `scgtl.GTL` over {n_genes} genes, with its guide: fine-tune it on a few "
        "labelled cells of your study.\n\n"
        "```python\nimport scgtl\n\n"
        f'model = scgtl.models.load("{HUB_PREFIX}{shared_as}")\n'
        'clf = model.fine_tune(study, labels_key="cell_type", k_shot=5)\n'
        "clf.predict(study)\n```\n\n"
        f"## Settings\n\n```json\n{settings}\n```\n"
    )


def _hub_module():
    """:mod:`scvi.hub`, or an error saying how to install what it needs."""
    try:
        import huggingface_hub  # noqa: F401
        import scvi.hub
    except ImportError as err:
        raise ImportError(
            f"Sharing models on the Hugging Face Hub needs huggingface_hub: {_INSTALL}."
        ) from err
    return scvi.hub
