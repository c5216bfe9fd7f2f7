"""User-facing models: they orchestrate the data, module and training layers."""

from scgtl.model._classifier import GTLClassifier
from scgtl.model._gtl import GTL

__all__ = ["GTL", "GTLClassifier"]
