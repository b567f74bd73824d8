"""Data sets: downloaded from their canonical sources, verified, cached.

``metalearn.data.omniglot(root=None, *, image_size=28)`` is the entry point the
chapters use.
"""

from metalearn.data.fashion_mnist import FashionMNISTData, fashion_mnist
from metalearn.data.lake_runs import OneShotRun, lake_runs
from metalearn.data.omniglot import OmniglotData, omniglot, rotate_classes
from metalearn.data.paths import cache_root, data_root

__all__ = [
    "FashionMNISTData",
    "OmniglotData",
    "OneShotRun",
    "cache_root",
    "data_root",
    "fashion_mnist",
    "lake_runs",
    "omniglot",
    "rotate_classes",
]
