"""recount3 gene-level data: one study in memory, or many streamed into one on-disk corpus.

The file layout follows the recount3 R/Bioconductor package (LieberInstitute/recount3, functions
``locate_url()``, ``locate_url_ann()``, ``annotation_ext()``, ``read_counts()``,
``read_metadata()``, ``expand_sra_attributes()``, ``compute_read_counts()``). Relative to the
recount3 home (default ``http://duffel.rail.bio/recount3``; mirrors: the AWS open-data bucket
``https://recount-opendata.s3.amazonaws.com/recount3/release`` and IDIES at JHU), with ``xx``
the last two characters of the project id and ``src`` the data source (``sra``, or ``gtex`` /
``tcga`` for human)::

    {organism}/data_sources/{src}/gene_sums/{xx}/{project}/{src}.gene_sums.{project}.{ann}.gz
    {organism}/data_sources/{src}/metadata/{xx}/{project}/{src}.{tag}.{project}.MD.gz
    {organism}/annotations/gene_sums/{organism}.gene_sums.{ann}.gtf.gz

where ``tag`` is one of ``{src}`` (the SRA/GTEx/TCGA attributes), ``recount_project``,
``recount_qc``, ``recount_seq_qc``, ``recount_pred``, and ``ann`` the annotation code: human
``G026`` (GENCODE v26, recount3's default), ``G029``, ``F006`` (FANTOM6 CAT), ``R109`` (RefSeq),
``ERCC``, ``SIRV``; mouse ``M023`` (GENCODE vM23, the only one).

A gene-sum file is tab-separated, starts with ``##`` comment lines (annotation, date), then a
header ``gene_id`` + one column per sample (its ``external_id``, the SRA run accession) and one
row per gene of the annotation, in the annotation's order. Its values are **base-pair coverage
sums** (the sum over the gene's bases of the reads covering each base), not read counts.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from scgtl.datasets import _download as dl

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Environment variable naming the recount3 home URL (or a local mirror, e.g. ``file:///...``).
RECOUNT3_URL_ENV = "SCGTL_RECOUNT3_URL"
#: recount3's load balancer, the default of the recount3 R package.
DEFAULT_RECOUNT3_URL = "http://duffel.rail.bio/recount3"

#: Annotation names per organism and the code recount3 puts in its file names; first = default.
ANNOTATIONS: dict[str, dict[str, str]] = {
    "human": {
        "gencode_v26": "G026",
        "gencode_v29": "G029",
        "fantom6_cat": "F006",
        "refseq": "R109",
        "ercc": "ERCC",
        "sirv": "SIRV",
    },
    "mouse": {"gencode_v23": "M023"},
}
#: Data sources ("project homes") per organism.
DATA_SOURCES: dict[str, tuple[str, ...]] = {"human": ("sra", "gtex", "tcga"), "mouse": ("sra",)}
#: Metadata files after the data source's own one; optional, skipped with a warning if absent.
METADATA_TAGS = ("recount_project", "recount_qc", "recount_seq_qc", "recount_pred")
#: Metadata column with the average mapped read length; recount3's ``compute_read_counts()``
#: divides the coverage sums by it (for paired-end data it spans both mates).
READ_LENGTH_COLUMN = "recount_qc.star.average_mapped_length"

#: SRA attribute columns that hold numbers (the rest of the SRA table is text).
_SRA_NUMERIC = {
    "spot_length",
    "paired_nominal_length",
    "paired_nominal_stdev",
    "sample_bases",
    "sample_spots",
    "size",
    "run_total_bases",
    "run_total_spots",
    "num_reads",
    "num_spots",
}
_KEYS = ("rail_id", "external_id", "study")
_CITATION = (
    "Wilks C et al. (2021) recount3: summaries and queries for large-scale RNA-seq expression "
    "and splicing. Genome Biol 22:323. doi:10.1186/s13059-021-02533-6"
)
_LICENSE = (
    "public SRA/GTEx/TCGA-derived summaries; recount3 states no data licence (its R package is "
    "Artistic-2.0): cite recount3 and the original studies"
)

Organism = Literal["human", "mouse"]
CountsMode = Literal["reads", "coverage"]


# --- validation and URLs ----------------------------------------------------------------------


def _check_choice(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(options)}.")


def _check_options(organism: str, annotation: str | None, data_source: str) -> tuple[str, str]:
    """Validate organism / annotation / data source; return ``(annotation name, code)``."""
    _check_choice("organism", organism, ANNOTATIONS)
    _check_choice(f"data_source (for {organism})", data_source, DATA_SOURCES[organism])
    annotation = next(iter(ANNOTATIONS[organism])) if annotation is None else annotation
    _check_choice(f"annotation (for {organism})", annotation, ANNOTATIONS[organism])
    return annotation, ANNOTATIONS[organism][annotation]


def _check_project(project: str, data_source: str) -> None:
    if not isinstance(project, str) or not re.fullmatch(r"[A-Za-z0-9_]{2,}", project):
        raise ValueError(f"project={project!r} is not a recount3 project id such as 'SRP012682'.")
    if data_source == "sra" and not re.fullmatch(r"[DES]RP\d+", project):
        raise ValueError(
            f"project={project!r} is not an SRA study accession (SRP/ERP/DRP + digits, e.g. "
            "'SRP012682'); GTEx tissues and TCGA cancers need data_source='gtex'/'tcga'."
        )


def _annotation_path(organism: str, code: str) -> str:
    return f"{organism}/annotations/gene_sums/{organism}.gene_sums.{code}.gtf.gz"


def recount3_url(base_url: str | None = None) -> str:
    """The recount3 home: ``base_url``, else ``$SCGTL_RECOUNT3_URL``, else recount3's default."""
    url = base_url or os.environ.get(RECOUNT3_URL_ENV) or DEFAULT_RECOUNT3_URL
    return url.rstrip("/")


