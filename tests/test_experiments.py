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
    for bad in ("", "../escape", "a b"):
        with pytest.raises(ValueError, match="name must"):
            checkpoint_dir(bad)


def test_fit_trains_reports_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    profile = get_profile("smoke")
    model, optimiser, step = regression()
    fitted = fit("linear", model, optimiser, step, 30, profile=profile)
    assert fitted.resumed_from == 0 and fitted.steps == 30
    assert "trained from scratch" in fitted.report()
    assert abs(model.weight.item() - 3) < 0.1  # it learned y = 3x
    assert (checkpoint_dir("linear", profile) / "last.pt").exists()

    # Running the same cell again (fresh objects) loads the finished run.
    again, optimiser, step = regression()
    refitted = fit("linear", again, optimiser, step, 30, profile=profile)
    assert refitted.resumed_from == 30
    assert "resumed from a checkpoint at step 30" in refitted.report()
    assert torch.equal(again.weight, model.weight)


def test_fit_without_resume_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    model, optimiser, step = regression()
    fitted = fit("no-save", model, optimiser, step, 5, resume=False)
    assert fitted.resumed_from == 0
    assert not (tmp_path / "checkpoints").exists()


def test_peak_memory_is_positive_on_cpu():
    assert peak_memory_bytes() > 10 * 2**20  # at least the interpreter and torch
