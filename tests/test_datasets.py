"""Tests of scgtl.datasets, all offline.

recount3 is exercised on small files in recount3's real layout and format, written by the tests
themselves and served from ``file://`` or from an HTTP server on 127.0.0.1. The public sets are
loaded from the mirror in ``$SCGTL_DATA_DIR`` / ``../shared/data`` (the ``shared_data_dir``
fixture skips when it is absent), both as shipped ``.h5ad`` and converted from the original R
files with ``rdata``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import threading
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scgtl import datasets
from scgtl.datasets import _download, _public, _recount3

# --- recount3 fixtures in recount3's own format --------------------------------------------------

#: (gene_id, gene_name, gene_type, bp_length, chrom, start, end, strand), GENCODE vM23 style.
GENES = [
    ("ENSMUSG00000102693.1", "4933401J01Rik", "TEC", 1070, "chr1", 3073253, 3074322, "+"),
    ("ENSMUSG00000064842.1", "Gm26206", "snRNA", 110, "chr1", 3102016, 3102125, "+"),
    ("ENSMUSG00000051951.5", "Xkr4", "protein_coding", 6094, "chr1", 3205901, 3671498, "-"),
    ("ENSMUSG00000000001.4", "Gnai3", "protein_coding", 3262, "chr3", 108107280, 108146146, "-"),
    ("ENSMUSG00000000003.15", "Pbsn", "protein_coding", 902, "chrX", 77837901, 77853623, "-"),
]
GENE_IDS = [g[0] for g in GENES]
PROTEIN_CODING = [g[0] for g in GENES if g[2] == "protein_coding"]


@dataclasses.dataclass
class Study:
    """A synthetic recount3 project: true read counts and the read length of every sample."""

    project: str
    samples: list[str]
    reads: np.ndarray  # samples x genes
    read_length: list[float | None]
    tissue: str
    with_pred: bool = True

    @property
    def coverage(self) -> np.ndarray:
        length = np.array([np.nan if v is None else v for v in self.read_length])
        coverage = np.rint(self.reads * np.nan_to_num(length, nan=50.0)[:, None])
        return coverage.astype(np.int64)


def _study(project, n, seed, *, tissue, with_pred=True, lengths=None, first_rail=1000):
    rng = np.random.default_rng(seed)
    reads = rng.poisson(30, size=(n, len(GENES))) * rng.integers(0, 2, size=(n, len(GENES)))
    samples = [f"SRR{seed}{i:04d}" for i in range(n)]
    lengths = lengths or [75.0 if i % 2 else 37.64 for i in range(n)]
    return Study(project, samples, reads, lengths, tissue, with_pred)


def _write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write(text)


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["\t".join(header)]
    lines += ["\t".join("NA" if v is None else str(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def write_recount3_mirror(root: Path, studies: list[Study], organism: str = "mouse") -> Path:
    """Write ``studies`` under ``root`` exactly where and how recount3 publishes them."""
    code = "M023" if organism == "mouse" else "G026"
    gtf = "".join(
        f'{chrom}\tHAVANA\tgene\t{start}\t{end}\t{length}\t{strand}\t.\tgene_id "{gid}"; '
        f'gene_type "{gtype}"; gene_name "{name}"; level 2;\n'
        for gid, name, gtype, length, chrom, start, end, strand in GENES
    )
    _write_gz(
        root / organism / "annotations/gene_sums" / f"{organism}.gene_sums.{code}.gtf.gz", gtf
    )
    for rail, study in enumerate(studies):
        p, shard = study.project, study.project[-2:]
        home = root / organism / "data_sources/sra"
        sums = _table(
            ["gene_id", *study.samples],
            [[gid, *study.coverage[:, j]] for j, gid in enumerate(GENE_IDS)],
        )
        _write_gz(
            home / "gene_sums" / shard / p / f"sra.gene_sums.{p}.{code}.gz",
            f"##annotation={code}\n##date.generated=2020-05-12 01:01:47\n{sums}",
        )
        keys = [[rail * 100 + i, s, p] for i, s in enumerate(study.samples)]
        meta = home / "metadata" / shard / p
        n = len(study.samples)
        sra = _table(
            [
                "rail_id", "external_id", "study", "sample_acc", "sample_title", "library_layout",
                "spot_length", "sample_attributes",
            ],
            [
                [*k, f"SRS{i}", f"{study.tissue} {i}", "single" if i % 2 else "paired", 76,
                 f"source_name;;{study.tissue}|cell type;;type {i % 2}|age;;{8 + i} weeks"]
                for i, k in enumerate(keys)
            ],
        )  # fmt: skip
        _write_gz(meta / f"sra.sra.{p}.MD.gz", sra)
        project_table = _table(
            ["rail_id", "external_id", "study", "project", "organism", "file_source"],
            [[*k, p, "Mus musculus", "data_sources/sra"] for k in keys],
        )
        _write_gz(meta / f"sra.recount_project.{p}.MD.gz", project_table)
        qc = _table(
            [
                "rail_id", "external_id", "study", "star.average_mapped_length",
                "bc_auc.all_reads_all_bases", "star.number_of_splices:_at/ac",
            ],
            [[*k, length, int(cov.sum()), 3]
             for k, length, cov in zip(keys, study.read_length, study.coverage, strict=True)],
        )  # fmt: skip
        _write_gz(meta / f"sra.recount_qc.{p}.MD.gz", qc)
        seq_qc = _table(["rail_id", "external_id", "study", "avg_len"], [[*k, 76] for k in keys])
        _write_gz(meta / f"sra.recount_seq_qc.{p}.MD.gz", seq_qc)
        if study.with_pred:
            pred = _table(
                ["rail_id", "external_id", "study", "curated.tissue"],
                [[*k, study.tissue] for k in keys],
            )
            _write_gz(meta / f"sra.recount_pred.{p}.MD.gz", pred)
        assert n == len(keys)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache directory, and no mirror unless a test sets one."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SCGTL_CACHE_DIR", str(path))
    monkeypatch.delenv("SCGTL_DATA_DIR", raising=False)
    monkeypatch.delenv("SCGTL_RECOUNT3_URL", raising=False)
    return path


@pytest.fixture
def studies() -> list[Study]:
    return [
        _study("SRP012682", 4, 1, tissue="liver"),
        _study("SRP060340", 3, 2, tissue="brain", with_pred=False),
    ]


@pytest.fixture
def mirror(tmp_path, studies, monkeypatch, cache) -> Path:
    """recount3 fixture files on disk, the loaders pointed at them with a file:// URL."""
    root = write_recount3_mirror(tmp_path / "recount3", studies)
    monkeypatch.setenv("SCGTL_RECOUNT3_URL", root.as_uri())
    return root


