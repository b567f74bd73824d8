import io
import os
import shutil
import sys
import time
import urllib.error
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import omniglot_root
from PIL import Image

from metalearn.data import omniglot, rotate_classes
from metalearn.data.download import atomic_write, download, md5sum
from metalearn.data.omniglot import ARCHIVES, _cache_hash, _cache_problem, _load_cache


def test_shape_dtype_order(omniglot_data):
    d = omniglot_data
    assert d.images.shape == (1623, 20, 1, 28, 28)
    assert d.images.dtype == torch.uint8
    assert torch.equal(d.character_ids, torch.arange(1, 1624))
    assert len(d.alphabets) == 1623 and all(d.alphabets)
    # Ink is bright: strokes cover a minority of each image.
    assert 5 < d.images.float().mean() < 60


def test_images_match_the_pngs_in_the_archives(omniglot_data):
    """Independent decoding of a few files, found by their names in the zips."""
    root = omniglot_root() / "omniglot"
    picks = {
        "images_background.zip": [(1, 1), (500, 7)],
        "images_evaluation.zip": [(965, 20), (1623, 13)],
    }
    for archive, pairs in picks.items():
        with zipfile.ZipFile(root / archive) as z:
            names = {n.rsplit("/", 1)[-1]: n for n in z.namelist()}
            for char_id, drawer in pairs:
                png = Image.open(
                    io.BytesIO(z.read(names[f"{char_id:04d}_{drawer:02d}.png"]))
                )
                small = png.convert("L").resize((28, 28), Image.LANCZOS)
                expected = 255 - torch.tensor(list(small.tobytes()), dtype=torch.int16)
                got = omniglot_data.images[char_id - 1, drawer - 1, 0].flatten()
                assert torch.equal(got.to(torch.int16), expected.view(-1))


def test_splits(omniglot_data):
    sizes = {name: len(omniglot_data.split(name)) for name in ("train", "val", "test")}
    assert sizes == {"train": 1028, "val": 172, "test": 423}
    assert len(omniglot_data.split("trainval")) == 1200
    ids = [set(omniglot_data.split_ids(n).tolist()) for n in ("train", "val", "test")]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert set().union(*ids) == set(range(1, 1624))
    assert min(ids[2]) > 964  # test characters come from the evaluation alphabets
    with pytest.raises(ValueError, match="Unknown split 'dev'"):
        omniglot_data.split("dev")


def test_rotate_classes():
    images = torch.arange(2 * 3 * 1 * 4 * 4).view(2, 3, 1, 4, 4)
    rotated = rotate_classes(images)
    assert rotated.shape == (8, 3, 1, 4, 4)
    assert torch.equal(rotated[:2], images)
    assert torch.equal(rotated[2:4], images.rot90(1, dims=(-2, -1)))
    assert torch.equal(rotated[6:8].rot90(1, dims=(-2, -1)), images)
    with pytest.raises(ValueError, match="S, S"):
        rotate_classes(torch.zeros(2, 3, 1, 4, 5))


def test_cached_load_is_fast_and_identical(omniglot_data, omniglot_cache):
    start = time.perf_counter()
    again = omniglot(omniglot_root(), download=False, cache=omniglot_cache)
    assert time.perf_counter() - start < 2.0
    assert torch.equal(again.images, omniglot_data.images)
    cached = list(omniglot_cache.glob("omniglot-28px-*.pt"))
    assert len(cached) == 1
    assert not list(omniglot_root().rglob("*.pt"))  # nothing written to the data


