"""The benchmark script runs and its gradients agree (tiny sizes, not timed)."""

import importlib.util
from pathlib import Path

import pytest
from conftest import omniglot_root

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "maml_step.py"


def load_script(name: str):
    """Import ``benchmarks/<name>.py`` as a module (benchmarks is no package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.learn2learn
def test_benchmark_script_runs_quickly(capsys):
    results = load_script("maml_step").main(["--quick"])
    out = capsys.readouterr().out
    assert out.count("ratio:") == 5 and "hardware:" in out
    for row in results["omniglot"]:
        for path in ("vmap", "loop"):
            assert row[f"{path}_grad_rel_diff"] < 1e-4


@pytest.mark.learn2learn
def test_precision_script_paths_agree_in_float64(capsys):
    results = load_script("meta_gradient_precision").main(
        ["--hidden", "4", "--tasks", "2", "--draws", "1"])
    assert "hardware:" in capsys.readouterr().out
    for order in ("second-order", "first-order"):
        for path in ("vmap", "learn2learn"):
            assert results[order, "float64", path] < 1e-10
        for path in ("loop", "vmap", "learn2learn"):
            assert 0.0 < results[order, "float32", path] < 1e-2
    assert len(results["moves"]) == 1


def test_batch_norm_benchmark_runs(capsys):
    load_script("conv4_batchnorm").main(["--images", "8", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "hardware:" in out and out.count("batch norm") == 4
    assert "speed-up of the fastest over the slowest" in out


def test_protonet_protocol_script_runs(
    capsys, monkeypatch, omniglot_data, omniglot_cache
):
    monkeypatch.setenv("METALEARN_DATA", str(omniglot_root()))
    monkeypatch.setenv("METALEARN_CACHE", str(omniglot_cache))  # reuse the decoded set
    arguments = ["--shots", "1", "--classes", "train", "--rotate", "--quick"]
    results = load_script("protonet_protocol").main(arguments)
    out = capsys.readouterr().out
    # 1,028 train characters, each also rotated by 90, 180 and 270 degrees
    assert "training classes: 4112 (train, with 90/180/270-degree rotations)" in out
    assert set(results) == {"5-way 1-shot", "20-way 1-shot"}
    for text in results.values():
        assert 0.0 <= float(text.split()[0]) <= 100.0


def test_protonet_short_budget_script_runs(
    capsys, monkeypatch, tmp_path, omniglot_data, omniglot_cache
):
    monkeypatch.setenv("METALEARN_DATA", str(omniglot_root()))
    monkeypatch.setenv("METALEARN_CACHE", str(omniglot_cache))
    arguments = ["--name", "check", "--queries", "2", "--rotate", "--quick",
                 "--out", str(tmp_path / "out")]
    result = load_script("protonet_short_budget").main(arguments)
    assert "training classes: 4112" in capsys.readouterr().out
    assert set(result) >= {"train_s", "5w1s", "20w1s", "5w5s"}
    for key in ("5w1s", "20w1s", "5w5s"):
        assert 0.0 <= result[key][0] <= 100.0 and result[key][1] >= 0.0
    assert (tmp_path / "out" / "check.json").is_file()
    assert (tmp_path / "out" / "check.pt").is_file()


def test_maml_short_budget_script_runs(
    capsys, monkeypatch, tmp_path, omniglot_data, omniglot_cache
):
    monkeypatch.setenv("METALEARN_DATA", str(omniglot_root()))
    monkeypatch.setenv("METALEARN_CACHE", str(omniglot_cache))
    script = load_script("maml_short_budget")
    for extra, steps in (([], 3), (["--metasgd"], 1)):
        arguments = ["--name", "check", "--meta-batch", "2", "--rotate", "--cosine",
                     "--quick", "--out", str(tmp_path / "out"), *extra]
        result = script.main(arguments)
        assert "training classes: 4112" in capsys.readouterr().out
        for key in ("15q_1step", "15q_3steps", "15q_10steps", "1q_3steps"):
            assert 0.0 <= result[key][0] <= 100.0 and result[key][1] >= 0.0
        (iteration, train_s, accuracy), = result["curve_100_val_15q"]
        assert result["curve_steps"] == steps
        assert iteration == 3 and 0.0 < train_s <= result["train_s"] + 1e-6
        # the same 4 episodes, and the same inner steps, as the final evaluation
        assert accuracy == result["15q_1step" if steps == 1 else "15q_3steps"][0]
        assert (tmp_path / "out" / "check.json").is_file()


def test_meta_vs_init_says_which_chapter_to_run_first(monkeypatch, tmp_path):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))  # no checkpoints there
    module = load_script("meta_vs_init")
    with pytest.raises(SystemExit, match="execute chapters/maml_omniglot.ipynb"):
        module.main(["--profile", "smoke", "--models", "maml-5w1s"])