# --- a local HTTP server: Range requests, truncation on demand ---------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        requested = self.headers.get("Range")
        if requested and server.ranges_ok:
            start = int(requested.split("=")[1].split("-")[0])
            server.range_starts.append(start)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.truncate:
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.files, server.truncate, server.ranges_ok, server.range_starts = {}, False, True, []
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- recount3: layout ---------------------------------------------------------------------------


def test_recount3_paths_follow_recount3_layout():
    # Expected values as printed by the recount3 R package's locate_url() / locate_url_ann().
    paths = datasets.recount3_paths("DRP002367", organism="mouse")
    assert paths["gene_sums"] == (
        "mouse/data_sources/sra/gene_sums/67/DRP002367/sra.gene_sums.DRP002367.M023.gz"
    )
    assert paths["metadata.recount_pred"] == (
        "mouse/data_sources/sra/metadata/67/DRP002367/sra.recount_pred.DRP002367.MD.gz"
    )
    assert paths["annotation"] == "mouse/annotations/gene_sums/mouse.gene_sums.M023.gtf.gz"
    human = datasets.recount3_paths("SRP009615", organism="human")
    assert human["gene_sums"].endswith("/15/SRP009615/sra.gene_sums.SRP009615.G026.gz")
    assert human["metadata.sra"].endswith("metadata/15/SRP009615/sra.sra.SRP009615.MD.gz")
    v29 = datasets.recount3_paths("SRP009615", organism="human", annotation="gencode_v29")
    assert v29["annotation"] == "human/annotations/gene_sums/human.gene_sums.G029.gtf.gz"
    assert set(paths) == {
        "gene_sums",
        "annotation",
        *(f"metadata.{t}" for t in ("sra", *_recount3.METADATA_TAGS)),
    }


# --- recount3: one study -----------------------------------------------------------------------