def recount3_paths(
    project: str,
    *,
    organism: Organism,
    annotation: str | None = None,
    data_source: str = "sra",
) -> dict[str, str]:
    """Paths of a project's gene-level files relative to the recount3 home.

    Returns
    -------
    ``{"gene_sums": ..., "annotation": ..., "metadata.<tag>": ...}`` for the metadata tags
    ``<data_source>``, ``recount_project``, ``recount_qc``, ``recount_seq_qc``, ``recount_pred``.
    """
    _, code = _check_options(organism, annotation, data_source)
    _check_project(project, data_source)
    home = f"{organism}/data_sources/{data_source}"
    shard = project[-2:]
    paths = {
        "gene_sums": (
            f"{home}/gene_sums/{shard}/{project}/{data_source}.gene_sums.{project}.{code}.gz"
        ),
        "annotation": _annotation_path(organism, code),
    }
    for tag in (data_source, *METADATA_TAGS):
        paths[f"metadata.{tag}"] = (
            f"{home}/metadata/{shard}/{project}/{data_source}.{tag}.{project}.MD.gz"
        )
    return paths


def _fetch(relative: str, *, base_url: str, cache: Path) -> Path:
    """Download one recount3 file into the cache (same relative layout), checking its gzip."""
    return dl.download(f"{base_url}/{relative}", cache / relative, check=dl.check_gzip)


# --- parsing ----------------------------------------------------------------------------------


def read_gene_annotation(path: str | os.PathLike) -> pd.DataFrame:
    """Read a recount3 ``*.gene_sums.*.gtf.gz`` into a gene table indexed by ``gene_id``.

    Returns
    -------
    Columns ``gene_symbol`` (GTF ``gene_name``), ``gene_type``, ``bp_length`` (the GTF score
    column, where recount3 puts the summed length of the gene's disjoint exons), ``chrom``,
    ``start``, ``end``, ``strand``; rows in file order.
    """
    names = ["chrom", "source", "feature", "start", "end", "bp_length", "strand", "frame", "attr"]
    gtf = pd.read_csv(
        path, sep="\t", header=None, names=names, dtype=str, keep_default_na=False, quoting=3
    )
    gtf = gtf[~gtf["chrom"].str.startswith("#") & (gtf["feature"] == "gene")]
    if gtf.empty:
        raise ValueError(f"{path} has no 'gene' records; is it a recount3 gene_sums GTF?")

    def attribute(key: str) -> pd.Series:
        return gtf["attr"].str.extract(rf'(?:^|;)\s*{key} "([^"]*)"', expand=False)

    gene_id = attribute("gene_id")
    if gene_id.isna().any():
        raise ValueError(f"{path}: some gene records have no gene_id attribute.")
    symbol = attribute("gene_name")
    table = pd.DataFrame(
        {
            "gene_symbol": symbol.fillna(gene_id).to_numpy(),  # spike-ins have no gene_name
            "gene_type": attribute("gene_type").fillna("").to_numpy(),
            "bp_length": pd.to_numeric(gtf["bp_length"], errors="coerce").to_numpy(),
            "chrom": gtf["chrom"].to_numpy(),
            "start": pd.to_numeric(gtf["start"]).to_numpy(),
            "end": pd.to_numeric(gtf["end"]).to_numpy(),
            "strand": gtf["strand"].to_numpy(),
        },
        index=pd.Index(gene_id.to_numpy(), dtype=str),
    )
    if not table.index.is_unique:
        raise ValueError(f"{path}: gene ids are not unique.")
    return table


