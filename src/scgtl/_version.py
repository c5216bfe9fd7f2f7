from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed version of scgtl, read when called (``"0.0.0"`` from a bare source tree)."""
    try:
        return version("scgtl")
    except PackageNotFoundError:
        return "0.0.0"
