"""Fashion-MNIST loader: the shared copy, independent decoding, and bad copies."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from metalearn.data import fashion_mnist
from metalearn.data.fashion_mnist import BASE_URL, FILES, GZ_MD5, IDX_SHA256
from metalearn.data.paths import DATA_ENV_VAR

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def fashion_root() -> Path:
    """The folder holding FashionMNIST/raw/ (``$METALEARN_DATA`` or ../shared)."""
    import os

    env = os.environ.get(DATA_ENV_VAR)
    root = Path(env) if env else SHARED
    if not (root / "FashionMNIST" / "raw" / FILES["test"][0]).is_file():
        message = f"Fashion-MNIST not found in {root}/FashionMNIST/raw."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="module")
def test_split():
    return fashion_mnist(fashion_root(), split="test", download=False)


def test_test_split_shapes_dtypes_and_labels(test_split):
    assert test_split.images.shape == (10_000, 1, 28, 28)
    assert test_split.images.dtype == torch.uint8
    assert test_split.labels.shape == (10_000,)
    assert test_split.labels.dtype == torch.int64
    assert int(test_split.labels.min()) == 0 and int(test_split.labels.max()) == 9
    assert torch.equal(torch.bincount(test_split.labels), torch.full((10,), 1000))
    # Object bright on black, like Omniglot's ink = 255 on 0: the corners are
    # background and the mean is well below half the range.
    assert float(test_split.images[:, :, 0, 0].float().mean()) < 5
    assert 40 < float(test_split.images.float().mean()) < 110
    grouped = test_split.by_class()
    assert grouped.shape == (10, 1000, 1, 28, 28)
    assert torch.equal(grouped[3, 0], test_split.images[test_split.labels == 3][0])


def _idx(path: Path, offset: int) -> np.ndarray:
    """Independent decoding: numpy over the decompressed bytes."""
    with gzip.open(path) as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def test_matches_an_independent_decoding(test_split):
    raw = fashion_root() / "FashionMNIST" / "raw"
    pixels = _idx(raw / FILES["test"][0], 16).reshape(10_000, 28, 28)
    labels = _idx(raw / FILES["test"][1], 8)
    assert np.array_equal(test_split.images[:, 0].numpy(), pixels)
    assert np.array_equal(test_split.labels.numpy(), labels.astype(np.int64))


def test_train_split():
    train = fashion_mnist(fashion_root(), split="train", download=False)
    assert train.images.shape == (60_000, 1, 28, 28)
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 6000))
    with pytest.raises(ValueError, match="Unknown split 'val'"):
        fashion_mnist(fashion_root(), split="val", download=False)


def _copy(tmp_path: Path) -> Path:
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES["test"]:
        shutil.copy(fashion_root() / "FashionMNIST" / "raw" / name, raw / name)
    return tmp_path / "data"


def test_missing_file_error_names_file_url_directory_and_variable(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist(tmp_path, download=False)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message and str(tmp_path) in message
    assert BASE_URL in message and DATA_ENV_VAR in message


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_copy_is_refused(tmp_path, damage):
    root = _copy(tmp_path)
    path = root / "FashionMNIST" / "raw" / FILES["test"][0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\0" * 999)
    with pytest.raises(ValueError, match="not a readable gzip file"):
        fashion_mnist(root, download=False)


def test_wrong_content_is_refused_and_recompressed_copy_accepted(tmp_path):
    root = _copy(tmp_path)
    path = root / "FashionMNIST" / "raw" / FILES["test"][0]
    with gzip.open(path) as handle:
        content = bytearray(handle.read())
    # The same content compressed differently (other header, other level):
    # its MD5 differs from every published one, and it is still accepted.
    path.write_bytes(gzip.compress(bytes(content), compresslevel=1, mtime=0))
    assert hashlib.md5(path.read_bytes()).hexdigest() != GZ_MD5[path.name]
    again = fashion_mnist(root, download=False)
    assert again.images.shape == (10_000, 1, 28, 28)
    content[16 + 400] ^= 0xFF  # one pixel of the first image
    path.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(ValueError, match="SHA-256"):
        fashion_mnist(root, download=False)


class _Response(io.BytesIO):
    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_the_canonical_md5(tmp_path, monkeypatch):
    """Served bytes that are not the canonical .gz are refused and not kept."""
    shared = fashion_root() / "FashionMNIST" / "raw"
    urls = []

    def serve(url, timeout=None):
        urls.append(url)
        return _Response((shared / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr("urllib.request.urlopen", serve)
    # The shared copy is re-compressed, so its MD5 is not the canonical one.
    with pytest.raises(ValueError, match="MD5"):
        fashion_mnist(tmp_path)
    assert urls == [f"{BASE_URL}/t10k-images-idx3-ubyte.gz"]
    raw = tmp_path / "FashionMNIST" / "raw"
    assert not raw.exists() or not any(raw.iterdir())  # nothing kept
    # Bytes whose MD5 matches are kept, then checked by their content.
    md5 = {n: hashlib.md5((shared / n).read_bytes()).hexdigest() for n in GZ_MD5}
    module = importlib.import_module("metalearn.data.fashion_mnist")
    monkeypatch.setattr(module, "GZ_MD5", md5)
    data = fashion_mnist(tmp_path)
    assert data.images.shape == (10_000, 1, 28, 28)
    assert sorted(p.name for p in raw.iterdir()) == sorted(FILES["test"])


def test_offline_download_fails_clearly(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(FileNotFoundError, match="(?s)Could not download .*METALEARN"):
        fashion_mnist(tmp_path)


def test_recorded_digests_are_those_of_the_shared_copy():
    """The SHA-256 in the code are those of the decompressed shared files."""
    raw = fashion_root() / "FashionMNIST" / "raw"
    for name, digest in IDX_SHA256.items():
        with gzip.open(raw / name) as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == digest