def _header(path: Path) -> tuple[int, list[str]]:
    """Number of leading ``##`` lines and the column names of a gene-sum file."""
    n_comments = 0
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("##"):
                n_comments += 1
                continue
            return n_comments, line.rstrip("\n").split("\t")
    raise ValueError(f"{path} has no header line; is it a recount3 gene_sums file?")


def read_gene_sums(
    path: str | os.PathLike,
    *,
    keep: Iterable[str] | None = None,
    chunksize: int = 5000,
) -> tuple[pd.Index, pd.Index, sparse.csr_matrix, pd.Index]:
    """Read a recount3 gene-sum file as a sparse samples x genes matrix of coverage sums.

    The file is read in blocks of ``chunksize`` genes, each made sparse at once, so only one
    dense block is in memory.

    Parameters
    ----------
    path
        A ``*.gene_sums.<project>.<annotation>.gz`` file.
    keep
        Gene ids to keep (others are dropped block by block); ``None`` keeps all.
    chunksize
        Genes per block.

    Returns
    -------
    ``(samples, kept_genes, matrix, all_genes)``: the sample ids (file column order), the kept
    gene ids (file row order), the int64 CSR matrix (samples x kept genes) and every gene id of
    the file (to check it against the annotation).
    """
    path = Path(path)
    n_comments, columns = _header(path)
    if len(columns) < 2 or columns[0] != "gene_id":
        raise ValueError(
            f"{path}: expected a header 'gene_id' + sample ids after the '##' lines, got "
            f"{columns[:3]}."
        )
    samples = pd.Index(columns[1:], dtype=str)
    keep = None if keep is None else pd.Index(keep)
    reader = pd.read_csv(
        path,
        sep="\t",
        skiprows=n_comments,
        index_col=0,
        dtype={c: np.int64 for c in samples} | {"gene_id": str},
        chunksize=chunksize,
    )
    blocks, kept, all_ids = [], [], []
    with reader:
        for chunk in reader:
            all_ids.append(chunk.index.to_numpy())
            if keep is not None:
                chunk = chunk[chunk.index.isin(keep)]
            kept.append(chunk.index.to_numpy())
            blocks.append(sparse.csr_matrix(chunk.to_numpy(dtype=np.int64)))
    if not blocks:
        raise ValueError(f"{path} has no gene rows.")
    matrix = sparse.vstack(blocks, format="csr").T.tocsr()
    return samples, pd.Index(np.concatenate(kept)), matrix, pd.Index(np.concatenate(all_ids))


def _clean_name(name: str) -> str:
    # HDF5 (.h5ad) uses "/" as its path separator, so it cannot be part of a column name.
    return name.strip().lower().replace("/", "_")


def read_metadata(paths: dict[str, Path], *, data_source: str = "sra") -> pd.DataFrame:
    """Read and join a project's recount3 metadata files, one row per sample.

    Parameters
    ----------
    paths
        ``{tag: path}`` with ``tag`` the data source (required) and any of ``recount_project``,
        ``recount_qc``, ``recount_seq_qc``, ``recount_pred``.
    data_source
        The data source, whose own metadata (``sra.sra.<project>.MD.gz``) is the base table.

    Returns
    -------
    Indexed by ``external_id`` (the sample id of the gene-sum columns) with the keys
    ``rail_id`` and ``study`` and every other column as ``<tag>.<column>``, lower case, as
    recount3's ``read_metadata()`` names them (``/`` replaced by ``_``).
    """
    if data_source not in paths:
        raise ValueError(f"The {data_source!r} metadata file is required; got {sorted(paths)}.")
    tables = []
    for tag in (data_source, *(t for t in paths if t != data_source)):
        table = pd.read_csv(
            paths[tag], sep="\t", dtype=str, keep_default_na=False, na_values=["", "NA"]
        )
        table.columns = [_clean_name(c) for c in table.columns]
        missing = [k for k in _KEYS if k not in table.columns]
        if missing:
            raise ValueError(f"{paths[tag]}: metadata file lacks the key column(s) {missing}.")
        table = table.loc[:, ~table.columns.duplicated()].set_index("external_id")
        if not table.index.is_unique:
            raise ValueError(f"{paths[tag]}: duplicated external_id values.")
        if tables:
            table = table.drop(columns=["rail_id", "study"])
        table.columns = [c if c in _KEYS else f"{tag}.{c}" for c in table.columns]
        tables.append(table)
    meta = tables[0].join(tables[1:], how="left") if len(tables) > 1 else tables[0]
    meta.index.name = None
    return meta


