"""metalearn.results: numbers recorded by one chapter and read by another."""

from __future__ import annotations

import pytest

from metalearn import results
from metalearn.evaluate import Accuracy
from metalearn.profiles import get_profile


def test_record_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    smoke = get_profile("smoke")
    accuracy = Accuracy(mean=0.9, ci95=0.01, episodes=600, per_episode=())
    results.record("comparison", "table", {"ProtoNet": accuracy, "steps": [1, 2]},
                   profile=smoke)
    results.record("comparison", "other", 3.5, profile=smoke)
    assert results.recorded("comparison", "table", profile=smoke) == {
        "ProtoNet": {"mean": 0.9, "ci95": 0.01, "episodes": 600}, "steps": [1, 2]}
    assert results.recorded("comparison", "other", profile=smoke) == 3.5
    assert results.results_path("comparison", smoke).parent.name == "smoke"


def test_missing_results_name_the_notebook_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    with pytest.raises(LookupError, match="run chapters/maml_omniglot.ipynb first"):
        results.recorded("maml_omniglot", "costs", profile=get_profile("smoke"))


def test_bad_values_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    smoke = get_profile("smoke")
    with pytest.raises(ValueError, match="finite"):
        results.record("comparison", "x", float("nan"), profile=smoke)
    with pytest.raises(TypeError, match="set"):
        results.record("comparison", "x", {1, 2}, profile=smoke)
    with pytest.raises(ValueError, match="chapter must be"):
        results.results_path("../escape", smoke)
    (tmp_path / "results" / "smoke").mkdir(parents=True)
    (tmp_path / "results" / "smoke" / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        results.recorded("broken", "x", profile=smoke)
