import random

import numpy as np
import pytest
import torch

from metalearn.runtime import (
    cpu_name,
    default_device,
    progress_bar,
    seed_everything,
    start_run,
)


def draw():
    return random.random(), np.random.rand(), torch.rand(3)  # noqa: NPY002


def test_seed_everything_reproduces_all_generators():
    generator = seed_everything(7)
    first = draw(), torch.rand(2, generator=generator)
    generator = seed_everything(7)
    second = draw(), torch.rand(2, generator=generator)
    assert first[0][0] == second[0][0] and first[0][1] == second[0][1]
    assert torch.equal(first[0][2], second[0][2])
    assert torch.equal(first[1], second[1])
    seed_everything(8)
    assert not torch.equal(draw()[2], first[0][2])


@pytest.mark.parametrize(
    ("bad", "error"),
    [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), ("3", TypeError),
     (True, TypeError)],
)
def test_bad_seed(bad, error):
    with pytest.raises(error, match="seed must be"):
        seed_everything(bad)


def test_default_device_is_usable():
    device = default_device()
    assert torch.zeros(1, device=device).device.type == device.type


def test_cpu_name_reads_the_model_name(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Some CPU 9\n")
    assert cpu_name(str(cpuinfo)).startswith("Some CPU 9, ")
    missing = cpu_name(str(tmp_path / "missing"))  # no such file: the architecture
    assert missing and "Some CPU" not in missing
    (tmp_path / "empty").write_text("processor\t: 0\n")
    assert cpu_name(str(tmp_path / "empty")) == missing


def test_run_header_and_wall_time(capsys):
    run = start_run(seed=3, profile="smoke")
    header = capsys.readouterr().out
    for field in ("profile : smoke", "device", "torch", "learn2learn", "seed    : 3"):
        assert field in header
    # the version of the code that ran, not of a stale installed distribution
    import metalearn

    assert f"metalearn {metalearn.__version__}," in header
    seconds = run.finish()
    assert seconds >= 0 and "wall time" in capsys.readouterr().out


def test_progress_bar_iterates_everything():
    assert list(progress_bar(range(5), disable=True)) == list(range(5))


def test_progress_bars_only_where_someone_watches(monkeypatch, capsys):
    from metalearn.runtime import progress_enabled

    monkeypatch.setenv("METALEARN_PROGRESS", "1")
    assert progress_enabled()
    monkeypatch.setenv("METALEARN_PROGRESS", "0")
    assert not progress_enabled()
    for _ in progress_bar(range(3), desc="hidden"):
        pass
    assert "hidden" not in capsys.readouterr().err  # nothing stored in a notebook
    monkeypatch.delenv("METALEARN_PROGRESS")
    assert not progress_enabled()  # pytest's stderr is no terminal, no widgets
    monkeypatch.setenv("METALEARN_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="METALEARN_PROGRESS='sometimes'"):
        progress_enabled()