def test_missing_archive_error_names_url_directory_and_variable(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        omniglot(tmp_path, download=False, cache=tmp_path / "cache")
    message = str(info.value)
    assert "images_background.zip" in message and str(tmp_path) in message
    assert "https://raw.githubusercontent.com/brendenlake/omniglot" in message
    assert "METALEARN_DATA" in message


def test_offline_download_fails_clearly(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(
        FileNotFoundError, match="(?s)Could not download .*METALEARN_DATA"
    ):
        omniglot(tmp_path, cache=tmp_path / "cache")
    assert not list((tmp_path / "omniglot").glob("*.zip"))  # nothing half-written


def test_download_verifies_md5_before_keeping(tmp_path, monkeypatch):
    payload = b"not the archive you are looking for"

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: Response(payload))
    target = tmp_path / "file.zip"
    with pytest.raises(ValueError, match="MD5"):
        download("https://example.org/file.zip", target, md5="0" * 32)
    assert list(tmp_path.iterdir()) == []
    import hashlib

    good = hashlib.md5(payload).hexdigest()
    download("https://example.org/file.zip", target, md5=good)
    assert target.read_bytes() == payload and md5sum(target) == good


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "result.bin"
    target.write_bytes(b"old")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.bin"]


def _copy_archives(tmp_path):
    root = tmp_path / "data"
    (root / "omniglot").mkdir(parents=True)
    for name in ARCHIVES:
        shutil.copy(omniglot_root() / "omniglot" / name, root / "omniglot" / name)
    return root


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_archive_gives_clear_error_and_no_cache(tmp_path, damage):
    root = _copy_archives(tmp_path)
    archive = root / "omniglot" / "images_background.zip"
    data = archive.read_bytes()
    if damage == "truncate":
        archive.write_bytes(data[: len(data) // 2])
    else:
        archive.write_bytes(b"\x00" * 1000)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="not a readable Omniglot archive"):
        omniglot(root, download=False, cache=cache)
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.slow
def test_incomplete_archive_is_rejected(tmp_path):
    root = _copy_archives(tmp_path)
    archive = root / "omniglot" / "images_evaluation.zip"
    with zipfile.ZipFile(omniglot_root() / "omniglot" / archive.name) as src:
        keep = [i for i in src.infolist() if not i.filename.endswith("_20.png")][:200]
        with zipfile.ZipFile(archive, "w") as dst:
            for info in keep:
                dst.writestr(info, src.read(info))
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="expected 13180"):
        omniglot(root, download=False, cache=cache)
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.parametrize(
    ("size", "error"), [(3, ValueError), (106, ValueError), (28.0, TypeError)]
)
def test_bad_image_size(size, error, tmp_path):
    with pytest.raises(error, match="image_size"):
        omniglot(tmp_path, image_size=size, download=False)


def _build_in_subprocess(root: str, cache: str) -> str:
    import hashlib

    from metalearn.data import omniglot as load

    images = load(root, download=False, cache=cache).images
    return hashlib.md5(images.numpy().tobytes()).hexdigest()


@pytest.mark.slow
def test_two_processes_building_the_cache_at_once(tmp_path, omniglot_data):
    """Write-then-rename: concurrent builders both finish with a valid cache."""
    import concurrent.futures
    import hashlib
    import multiprocessing

    cache = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        jobs = [
            pool.submit(_build_in_subprocess, str(omniglot_root()), str(cache))
            for _ in range(2)
        ]
        digests = [job.result(timeout=300) for job in jobs]
    expected = hashlib.md5(omniglot_data.images.numpy().tobytes()).hexdigest()
    assert digests == [expected, expected]
    assert [p.name for p in cache.iterdir()] == [
        p.name for p in cache.glob("omniglot-28px-*.pt")
    ]  # no temporary files left
    reloaded = omniglot(omniglot_root(), download=False, cache=cache)
    assert torch.equal(reloaded.images, omniglot_data.images)


# --- cache integrity --------------------------------------------------------------


def _cache_file(omniglot_cache):
    (path,) = omniglot_cache.glob("omniglot-28px-*.pt")
    return path


def test_the_cache_holds_a_hash_and_a_good_cache_is_used(omniglot_data, omniglot_cache):
    payload = torch.load(_cache_file(omniglot_cache), weights_only=True)
    assert len(payload["sha256"]) == 64 and payload["image_size"] == 28
    assert _load_cache(_cache_file(omniglot_cache), 28) is not None
    assert _load_cache(_cache_file(omniglot_cache), 32) is None  # another size


def test_a_flipped_byte_in_the_cache_is_detected(
    omniglot_data, omniglot_cache, tmp_path
):
    damaged = tmp_path / _cache_file(omniglot_cache).name
    data = bytearray(_cache_file(omniglot_cache).read_bytes())
    stroke = omniglot_data.images[0, 0, 0].numpy().tobytes()  # a 28x28 image
    where = bytes(data).find(stroke)
    assert where > 0
    data[where + 300] ^= 0xFF
    damaged.write_bytes(bytes(data))
    loaded = torch.load(damaged, weights_only=True)  # torch does not notice
    assert not torch.equal(loaded["images"], omniglot_data.images)
    assert _load_cache(damaged, 28) is None


def test_a_cache_of_the_right_format_but_wrong_shape_is_refused(tmp_path):
    images = torch.zeros(1200, 20, 1, 28, 28, dtype=torch.uint8)  # no test split
    payload = {
        "format": 2,
        "image_size": 28,
        "images": images,
        "character_ids": torch.arange(1, 1624),
        "alphabets": ["a"] * 1623,
    }
    payload["sha256"] = _cache_hash(payload)  # consistent with its content
    path = tmp_path / "cache.pt"
    torch.save(payload, path)
    assert "shape (1200, 20, 1, 28, 28)" in _cache_problem(payload, 28)
    assert _load_cache(path, 28) is None
    torch.save({**payload, "format": 1}, path)
    assert _load_cache(path, 28) is None
    path.write_bytes(b"not a torch file")
    assert _load_cache(path, 28) is None


def test_a_damaged_cache_is_rebuilt(omniglot_cache, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / _cache_file(omniglot_cache).name
    target.write_bytes(_cache_file(omniglot_cache).read_bytes()[:-100])  # truncated

    class Rebuilt(Exception):
        pass

    def rebuild(*args):
        raise Rebuilt

    module = sys.modules["metalearn.data.omniglot"]  # the package exports a function
    monkeypatch.setattr(module, "_build", rebuild)
    with pytest.raises(Rebuilt):
        omniglot(omniglot_root(), download=False, cache=cache)
    target.write_bytes(_cache_file(omniglot_cache).read_bytes())  # intact again
    assert (
        omniglot(omniglot_root(), download=False, cache=cache).images.shape[0] == 1623
    )


# --- durable atomic writes ----------------------------------------------------------


@pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="names open files through /proc (Linux)"
)
def test_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(
    tmp_path, monkeypatch
):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        target = os.readlink(f"/proc/self/fd/{descriptor}")
        events.append(("fsync", Path(target).name))
        real_fsync(descriptor)

    def replace(source, destination):
        events.append(("replace", Path(source).name, Path(destination).name))
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "result.bin"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"complete"))
    assert target.read_bytes() == b"complete"
    (first, second, third) = events
    assert first[0] == "fsync" and first[1].startswith(".result.bin.")
    assert second[0] == "replace" and second[1] == first[1] and second[2] == target.name
    assert third == ("fsync", tmp_path.name)
