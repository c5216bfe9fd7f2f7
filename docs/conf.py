"""Sphinx configuration of scgtl's documentation.

Build it with ``sphinx-build -W -b html docs docs/_build/html`` (``pip install -e ".[doc]"``).
The build reads the network only when asked to: ``SCGTL_DOCS_INTERSPHINX=1`` links the API to
the Python, numpy, pandas, AnnData, scanpy, scvi-tools and torch docs through intersphinx,
which downloads their inventories; without it (the default, and in CI) nothing is fetched.
Notebooks are stored with their outputs and are never executed here.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from sphinx.pycode import ModuleAnalyzer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))  # the package itself, also without installing it

import scgtl  # noqa: E402  (light: the layers load when autosummary asks for them)

project = "scgtl"
author = "scgtl developers"
copyright = f"{datetime.now(tz=UTC):%Y}, {author}"
version = release = scgtl.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

# Markdown pages (.md) and notebooks (.ipynb) through myst-nb; the API pages autosummary
# writes (docs/generated/*.rst) are reStructuredText.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
templates_path = ["_templates"]
# `tutorials` links to the repository's tutorials/ folder: its notebooks are pages, its
# Markdown files (the folder's README, an old Markdown walk-through) are not.
exclude_patterns = ["_build", "**.ipynb_checkpoints", "tutorials/*.md", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
# Links such as [x](research/wide_path.md#every-idea-of-the-issue-one-row-each) work on GitHub and here.
myst_heading_anchors = 4
nb_execution_mode = "off"  # the notebooks are executed in CI by the tests, and stored executed
nb_merge_streams = True
# Progress bars in stored notebooks may be widgets, which a static page cannot show.
suppress_warnings = ["mystnb.unknown_mime_type"]

# API reference: one page per object, generated from the numpydoc docstrings.
autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "groupwise"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_use_ivar = True  # "Attributes" of a class docstring as fields, not duplicate entries
# A method scgtl overrides without a docstring (e.g. a Lightning hook) shows none, rather than
# the parent's, which is written for the parent project's docs (its roles and labels).
autodoc_inherit_docstrings = False

if os.environ.get("SCGTL_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "pandas": ("https://pandas.pydata.org/docs/", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", None),
        "torch": ("https://pytorch.org/docs/stable/", None),
    }

html_theme = "sphinx_book_theme"
html_title = "scgtl"
html_static_path = ["_static"]
html_theme_options = {
    "repository_branch": "main",
    "path_to_docs": "docs",
    "use_repository_button": False,
    "show_toc_level": 2,
    # The sidebar lists the pages of the toctrees, not the ~150 generated API pages (the API
    # page links them): rendering the full tree into every page took half of the build's time.
    "max_navbar_depth": 1,
    "collapse_navbar": True,
}
html_show_sourcelink = False


def _defining_module(obj) -> str | None:
    """The module a class member was written in, for methods, properties and class methods."""
    for candidate in (obj, getattr(obj, "fget", None), getattr(obj, "__func__", None)):
        module = getattr(candidate, "__module__", None)
        if module is not None and (inspect.isroutine(candidate) or isinstance(obj, property)):
            return module
    return None


def skip_foreign_members(app, what, name, obj, skip, options):
    """Document the members scgtl writes, not those its classes inherit from scvi-tools or torch.

    ``GTL`` inherits dozens of methods from scvi-tools' ``BaseModelClass`` and the modules
    from ``torch.nn.Module``; those are documented by their own projects.
    """
    module = _defining_module(obj)
    if module is not None and not module.startswith("scgtl"):
        return True
    return None


def constant_docs(app, what, name, obj, options, lines):
    """Give a re-exported constant the ``#:`` comment written beside its definition.

    autodoc looks for the comment in the module that exports the constant (e.g.
    ``scgtl.benchmark``), where there is none, and falls back to the docstring of the value's
    type (``dict``, ``tuple``, ...). The comment is in the private module that defines it.
    """
    if what != "data" or "." not in name:
        return
    own_doc = [line for line in lines if line.strip()]
    type_doc = [line for line in (inspect.getdoc(type(obj)) or "").splitlines() if line.strip()]
    if own_doc and own_doc != type_doc:
        return
    package_name, attribute = name.rsplit(".", 1)
    package = importlib.import_module(package_name)
    for submodule in pkgutil.iter_modules(getattr(package, "__path__", []), f"{package_name}."):
        module = importlib.import_module(submodule.name)
        if getattr(module, attribute, None) is not obj:
            continue
        comment = ModuleAnalyzer.for_module(submodule.name).find_attr_docs().get(("", attribute))
        if comment:
            lines[:] = list(comment)
            return
    lines[:] = []


TUTORIALS = (HERE.parent / "tutorials").resolve()
NOTEBOOK_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<path>[^()\s#]+\.ipynb)(?:#[^()\s]*)?\)")


def tutorial_links(app, docname, source):
    """Turn Markdown links to the tutorial notebooks into ``{doc}`` references.

    The notebooks live in the repository's ``tutorials/`` folder, which ``docs/tutorials``
    links to, and pages and notebooks link them by relative path (``../tutorials/x.ipynb``,
    ``x.ipynb``) so that the links work on GitHub. Sphinx resolves a path link through the
    symbolic link to a file outside docs/ and finds no page there; a ``{doc}`` reference names
    the page instead. (A link's ``#anchor`` is dropped: it opens the notebook's top.)
    """
    folder = Path(app.env.doc2path(docname)).parent

    def to_doc(match: re.Match) -> str:
        target = (folder / match["path"]).resolve()
        if target.parent != TUTORIALS:
            return match[0]
        return f"{{doc}}`{match['text']} </tutorials/{target.stem}>`"

    source[0] = NOTEBOOK_LINK.sub(to_doc, source[0])


def setup(app):
    """Connect the member filter, the constants' comments and the tutorial links."""
    app.connect("autodoc-skip-member", skip_foreign_members)
    app.connect("autodoc-process-docstring", constant_docs)
    app.connect("source-read", tutorial_links)
