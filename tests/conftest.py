"""Shared fixtures: the real Omniglot from ``$METALEARN_DATA`` (CI: ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from metalearn.data import omniglot
from metalearn.episodes import Episode, sample_episode

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


# --- toy few-shot data shared by the metric-learning tests ---------------------------


def toy_images(
    classes: int = 12, examples: int = 8, *, nuisance: float = 0.0, seed: int = 0
) -> torch.Tensor:
    """Toy few-shot data ``[classes, examples, 1, 8, 8]``.

    Each image is its class template plus small noise and, with ``nuisance >
    0``, a large random shift along 4 pixel directions shared by every class.
    Raw pixels then confuse the classes; an embedding that learns on training
    classes to ignore those directions transfers to unseen classes.
    """
    g = torch.Generator().manual_seed(seed)
    templates = 0.5 * torch.randn(classes, 1, 64, generator=g)
    basis = torch.linalg.qr(torch.randn(64, 4, generator=g))[0].T  # [4, 64]
    shift = nuisance * torch.randn(classes, examples, 4, generator=g) @ basis
    noise = 0.1 * torch.randn(classes, examples, 64, generator=g)
    return (templates + shift + noise).reshape(classes, examples, 1, 8, 8)


def tiny_embedding(seed: int = 0, dim: int = 16, batch_norm: bool = True):
    """A small conv net ``[B, 1, 8, 8] -> [B, dim]``."""
    torch.manual_seed(seed)
    norm = nn.BatchNorm2d(8) if batch_norm else nn.Identity()
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        norm,
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, dim),
    )


def toy_episode(ways: int = 5, shots: int = 2, queries: int = 3, seed: int = 0):
    """One seeded episode drawn from :func:`toy_images`."""
    g = torch.Generator().manual_seed(seed)
    return sample_episode(toy_images(), ways, shots, queries, g)


def as_double(episode: Episode) -> Episode:
    """The episode with float64 images (labels and classes unchanged)."""
    return Episode(
        episode.support_x.double(),
        episode.support_y,
        episode.query_x.double(),
        episode.query_y,
        episode.classes,
    )
