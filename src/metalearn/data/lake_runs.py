"""Lake et al.'s 20 one-shot, 20-way classification runs on Omniglot.

Lake, Salakhutdinov & Tenenbaum (2015) fixed a benchmark of 20 *runs*. Each
run shows 20 characters from the evaluation alphabets once each (the
``training`` images, one per class) and asks for the class of 20 further
drawings of the same characters by other people (the ``test`` images). People
err on 4.5% of them; Koch et al. (2015) report 92.0% accuracy for Siamese
networks trained on the background alphabets.

Every one of the 800 images is a drawing of the Omniglot archives (checked
pixel for pixel in the tests): 200 distinct characters with ids 1011..1596,
all from the evaluation alphabets. They overlap the book's ``train``/``val``
ids (1..1200) as well as ``test``, so a model evaluated on these runs must be
trained on the background alphabets only (split ``"background"`` of
:func:`metalearn.data.omniglot`, ids 1..964), as Koch et al. did.

The archive is ``all_runs.zip`` from https://github.com/brendenlake/omniglot,
downloaded and MD5-checked like the other Omniglot archives, or used as found
in ``$METALEARN_DATA/omniglot/``. Images are decoded exactly like
:func:`metalearn.data.omniglot` (Lanczos resize, ink = 255).
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from metalearn.data.download import download as download_file
from metalearn.data.omniglot import BASE_URL, check_image_size, decode_png
from metalearn.data.paths import DATA_ENV_VAR, data_root
from metalearn.episodes import Episode

URL = f"{BASE_URL}/one-shot-classification/all_runs.zip"
MD5 = "e8996daecdf12afeeb4a53a179f06b19"
NAME = "all_runs.zip"
RUNS = 20
WAYS = 20
_LINE = re.compile(r"run(\d\d)/test/item(\d\d)\.png\s+run\1/training/class(\d\d)\.png")


@dataclass(frozen=True)
class OneShotRun:
    """One 20-way one-shot run.

    Attributes:
        training: ``uint8 [20, 1, S, S]``; row ``k`` is ``classKK.png`` (k+1).
        test: ``uint8 [20, 1, S, S]``; row ``j`` is ``itemJJ.png`` (j+1).
        test_labels: ``int64 [20]``; the training row that shows the same
            character as each test image (from ``class_labels.txt``).
    """

    training: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor

    def episode(self) -> Episode:
        """The run as an :class:`~metalearn.episodes.Episode` (labels 0..19)."""
        return Episode(
            support_x=self.training.float() / 255,
            support_y=torch.arange(WAYS),
            query_x=self.test.float() / 255,
            query_y=self.test_labels.clone(),
            classes=torch.arange(WAYS),
        )


def parse_class_labels(text: str, run: int) -> torch.Tensor:
    """The test labels of one run from its ``class_labels.txt``.

    Each of the 20 lines pairs a test image with the training image of the same
    character, ``runRR/test/itemJJ.png runRR/training/classKK.png``. Every test
    item and every training class must appear exactly once (the runs are
    one-to-one), with the run's own number.

    Returns:
        ``int64 [20]``: entry ``j`` is ``KK - 1`` for ``itemJJ`` (``j = JJ - 1``).

    Raises:
        ValueError: a line that does not have that form, another run number,
            an item or class outside 01..20, listed twice or missing.
    """
    name = f"run{run:02d}/class_labels.txt"
    test_labels = torch.full((WAYS,), -1, dtype=torch.int64)
    classes_seen: set[int] = set()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"{name}: cannot read the line {line!r}")
        line_run, item, cls = (int(g) for g in match.groups())
        if line_run != run:
            raise ValueError(f"{name}: the line {line!r} belongs to run {line_run}")
        if not (1 <= item <= WAYS and 1 <= cls <= WAYS):
            raise ValueError(f"{name}: item or class outside 01..{WAYS} in {line!r}")
        if test_labels[item - 1] >= 0:
            raise ValueError(f"{name}: test item {item:02d} is listed twice")
        if cls in classes_seen:
            raise ValueError(f"{name}: training class {cls:02d} is listed twice")
        test_labels[item - 1] = cls - 1
        classes_seen.add(cls)
    if len(lines) != WAYS or bool((test_labels < 0).any()):
        missing = (torch.nonzero(test_labels < 0).flatten() + 1).tolist()
        raise ValueError(
            f"{name} has {len(lines)} lines, expected {WAYS}; test items "
            f"{missing} have no label"
        )
    return test_labels


def _archive(root: Path, download: bool) -> Path:
    for path in (root / "omniglot" / NAME, root / NAME):
        if path.is_file():
            return path
    if not download:
        raise FileNotFoundError(
            f"{NAME} not found in {root / 'omniglot'} (nor in {root}). Download it "
            f"from {URL}, or set {DATA_ENV_VAR} to a directory that contains "
            f"omniglot/{NAME}."
        )
    return download_file(URL, root / "omniglot" / NAME, MD5)


def lake_runs(
    root: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 28,
    download: bool = True,
) -> list[OneShotRun]:
    """Load the 20 runs, in order (run01 .. run20).

    Args:
        root: data root (default ``$METALEARN_DATA``); the archive is looked for
            in ``root/omniglot/all_runs.zip`` and downloaded there if missing.
        image_size: side of the decoded images (105 = original).
        download: if ``False``, a missing archive raises instead.

    Raises:
        FileNotFoundError: the archive is missing and could not be downloaded.
        ValueError: the archive is corrupt or incomplete.
    """
    check_image_size(image_size)
    if root is not None and not isinstance(root, str | os.PathLike):
        raise TypeError(
            f"root must be a path (str or pathlib.Path) or None, got "
            f"{type(root).__name__} {root!r}."
        )
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}.")
    path = _archive(data_root(root), download)
    runs = []
    try:
        with zipfile.ZipFile(path) as archive:
            for run in range(1, RUNS + 1):
                prefix = f"run{run:02d}"
                labels = archive.read(f"{prefix}/class_labels.txt").decode()
                test_labels = parse_class_labels(labels, run)

                def load(kind: str, stem: str, prefix: str = prefix) -> torch.Tensor:
                    return torch.stack(
                        [
                            torch.from_numpy(
                                decode_png(
                                    archive.read(f"{prefix}/{kind}/{stem}{k:02d}.png"),
                                    image_size,
                                ).copy()
                            )[None]
                            for k in range(1, WAYS + 1)
                        ]
                    )

                runs.append(
                    OneShotRun(
                        load("training", "class"), load("test", "item"), test_labels
                    )
                )
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as exc:
        raise ValueError(
            f"{path} is not a readable copy of Lake et al.'s one-shot runs ({exc}). "
            "Delete it and run again to download a fresh copy."
        ) from exc
    return runs
