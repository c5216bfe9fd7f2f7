"""The documentation site builds with warnings as errors, offline, and lists the whole API."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import scgtl

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: The subpackages whose ``__all__`` the API page must list, beside the top-level models.
PUBLIC_MODULES = (
    "scgtl.tl",
    "scgtl.pl",
    "scgtl.benchmark",
    "scgtl.datasets",
    "scgtl.models",
    "scgtl.data",
    "scgtl.module",
    "scgtl.guide",
    "scgtl.train",
)


def api_page_entries() -> set[str]:
    """Every ``module.name`` listed in an autosummary of docs/api.md."""
    entries, module = set(), "scgtl"
    for line in (DOCS / "api.md").read_text().splitlines():
        if found := re.fullmatch(r"\.\. currentmodule:: (\S+)", line.strip()):
            module = found[1]
        elif re.fullmatch(r" {3}[A-Za-z_]\w*", line):
            entries.add(f"{module}.{line.strip()}")
    return entries


def test_api_page_lists_every_public_name():
    listed = api_page_entries()
    public = {f"scgtl.{name}" for name in ("FineTunePlan", "GTL", "GTLClassifier", "settings")}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        public |= {f"{module_name}.{name}" for name in module.__all__}
    assert public <= listed, f"add to docs/api.md: {sorted(public - listed)}"
    assert listed <= public, f"not public, remove from docs/api.md: {sorted(listed - public)}"
    # every subpackage scgtl exposes has a section
    subpackages = {f"scgtl.{name}" for name in scgtl.__all__ if name[0].islower()}
    assert subpackages - {"scgtl.settings"} <= set(PUBLIC_MODULES)


@pytest.mark.slow
def test_sphinx_build_passes_with_warnings_as_errors_and_offline(tmp_path):
    for package in ("sphinx", "myst_nb", "sphinx_book_theme"):
        pytest.importorskip(package, reason=f'{package} is not installed: pip install -e ".[doc]"')
    out = tmp_path / "html"
    # Any attempt to reach the network fails at once (a closed local port), so a build that
    # needed it (intersphinx, a remote image) fails here as it would in CI.
    env = {
        **os.environ,
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    env.pop("SCGTL_DOCS_INTERSPHINX", None)
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-5000:]

    api = (out / "api.html").read_text()
    assert 'href="generated/scgtl.GTL.html"' in api
    gtl = (out / "generated" / "scgtl.GTL.html").read_text()
    for method in ("fine_tune", "train", "compute_guide", "save", "load"):
        assert f'id="scgtl.GTL.{method}"' in gtl
    # members scgtl inherits from scvi-tools are left to scvi-tools' docs
    assert 'id="scgtl.GTL.view_anndata_setup"' not in gtl
    assert (
        'id="scgtl.GTLClassifier.predict"'
        in (out / "generated" / "scgtl.GTLClassifier.html").read_text()
    )
    # a re-exported constant shows the comment written beside its definition
    n_top_genes = (out / "generated" / "scgtl.data.N_TOP_GENES.html").read_text()
    assert "Highly variable genes a model is pre-trained on by default" in n_top_genes

    # the notebooks are pages, and the pages' GitHub-style links to them resolve
    for notebook in ("quickstart", "own_corpus", "should_i_use_gtl", "bulk_recount3"):
        assert (out / "tutorials" / f"{notebook}.html").is_file()
    assert 'href="tutorials/should_i_use_gtl.html"' in (out / "method.html").read_text()
    assert "## [Unreleased]" not in (out / "changelog.html").read_text()  # included, parsed
    assert "Unreleased" in (out / "changelog.html").read_text()
