"""Shared fixtures.

Tests that need the real data sets find them through one setting, the ``SCGTL_DATA_DIR``
environment variable (the same one :mod:`scgtl.datasets` reads for its offline mirror). When it is
unset, ``../shared/data`` beside the repository is used if present; otherwise those tests are
skipped with a reason that says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    configured = os.environ.get("SCGTL_DATA_DIR")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """Directory with the real ``.h5ad`` files (``$SCGTL_DATA_DIR`` or ``../shared/data``)."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip(
            "real test data not found: set SCGTL_DATA_DIR to the folder holding mudan_ref.h5ad "
            "etc. (default ../shared/data beside the repository)"
        )
    return path
