from __future__ import annotations

from typing import Literal

#: Units an expression matrix can be declared in.
UNITS = ("counts", "normalized", "log1p")
Units = Literal["counts", "normalized", "log1p"]

#: Library size that ``counts`` / ``normalized`` rows are scaled to before ``log1p``.
TARGET_SUM = 1e4

#: Default prefix of the keys :meth:`scgtl.GTLClassifier.predict` writes.
DEFAULT_KEY_ADDED = "scgtl"

#: Below this many shared genes a query is refused: the model would see mostly zeros.
MIN_GENE_OVERLAP = 10