def test_recount3_one_study(mirror, studies, cache):
    study = studies[0]
    adata = datasets.recount3(study.project, organism="mouse")
    assert adata.shape == (4, len(GENES))
    assert list(adata.obs_names) == study.samples
    assert list(adata.var_names) == GENE_IDS
    # Coverage sums divided by the read length and rounded give back the true read counts.
    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), study.reads)
    assert np.all(adata.X.data == np.round(adata.X.data))
    obs = adata.obs
    assert (obs["study"] == study.project).all() and isinstance(
        obs["study"].dtype, pd.CategoricalDtype
    )
    assert list(obs["sample"]) == study.samples
    assert obs["rail_id"].dtype == np.int64
    assert obs["sra.sample_title"].iloc[1] == "liver 1"
    assert obs["recount_qc.star.average_mapped_length"].dtype == np.float64
    assert obs["sra.spot_length"].dtype == np.float64
    assert "recount_qc.star.number_of_splices:_at_ac" in obs  # "/" is not allowed in h5ad keys
    assert obs["recount_pred.curated.tissue"].iloc[0] == "liver"
    assert obs["recount_project.organism"].iloc[0] == "Mus musculus"
    assert list(obs["sra_attribute.cell_type"]) == ["type 0", "type 1", "type 0", "type 1"]
    assert obs["sra_attribute.age"].iloc[2] == "10 weeks"
    var = adata.var
    assert list(var["gene_symbol"]) == [g[1] for g in GENES]
    assert list(var["gene_type"]) == [g[2] for g in GENES]
    assert list(var["bp_length"]) == [g[3] for g in GENES]
    assert adata.uns["scgtl_units"] == "counts"
    assert adata.uns["source"]["organism"] == "mouse"
    assert adata.uns["source"]["annotation"] == "gencode_v23"
    assert "10.1186/s13059-021-02533-6" in adata.uns["source"]["citation"]
    # Downloads land in the cache with recount3's layout; nothing is left half-written.
    cached = (
        cache / "recount3" / datasets.recount3_paths(study.project, organism="mouse")["gene_sums"]
    )
    assert cached.is_file()
    assert not list(cache.rglob("*.part"))
    # The result round-trips through .h5ad.
    adata.write_h5ad(cache / "one.h5ad")
    assert ad.read_h5ad(cache / "one.h5ad").obs.shape == obs.shape


def test_recount3_options(mirror, studies):
    study = studies[0]
    coverage = datasets.recount3(study.project, organism="mouse", counts="coverage")
    np.testing.assert_array_equal(coverage.X.toarray(), study.coverage)
    assert coverage.uns["scgtl_units"] == "normalized"
    assert "coverage" in coverage.uns["source"]["units"]

    coding = datasets.recount3(study.project, organism="mouse", genes="protein_coding")
    assert list(coding.var_names) == PROTEIN_CODING
    np.testing.assert_array_equal(coding.X.toarray(), study.reads[:, 2:])

    # A list mixes symbols, unversioned and versioned ids; its order is kept.
    chosen = datasets.recount3(
        study.project,
        organism="mouse",
        genes=["Pbsn", "ENSMUSG00000051951", "ENSMUSG00000102693.1"],
        var_names="gene_symbol",
        expand_attributes=False,
    )
    assert list(chosen.var_names) == ["Pbsn", "Xkr4", "4933401J01Rik"]
    assert list(chosen.var["gene_id"]) == [GENE_IDS[4], GENE_IDS[2], GENE_IDS[0]]
    np.testing.assert_array_equal(chosen.X.toarray(), study.reads[:, [4, 2, 0]])
    assert not any(c.startswith("sra_attribute.") for c in chosen.obs)


def test_recount3_optional_metadata_missing(mirror, studies):
    with pytest.warns(UserWarning, match="no recount_pred metadata"):
        adata = datasets.recount3(studies[1].project, organism="mouse")
    assert adata.n_obs == 3
    assert not any(c.startswith("recount_pred.") for c in adata.obs)


def test_recount3_drops_samples_without_read_length(tmp_path, monkeypatch, cache):
    study = _study("SRP000111", 3, 7, tissue="lung", lengths=[75.0, None, 50.0])
    root = write_recount3_mirror(tmp_path / "r3", [study])
    monkeypatch.setenv("SCGTL_RECOUNT3_URL", root.as_uri())
    with pytest.warns(UserWarning, match="1 sample"):
        adata = datasets.recount3("SRP000111", organism="mouse")
    assert list(adata.obs_names) == [study.samples[0], study.samples[2]]
    np.testing.assert_array_equal(adata.X.toarray(), study.reads[[0, 2]])


