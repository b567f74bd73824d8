"""Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015): 1,623 characters x 20 drawers.

The archives are the official ones that torchvision also uses,
``images_background.zip`` (964 characters) and ``images_evaluation.zip``
(659 characters), from https://github.com/brendenlake/omniglot. Every image is
a 105x105 black-on-white PNG named ``IIII_SS.png``, where ``IIII`` is the
*global character id* (0001..1623) and ``SS`` the drawer (01..20).

The PNGs are decoded once, straight from the zip files (no extracted tree to
leave half-written), resized with Lanczos filtering, inverted so that ink is
bright (255) on a dark background (0), and cached as one ``uint8`` tensor of
shape ``[1623, 20, 1, S, S]`` ordered by character id and drawer. Later loads
read that tensor in a fraction of a second. The cache stores a SHA-256 hash of
its content; a cache file whose hash, shape, dtype, ids or alphabets are not
what they must be (a flipped byte, a file from another version, a truncated
copy) is rebuilt from the archives, never used.

Splits
------
Splits are defined by character id, so they are the same whatever copy of the
archives was used (folder names differ between copies, the ids do not):

========== ============ ========== ==========================================
split      ids          characters use
========== ============ ========== ==========================================
train      1 .. 1028    1028       meta-training
val        1029 .. 1200 172        validation (model selection, early stop)
trainval   1 .. 1200    1200       meta-training when no validation is needed
test       1201 .. 1623 423        meta-testing; never seen during training
background 1 .. 964     964        the 30 background alphabets only, for
                                   Lake et al.'s one-shot runs (see
                                   :mod:`metalearn.data.lake_runs`)
========== ============ ========== ==========================================

The sizes are those of the MAML paper (Finn et al., 2017: 1200 training and
423 test characters) and of Vinyals et al. (2016) and Snell et al. (2017)
(1028 train, 172 validation, 423 test). Those papers chose *which* characters
differently (MAML by a random shuffle of folders, Vinyals by alphabet lists);
we use contiguous id ranges so that the split is reproducible from the ids
alone. Ids 965..1623 come from the evaluation alphabets, so all 423 test
characters belong to alphabets that the background set never shows.
:func:`rotate_classes` adds 90/180/270-degree rotations as new classes, the
augmentation used by those papers.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metalearn.data.download import atomic_write, download, md5sum
from metalearn.data.paths import CACHE_ENV_VAR, DATA_ENV_VAR, cache_root, data_root

BASE_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
#: name -> (url, official MD5, number of characters, first id)
ARCHIVES: dict[str, tuple[str, str, int, int]] = {
    "images_background.zip": (
        f"{BASE_URL}/images_background.zip",
        "68d2efa1b9178cc56df9314c21c6e718",
        964,
        1,
    ),
    "images_evaluation.zip": (
        f"{BASE_URL}/images_evaluation.zip",
        "6b91aef0f799c5bb55b94e3f2daec811",
        659,
        965,
    ),
}
NUM_CHARACTERS = 1623
NUM_DRAWERS = 20
FULL_SIZE = 105
SPLITS: dict[str, tuple[int, int]] = {
    "background": (1, 964),
    "train": (1, 1028),
    "val": (1029, 1200),
    "trainval": (1, 1200),
    "test": (1201, 1623),
}
_FILE_NAME = re.compile(r"(\d{4})_(\d{2})\.png$")
_CACHE_FORMAT = 2  # 2: with the content hash "sha256" and "image_size"


@dataclass(frozen=True)
class OmniglotData:
    """Decoded Omniglot.

    Attributes:
        images: ``uint8`` tensor ``[1623, 20, 1, S, S]``, ink = 255, row ``i`` is
            character id ``i + 1``, column ``j`` is drawer ``j + 1``.
        character_ids: ``int64`` tensor ``[1623]`` with the ids 1..1623.
        alphabets: the alphabet folder of each character, as named in the archive.
        image_size: ``S``.
    """

    images: torch.Tensor
    character_ids: torch.Tensor
    alphabets: tuple[str, ...]
    image_size: int

    def split(self, name: str) -> torch.Tensor:
        """The images of one split, ``[classes, 20, 1, S, S]`` (see the module doc)."""
        if not isinstance(name, str) or name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; valid: {', '.join(SPLITS)}.")
        first, last = SPLITS[name]
        return self.images[first - 1 : last]

    def split_ids(self, name: str) -> torch.Tensor:
        """The character ids of one split."""
        self.split(name)  # validates the name
        first, last = SPLITS[name]
        return self.character_ids[first - 1 : last]


def rotate_classes(images: torch.Tensor) -> torch.Tensor:
    """Add rotations by 90, 180 and 270 degrees as new classes.

    Args:
        images: ``[classes, examples, C, H, W]`` with ``H == W``.

    Returns:
        ``[4 * classes, examples, C, H, W]``: the original classes, then the
        classes rotated by 90, 180 and 270 degrees (counter-clockwise).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}.")
    if images.dim() != 5 or images.shape[-1] != images.shape[-2]:
        raise ValueError(
            "images must have shape [classes, examples, C, S, S], "
            f"got {tuple(images.shape)}."
        )
    return torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(4)])


