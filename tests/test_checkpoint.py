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
    FORMAT_VERSION,
    capture_rng_state,
    checkpoint_path,
    content_hash,
    describe_model,
    describe_optimiser,
    describe_scheduler,
    describe_tensor,
    experiment_to_dict,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    step_identity,
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


# --- integrity: the content hash ---


def test_content_hash_is_stored_and_every_byte_counts(tmp_path):
    model = fit(tmp_path)
    path = checkpoint_path(tmp_path)
    raw = torch.load(path, weights_only=True)
    stored = raw.pop("sha256")
    assert stored == content_hash(raw) and len(stored) == 64
    loaded = load_checkpoint(path)
    assert "sha256" not in loaded and loaded["step"] == 4
    # One changed weight, one changed float in the history, one changed int:
    for change in (
        lambda c: c["model"]["0.weight"].view(-1)[3].add_(1e-7),
        lambda c: c["history"]["train"]["loss"].__setitem__(0, 0.5),
        lambda c: c.__setitem__("step", 5),
    ):
        copy = torch.load(path, weights_only=True)
        copy.pop("sha256")
        change(copy)
        assert content_hash(copy) != stored
    # Equal content gives an equal hash: tuples and lists, the order of keys.
    assert content_hash({"a": (1, 2.0), "b": None}) == content_hash(
        {"b": None, "a": [1, 2.0]}
    )
    assert content_hash([1]) != content_hash([1.0]) != content_hash([True])
    assert content_hash(torch.zeros(2)) != content_hash(torch.zeros(2).double())
    assert isinstance(model, nn.Module)


def test_a_bit_flip_in_the_weights_is_refused(tmp_path):
    model = fit(tmp_path)
    path = checkpoint_path(tmp_path)
    data = bytearray(path.read_bytes())
    where = bytes(data).find(model[0].weight.detach().numpy().tobytes())
    assert where > 0
    data[where + 3] ^= 0x40
    path.write_bytes(bytes(data))
    assert not torch.equal(  # torch.load alone would hand back the wrong weight
        torch.load(path, weights_only=True)["model"]["0.weight"], model[0].weight
    )
    with pytest.raises(ValueError, match=r"is corrupted.*Restore it from a backup"):
        load_checkpoint(path)


def test_old_formats_and_missing_entries_are_refused(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": 1, "step": 3}, path)
    with pytest.raises(ValueError, match="format 1, this version of metalearn reads"):
        load_checkpoint(path)
    save_checkpoint(path, {"format": FORMAT_VERSION, "step": 3})
    with pytest.raises(ValueError, match=r"lacks the entries \['eval_pending'"):
        load_checkpoint(path)


# --- identity: optimiser and scheduler ---


def test_optimiser_description_has_every_hyperparameter_of_every_group():
    first, second = nn.Linear(2, 2), nn.Linear(2, 1)
    optimiser = torch.optim.Adam(
        [{"params": first.parameters()}, {"params": second.parameters(), "lr": 0.5}],
        lr=0.1,
        betas=(0.8, 0.9),
        weight_decay=1e-3,
    )
    groups = describe_optimiser(optimiser)["param_groups"]
    assert [g["params"] for g in groups] == [2, 2]
    assert [g["lr"] for g in groups] == [0.1, 0.5]
    assert groups[0]["betas"] == [0.8, 0.9] and groups[0]["weight_decay"] == 1e-3
    assert set(groups[0]) >= {"amsgrad", "eps", "maximize", "foreach"}
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, 1, gamma=0.1)
    for _ in range(2):  # the scheduler lowers lr; the description keeps the start
        optimiser.step()
        scheduler.step()
    assert optimiser.param_groups[1]["lr"] == pytest.approx(0.005)
    assert describe_optimiser(optimiser)["param_groups"][1]["lr"] == 0.5


def test_scheduler_description_is_its_settings_not_its_progress():
    model = nn.Linear(2, 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=3, gamma=0.5)
    before = describe_scheduler(scheduler)
    assert before == {
        "class": "StepLR",
        "step_size": 3,
        "gamma": 0.5,
        "base_lrs": [0.1],
    }
    for _ in range(4):
        optimiser.step()
        scheduler.step()
    assert describe_scheduler(scheduler) == before
    assert describe_scheduler(None) is None
    sequential = torch.optim.lr_scheduler.SequentialLR(
        optimiser,
        [
            torch.optim.lr_scheduler.LinearLR(optimiser, 0.5, total_iters=2),
            torch.optim.lr_scheduler.ExponentialLR(optimiser, 0.9),
        ],
        milestones=[2],
    )
    described = describe_scheduler(sequential)
    assert described["milestones"] == [2]
    assert described["schedulers"][1]["gamma"] == 0.9


