"""Data handling: units, gene alignment, batched reading, multi-file corpora, k-shot sampling."""

import importlib
from typing import TYPE_CHECKING

from scgtl.data._align import GeneAlignment, align_genes
from scgtl.data._checks import (
    study_fingerprint,
)
from scgtl.data._genes import (
    N_TOP_GENES,
    highly_variable_genes,
    training_genes,
)
from scgtl.data._reading import (
    get_matrix,
    iter_log_expression,
    iter_log_expression_views,
    read_log_expression,
    row_sampler,
)
from scgtl.data._sampling import labelled_rows, sample_k_shot, support_rows
from scgtl.data._studies import Study, concat_studies, human_symbols
from scgtl.data._units import (
    library_sizes,
    log_expression,
)

if TYPE_CHECKING:
    from scgtl.data._collection import (
        FILE_KEY,
        CollectionMatrix,
        CorpusCollection,
        read_collection,
    )

#: Loaded on first use: multi-file corpora need scvi-tools, several seconds to import.
_LAZY = {
    name: "scgtl.data._collection"
    for name in ("FILE_KEY", "CollectionMatrix", "CorpusCollection", "read_collection")
}

__all__ = [
    "FILE_KEY",
    "N_TOP_GENES",
    "Study",
    "CollectionMatrix",
    "CorpusCollection",
    "GeneAlignment",
    "align_genes",
    "concat_studies",
    "get_matrix",
    "highly_variable_genes",
    "human_symbols",
    "iter_log_expression",
    "iter_log_expression_views",
    "labelled_rows",
    "library_sizes",
    "log_expression",
    "read_collection",
    "read_log_expression",
    "row_sampler",
    "sample_k_shot",
    "study_fingerprint",
    "support_rows",
    "training_genes",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'scgtl.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
