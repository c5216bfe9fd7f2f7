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

#: Below this fraction of the model's genes found in a query, the query is refused: nearly all
#: of the model's input would be zero-filled. 5 %: the lowest overlap among the project's own
#: uses is 732 of 8,919 genes (8.2 %, ``pbmc68k_reduced`` against the all-genes model of
#: ``docs/research/recipe.md``, "Ablation"; 269 of 2,000 = 13 % with the default 2,000 genes),
#: which must still work.
MIN_GENE_FRACTION = 0.05

#: Below this fraction of the model's genes found, the alignment warning also says that more
#: than half of the model's input is zero-filled, so predictions and their confidences (which do
#: not account for the missing genes) may be unreliable.
LOW_GENE_FRACTION = 0.5

#: Largest value believable in ``units="log1p"``: log1p of library-size-normalised expression
#: stays far below it (log1p of 10,000 is 9.2, of a million 13.8); counts or normalised values
#: declared as log1p by mistake go far above it.
MAX_LOG1P = 20.0
