"""Pre-trained models to start from, as CellTypist's ``celltypist.models``.

``available()`` lists them, ``load(name)`` returns a :class:`~scgtl.GTL` ready for
``fine_tune``: no corpus and no pre-training needed. At least one model ships inside the package;
others are downloaded (URL, sha256, cache; ``$SCGTL_DATA_DIR/models/<name>/`` as an offline
mirror). ``build_model`` is the recipe that made the shipped one, from the public studies of
the data mirror (``scgtl models build``). ``push_to_hub`` shares a model on the Hugging Face Hub
in scvi-tools' hub format and ``load("hf:owner/repo")`` reads it back (the ``hub`` extra).
Importing this module does no I/O.
"""

from scgtl.models._api import available, load
from scgtl.models._build import build_model, pretrain_corpus
from scgtl.models._corpus import all_study_names, build_corpus, corpus_studies
from scgtl.models._files import write_compact
from scgtl.models._hub import load_from_hub, push_to_hub, save_hub_folder
from scgtl.models._registry import MODELS, ModelSpec
from scgtl.models._shipped import DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ModelSpec",
    "all_study_names",
    "available",
    "build_corpus",
    "build_model",
    "corpus_studies",
    "load",
    "load_from_hub",
    "pretrain_corpus",
    "push_to_hub",
    "save_hub_folder",
    "write_compact",
]
