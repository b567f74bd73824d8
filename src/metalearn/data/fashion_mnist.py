"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 70,000 greyscale 28x28 garments.

The book uses it as a *target domain* far from Omniglot's handwritten
characters: ten classes of clothing photographs (T-shirt/top, trouser, ...,
ankle boot), 6,000 training and 1,000 test images per class. The book draws
its few-shot episodes from the ``test`` split: 5-way episodes, each with 5 of
the 10 classes (the 10 classes allow at most 10-way ones).

Files and checks
----------------
The four gzip'd IDX files of the canonical release
(https://github.com/zalandoresearch/fashion-mnist), downloaded from the
mirror that torchvision uses and checked against the MD5 of those ``.gz``
files (published with the release) before they are kept. Copies found in
``$METALEARN_DATA/FashionMNIST/raw/`` (the layout torchvision writes) are used
as they are, but their compressed bytes may legitimately differ from the
canonical ones: a re-compressed copy (for instance Debian's package
``dataset-fashion-mnist``) has other gzip headers and so another MD5. What
every good copy shares is the *decompressed* content, so that is what is
checked for every file, downloaded or found: the SHA-256 of the decompressed
IDX bytes must equal :data:`IDX_SHA256`. Those digests were computed by us
from Debian's copy, whose decompressed files are the standard data set
(60,000 + 10,000 images, 1,000 test images per class, IDX headers as
published); a fresh download whose ``.gz`` passes the canonical MD5 is checked
against them too, so a disagreement between the two would be reported, not
hidden.

What the images look like
-------------------------
``images`` are ``uint8 [N, 1, 28, 28]`` with the object bright (high values)
on a black background (0), exactly as stored in the IDX files. That is
already the polarity of :func:`metalearn.data.omniglot` (ink = 255 on 0) and
its 28x28 size, so a Conv-4 trained on Omniglot reads these images without
any resizing or inversion; what differs is the content (filled, textured
greyscale shapes instead of thin, nearly binary strokes). That difference is
the domain shift the transfer chapter measures.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from metalearn.data.download import download as download_file
from metalearn.data.paths import DATA_ENV_VAR, data_root

#: The mirror that torchvision downloads the canonical release from.
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
#: split -> (images file, labels file)
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: MD5 of the canonical ``.gz`` files (zalandoresearch/fashion-mnist README;
#: the same values are in torchvision.datasets.FashionMNIST.resources).
GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
#: SHA-256 of the decompressed IDX bytes, computed from Debian's package
#: dataset-fashion-mnist (see the module docstring).
IDX_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    ),
    "train-labels-idx1-ubyte.gz": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    ),
}
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SIZES = {"train": 60_000, "test": 10_000}
SIDE = 28
_IMAGES_MAGIC = 0x00000803  # IDX: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # IDX: unsigned bytes, 1 dimension


@dataclass(frozen=True)
class FashionMNISTData:
    """One split of Fashion-MNIST.

    Attributes:
        images: ``uint8 [N, 1, 28, 28]``, object bright on a black background.
        labels: ``int64 [N]`` in ``0..9``; ``CLASSES[k]`` names class ``k``.
        split: ``"train"`` or ``"test"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    split: str

    def by_class(self) -> torch.Tensor:
        """The images grouped by class, ``uint8 [10, M, 1, 28, 28]``.

        Row ``k`` holds the images of class ``k`` in file order, the layout the
        episode samplers of :mod:`metalearn.episodes` take. ``M`` is the size of
        the smallest class (1,000 in the test split, where all are equal).
        """
        counts = torch.bincount(self.labels, minlength=len(CLASSES))
        per_class = int(counts.min())
        rows = [
            self.images[self.labels == k][:per_class] for k in range(len(CLASSES))
        ]
        return torch.stack(rows)  # [10, M, 1, 28, 28]


def _locate(root: Path, name: str, download: bool) -> Path:
    candidates = [root / "FashionMNIST" / "raw" / name, root / name]
    for path in candidates:
        if path.is_file():
            return path
    url = f"{BASE_URL}/{name}"
    if not download:
        raise FileNotFoundError(
            f"Fashion-MNIST file {name} not found in {candidates[0].parent} (nor in "
            f"{root}). Download it from {url}, or set {DATA_ENV_VAR} to a "
            f"directory that contains FashionMNIST/raw/{name}."
        )
    return download_file(url, candidates[0], GZ_MD5[name])


def _decompressed(path: Path, name: str) -> bytes:
    """The IDX bytes of the file ``name`` at ``path``, checked by :data:`IDX_SHA256`."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(
            f"{path} is not a readable gzip file ({exc}): the copy is corrupt or "
            f"truncated. Delete it and run again to download {BASE_URL}/{name} "
            "(MD5-checked)."
        ) from exc
    found = hashlib.sha256(raw).hexdigest()
    if found != IDX_SHA256[name]:
        raise ValueError(
            f"{path} decompresses to content with SHA-256 {found}, expected "
            f"{IDX_SHA256[name]} (the standard Fashion-MNIST {name[:-3]}): the copy "
            f"is corrupt or a different file. Delete it and run again to download "
            f"{BASE_URL}/{name} (MD5-checked)."
        )
    return raw


def _header(raw: bytes, magic: int, dims: int, path: Path) -> list[int]:
    values = [int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(dims + 1)]
    if values[0] != magic:
        raise ValueError(
            f"{path}: IDX magic number {values[0]:#010x}, expected {magic:#010x}."
        )
    return values[1:]


def fashion_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    split: str = "test",
    download: bool = True,
) -> FashionMNISTData:
    """Load one split of Fashion-MNIST, downloading it if needed.

    Args:
        root: data root (default ``$METALEARN_DATA``, else a user cache); the
            files are looked for in ``root/FashionMNIST/raw/`` (then ``root``)
            and downloaded to ``root/FashionMNIST/raw/`` if missing.
        split: ``"test"`` (10,000 images, where the book draws its episodes)
            or ``"train"`` (60,000).
        download: if ``False``, a missing file raises instead.

    Returns:
        :class:`FashionMNISTData` with ``images uint8 [N, 1, 28, 28]`` and
        ``labels int64 [N]``.

    Raises:
        FileNotFoundError: a file is missing and could not be downloaded.
        ValueError: an unknown split, or a file that is corrupt (not gzip, or
            whose decompressed content is not the standard data set).
    """
    if split not in FILES:
        raise ValueError(f"Unknown split {split!r}; valid: {', '.join(FILES)}.")
    base = data_root(root)
    images_name, labels_name = FILES[split]
    images_path = _locate(base, images_name, download)
    labels_path = _locate(base, labels_name, download)
    images_raw = _decompressed(images_path, images_name)
    labels_raw = _decompressed(labels_path, labels_name)
    count, rows, cols = _header(images_raw, _IMAGES_MAGIC, 3, images_path)
    (label_count,) = _header(labels_raw, _LABELS_MAGIC, 1, labels_path)
    if (count, rows, cols) != (SIZES[split], SIDE, SIDE) or label_count != count:
        raise ValueError(
            f"{images_path} / {labels_path}: {count} images of {rows}x{cols} and "
            f"{label_count} labels, expected {SIZES[split]} of {SIDE}x{SIDE}."
        )
    pixels = torch.frombuffer(bytearray(images_raw[16:]), dtype=torch.uint8)
    labels = torch.frombuffer(bytearray(labels_raw[8:]), dtype=torch.uint8)
    return FashionMNISTData(
        images=pixels.view(count, 1, SIDE, SIDE),
        labels=labels.to(torch.int64),
        split=split,
    )