def test_read_gene_sums_streams_in_blocks(mirror, studies, cache):
    study = studies[0]
    datasets.recount3(study.project, organism="mouse")
    path = (
        cache / "recount3" / datasets.recount3_paths(study.project, organism="mouse")["gene_sums"]
    )
    samples, kept, matrix, all_genes = datasets.read_gene_sums(
        path, keep=PROTEIN_CODING, chunksize=2
    )
    assert list(samples) == study.samples and list(all_genes) == GENE_IDS
    assert list(kept) == PROTEIN_CODING and matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix.toarray(), study.coverage[:, 2:])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"organism": "rat"}, "organism='rat' is not valid"),
        ({"organism": "mouse", "annotation": "gencode_v26"}, "annotation"),
        ({"organism": "mouse", "data_source": "gtex"}, "data_source"),
        ({"organism": "mouse", "counts": "tpm"}, "counts='tpm'"),
        ({"organism": "mouse", "project": "GSE12345"}, "not an SRA study accession"),
        ({"organism": "mouse", "genes": "coding"}, "genes='coding' is not valid"),
        ({"organism": "mouse", "genes": ["Xkr4", "NotAGene"]}, "NotAGene"),
        ({"organism": "mouse", "var_names": "symbol"}, "var_names"),
    ],
)
def test_recount3_rejects_bad_input(mirror, kwargs, message):
    kwargs = {"project": "SRP012682", **kwargs}
    with pytest.raises(ValueError, match=message):
        datasets.recount3(kwargs.pop("project"), **kwargs)


def test_recount3_unknown_project(mirror):
    with pytest.raises(datasets.RemoteFileNotFoundError, match="SRP999999"):
        datasets.recount3("SRP999999", organism="mouse")


def test_recount3_over_http(tmp_path, studies, http_server, cache):
    root = write_recount3_mirror(tmp_path / "r3", studies)
    http_server.files = {
        f"/recount3/{p.relative_to(root).as_posix()}": p.read_bytes() for p in root.rglob("*.gz")
    }
    adata = datasets.recount3(
        studies[0].project, organism="mouse", base_url=f"{http_server.url}/recount3"
    )
    np.testing.assert_array_equal(adata.X.toarray(), studies[0].reads)
    assert adata.uns["source"]["url"] == f"{http_server.url}/recount3"


# --- recount3: corpus ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:recount3 has no recount_pred")
def test_recount3_corpus(mirror, studies, tmp_path):
    out = tmp_path / "out" / "corpus.h5ad"
    projects = [s.project for s in studies]
    with pytest.warns(UserWarning, match="Skipping SRP000404"):
        corpus = datasets.recount3_corpus(
            [*projects, "SRP000404"], organism="mouse", out=out, skip_failed=True
        )
    try:
        assert corpus.isbacked and Path(corpus.filename) == out
        assert corpus.shape == (7, len(PROTEIN_CODING))
        assert list(corpus.var_names) == PROTEIN_CODING
        assert list(corpus.var["gene_symbol"]) == ["Xkr4", "Gnai3", "Pbsn"]
        assert corpus.obs["study"].value_counts().to_dict() == {"SRP012682": 4, "SRP060340": 3}
        expected = np.vstack([s.reads[:, 2:] for s in studies])
        np.testing.assert_array_equal(corpus.X[:].toarray(), expected)
        # recount_pred exists for the first study only: NaN for the second.
        tissue = corpus.obs["recount_pred.curated.tissue"]
        assert tissue.iloc[:4].eq("liver").all() and tissue.iloc[4:].isna().all()
        assert corpus.uns["scgtl_units"] == "counts"
        assert list(corpus.uns["source"]["projects"]) == projects
        assert list(corpus.uns["source"]["skipped"]) == ["SRP000404"]
    finally:
        corpus.file.close()
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus.h5ad"]  # no temp leftovers