def expand_sra_attributes(meta: pd.DataFrame, *, column: str = "sra.sample_attributes"):
    """Split SRA's ``key;;value|key;;value`` sample attributes into ``sra_attribute.<key>``.

    As recount3's ``expand_sra_attributes()`` does: spaces in keys become underscores. Returns
    the new columns (strings) indexed like ``meta``; empty when ``column`` is absent.
    """
    if column not in meta.columns:
        return pd.DataFrame(index=meta.index)
    rows = []
    for text in meta[column]:
        record = {}
        if isinstance(text, str):
            for item in text.split("|"):
                key, sep, value = item.partition(";;")
                if sep and key.strip():
                    record["sra_attribute." + _clean_name(key).replace(" ", "_")] = value.strip()
        rows.append(record)
    return pd.DataFrame(rows, index=meta.index, dtype=object)


def _typed_obs(meta: pd.DataFrame) -> pd.DataFrame:
    """Give every metadata column a dtype that depends only on its name.

    Studies then agree on dtypes, so their tables concatenate into one corpus: QC values and
    SRA size fields are float64, ``rail_id`` int64, everything else categorical text.
    """
    out = {}
    for name, values in meta.items():
        field = name.split(".", 1)[-1]
        numeric = name.startswith(("recount_qc.", "recount_seq_qc.")) or (
            name.split(".", 1)[0] in DATA_SOURCES["human"] and field in _SRA_NUMERIC
        )
        if name == "rail_id":
            out[name] = pd.to_numeric(values).astype(np.int64)
        elif numeric:
            out[name] = pd.to_numeric(values, errors="coerce").astype(np.float64)
        else:
            out[name] = pd.Categorical(values)
    return pd.DataFrame(out, index=meta.index)


# --- genes ------------------------------------------------------------------------------------

GenesOption = Literal["all", "protein_coding"] | Sequence[str]


def select_genes(annotation: pd.DataFrame, genes: GenesOption) -> pd.DataFrame:
    """The annotation rows chosen by ``genes``.

    ``"all"``; ``"protein_coding"`` (``gene_type == "protein_coding"``); or a list of gene ids
    (with or without the ``.version`` suffix) or symbols, kept in the given order; a symbol
    shared by several genes selects all of them.
    """
    if isinstance(genes, str):
        _check_choice("genes", genes, ["all", "protein_coding"])
        if genes == "all":
            return annotation
        chosen = annotation[annotation["gene_type"] == "protein_coding"]
        if chosen.empty:
            raise ValueError(
                "genes='protein_coding' selects nothing: this annotation has no gene_type "
                "'protein_coding' (spike-in annotations such as ERCC have none); use 'all'."
            )
        return chosen
    if not isinstance(genes, Sequence) or not all(isinstance(g, str) for g in genes):
        raise ValueError(
            f"genes must be 'all', 'protein_coding' or a list of gene ids / symbols; got {genes!r}."
        )
    unversioned = pd.Series(annotation.index.str.replace(r"\.\d+$", "", regex=True))
    positions: dict[int, None] = {}
    missing = []
    for gene in dict.fromkeys(genes):
        hits = np.flatnonzero(annotation.index == gene)
        if hits.size == 0:
            hits = np.flatnonzero(unversioned == gene)
        if hits.size == 0:
            hits = np.flatnonzero(annotation["gene_symbol"].to_numpy() == gene)
        if hits.size == 0:
            missing.append(gene)
        positions.update(dict.fromkeys(hits.tolist()))
    if missing:
        raise ValueError(
            f"{len(missing)} of the requested genes are not in the annotation, e.g. {missing[:10]}."
        )
    return annotation.iloc[list(positions)]


def _make_var(annotation: pd.DataFrame, var_names: str) -> pd.DataFrame:
    _check_choice("var_names", var_names, ["gene_id", "gene_symbol"])
    var = annotation.copy()
    var.insert(0, "gene_id", var.index.to_numpy())
    for column in ("gene_symbol", "gene_type", "chrom", "strand"):
        var[column] = var[column].astype("category")
    if var_names == "gene_symbol":
        var.index = ad.utils.make_index_unique(pd.Index(var["gene_symbol"].astype(str)))
    var.index.name = None
    return var


