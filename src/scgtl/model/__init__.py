"""User-facing models: they orchestrate the data, module and training layers."""

from scgtl.model._classifier import GTLClassifier
from scgtl.model._gtl import GTL
from scgtl.model._plan import FineTunePlan

__all__ = ["GTL", "FineTunePlan", "GTLClassifier"]
