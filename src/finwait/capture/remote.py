"""Captures named by URL (``file://``, ``memory://``, ``s3://`` ...),
opened through fsspec (``pip install 'finwait[remote]'``, plus the backend
for the scheme: s3fs for ``s3://``, gcsfs for ``gs://`` ...).  Errors from
fsspec (no backend, a bad URL) come out as OSError, as a local file's do."""

from __future__ import annotations

from typing import BinaryIO


def is_url(path: str) -> bool:
    return "://" in path


def open_url(url: str) -> BinaryIO:
    try:
        import fsspec

        fh: BinaryIO = fsspec.open(url, "rb").open()
    except (ImportError, ValueError) as err:
        raise OSError(f"{url}: {err}") from None
    return fh


def size(url: str) -> int:
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
        return int(fs.size(path))
    except (ImportError, ValueError) as err:
        raise OSError(f"{url}: {err}") from None
