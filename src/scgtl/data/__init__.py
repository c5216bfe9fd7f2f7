"""Data handling: declared units, gene alignment, batched reading and k-shot sampling."""

from scgtl.data._align import GeneAlignment, align_genes, check_unique_genes
from scgtl.data._checks import check_anndata, check_corpus, check_layer, study_fingerprint
from scgtl.data._genes import (
    N_TOP_GENES,
    check_gene_subset,
    highly_variable_genes,
    training_genes,
)
from scgtl.data._reading import (
    get_matrix,
    iter_log_expression,
    read_log_expression,
    row_sampler,
)
from scgtl.data._sampling import check_labels, labelled_rows, sample_k_shot, support_rows
from scgtl.data._units import (
    check_library_sizes,
    check_matrix,
    check_units_name,
    library_sizes,
    log_expression,
)

__all__ = [
    "N_TOP_GENES",
    "GeneAlignment",
    "align_genes",
    "check_anndata",
    "check_corpus",
    "check_gene_subset",
    "check_labels",
    "check_layer",
    "check_library_sizes",
    "check_matrix",
    "check_unique_genes",
    "check_units_name",
    "get_matrix",
    "highly_variable_genes",
    "iter_log_expression",
    "labelled_rows",
    "library_sizes",
    "log_expression",
    "read_log_expression",
    "row_sampler",
    "sample_k_shot",
    "study_fingerprint",
    "support_rows",
    "training_genes",
]
