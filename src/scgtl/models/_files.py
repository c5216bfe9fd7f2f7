"""Model files: finding, verifying and downloading them, and writing the compact shipped form."""

from __future__ import annotations

import os
import shutil
import uuid
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from scgtl.datasets import _download as dl
from scgtl.model._base import staged_directory
from scgtl.models._registry import SHIPPED_DIR

if TYPE_CHECKING:
    from scgtl.model import GTL
    from scgtl.models._registry import ModelSpec

MODEL_FILE = "model.pt"
#: Sub-folder of the data mirror and of the cache that holds model directories.
MODELS_DIR = "models"


def shipped_dir(name: str) -> Path:
    """Where a shipped model's directory lies inside the installed package."""
    return Path(str(resources.files("scgtl.models"))) / SHIPPED_DIR / name


def model_dir(
    spec: ModelSpec,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """The directory holding ``spec``'s verified ``model.pt``: shipped, mirror, cache, network.

    Raises
    ------
    ChecksumError
        A file whose sha256 (or size) is not the registry's; the message names the file and
        both checksums.
    FileNotFoundError
        A model that is not shipped, in neither the mirror nor the cache, with ``download=False``.
    DownloadError
        It had to be downloaded and the network is unreachable.
    """
    if spec.shipped:
        directory = shipped_dir(spec.name)
        verify_model_file(directory / MODEL_FILE, spec)
        return directory
    mirror = dl.data_dir(data_dir)
    if mirror is not None and (mirror / MODELS_DIR / spec.name / MODEL_FILE).is_file():
        directory = mirror / MODELS_DIR / spec.name
        verify_model_file(directory / MODEL_FILE, spec)
        return directory
    directory = dl.cache_dir(cache_dir) / MODELS_DIR / spec.name
    cached = directory / MODEL_FILE
    if not cached.is_file() and not download:
        raise FileNotFoundError(
            f"Model {spec.name!r} is not shipped and is in neither the mirror nor the cache "
            f"({cached}); download=False."
        )
    dl.download(spec.url, cached, sha256=spec.sha256, size=spec.size)
    return directory


def verify_model_file(path: Path, spec: ModelSpec) -> None:
    """Refuse a model file that is missing, truncated or not the registry's (by sha256)."""
    if not path.is_file():
        raise FileNotFoundError(f"Model {spec.name!r}: {path} does not exist.")
    actual = dl.sha256sum(path)
    if actual != spec.sha256:
        size = path.stat().st_size
        what = "truncated" if size < spec.size else "changed or a different version"
        raise dl.ChecksumError(
            f"Model file {path} has sha256 {actual} ({size} bytes), but model {spec.name!r} has "
            f"sha256 {spec.sha256} ({spec.size} bytes): it is {what}. Reinstall scgtl, or "
            "delete the file so that it is downloaded again."
        )


def write_compact(model: GTL, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save ``model`` as a shipped model is: half-precision weights, no corpus, no history.

    Fine-tuning, prediction and adaptation need the weights, the guide and the registry only;
    the training history and the corpus are left out. Float tensors are stored as float16
    (halving the file) and read back as float32 by :meth:`scgtl.GTL.load`; the measured-genes
    table keeps its booleans. Written under a temporary name and renamed when complete.

    Returns
    -------
    The path of the ``model.pt`` written.
    """
    import torch

    with staged_directory(directory, overwrite=overwrite) as staging:
        model.save(staging / "full")
        saved = torch.load(staging / "full" / MODEL_FILE, map_location="cpu", weights_only=False)
        saved["model_state_dict"] = _half(saved["model_state_dict"])
        attrs = saved["attr_dict"]
        attrs["history_"] = None
        if attrs.get("guide_") is not None:
            attrs["guide_"] = _half(attrs["guide_"])
        _drop_run_details(attrs)
        shutil.rmtree(staging / "full")
        torch.save(saved, staging / MODEL_FILE)
    return Path(directory) / MODEL_FILE


def _drop_run_details(attrs: dict) -> None:
    """Leave out what differs between two builds of the same model, so the bytes are the same.

    The run's name holds its start time, the registry a random id of the corpus, and the
    train/validation split is the corpus's (not needed without it). The same weights then give
    the same file, whatever the directory is called.
    """
    import numpy as np

    attrs["run_name_"] = attrs["run_id_"] = "scgtl.models"
    for split in ("train_indices_", "validation_indices_", "test_indices_"):
        if split in attrs:
            attrs[split] = np.zeros(0, dtype=np.int64)
    registry = attrs["registry_"]
    registry["_scvi_uuid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "scgtl.models"))


def _half(tensors: dict) -> dict:
    """Float32 tensors as float16; the others (booleans, integers) unchanged."""
    import torch

    return {
        k: v.half() if isinstance(v, torch.Tensor) and v.dtype == torch.float32 else v
        for k, v in tensors.items()
    }
