"""scgtl: Guided Transfer Learning for few-shot RNA-seq classification."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scgtl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from scgtl import data, guide, module, train  # noqa: E402
from scgtl.model import GTL, GTLClassifier  # noqa: E402

__all__ = ["GTL", "GTLClassifier", "__version__", "data", "guide", "module", "train"]
