"""The pre-trained models scgtl knows: what each was trained on, its file and checksum."""

from __future__ import annotations

from dataclasses import dataclass

#: Where the shipped model files lie inside the installed package.
SHIPPED_DIR = "_files"


@dataclass(frozen=True)
class ModelSpec:
    """One pre-trained model of :func:`scgtl.models.available`.

    Attributes
    ----------
    name
        Registry name, for :func:`scgtl.models.load` and ``scgtl fine-tune --model``.
    corpus
        What it was pre-trained on, in a few words.
    studies, tissues, species
        The corpus's studies, tissues and species.
    n_obs, n_genes
        Corpus cells and model genes.
    units
        What a query may be: the model depth-normalises counts and normalised values alike.
    sha256, size
        Checksum and size in bytes of its ``model.pt``.
    url
        Where a model that is not shipped is downloaded from; ``None`` for a shipped one.
    build
        The command that rebuilds the file from the public data.
    """

    name: str
    corpus: str
    studies: tuple[str, ...]
    tissues: tuple[str, ...]
    species: tuple[str, ...]
    n_obs: int
    n_genes: int
    units: str
    sha256: str
    size: int
    url: str | None = None
    build: str = ""

    @property
    def shipped(self) -> bool:
        """Whether the file is inside the package (else it is downloaded from ``url``)."""
        return self.url is None


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (a name may be registered once)."""
    if spec.name in MODELS:
        raise ValueError(f"A model named {spec.name!r} is already registered.")
    MODELS[spec.name] = spec
    return spec