def train_with(directory, steps, optimiser_kind="sgd", schedule="step", **options):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    if optimiser_kind == "sgd":
        optimiser = torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=options.get("momentum", 0.9)
        )
    else:
        optimiser = torch.optim.Adam(
            model.parameters(), lr=0.01, betas=options.get("betas", (0.9, 0.999))
        )
    schedulers = {
        "step": lambda: torch.optim.lr_scheduler.StepLR(
            optimiser, options.get("step_size", 2), options.get("gamma", 0.5)
        ),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser, options.get("t_max", 8)
        ),
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(
            optimiser, 0.5, total_steps=8
        ),
        "exponential": lambda: torch.optim.lr_scheduler.ExponentialLR(optimiser, 0.9),
    }
    scheduler = schedulers[schedule]()
    config = TrainConfig(steps=steps, checkpoint_every=2, checkpoint_dir=str(directory))
    train(
        model,
        optimiser,
        make_step(model),
        config,
        scheduler=scheduler,
        experiment=Experiment(),
        progress=False,
    )
    return model


@pytest.mark.parametrize(
    ("optimiser_kind", "schedule"),
    [("sgd", "step"), ("adam", "cosine"), ("sgd", "onecycle")],
)
def test_resume_with_unchanged_settings_is_not_refused(
    tmp_path, optimiser_kind, schedule
):
    """Settings that a scheduler drives (lr, cycled momentum) are not a change."""
    train_with(tmp_path / "a", 4, optimiser_kind, schedule)
    resumed = train_with(tmp_path / "a", 8, optimiser_kind, schedule)
    straight = train_with(tmp_path / "b", 8, optimiser_kind, schedule)
    for a, b in zip(resumed.parameters(), straight.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"momentum": 0.5}, r"optimiser: param_groups\.0\.momentum: 0\.9 -> 0\.5"),
        (
            {"optimiser_kind": "adam", "betas": (0.5, 0.999)},
            r"param_groups\.0\.betas\.0: 0\.9 -> 0\.5",
        ),
        ({"step_size": 3}, r"scheduler: step_size: 2 -> 3\. Resuming would"),
        ({"gamma": 0.1}, r"scheduler: gamma: 0\.5 -> 0\.1"),
        ({"schedule": "exponential"}, r"scheduler: class: 'StepLR' -> 'ExponentialLR'"),
        (
            {"schedule": "cosine", "t_max": 16, "reference": "cosine"},
            r"T_max: 8 -> 16",
        ),
    ],
    ids=["momentum", "betas", "step-size", "gamma", "scheduler-class", "t-max"],
)
def test_changed_optimiser_or_scheduler_settings_are_refused(tmp_path, change, pattern):
    change = dict(change)
    reference = change.pop("reference", "step")
    kind = change.get("optimiser_kind", "sgd")
    first = {"optimiser_kind": kind, "schedule": reference}
    train_with(tmp_path, 4, **first)
    with pytest.raises(ValueError, match=pattern) as error:
        train_with(tmp_path, 8, **{**first, **change})
    assert "another checkpoint_dir" in str(error.value)


def test_step_identity():
    def step(generator):
        return torch.zeros(()), {}

    assert step_identity(step) is None
    step.identity = {"method": "x", "shots": (1, 5), "images": Path("/data")}
    assert step_identity(step) == {"method": "x", "shots": [1, 5], "images": "/data"}
    step.identity = ["shots", 1]
    with pytest.raises(TypeError, match="step.identity must be a dict"):
        step_identity(step)


def test_describe_tensor_is_a_content_fingerprint():
    images = torch.randint(0, 256, (4, 3, 1, 5, 5), dtype=torch.uint8)
    described = describe_tensor(images)
    assert described["shape"] == [4, 3, 1, 5, 5] and described["dtype"] == "torch.uint8"
    assert describe_tensor(images.clone()) == described
    other = images.clone()
    other[3, 2, 0, 4, 4] ^= 1
    assert describe_tensor(other)["sha256"] != described["sha256"]
    assert describe_tensor(images[:, :, :, :, :])["sha256"] == described["sha256"]
    assert describe_tensor(images.to("meta"))["sha256"] == "meta"
