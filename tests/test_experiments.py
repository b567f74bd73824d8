"""metalearn.experiments: named, resumable trainings with honest reports."""

from __future__ import annotations

import pytest
import torch

from metalearn.experiments import checkpoint_dir, fit, peak_memory_bytes
from metalearn.profiles import get_profile


def regression(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(1, 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(generator):
        x = torch.randn(16, 1, generator=generator)
        return (model(x) - 3 * x).pow(2).mean(), {}

    return model, optimiser, step


def test_checkpoint_dir_is_per_profile_and_name(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    folder = checkpoint_dir("maml-5w1s", get_profile("smoke"))
    assert folder == tmp_path / "checkpoints" / "smoke" / "maml-5w1s"
    for bad in ("", "../escape", "a b", "..", "."):
        with pytest.raises(ValueError, match="name must"):
            checkpoint_dir(bad)


def test_fit_trains_reports_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    profile = get_profile("smoke")
    model, optimiser, step = regression()
    fitted = fit("linear", model, optimiser, step, 30, profile=profile)
    assert fitted.resumed_from == 0 and fitted.steps == 30
    assert "trained from scratch" in fitted.report() and not fitted.loaded
    seconds = fitted.history.train["train_seconds"]
    assert seconds == sorted(seconds) and fitted.train_seconds > 0
    assert abs(model.weight.item() - 3) < 0.1  # it learned y = 3x
    assert (checkpoint_dir("linear", profile) / "last.pt").exists()

    # Running the same cell again (fresh objects) loads the finished run.
    again, optimiser, step = regression()
    refitted = fit("linear", again, optimiser, step, 30, profile=profile)
    assert refitted.resumed_from == 30 and refitted.loaded
    assert "loaded from its finished checkpoint" in refitted.report()
    assert refitted.train_seconds == fitted.train_seconds  # the original time
    assert torch.equal(again.weight, model.weight)


def test_fit_without_resume_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    model, optimiser, step = regression()
    fitted = fit("no-save", model, optimiser, step, 5, resume=False)
    assert fitted.resumed_from == 0
    assert not (tmp_path / "checkpoints").exists()


def test_peak_memory_is_positive_on_cpu():
    assert peak_memory_bytes() > 10 * 2**20  # at least the interpreter and torch


def test_a_capped_profile_has_its_own_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    monkeypatch.setenv("METALEARN_MAX_STEPS", "2")
    folder = checkpoint_dir("maml-5w1s", get_profile("paper"))
    assert folder == tmp_path / "checkpoints" / "paper-max2" / "maml-5w1s"


def test_fit_times_training_apart_from_validation(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    model, optimiser, step = regression()

    def slow_validation():
        time.sleep(0.05)
        return {"acc": 1.0}

    fitted = fit("timed", model, optimiser, step, 4, evaluate=slow_validation,
                 eval_every=2, profile=get_profile("smoke"))
    assert fitted.history.eval_steps == [2, 4]
    assert fitted.eval_seconds >= 0.1
    assert fitted.train_seconds < 0.05 + fitted.seconds - fitted.eval_seconds
    assert fitted.final("acc") == 1.0
    with pytest.raises(KeyError, match="no evaluation metric 'loss'"):
        fitted.final("loss")
    with pytest.raises(ValueError, match="eval_every"):
        fit("bad", model, optimiser, step, 4, eval_every=0)
