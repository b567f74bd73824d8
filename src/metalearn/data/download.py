"""Downloads that are verified before they are kept, and writes that are atomic.

A download goes to a temporary name in the destination directory, its MD5 is
checked, and only then is it renamed to its final name (``os.replace`` is
atomic on one file system). An interrupted download therefore leaves at most a
``*.part`` file behind, never a truncated archive under the real name.

Writes are also *durable*: the temporary file is flushed to the disk
(``fsync``) before the rename, and the directory after it, so a power loss
right after a write cannot leave an empty or partial file under the final name
(on file systems that reorder metadata and data writes).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from metalearn.data.paths import DATA_ENV_VAR
from metalearn.runtime import progress_bar


def md5sum(path: Path, chunk_size: int = 1 << 20) -> str:
    """The hexadecimal MD5 digest of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data from the operating system's cache to the disk."""
    flags = os.O_RDWR if os.name == "nt" else os.O_RDONLY  # Windows needs write
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (no-op where unsupported)."""
    if os.name == "nt":  # Windows cannot open a directory; NTFS journals renames
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it.

    ``write`` must close the file it writes (e.g. ``torch.save(obj, tmp)`` or a
    ``with open(tmp, "wb")`` block). The temporary file is then flushed to the
    disk (``fsync``), renamed to ``path`` and the directory flushed too, so the
    new content is complete and durable once this returns.

    If ``write`` raises, the temporary file is removed and ``path`` is left as it
    was, so readers never see a half-written file. Two processes that write the
    same path at once each write their own temporary file; the last rename wins
    and both results are complete.
    """
    path = Path(path)
    if not callable(write):
        raise TypeError(
            f"write must be a function of the temporary path, got {write!r}."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".part"
    )
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def download(url: str, destination: Path, md5: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` and check its MD5 before keeping it.

    Raises:
        FileNotFoundError: the file could not be downloaded (e.g. offline); the
            message names the URL, the directory and the variable to set.
        ValueError: the downloaded bytes do not have the expected MD5.
    """

    def fetch(tmp: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with (
                    open(tmp, "wb") as out,
                    progress_bar(
                        total=total, unit="B", unit_scale=True, desc=destination.name
                    ) as bar,
                ):
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise FileNotFoundError(
                f"Could not download {url} ({exc}).\n"
                f"Looked for {destination.name} in {destination.parent} and did not "
                f"find it. Either connect to the internet, or put the file there "
                f"yourself, or set {DATA_ENV_VAR} to a directory that contains it."
            ) from exc
        found = md5sum(tmp)
        if found != md5:
            raise ValueError(
                f"The file downloaded from {url} has MD5 {found}, expected {md5}: "
                "the download is corrupt or the file changed upstream. Nothing was "
                "kept; run again to retry."
            )

    return atomic_write(destination, fetch)
