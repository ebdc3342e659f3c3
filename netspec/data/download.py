"""Download-once file cache: SHA-256 verified, written atomically, no request on a cache hit."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from netspec.data.arrays import DataError

_CHUNK = 1 << 20


def cache_dir(override: str | Path | None = None) -> Path:
    """Where downloads live: `override`, else $NETSPEC_CACHE, else $XDG_CACHE_HOME/netspec,
    else ~/.cache/netspec."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("NETSPEC_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "netspec"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(urls: str | Sequence[str], dest: Path, sha256: str, *, timeout: float = 60.0) -> Path:
    """`dest`, downloaded from the first of `urls` that serves a file with this SHA-256.

    An existing `dest` with the right checksum is returned without any request. The download goes to a
    temporary file beside `dest` and is renamed into place only once verified, so an interrupted or
    corrupt download never leaves a file that looks complete.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _download_verified(url, dest, sha256, timeout)
            return dest
        except (urllib.error.URLError, OSError, _ChecksumMismatch) as e:
            failures.append(f"{url}: {_reason(e)}")
    raise DataError(
        dest,
        "could not download it:",
        *failures,
        f"if this machine is offline, fetch the file elsewhere and put it at {dest} "
        "(set NETSPEC_CACHE to choose the cache folder)",
    )


class _ChecksumMismatch(Exception):
    pass


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"network error ({e.reason})"
    return str(e)


def _download_verified(url: str, dest: Path, sha256: str, timeout: float) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise _ChecksumMismatch(f"SHA-256 mismatch: expected {sha256}, got {digest.hexdigest()}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
