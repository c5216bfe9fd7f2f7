"""scgtl: Guided Transfer Learning for few-shot RNA-seq classification."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scgtl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from scgtl import benchmark, data, datasets, guide, module, train
from scgtl.model import GTL, GTLClassifier

__all__ = [
    "GTL",
    "GTLClassifier",
    "__version__",
    "benchmark",
    "data",
    "datasets",
    "guide",
    "module",
    "train",
]