def test_recount3_corpus_one_study_coverage(mirror, studies, tmp_path, cache):
    out = tmp_path / "c.h5ad"
    out.write_bytes(b"old")
    study = studies[0]
    corpus = datasets.recount3_corpus(
        [study.project],
        organism="mouse",
        out=out,
        genes="all",
        counts="coverage",
        var_names="gene_symbol",
        keep_downloads=False,
        overwrite=True,
    )
    try:
        assert list(corpus.var_names) == [g[1] for g in GENES]
        assert list(corpus.var["gene_id"]) == GENE_IDS
        np.testing.assert_array_equal(corpus.X[:].toarray(), study.coverage)
        assert corpus.uns["scgtl_units"] == "normalized"
    finally:
        corpus.file.close()
    sums = datasets.recount3_paths(study.project, organism="mouse")["gene_sums"]
    assert not (cache / "recount3" / sums).exists()  # keep_downloads=False bounds the disk


def test_recount3_corpus_failure_leaves_no_output(mirror, tmp_path):
    out = tmp_path / "corpus.h5ad"
    with pytest.raises(datasets.RemoteFileNotFoundError, match="SRP000404"):
        datasets.recount3_corpus(["SRP012682", "SRP000404"], organism="mouse", out=out)
    assert list(tmp_path.glob("*corpus*")) == []


def test_recount3_corpus_rejects_bad_input(mirror, tmp_path):
    out = tmp_path / "c.h5ad"
    with pytest.raises(ValueError, match="projects is empty"):
        datasets.recount3_corpus([], organism="mouse", out=out)
    with pytest.raises(ValueError, match="not the string"):
        datasets.recount3_corpus("SRP012682", organism="mouse", out=out)
    with pytest.raises(ValueError, match="more than once"):
        datasets.recount3_corpus(["SRP012682", "SRP012682"], organism="mouse", out=out)
    with pytest.raises(ValueError, match="organism='fly'"):
        datasets.recount3_corpus(["SRP012682"], organism="fly", out=out)
    with pytest.raises(ValueError, match="genes='some'"):
        datasets.recount3_corpus(["SRP012682"], organism="mouse", out=out, genes="some")
    out.write_bytes(b"")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        datasets.recount3_corpus(["SRP012682"], organism="mouse", out=out)


# --- downloads ----------------------------------------------------------------------------------


def test_download_offline_error(tmp_path, cache):
    url = "http://127.0.0.1:9/recount3/x.gz"
    with pytest.raises(datasets.DownloadError) as info:
        _download.download(url, tmp_path / "x.gz", timeout=5)
    assert isinstance(info.value, ConnectionError)
    assert url in str(info.value) and "SCGTL_DATA_DIR" in str(info.value)
    assert not (tmp_path / "x.gz").exists()


def test_recount3_offline_error(cache):
    with pytest.raises(ConnectionError, match="127.0.0.1:9"):
        datasets.recount3("SRP012682", organism="mouse", base_url="http://127.0.0.1:9/recount3")


def test_truncated_download_is_rejected_then_resumed(tmp_path, http_server):
    data = np.random.default_rng(0).bytes(300_000)
    http_server.files["/f.bin"] = data
    dest = tmp_path / "f.bin"
    http_server.truncate = True
    with pytest.raises(datasets.DownloadError, match="incomplete|interrupted"):
        _download.download(f"{http_server.url}/f.bin", dest, sha256=_sha(data))
    assert not dest.exists()  # nothing that looks complete
    part = tmp_path / "f.bin.part"
    assert 0 < part.stat().st_size < len(data)
    http_server.truncate = False
    _download.download(f"{http_server.url}/f.bin", dest, sha256=_sha(data))
    assert dest.read_bytes() == data and not part.exists()
    assert http_server.range_starts and http_server.range_starts[-1] > 0  # resumed, not restarted


def test_download_restarts_when_server_ignores_range(tmp_path, http_server):
    data = b"abcdefgh" * 1000
    http_server.files["/f"] = data
    http_server.ranges_ok = False
    (tmp_path / "f.part").write_bytes(data[:100])
    _download.download(f"{http_server.url}/f", tmp_path / "f", sha256=_sha(data))
    assert (tmp_path / "f").read_bytes() == data