# --- one study --------------------------------------------------------------------------------


def _coverage_to_reads(coverage: sparse.csr_matrix, read_length: np.ndarray) -> sparse.csr_matrix:
    """``round(coverage / read_length)`` per sample, as recount3's ``compute_read_counts()``."""
    reads = sparse.diags(1.0 / read_length) @ coverage.astype(np.float64)
    reads = sparse.csr_matrix(reads)
    np.rint(reads.data, out=reads.data)
    reads.eliminate_zeros()
    return reads.astype(np.float32)


@dataclass(frozen=True)
class _Setup:
    """What every study of one call shares: where the files are and which genes to keep."""

    organism: str
    annotation: str
    data_source: str
    base_url: str
    cache: Path
    all_genes: pd.Index  # every gene of the annotation, in file order
    genes: pd.DataFrame  # the chosen annotation rows, in output order
    var: pd.DataFrame


def _study_files(project: str, setup: _Setup) -> tuple[Path, dict[str, Path]]:
    """Download (or find in the cache) a project's gene sums and metadata files."""
    src = setup.data_source
    paths = recount3_paths(
        project, organism=setup.organism, annotation=setup.annotation, data_source=src
    )

    def fetch(key: str) -> Path:
        return _fetch(paths[key], base_url=setup.base_url, cache=setup.cache)

    try:
        meta = {src: fetch(f"metadata.{src}")}
        sums = fetch("gene_sums")
    except dl.RemoteFileNotFoundError as err:
        raise dl.RemoteFileNotFoundError(
            f"recount3 has no {setup.organism} {src} project {project!r} at {setup.base_url} "
            f"({err}). Check the id and the organism."
        ) from err
    for tag in METADATA_TAGS:
        try:
            meta[tag] = fetch(f"metadata.{tag}")
        except dl.RemoteFileNotFoundError:
            warnings.warn(
                f"recount3 has no {tag} metadata for {project}; its columns are left out.",
                stacklevel=4,
            )
    return sums, meta


def _read_study_counts(sums_path: Path, setup: _Setup) -> tuple[pd.Index, sparse.csr_matrix]:
    """Sample ids and coverage (samples x chosen genes) of a gene-sum file, checked."""
    samples, kept, coverage, file_genes = read_gene_sums(sums_path, keep=setup.genes.index)
    if not file_genes.equals(setup.all_genes):
        extra = file_genes.difference(setup.all_genes)[:5].tolist()
        absent = setup.all_genes.difference(file_genes)[:5].tolist()
        raise ValueError(
            f"{sums_path.name}: its genes do not match the annotation (not in it: {extra}; "
            f"missing: {absent}); the files come from different annotations or are corrupt."
        )
    return samples, coverage[:, kept.get_indexer(setup.genes.index)]


def _study(
    project: str,
    setup: _Setup,
    *,
    counts: str,
    expand_attributes: bool,
    keep_downloads: bool = True,
) -> ad.AnnData:
    """One project as AnnData over the chosen genes."""
    sums_path, meta_paths = _study_files(project, setup)
    samples, coverage = _read_study_counts(sums_path, setup)
    if not keep_downloads:
        sums_path.unlink(missing_ok=True)
    meta = read_metadata(meta_paths, data_source=setup.data_source)
    if set(samples) != set(meta.index):
        raise ValueError(
            f"{project}: the samples of the gene sums and the metadata differ (only in gene "
            f"sums: {samples.difference(meta.index)[:5].tolist()}; only in metadata: "
            f"{meta.index.difference(samples)[:5].tolist()})."
        )
    meta = meta.loc[samples]
    if expand_attributes:
        attributes = expand_sra_attributes(meta, column=f"{setup.data_source}.sample_attributes")
        meta = meta.join(attributes.loc[:, ~attributes.columns.isin(meta.columns)])
    x, samples, meta = _to_units(project, coverage, samples, meta, counts)
    obs = pd.DataFrame(
        {"study": pd.Categorical([project] * samples.size), "sample": samples.to_numpy()},
        index=samples,
    )
    obs = obs.join(_typed_obs(meta.drop(columns=["study"], errors="ignore")))
    return ad.AnnData(x, obs=obs, var=setup.var.copy())


