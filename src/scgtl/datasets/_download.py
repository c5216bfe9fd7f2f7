"""Downloads into a cache directory: resumable, size- and checksum-checked, atomic.

A file only ever appears under its final name once it is complete and verified. While it is
being fetched it lives beside that name as ``<name>.part``; an interrupted transfer leaves the
``.part`` file behind and the next call resumes it with an HTTP ``Range`` request.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

#: Environment variable naming a local mirror of the public data sets (see :mod:`scgtl.datasets`).
DATA_DIR_ENV = "SCGTL_DATA_DIR"
#: Environment variable naming the cache directory downloads and conversions are kept in.
CACHE_DIR_ENV = "SCGTL_CACHE_DIR"

_CHUNK = 1 << 20
_USER_AGENT = "scgtl (https://github.com/scverse; dataset loader)"


class DownloadError(ConnectionError):
    """A file could not be fetched: no network, an unreachable host, or a truncated transfer."""


class RemoteFileNotFoundError(DownloadError, FileNotFoundError):
    """The server answered, but has no file at the requested URL (HTTP 404)."""


class ChecksumError(OSError):
    """A file's content does not match its published sha256 (or fails an integrity check)."""


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``path``, else ``$SCGTL_CACHE_DIR``, else the user cache.

    The user cache is ``$XDG_CACHE_HOME/scgtl`` or ``~/.cache/scgtl``. The directory is not
    created here; :func:`download` creates what it needs.
    """
    if path is not None:
        return Path(path).expanduser()
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "scgtl"


def data_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The local mirror of the public data sets: ``path``, else ``$SCGTL_DATA_DIR``, else None."""
    if path is not None:
        return Path(path).expanduser()
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured).expanduser() if configured else None


def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has sha256 ``expected``."""
    actual = sha256sum(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"{path} has sha256 {actual}, expected {expected}: the file is corrupt, truncated or "
            "a different version. Delete it and try again."
        )


def check_gzip(path: str | os.PathLike) -> None:
    """Raise :class:`ChecksumError` unless ``path`` is a complete gzip stream.

    Decompressing to the end checks gzip's own CRC-32 and length trailer, which catches the
    truncated transfers a server without ``Content-Length`` would otherwise let through.
    """
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(_CHUNK):
                pass
    except (OSError, EOFError) as err:
        raise ChecksumError(f"{path} is not a complete gzip file ({err}).") from err


def _offline_message(url: str, reason: object, part: Path) -> str:
    kept = (
        f" The partial download is kept at {part} and will be resumed next time."
        if part.exists() and part.stat().st_size
        else ""
    )
    return (
        f"Could not download {url}: {reason}. Are you offline? To work without network, point "
        f"${DATA_DIR_ENV} at a local mirror of the data sets (the public sets), or "
        "$SCGTL_RECOUNT3_URL at a local copy of recount3 (recount3), or put the files in the "
        f"cache directory ({cache_dir()}).{kept}"
    )


def _expected_size(response, offset: int) -> int | None:
    """Total size of the file the response delivers (counting ``offset`` resumed bytes)."""
    content_range = response.headers.get("Content-Range")
    if offset and content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    if length is None or not length.strip().isdigit():
        return None
    return int(length) + offset


def _open(url: str, offset: int, part: Path, *, timeout: float):
    """Open ``url`` (asking for the bytes from ``offset`` on); map failures to our errors."""
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise RemoteFileNotFoundError(f"{url} does not exist (HTTP 404).") from err
        if err.code == 416 and offset:
            return None  # the .part file is no prefix of the remote file: caller restarts
        raise DownloadError(f"Could not download {url}: HTTP {err.code} {err.reason}.") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, FileNotFoundError):  # a file:// URL with no file behind it
            raise RemoteFileNotFoundError(f"{url} does not exist ({reason}).") from err
        raise DownloadError(_offline_message(url, reason, part)) from err


def _fetch(url: str, part: Path, *, timeout: float) -> None:
    """Fetch ``url`` into ``part``, resuming an existing ``part`` when the server allows it."""
    offset = part.stat().st_size if part.exists() else 0
    if not url.startswith(("http://", "https://")):
        offset = 0  # only HTTP can resume
    response = _open(url, offset, part, timeout=timeout)
    if response is None:
        part.unlink()
        offset = 0
        response = _open(url, offset, part, timeout=timeout)
    with response:
        if offset and getattr(response, "status", None) != 206:
            offset = 0  # the server ignored the Range request: start over
        expected = _expected_size(response, offset)
        with open(part, "ab" if offset else "wb") as fh:
            try:
                shutil.copyfileobj(response, fh, _CHUNK)
            except (http.client.HTTPException, ConnectionError, TimeoutError) as err:
                fh.flush()
                raise DownloadError(
                    f"Download of {url} was interrupted ({err}). The partial file is kept at "
                    f"{part} and will be resumed next time."
                ) from err
    got = part.stat().st_size
    if expected is not None and got != expected:
        raise DownloadError(
            f"Download of {url} is incomplete: got {got} of {expected} bytes. The partial file "
            f"is kept at {part} and will be resumed next time."
        )


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    check: Callable[[Path], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    Parameters
    ----------
    url
        ``http(s)://`` or ``file://`` URL.
    dest
        Final path. Parent directories are created.
    sha256
        Expected hex digest. An existing ``dest`` that does not match is fetched again; a
        download that does not match is deleted and :class:`ChecksumError` raised.
    size
        Expected size in bytes, checked in addition to the server's ``Content-Length``.
    check
        Extra integrity check run on the complete download before it is renamed into place
        (e.g. :func:`check_gzip`); it raises to reject the file.
    timeout
        Seconds to wait for the server at each step.

    Returns
    -------
    The path of the verified file, ``dest``.

    Raises
    ------
    DownloadError
        No network, an unreachable host, an HTTP error or a truncated transfer (the partial
        ``.part`` file is kept and resumed by the next call). A :class:`ConnectionError`.
    RemoteFileNotFoundError
        The URL does not exist.
    ChecksumError
        The content does not match ``sha256``/``size`` or fails ``check``.
    """
    dest = Path(dest)
    if dest.exists():
        if sha256 is None:
            return dest
        try:
            verify_sha256(dest, sha256)
            return dest
        except ChecksumError:
            dest.unlink()  # a stale or corrupt copy: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch(url, part, timeout=timeout)
    try:
        if size is not None and part.stat().st_size != size:
            raise ChecksumError(
                f"{url} has {part.stat().st_size} bytes, expected {size}: it is truncated or a "
                "different version."
            )
        if sha256 is not None:
            verify_sha256(part, sha256)
        if check is not None:
            check(part)
    except ChecksumError:
        part.unlink(missing_ok=True)  # a complete but wrong file cannot be resumed
        raise
    os.replace(part, dest)
    return dest