def _locate_archives(root: Path, download_missing: bool) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name, (url, md5, _, _) in ARCHIVES.items():
        candidates = [root / "omniglot" / name, root / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            if not download_missing:
                raise FileNotFoundError(
                    f"Omniglot archive {name} not found in {root / 'omniglot'} "
                    f"(nor in {root}). Download it from {url}, or set "
                    f"{DATA_ENV_VAR} to a directory that contains omniglot/{name}."
                )
            path = download(url, root / "omniglot" / name, md5)
        found[name] = path
    return found


def decode_png(data: bytes, image_size: int) -> np.ndarray:
    """One Omniglot PNG as ``uint8 [S, S]``, Lanczos-resized, ink = 255."""
    with Image.open(io.BytesIO(data)) as png:
        gray = png.convert("L")
        if image_size != FULL_SIZE:
            gray = gray.resize((image_size, image_size), Image.LANCZOS)
        return 255 - np.asarray(gray)


def check_image_size(image_size: object) -> int:
    """Raise unless ``image_size`` is an int in ``4..105``."""
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise TypeError(f"image_size must be an int, got {image_size!r}.")
    if not 4 <= image_size <= FULL_SIZE:
        raise ValueError(f"image_size must be in 4..{FULL_SIZE}, got {image_size}.")
    return image_size


def _decode_archive(
    path: Path, image_size: int, images: np.ndarray, alphabets: list[str]
) -> int:
    """Decode every PNG of one archive into ``images``; return the count."""
    count = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                match = _FILE_NAME.search(info.filename)
                if match is None:
                    continue
                char_id, drawer = int(match.group(1)), int(match.group(2))
                if not (1 <= char_id <= NUM_CHARACTERS and 1 <= drawer <= NUM_DRAWERS):
                    raise ValueError(f"unexpected file {info.filename}")
                pixels = decode_png(archive.read(info), image_size)
                images[char_id - 1, drawer - 1, 0] = pixels
                parts = info.filename.split("/")
                alphabets[char_id - 1] = parts[-3] if len(parts) >= 3 else "?"
                count += 1
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(
            f"{path} is not a readable Omniglot archive ({exc}). Delete it and "
            "run again to download a fresh copy. Nothing was cached."
        ) from exc
    return count


def _build(archives: dict[str, Path], image_size: int) -> dict[str, object]:
    images = np.zeros(
        (NUM_CHARACTERS, NUM_DRAWERS, 1, image_size, image_size), dtype=np.uint8
    )
    alphabets = [""] * NUM_CHARACTERS
    for name, path in archives.items():
        expected = ARCHIVES[name][2] * NUM_DRAWERS
        count = _decode_archive(path, image_size, images, alphabets)
        if count != expected:
            raise ValueError(
                f"{path} holds {count} character images, expected {expected}: the "
                "archive is incomplete. Delete it and run again. Nothing was cached."
            )
    missing = [i + 1 for i, a in enumerate(alphabets) if not a]
    if missing:
        raise ValueError(f"No images found for character ids {missing[:5]}...")
    payload: dict[str, object] = {
        "format": _CACHE_FORMAT,
        "image_size": image_size,
        "images": torch.from_numpy(images),
        "character_ids": torch.arange(1, NUM_CHARACTERS + 1),
        "alphabets": alphabets,
    }
    payload["sha256"] = _cache_hash(payload)
    return payload


def _cache_hash(payload: dict[str, object]) -> str:
    """SHA-256 of the cache's images, ids, alphabets and image size."""
    digest = hashlib.sha256()
    digest.update(f"{payload['image_size']}\n".encode())
    digest.update(payload["images"].numpy().tobytes())
    digest.update(payload["character_ids"].numpy().tobytes())
    digest.update("\n".join(payload["alphabets"]).encode())
    return digest.hexdigest()


def _cache_problem(payload: object, image_size: int) -> str | None:
    """Why a loaded cache cannot be used (``None`` if it can)."""
    if not isinstance(payload, dict):
        return "not a dict"
    if payload.get("format") != _CACHE_FORMAT:
        return f"format {payload.get('format')!r}, expected {_CACHE_FORMAT}"
    if payload.get("image_size") != image_size:
        return f"image_size {payload.get('image_size')!r}, expected {image_size}"
    images, ids = payload.get("images"), payload.get("character_ids")
    shape = (NUM_CHARACTERS, NUM_DRAWERS, 1, image_size, image_size)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        return "images are not a uint8 tensor"
    if tuple(images.shape) != shape:
        return f"images have shape {tuple(images.shape)}, expected {shape}"
    if not isinstance(ids, torch.Tensor) or not torch.equal(
        ids, torch.arange(1, NUM_CHARACTERS + 1)
    ):
        return "character_ids are not 1..1623"
    alphabets = payload.get("alphabets")
    if (
        not isinstance(alphabets, list)
        or len(alphabets) != NUM_CHARACTERS
        or not all(isinstance(a, str) and a for a in alphabets)
    ):
        return "alphabets are not 1623 names"
    if payload.get("sha256") != _cache_hash(payload):
        return "content does not match its SHA-256 hash"
    return None


def _load_cache(cache_file: Path, image_size: int) -> dict[str, object] | None:
    """The cached payload, or ``None`` if it is missing, stale or damaged."""
    if not cache_file.is_file():
        return None
    try:
        payload = torch.load(cache_file, weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt
        return None
    return None if _cache_problem(payload, image_size) else payload


def omniglot(
    root: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 28,
    download: bool = True,
    cache: str | os.PathLike[str] | None = None,
) -> OmniglotData:
    """Load Omniglot as one ``uint8`` tensor, downloading and decoding it if needed.

    Args:
        root: directory with ``omniglot/images_background.zip`` and
            ``omniglot/images_evaluation.zip`` (default ``$METALEARN_DATA``, else a
            user cache directory). Archives found there are used as they are;
            missing ones are downloaded from the official repository and checked
            against the official MD5.
        image_size: side ``S`` of the square images (105 = original resolution).
        download: if ``False``, a missing archive raises instead of downloading.
        cache: directory for the decoded tensor (default ``$METALEARN_CACHE``).

    Returns:
        :class:`OmniglotData` with ``images`` of shape ``[1623, 20, 1, S, S]``.

    The decoded cache is verified on every load (shape, dtype, ids and a
    SHA-256 hash of its content, one pass of about 20 ms at 28 px) and rebuilt
    from the archives if anything is wrong with it.

    Raises:
        FileNotFoundError: an archive is missing and could not be downloaded.
        ValueError: ``image_size`` is out of range or an archive is corrupt.
        TypeError: ``root`` or ``cache`` is not a path, ``download`` not a bool.
    """
    check_image_size(image_size)
    for name, value in (("root", root), ("cache", cache)):
        if value is not None and not isinstance(value, str | os.PathLike):
            raise TypeError(
                f"{name} must be a path (str or pathlib.Path) or None, got "
                f"{type(value).__name__} {value!r}."
            )
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}.")
    archives = _locate_archives(data_root(root), download)
    fingerprint = "-".join(md5sum(archives[name])[:8] for name in ARCHIVES)
    cache_file = cache_root(cache) / f"omniglot-{image_size}px-{fingerprint}.pt"
    payload = _load_cache(cache_file, image_size)
    if payload is None:
        payload = _build(archives, image_size)
        try:
            atomic_write(cache_file, lambda tmp: torch.save(payload, tmp))
        except OSError as exc:
            raise OSError(
                f"Could not write the Omniglot cache {cache_file} ({exc}); set "
                f"{CACHE_ENV_VAR} to a writable directory."
            ) from exc
    return OmniglotData(
        images=payload["images"],
        character_ids=payload["character_ids"],
        alphabets=tuple(payload["alphabets"]),
        image_size=image_size,
    )
