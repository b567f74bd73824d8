"""Shared fixtures: the real Omniglot from ``$METALEARN_DATA`` (CI: ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from metalearn.data import omniglot

REPO = Path(__file__).resolve().parents[1]

# The tests use tiny tensors, for which thread start-up costs more than it
# saves; one thread also keeps timings stable when other processes share the CPU.
torch.set_num_threads(1)


def omniglot_root() -> Path:
    """Where the test suite finds the Omniglot archives (never downloads)."""
    env = os.environ.get("METALEARN_DATA")
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "data"]
    for root in candidates:
        if (root / "omniglot" / "images_background.zip").is_file():
            return root
    message = (
        f"Omniglot archives not found in {candidates}; set METALEARN_DATA to the "
        "directory that holds omniglot/images_background.zip."
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def omniglot_cache(tmp_path_factory) -> Path:
    """The cache directory: ``$METALEARN_CACHE`` if set, else a temporary one."""
    env = os.environ.get("METALEARN_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def omniglot_data(omniglot_cache):
    """Omniglot at 28 px, from the shared archives (never downloaded in tests)."""
    return omniglot(omniglot_root(), cache=omniglot_cache, download=False)
