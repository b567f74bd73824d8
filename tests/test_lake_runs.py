import shutil
import zipfile

import pytest
import torch
from conftest import omniglot_root

from metalearn.data import lake_runs
from metalearn.data.lake_runs import parse_class_labels


@pytest.fixture(scope="module")
def runs():
    return lake_runs(omniglot_root(), download=False)


def test_twenty_runs_of_twenty_ways(runs):
    assert len(runs) == 20
    for run in runs:
        assert run.training.shape == run.test.shape == (20, 1, 28, 28)
        assert run.training.dtype == torch.uint8
        assert sorted(run.test_labels.tolist()) == list(range(20))  # a permutation
    assert runs[0].test_labels[:3].tolist() == [7, 8, 1]  # class08, class09, class02


def test_images_are_omniglot_drawings_with_consistent_labels(runs, omniglot_data):
    """Independent check of the parsing: look every image up in Omniglot."""
    flat = omniglot_data.images.flatten(2).flatten(0, 1)
    where = {}
    for i in range(flat.shape[0]):
        where.setdefault(bytes(flat[i].numpy()), i // 20 + 1)  # character id
    ids = set()
    for run in runs:
        train_ids = [where[bytes(x.flatten().numpy())] for x in run.training]
        test_ids = [where[bytes(x.flatten().numpy())] for x in run.test]
        assert len(set(train_ids)) == 20
        for j, label in enumerate(run.test_labels.tolist()):
            assert test_ids[j] == train_ids[label]
        ids.update(train_ids)
    assert len(ids) == 200 and min(ids) > 964  # evaluation alphabets only


def test_episode_view(runs):
    episode = runs[3].episode()
    assert episode.support_y.tolist() == list(range(20))
    assert torch.equal(episode.query_y, runs[3].test_labels)
    assert episode.query_x.max() <= 1.0 and episode.support_x.dtype == torch.float32


def test_missing_and_corrupt_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match="(?s)all_runs.zip.*METALEARN_DATA"):
        lake_runs(tmp_path, download=False)
    (tmp_path / "omniglot").mkdir()
    broken = tmp_path / "omniglot" / "all_runs.zip"
    data = (omniglot_root() / "omniglot" / "all_runs.zip").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="not a readable copy"):
        lake_runs(tmp_path, download=False)
    shutil.rmtree(tmp_path / "omniglot")
    with pytest.raises(ValueError, match="image_size"):
        lake_runs(tmp_path, image_size=2)


def _labels_text(run: int = 1) -> str:
    with zipfile.ZipFile(omniglot_root() / "omniglot" / "all_runs.zip") as archive:
        return archive.read(f"run{run:02d}/class_labels.txt").decode()


def test_parse_class_labels_matches_the_loaded_runs(runs):
    for run in (1, 7, 20):
        labels = parse_class_labels(_labels_text(run), run)
        assert torch.equal(labels, runs[run - 1].test_labels)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda lines: [lines[0], *lines], "test item 01 is listed twice"),
        (
            lambda lines: [lines[0], lines[0], *lines[2:]],
            "test item 01 is listed twice",
        ),
        (
            lambda lines: [lines[0].replace("item01", "item21"), *lines[1:]],
            "outside 01..20",
        ),
        (
            lambda lines: [
                lines[0],
                lines[1].replace(lines[1][-11:], lines[0][-11:]),
                *lines[2:],
            ],
            "training class 08 is listed twice",
        ),
        (lambda lines: lines[1:], r"has 19 lines, expected 20; test items \[1\]"),
        (lambda lines: [*lines[:-1], "run01/test/item20.png"], "cannot read the line"),
        (
            lambda lines: [lines[0].replace("run01", "run02", 1), *lines[1:]],
            "cannot read",
        ),
    ],
    ids=["extra", "duplicate", "range", "class-twice", "missing", "garbled", "run"],
)
def test_bad_label_files_are_refused(edit, pattern):
    lines = _labels_text(1).strip().splitlines()
    with pytest.raises(ValueError, match=pattern):
        parse_class_labels("\n".join(edit(lines)), 1)


def test_a_label_line_of_another_run_is_refused():
    lines = _labels_text(2).strip().splitlines()
    with pytest.raises(ValueError, match="belongs to run 2"):
        parse_class_labels("\n".join(lines), 1)
