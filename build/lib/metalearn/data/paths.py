"""Where raw data lives (``METALEARN_DATA``) and derived files go (``METALEARN_CACHE``).

The *data root* holds the archives exactly as published (or a read-only copy of
them, as on our CI machines). The *cache* holds what the library derives from
them (decoded tensors). The library never writes into the data root unless it
has to download an archive there, and never writes derived files into it.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

DATA_ENV_VAR = "METALEARN_DATA"
CACHE_ENV_VAR = "METALEARN_CACHE"


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory that holds (or will hold) the raw archives.

    ``root`` if given, else ``$METALEARN_DATA``, else ``<user cache>/metalearn/data``.
    """
    if root is None:
        root = (
            os.environ.get(DATA_ENV_VAR) or Path(user_cache_dir("metalearn")) / "data"
        )
    return Path(root).expanduser()


def cache_root(cache: str | os.PathLike[str] | None = None) -> Path:
    """Directory for derived files: ``cache``, ``$METALEARN_CACHE`` or a user cache."""
    if cache is None:
        cache = (
            os.environ.get(CACHE_ENV_VAR) or Path(user_cache_dir("metalearn")) / "cache"
        )
    return Path(cache).expanduser()
