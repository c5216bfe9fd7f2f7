"""scgtl: Guided Transfer Learning for few-shot RNA-seq classification.

Importing ``scgtl`` is light: the models and subpackages (which need torch, scvi-tools and
scikit-learn) load on first use, so that ``scgtl --help`` answers at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from scgtl._settings import settings
from scgtl._version import package_version

__version__ = package_version()

if TYPE_CHECKING:
    from scgtl import benchmark, data, datasets, guide, models, module, pl, tl, train
    from scgtl.model import GTL, FineTunePlan, GTLClassifier

#: Public names and the module each is loaded from on first use.
_LAZY = {
    "FineTunePlan": "scgtl.model",
    "GTL": "scgtl.model",
    "GTLClassifier": "scgtl.model",
    "benchmark": "scgtl.benchmark",
    "data": "scgtl.data",
    "datasets": "scgtl.datasets",
    "guide": "scgtl.guide",
    "models": "scgtl.models",
    "module": "scgtl.module",
    "pl": "scgtl.pl",
    "tl": "scgtl.tl",
    "train": "scgtl.train",
}

__all__ = [
    "FineTunePlan",
    "GTL",
    "GTLClassifier",
    "__version__",
    "benchmark",
    "data",
    "datasets",
    "guide",
    "models",
    "module",
    "pl",
    "settings",
    "tl",
    "train",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'scgtl' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__ == f"scgtl.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