def _to_units(project, coverage, samples, meta, counts):
    """Coverage sums to the requested units; drop samples with no read length for ``reads``."""
    _check_choice("counts", counts, ["reads", "coverage"])
    if counts == "coverage":
        return coverage.astype(np.float64), samples, meta
    if READ_LENGTH_COLUMN not in meta.columns:
        raise ValueError(
            f"{project}: the metadata lacks {READ_LENGTH_COLUMN!r}, needed to turn coverage sums "
            "into read counts; use counts='coverage'."
        )
    length = pd.to_numeric(meta[READ_LENGTH_COLUMN], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(length) & (length > 0)
    if not ok.all():
        warnings.warn(
            f"{project}: {np.count_nonzero(~ok)} sample(s) without an average mapped read length "
            f"(failed alignment?) are dropped, e.g. {samples[~ok][:5].tolist()}.",
            stacklevel=4,
        )
    return _coverage_to_reads(coverage[ok], length[ok]), samples[ok], meta.iloc[ok]


def _source(setup: _Setup, *, counts: str, genes, projects: list[str]) -> tuple[dict, str]:
    """``uns["source"]`` and ``uns["scgtl_units"]`` of a study or corpus."""
    units = (
        "read counts: round(coverage sum / average mapped read length), as recount3's "
        "compute_read_counts()"
        if counts == "reads"
        else "base-pair coverage sums (not read counts)"
    )
    source = {
        "name": "recount3",
        "url": setup.base_url,
        "organism": setup.organism,
        "annotation": setup.annotation,
        "data_source": setup.data_source,
        "projects": list(projects),
        "genes": genes if isinstance(genes, str) else f"{len(genes)} requested genes",
        "license": _LICENSE,
        "citation": _CITATION,
        "units": units,
    }
    # Coverage sums are whole numbers but ~read-length times larger than counts: a count
    # likelihood would be wrong for them, so they are declared normalised values.
    return source, "counts" if counts == "reads" else "normalized"


def _setup(organism, annotation, data_source, genes, var_names, cache_dir, base_url) -> _Setup:
    """Check the options, fetch and read the annotation, choose the genes."""
    annotation_name, code = _check_options(organism, annotation, data_source)
    base = recount3_url(base_url)
    cache = dl.cache_dir(cache_dir) / "recount3"
    table = read_gene_annotation(
        _fetch(_annotation_path(organism, code), base_url=base, cache=cache)
    )
    chosen = select_genes(table, genes)
    return _Setup(
        organism=organism,
        annotation=annotation_name,
        data_source=data_source,
        base_url=base,
        cache=cache,
        all_genes=table.index,
        genes=chosen,
        var=_make_var(chosen, var_names),
    )


def recount3(
    project: str,
    *,
    organism: Organism,
    genes: GenesOption = "all",
    counts: CountsMode = "reads",
    annotation: str | None = None,
    data_source: str = "sra",
    expand_attributes: bool = True,
    var_names: Literal["gene_id", "gene_symbol"] = "gene_id",
    cache_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
) -> ad.AnnData:
    """Gene-level data of one recount3 project: counts, sample metadata and gene annotation.

    Downloads the project's gene sums and metadata files and the organism's gene annotation
    (into ``cache_dir``, resumably, each checked to be a complete gzip stream before it is
    renamed into place) and assembles them as recount3's ``create_rse_manual()`` does.

    recount3's gene sums are base-pair coverage sums, not read counts. With ``counts="reads"``
    (default) they are divided by each sample's average mapped read length
    (``recount_qc.star.average_mapped_length``) and rounded, like recount3's
    ``compute_read_counts()``; for paired-end data that length spans both mates, so the result
    counts fragments. Samples without that length (failed alignments) are dropped with a
    warning.

    Parameters
    ----------
    project
        Study id, e.g. ``"SRP012682"`` (GTEx tissue or TCGA cancer code with
        ``data_source="gtex"``/``"tcga"``).
    organism
        ``"human"`` or ``"mouse"``.
    genes
        ``"all"`` (default), ``"protein_coding"``, or a list of gene ids (versioned or not) or
        symbols.
    counts
        ``"reads"``: read-like counts (see above). ``"coverage"``: the raw coverage sums.
    annotation
        Gene annotation: human ``"gencode_v26"`` (default, as in recount3), ``"gencode_v29"``,
        ``"fantom6_cat"``, ``"refseq"``, ``"ercc"``, ``"sirv"``; mouse ``"gencode_v23"``.
    data_source
        ``"sra"``; for human also ``"gtex"`` or ``"tcga"``.
    expand_attributes
        Split SRA's ``sample_attributes`` into ``sra_attribute.<key>`` columns.
    var_names
        ``"gene_id"`` (versioned GENCODE id) or ``"gene_symbol"`` (made unique).
    cache_dir
        Download cache; defaults to ``$SCGTL_CACHE_DIR`` or ``~/.cache/scgtl``.
    base_url
        recount3 home or mirror (``http(s)://`` or ``file://``); defaults to
        ``$SCGTL_RECOUNT3_URL``, else ``http://duffel.rail.bio/recount3``.

    Returns
    -------
    AnnData, samples x genes, with

    - ``X``: :class:`scipy.sparse.csr_matrix`, float32 whole-number read counts
      (``counts="reads"``) or float64 coverage sums (``counts="coverage"``);
    - ``obs_names``: the samples' ``external_id`` (SRA run accession);
      ``obs["study"]`` (the project), ``obs["sample"]`` (= ``external_id``), ``obs["rail_id"]``
      and every metadata column as ``<file tag>.<column>`` (e.g. ``sra.sample_title``,
      ``recount_qc.star.average_mapped_length``, ``recount_pred.curated.tissue``) plus
      ``sra_attribute.<key>`` (with ``expand_attributes``); QC columns are float64, text
      columns categorical;
    - ``var``: ``gene_id``, ``gene_symbol``, ``gene_type``, ``bp_length``, ``chrom``,
      ``start``, ``end``, ``strand``;
    - ``uns["source"]`` (URL, organism, annotation, license, citation, units) and
      ``uns["scgtl_units"]``: ``"counts"`` for reads, ``"normalized"`` for coverage.

    Raises
    ------
    ValueError
        An unknown organism, annotation, data source, ``genes`` or ``counts`` option, or a
        malformed project id.
    DownloadError
        The files are not in the cache and the network is unreachable.
    RemoteFileNotFoundError
        recount3 has no such project for this organism / data source.
    """
    _check_options(organism, annotation, data_source)
    _check_project(project, data_source)
    _check_choice("counts", counts, ["reads", "coverage"])
    setup = _setup(organism, annotation, data_source, genes, var_names, cache_dir, base_url)
    adata = _study(project, setup, counts=counts, expand_attributes=expand_attributes)
    adata.uns["source"], adata.uns["scgtl_units"] = _source(
        setup, counts=counts, genes=genes, projects=[project]
    )
    return adata


# --- many studies -----------------------------------------------------------------------------


def _check_projects(projects) -> list[str]:
    if isinstance(projects, str):
        raise ValueError(f"projects must be a list of project ids, not the string {projects!r}.")
    projects = list(projects)
    if not projects:
        raise ValueError("projects is empty; pass at least one recount3 project id.")
    duplicated = sorted({p for p in projects if projects.count(p) > 1})
    if duplicated:
        raise ValueError(f"projects lists {duplicated} more than once.")
    return projects


def _write_elem(group, key: str, value) -> None:
    """Replace ``group[key]`` by ``value`` in anndata's on-disk encoding."""
    try:
        from anndata.io import write_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import write_elem
    if key in group:
        del group[key]
    write_elem(group, key, value)


def _finish_corpus(path: Path, var: pd.DataFrame, uns: dict) -> None:
    """Write ``var`` (all annotation columns, which on-disk concatenation drops) and ``uns``."""
    import h5py

    with h5py.File(path, "r+") as f:
        index_key = f["var"].attrs["_index"]
        names = pd.Index(np.asarray(f["var"][index_key]).astype(str))
        if not names.equals(var.index):
            var = var.loc[names]
        _write_elem(f, "var", var)
        if "uns" not in f:  # on-disk concatenation writes no uns at all
            _write_elem(f, "uns", uns)
        else:
            for key, value in uns.items():
                _write_elem(f["uns"], key, value)


def recount3_corpus(
    projects: Sequence[str],
    *,
    organism: Organism,
    out: str | os.PathLike,
    genes: GenesOption = "protein_coding",
    counts: CountsMode = "reads",
    annotation: str | None = None,
    data_source: str = "sra",
    expand_attributes: bool = False,
    var_names: Literal["gene_id", "gene_symbol"] = "gene_id",
    skip_failed: bool = False,
    keep_downloads: bool = True,
    overwrite: bool = False,
    cache_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    max_loaded_elems: int = 100_000_000,
) -> ad.AnnData:
    """Stream many recount3 projects into one on-disk ``.h5ad`` corpus.

    Studies are processed one at a time: each is downloaded, parsed, restricted to the chosen
    genes (all studies share the annotation, so they share the gene set) and written to a
    temporary ``.h5ad``; the parts are then concatenated on disk with
    :func:`anndata.experimental.concat_on_disk`, so memory holds one study (plus the
    concatenation's ``max_loaded_elems`` buffer), never the corpus. The result is written to a
    temporary file beside ``out`` and renamed at the end: a failure never leaves a half-written
    ``out``.

    Parameters
    ----------
    projects
        recount3 project ids, e.g. ``["SRP012682", "SRP060340"]``.
    organism
        ``"human"`` or ``"mouse"``.
    out
        Path of the ``.h5ad`` to write.
    genes
        ``"protein_coding"`` (default), ``"all"`` or a list of gene ids / symbols.
    counts
        ``"reads"`` (read-like counts) or ``"coverage"`` (raw coverage sums); see
        :func:`recount3`.
    annotation
        Gene annotation, see :func:`recount3`.
    data_source
        ``"sra"``; for human also ``"gtex"`` or ``"tcga"``.
    expand_attributes
        Add ``sra_attribute.<key>`` columns. Off by default: every study has its own keys, and
        over thousands of studies their union would make ``obs`` thousands of columns wide.
        The raw ``sra.sample_attributes`` text is kept either way.
    var_names
        ``"gene_id"`` or ``"gene_symbol"``.
    skip_failed
        Skip (with a warning) a project whose files cannot be downloaded or parsed, instead of
        aborting. Skipped ids are listed in ``uns["source"]["skipped"]``.
    keep_downloads
        Keep the downloaded gene-sum files in the cache; ``False`` deletes each after use,
        which bounds the disk used by a large corpus.
    overwrite
        Replace an existing ``out``; otherwise an existing ``out`` raises
        :class:`FileExistsError`.
    cache_dir
        Download cache; defaults to ``$SCGTL_CACHE_DIR`` or ``~/.cache/scgtl``.
    base_url
        recount3 home or mirror; defaults to ``$SCGTL_RECOUNT3_URL`` or recount3's own.
    max_loaded_elems
        Most matrix elements held in memory while concatenating.

    Returns
    -------
    The corpus opened **backed** (``anndata.read_h5ad(out, backed="r")``): ``X`` stays on disk
    (CSR, float32 counts or float64 coverage), ``obs`` holds ``study``, ``sample`` and the
    metadata of every study (a column missing in a study is NaN there), ``var`` the gene
    annotation, ``uns["source"]`` the provenance (projects included and skipped) and
    ``uns["scgtl_units"]``. Call ``.file.close()`` when done, or ``.to_memory()`` for a small
    corpus.

    Raises
    ------
    ValueError
        An empty or duplicated project list, an unknown option, or no project succeeded.
    FileExistsError
        ``out`` exists and ``overwrite`` is False.
    DownloadError
        A download failed and ``skip_failed`` is False.
    """
    from anndata.experimental import concat_on_disk

    projects = _check_projects(projects)
    _check_options(organism, annotation, data_source)
    for project in projects:
        _check_project(project, data_source)
    _check_choice("counts", counts, ["reads", "coverage"])
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it.")
    setup = _setup(organism, annotation, data_source, genes, var_names, cache_dir, base_url)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".parts", dir=out.parent))
    try:
        parts, done, skipped, seen = [], [], [], set()
        for i, project in enumerate(projects):
            try:
                adata = _study(
                    project,
                    setup,
                    counts=counts,
                    expand_attributes=expand_attributes,
                    keep_downloads=keep_downloads,
                )
            except (OSError, ValueError) as err:
                if not skip_failed:
                    raise
                warnings.warn(f"Skipping {project}: {err}", stacklevel=2)
                skipped.append(project)
                continue
            if adata.n_obs == 0:
                warnings.warn(f"Skipping {project}: no samples left.", stacklevel=2)
                skipped.append(project)
                continue
            repeated = seen.intersection(adata.obs_names)
            if repeated:
                raise ValueError(f"{project} repeats samples of earlier projects: {repeated}.")
            seen.update(adata.obs_names)
            part = work / f"{i:06d}.h5ad"
            adata.write_h5ad(part)
            parts.append(part)
            done.append(project)
            del adata
        if not parts:
            raise ValueError(f"None of the projects could be loaded (skipped: {skipped}).")
        tmp_out = work / "corpus.h5ad"
        concat_on_disk(parts, tmp_out, join="outer", max_loaded_elems=max_loaded_elems)
        source, units = _source(setup, counts=counts, genes=genes, projects=done)
        source["skipped"] = skipped
        _finish_corpus(tmp_out, setup.var, {"source": source, "scgtl_units": units})
        os.replace(tmp_out, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ad.read_h5ad(out, backed="r")