def test_download_checksum_mismatch(tmp_path, http_server):
    http_server.files["/f"] = b"not what was published"
    with pytest.raises(datasets.ChecksumError, match="sha256"):
        _download.download(f"{http_server.url}/f", tmp_path / "f", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(datasets.ChecksumError, match="bytes, expected 5"):
        _download.download(f"{http_server.url}/f", tmp_path / "f", size=5)
    assert list(tmp_path.iterdir()) == []


def test_truncated_gzip_is_rejected(tmp_path, http_server):
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as fh:
        fh.write(np.random.default_rng(1).bytes(50_000))
    http_server.files["/x.gz"] = buffer.getvalue()[:-20]  # served whole, but cut at the source
    with pytest.raises(datasets.ChecksumError, match="gzip"):
        _download.download(f"{http_server.url}/x.gz", tmp_path / "x.gz", check=_download.check_gzip)
    assert list(tmp_path.iterdir()) == []


def test_download_existing_file_is_verified(tmp_path, http_server):
    data = b"published content"
    http_server.files["/f"] = data
    dest = tmp_path / "f"
    dest.write_bytes(b"stale")
    _download.download(f"{http_server.url}/f", dest, sha256=_sha(data))
    assert dest.read_bytes() == data


# --- public sets --------------------------------------------------------------------------------

README_LABELS = {
    "mudan_ref": (
        "cell_type",
        {
            "nk": 769, "bcells": 330, "memoryt": 252, "regulatoryt": 226, "thelper": 191,
            "cytotoxict": 148, "monocytes": 129, "naivet": 52, "naivecytotoxic": 43,
        },
    ),
    "mudan_pbmcA": ("dataset", {"pbmcA": 2896}),
    "kang_stim": ("stim", {"ctrl": 1000, "stim": 1000}),
    "yan": (
        "cell_type",
        {"blast": 30, "8cell": 20, "16cell": 16, "4cell": 12, "2cell": 6, "zygote": 6},
    ),
}  # fmt: skip
README_SHAPES = {
    "mudan_ref": (2140, 8863),
    "mudan_pbmcA": (2896, 13939),
    "kang_stim": (2000, 9015),
    "yan": (90, 20214),
}
LOADERS = {
    "mudan_ref": datasets.mudan_ref,
    "mudan_pbmcA": datasets.mudan_pbmcA,
    "kang_stim": datasets.kang_stim,
    "yan": datasets.yan,
}


def _check_public(adata: ad.AnnData, name: str) -> None:
    key, counts = README_LABELS[name]
    assert adata.shape == README_SHAPES[name]
    assert isinstance(adata.obs[key].dtype, pd.CategoricalDtype)
    assert adata.obs[key].value_counts().to_dict() == counts
    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    spec = datasets.PUBLIC_DATASETS[name]
    source = adata.uns["source"]
    assert source["url"] == spec.files[0].url and source["sha256"] == spec.files[0].sha256
    assert source["license"] == "GPL-3" and source["citation"].startswith(spec.citation[:20])
    assert adata.uns["scgtl_units"] == ("normalized" if name == "yan" else "counts")
    if name != "yan":  # UMI counts
        assert np.all(adata.X.data == np.round(adata.X.data))


@pytest.mark.parametrize("name", list(LOADERS))
def test_public_set_from_mirror(name, shared_data_dir, cache, monkeypatch):
    monkeypatch.setenv("SCGTL_DATA_DIR", str(shared_data_dir))
    h5ad = shared_data_dir / f"{name}.h5ad"
    if not h5ad.is_file():
        pytest.skip(f"{h5ad} is not in the mirror")
    assert _download.sha256sum(h5ad) == datasets.PUBLIC_DATASETS[name].h5ad_sha256
    adata = LOADERS[name]()
    _check_public(adata, name)
    assert not cache.exists()  # the mirror's .h5ad is used in place, nothing is downloaded


@pytest.mark.parametrize("name", list(LOADERS))
def test_public_set_converted_from_raw_matches_shipped(
    name, shared_data_dir, tmp_path, cache, monkeypatch
):
    spec = datasets.PUBLIC_DATASETS[name]
    raw = tmp_path / "mirror" / "raw"
    raw.mkdir(parents=True)
    for f in spec.files:
        original = shared_data_dir / "raw" / f.name
        if not original.is_file():
            pytest.skip(f"{original} is not in the mirror")
        (raw / f.name).symlink_to(original)
    monkeypatch.setenv("SCGTL_DATA_DIR", str(raw.parent))
    converted = LOADERS[name]()
    _check_public(converted, name)
    shipped = ad.read_h5ad(shared_data_dir / f"{name}.h5ad")
    assert converted.obs_names.equals(shipped.obs_names)
    assert converted.var_names.equals(shipped.var_names)
    key = README_LABELS[name][0]
    assert list(converted.obs[key]) == list(shipped.obs[key])
    np.testing.assert_array_equal(
        np.asarray(converted.X.sum(axis=1)).ravel(), np.asarray(shipped.X.sum(axis=1)).ravel()
    )
    assert converted.X.nnz == shipped.X.nnz and (converted.X != shipped.X).nnz == 0
    # The conversion is cached, and the cache is used next time (even without the mirror).
    assert (cache / "public" / f"{name}.h5ad").is_file()
    monkeypatch.delenv("SCGTL_DATA_DIR")
    broken = dataclasses.replace(spec, converter=None)
    monkeypatch.setitem(_public.PUBLIC_DATASETS, name, broken)
    again = LOADERS[name](download=False)
    assert again.X.nnz == converted.X.nnz and again.uns["source"]["sha256"] == spec.files[0].sha256


def test_public_set_mirror_checksum_mismatch(shared_data_dir, tmp_path, cache):
    tampered = tmp_path / "mirror"
    tampered.mkdir()
    data = bytearray((shared_data_dir / "kang_stim.h5ad").read_bytes())
    data[-1] ^= 0xFF
    (tampered / "kang_stim.h5ad").write_bytes(bytes(data))
    with pytest.raises(datasets.ChecksumError, match="8bc00b0f"):
        datasets.kang_stim(data_dir=tampered)
    (tampered / "kang_stim.h5ad").unlink()
    (tampered / "raw").mkdir()
    (tampered / "raw" / "pbmc_stim.RData").write_bytes(b"not the R file")
    with pytest.raises(datasets.ChecksumError, match="d85a18ce"):
        datasets.kang_stim(data_dir=tampered)


def test_public_set_offline(tmp_path, cache, monkeypatch):
    spec = datasets.PUBLIC_DATASETS["yan"]
    unreachable = dataclasses.replace(
        spec,
        files=tuple(dataclasses.replace(f, url="http://127.0.0.1:9/yan.rda") for f in spec.files),
    )
    monkeypatch.setitem(_public.PUBLIC_DATASETS, "yan", unreachable)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SCGTL_DATA_DIR", str(empty))
    with pytest.raises(ConnectionError, match="SCGTL_DATA_DIR") as info:
        datasets.yan()
    assert "http://127.0.0.1:9/yan.rda" in str(info.value)
    with pytest.raises(FileNotFoundError, match="download=False"):
        datasets.yan(download=False)


def test_public_set_from_network_download(shared_data_dir, http_server, cache, monkeypatch):
    # The network path end to end: download from a (local) server, verify, convert, cache.
    spec = datasets.PUBLIC_DATASETS["kang_stim"]
    raw = (shared_data_dir / "raw" / "pbmc_stim.RData").read_bytes()
    http_server.files["/pbmc_stim.RData"] = raw
    served = dataclasses.replace(
        spec,
        files=(dataclasses.replace(spec.files[0], url=f"{http_server.url}/pbmc_stim.RData"),),
    )
    monkeypatch.setitem(_public.PUBLIC_DATASETS, "kang_stim", served)
    adata = datasets.kang_stim()
    _check_public(adata, "kang_stim")
    assert _download.sha256sum(cache / "public" / "raw" / "pbmc_stim.RData") == spec.files[0].sha256


def test_public_set_unknown_name():
    with pytest.raises(ValueError, match="choose one of"):
        _public.load_public("pbmc3k")


def test_pbmc68k_reduced():
    adata = datasets.pbmc68k_reduced()
    assert adata.shape == (700, 765)
    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    assert adata.X.min() >= 0 and adata.raw is None
    assert adata.uns["scgtl_units"] == "log1p"
    assert adata.obs["bulk_labels"].nunique() == 10
    scaled = datasets.pbmc68k_reduced(use_raw=False)
    assert scaled.X.min() < 0 and scaled.uns["scgtl_units"] == "scaled"
    np.testing.assert_allclose(adata.X.toarray(), scaled.raw.X.toarray(), rtol=1e-6)
