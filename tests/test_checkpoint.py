"""Tests of metalearn.checkpoint: safe loading, atomic writes, mismatch errors."""

from __future__ import annotations

import dataclasses
import enum
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from metalearn.checkpoint import (
    capture_rng_state,
    checkpoint_path,
    describe_model,
    experiment_to_dict,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from metalearn.training import TrainConfig, train


@dataclasses.dataclass(frozen=True)
class Experiment:
    ways: int = 5  # N
    shots: int = 1  # K
    meta_lr: float = 1e-3  # beta


def build(hidden: int = 8, lr: float = 0.1, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return model, optimiser


def make_step(model: nn.Module):
    def step(generator: torch.Generator):
        x = torch.randn(4, 2, generator=generator)
        return (model(x) - x[:, :1]).pow(2).mean(), {}

    return step


def fit(directory: Path, *, hidden=8, lr=0.1, steps=4, seed=0, experiment=None):
    model, optimiser = build(hidden, lr)
    config = TrainConfig(
        steps=steps, checkpoint_every=2, checkpoint_dir=str(directory), seed=seed
    )
    experiment = Experiment() if experiment is None else experiment
    train(
        model,
        optimiser,
        make_step(model),
        config,
        experiment=experiment,
        progress=False,
    )
    return model


def test_checkpoint_loads_with_weights_only(tmp_path):
    model = fit(tmp_path)
    path = checkpoint_path(tmp_path)
    assert path == tmp_path / "last.pt"
    raw = torch.load(path, weights_only=True)  # no arbitrary unpickling
    assert raw["step"] == 4 and raw["eval_pending"] is False
    assert raw["experiment"] == {"ways": 5, "shots": 1, "meta_lr": 1e-3}
    assert raw["model_description"] == {
        "class": "Sequential",
        "parameters": {
            "0.weight": [8, 2],
            "0.bias": [8],
            "2.weight": [1, 8],
            "2.bias": [1],
        },
    }
    for name, tensor in model.state_dict().items():
        assert torch.equal(raw["model"][name], tensor)
    assert raw["optimiser"]["state"][0]["momentum_buffer"].shape == (8, 2)
    assert raw["history"]["train_steps"] == [1, 2, 3, 4]
    rng = raw["rng"]
    assert isinstance(rng["torch"], torch.Tensor)
    assert isinstance(rng["generator"], torch.Tensor)
    assert isinstance(rng["python"]["internal"], torch.Tensor)
    assert isinstance(rng["numpy"]["keys"], torch.Tensor)
    # The stored generator state is the loop's generator after 4 steps of
    # 4 x 2 normal draws, seeded with the run's seed.
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        torch.randn(4, 2, generator=generator)
    assert torch.equal(rng["generator"], generator.get_state())


def test_rng_round_trip_restores_every_generator(tmp_path):
    generator = torch.Generator().manual_seed(3)
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002 - the global generator is what is saved
    torch.manual_seed(4)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state

    def draw():
        return (
            random.random(),
            random.gauss(0, 1),
            float(np.random.normal()),  # noqa: NPY002
            float(torch.rand(())),
            float(torch.rand((), generator=generator)),
        )

    state = capture_rng_state(generator)
    first = draw()
    restore_rng_state(state, generator)
    assert draw() == first
    # The state survives a trip through a file loaded with weights_only=True.
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    restore_rng_state(torch.load(path, weights_only=True), generator)
    assert draw() == first


def test_different_experiment_is_refused_and_model_untouched(tmp_path):
    fit(tmp_path)
    model, optimiser = build(seed=1)
    before = [p.clone() for p in model.parameters()]
    config = TrainConfig(steps=4, checkpoint_every=2, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError) as error:
        train(
            model,
            optimiser,
            make_step(model),
            config,
            experiment=Experiment(ways=20),
            progress=False,
        )
    message = str(error.value)
    assert "experiment {'ways': 5} but this run has {'ways': 20}" in message
    assert "another checkpoint_dir" in message and "delete" in message
    after = list(model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"hidden": 16}, r"'0\.weight': \[8, 2\].* are \{.*'0\.weight': \[16, 2\]"),
        ({"lr": 0.01}, r"optimiser: param_groups\.0\.lr: 0\.1 -> 0\.01\. "),
        ({"seed": 1}, r"seed 0 but this run has seed 1"),
        ({"experiment": {"ways": 5}}, r"experiment \{'meta_lr': 0\.001, 'shots'"),
        ({"steps": 2}, r"at step 4 but this run has steps=2"),
    ],
    ids=["model-shapes", "learning-rate", "seed", "experiment-keys", "fewer-steps"],
)
def test_mismatched_checkpoint_is_refused(tmp_path, change, pattern):
    fit(tmp_path)
    with pytest.raises(ValueError, match=pattern):
        fit(tmp_path, **change)


def test_different_model_class_and_scheduler_are_refused(tmp_path):
    fit(tmp_path)
    config = TrainConfig(steps=4, checkpoint_dir=str(tmp_path))

    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, x):
            return self.linear(x)

    other = Other()
    with pytest.raises(ValueError, match="class Sequential but this run trains"):
        train(
            other,
            torch.optim.SGD(other.parameters(), lr=0.1),
            make_step(other),
            config,
            experiment=Experiment(),
        )
    model, optimiser = build()
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=1)
    with pytest.raises(ValueError, match="with no learning-rate scheduler"):
        train(
            model,
            optimiser,
            make_step(model),
            config,
            scheduler=scheduler,
            experiment=Experiment(),
        )


def test_failed_write_keeps_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    fit(tmp_path)
    path = checkpoint_path(tmp_path)
    before = path.read_bytes()

    def broken_save(obj, file, *args, **kwargs):
        Path(file).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"format": 1, "step": 99})
    # Through the training loop too: a crash while saving at step 2 of a new run.
    with pytest.raises(OSError, match="disk full"):
        fit(tmp_path / "new")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "new"]
    assert list((tmp_path / "new").iterdir()) == []


def test_damaged_or_unsafe_files_are_refused(tmp_path):
    truncated = tmp_path / "truncated.pt"
    fit(tmp_path)
    truncated.write_bytes(checkpoint_path(tmp_path).read_bytes()[:200])
    with pytest.raises(ValueError, match="damaged"):
        load_checkpoint(truncated)

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": 1, "payload": Experiment()}, unsafe)  # a pickled class
    with pytest.raises(ValueError, match="weights_only=True"):
        load_checkpoint(unsafe)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a metalearn training checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


class Colour(enum.Enum):
    RED = "red"


def test_experiment_to_dict():
    @dataclasses.dataclass
    class Nested:
        inner: Experiment
        sizes: tuple[int, ...]
        folder: Path
        colour: Colour
        scale: np.float64

    plain = experiment_to_dict(
        Nested(Experiment(), (1, 2), Path("/x"), Colour.RED, np.float64(0.5))
    )
    assert plain == {
        "inner": {"ways": 5, "shots": 1, "meta_lr": 1e-3},
        "sizes": [1, 2],
        "folder": "/x",
        "colour": "red",
        "scale": 0.5,
    }
    assert type(plain["scale"]) is float
    assert experiment_to_dict(None) is None
    with pytest.raises(TypeError, match="experiment must be a dataclass"):
        experiment_to_dict(Experiment)  # the class, not an instance
    with pytest.raises(TypeError, match=r"experiment\.model = .*Linear"):
        experiment_to_dict({"model": nn.Linear(1, 1)})


def test_describe_model():
    model = nn.Linear(3, 2)
    assert describe_model(model) == {
        "class": "Linear",
        "parameters": {"weight": [2, 3], "bias": [2]},
    }
