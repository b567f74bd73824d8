"""One table of the mistakes a reader can make, and the error each must raise.

Every public function of ``metalearn`` that takes sizes, learning rates, step
counts, images, labels, profile names or checkpoints validates them; each row
below calls one with a bad value and checks the exception type and that the
message names the problem (and, where useful, the bad value or the fix).

Each row is ``(function, case, call, exception, message regex)``; the first
field groups the rows by public function (``benchmarks/bad_inputs_survey.py``
counts them and replays the table against another version of the library).
The table only uses names that older versions also have, so it can be replayed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import omniglot_root
from torch import nn

from metalearn import (
    baselines,
    checkpoint,
    evaluate,
    maml,
    matching,
    plots,
    protonet,
    siamese,
    sinusoid,
)
from metalearn.data import lake_runs, omniglot, rotate_classes
from metalearn.data.download import atomic_write
from metalearn.data.omniglot import OmniglotData
from metalearn.episodes import (
    Episode,
    FixedEpisodes,
    episode_sampler,
    materialise,
    sample_episode,
    sample_episodes,
    sample_indices,
)
from metalearn.models import MLP, Conv4
from metalearn.profiles import get_profile
from metalearn.reptile import reptile_task_weights
from metalearn.runtime import seed_everything
from metalearn.sinusoid import SinusoidDistribution, sample_sinusoid_tasks
from metalearn.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
IMAGES = torch.zeros(6, 4, 1, 8, 8, dtype=torch.uint8)
NAN = float("nan")
INF = float("inf")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images_like(dtype=torch.uint8, fill=None) -> torch.Tensor:
    """6 classes x 4 examples of 8x8 images; ``fill`` sets one pixel."""
    images = torch.randint(0, 256, (6, 4, 1, 8, 8), generator=gen()).to(dtype)
    if fill is not None:
        images[0, 0, 0, 0, 0] = fill
    return images


def episode(ways=3, shots=2, queries=2, size=8):
    g = gen()
    images = torch.randint(0, 256, (ways, shots + queries, 1, size, size), generator=g)
    return sample_episode(images.to(torch.uint8), ways, shots, queries, g)


def changed(**fields) -> Episode:
    """The 3-way 2-shot episode with some fields replaced."""
    return dataclasses.replace(episode(), **fields)


def nan_episode() -> Episode:
    e = episode()
    x = e.support_x.clone()
    x[0, 0, 0, 0] = NAN
    return dataclasses.replace(e, support_x=x)


def embed():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))


def maml_args(**overrides):
    model = Conv4(1, ways=3, hidden=4)
    e = episode(size=28)
    kwargs = dict(inner_lr=0.1, steps=1, first_order=False)
    kwargs.update(overrides)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    return lambda: maml.adapt(
        model, params, buffers, e.support_x, e.support_y, **kwargs
    )


def bad_label_episode():
    e = episode()
    return Episode(e.support_x, e.support_y + 1, e.query_x, e.query_y, e.classes)


def missing_class_episode():
    e = episode()
    y = e.support_y.clone()
    y[y == 2] = 0
    return Episode(e.support_x, y, e.query_x, e.query_y, e.classes)


def fixed(images=None, **kwargs) -> FixedEpisodes:
    options = dict(count=3, ways=3, shots=1, queries=2, seed=0)
    options.update(kwargs)
    return FixedEpisodes(images_like() if images is None else images, **options)


def twenty_outputs(e: Episode) -> torch.Tensor:
    """A classifier built for 20 classes, used on a 3-way episode."""
    return torch.zeros(e.query_y.numel(), 20)


def siamese_model():
    return siamese.SiameseNetwork(embed(), features=4)


def pairs(same):
    x = torch.rand(4, 1, 8, 8)
    return lambda: siamese.verification_loss(siamese_model(), x, x, same)


# --- checkpoints: a tiny run written, then resumed with a change -----------------


def _train(directory, *, momentum=0.9, weight_decay=0.0, step_size=5, steps=2):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optimiser = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size, 0.5)

    def step(generator):
        x = torch.randn(4, 2, generator=generator)
        return (model(x) - x[:, :1]).pow(2).mean(), {}

    config = TrainConfig(steps=steps, checkpoint_dir=str(directory))
    train(model, optimiser, step, config, scheduler=scheduler, progress=False)
    return model


def resume_with(**change):
    def call():
        with tempfile.TemporaryDirectory() as directory:
            _train(directory)
            _train(directory, **change)

    return call


def flip_weight_byte(path: Path, model: nn.Module) -> None:
    """Flip one exponent bit of the first stored weight of ``model`` in ``path``."""
    data = bytearray(path.read_bytes())
    where = bytes(data).find(model.weight.detach().numpy().tobytes())
    assert where >= 0, "the weights are not stored verbatim in the file"
    data[where + 3] ^= 0x40  # the float's top byte: sign and exponent
    path.write_bytes(bytes(data))


def flipped_checkpoint():
    with tempfile.TemporaryDirectory() as directory:
        model = _train(directory)
        path = Path(directory) / "last.pt"
        flip_weight_byte(path, model)
        return checkpoint.load_checkpoint(path)


def lake_runs_with_duplicate_item():
    source = omniglot_root() / "omniglot" / "all_runs.zip"
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "omniglot" / "all_runs.zip"
        target.parent.mkdir()
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == "run01/class_labels.txt":
                    lines = data.decode().splitlines()
                    lines[1] = lines[0]  # item01 listed twice, item02 missing
                    data = ("\n".join(lines) + "\n").encode()
                dst.writestr(info, data)
        return lake_runs(directory, download=False)


def tiny_omniglot():
    images = torch.zeros(1623, 2, 1, 4, 4, dtype=torch.uint8)
    return OmniglotData(images, torch.arange(1, 1624), ("a",) * 1623, 4)


def accuracy_of(episode_like, scores):
    return lambda: evaluate.evaluate(lambda e: scores, episode_like, progress=False)


def sinusoid_call(x, amplitude, phase):
    return lambda: sinusoid.sinusoid(x, amplitude, phase)


CASES = [
    # (function, case, call, exception, message regex)
    # --- runtime, profiles, data loaders ---
    ("get_profile", "name", lambda: get_profile("fast"), ValueError, "'fast'.*'smoke'"),
    ("seed_everything", "negative", lambda: seed_everything(-1), ValueError, "-1"),
    (
        "omniglot",
        "size",
        lambda: omniglot(image_size=200),
        ValueError,
        "image_size.*200",
    ),
    (
        "omniglot",
        "size type",
        lambda: omniglot(image_size="28"),
        TypeError,
        "image_size",
    ),
    (
        "omniglot",
        "root type",
        lambda: omniglot(root=3),
        TypeError,
        "root must be a path",
    ),
    (
        "omniglot",
        "download type",
        lambda: omniglot(REPO, download="no"),
        TypeError,
        "download must be True or False",
    ),
    (
        "OmniglotData.split",
        "unknown",
        lambda: tiny_omniglot().split("dev"),
        ValueError,
        "Unknown split 'dev'",
    ),
    (
        "OmniglotData.split",
        "not a string",
        lambda: tiny_omniglot().split(3),
        ValueError,
        "Unknown split 3",
    ),
    (
        "rotate_classes",
        "shape",
        lambda: rotate_classes(IMAGES[..., :5]),
        ValueError,
        "S, S",
    ),
    (
        "rotate_classes",
        "not a tensor",
        lambda: rotate_classes([[1]]),
        TypeError,
        "torch.Tensor",
    ),
    ("lake_runs", "size", lambda: lake_runs(image_size=2), ValueError, "image_size"),
    (
        "lake_runs",
        "item listed twice",
        lake_runs_with_duplicate_item,
        ValueError,
        "test item 01 is listed twice",
    ),
    (
        "lake_runs",
        "download type",
        lambda: lake_runs(REPO, download=1),
        TypeError,
        "download must be True or False",
    ),
    (
        "atomic_write",
        "write not callable",
        lambda: atomic_write(Path(tempfile.gettempdir()) / "x", b"data"),
        TypeError,
        "write must be a function",
    ),
    # --- episodes ---
    (
        "sample_episode",
        "ways > classes",
        lambda: sample_episode(IMAGES, 7, 1, 1),
        ValueError,
        "ways=7",
    ),
    (
        "sample_episode",
        "shots+queries",
        lambda: sample_episode(IMAGES, 2, 3, 2),
        ValueError,
        "= 5",
    ),
    (
        "sample_episode",
        "ways zero",
        lambda: sample_episode(IMAGES, 0, 1, 1),
        ValueError,
        "ways.*0",
    ),
    (
        "sample_episode",
        "shots negative",
        lambda: sample_episode(IMAGES, 2, -1, 1),
        ValueError,
        "shots",
    ),
    (
        "sample_episode",
        "queries type",
        lambda: sample_episode(IMAGES, 2, 1, 1.5),
        TypeError,
        "queries",
    ),
    (
        "sample_episode",
        "images rank",
        lambda: sample_episode(IMAGES[0], 2, 1, 1),
        ValueError,
        "images",
    ),
    (
        "sample_episode",
        "int64 images",
        lambda: sample_episode(images_like(torch.int64), 2, 1, 1),
        TypeError,
        r"int64.*images\.to\(torch\.uint8\)",
    ),
    (
        "sample_episode",
        "float images in 0..255",
        lambda: sample_episode(images_like(torch.float32), 2, 1, 1),
        ValueError,
        r"0\.\.255 that were not scaled.*/ 255",
    ),
    (
        "sample_episode",
        "NaN images",
        lambda: sample_episode(images_like(torch.float32, NAN) / 255, 2, 1, 1),
        ValueError,
        "contain NaN",
    ),
    (
        "sample_episode",
        "infinite images",
        lambda: sample_episode(images_like(torch.float32, INF) / 255, 2, 1, 1),
        ValueError,
        "infinite",
    ),
    (
        "sample_episode",
        "complex images",
        lambda: sample_episode(images_like(torch.complex64), 2, 1, 1),
        TypeError,
        "complex64",
    ),
    (
        "sample_episode",
        "0x0 images",
        lambda: sample_episode(torch.zeros(6, 4, 1, 0, 0, dtype=torch.uint8), 2, 1, 1),
        ValueError,
        "empty.*zero-sized",
    ),
    (
        "sample_episode",
        "int generator",
        lambda: sample_episode(IMAGES, 2, 1, 1, generator=0),
        TypeError,
        r"torch\.Generator.*manual_seed",
    ),
    (
        "sample_episodes",
        "tasks zero",
        lambda: sample_episodes(IMAGES, 0, 2, 1, 1),
        ValueError,
        "tasks",
    ),
    (
        "sample_episodes",
        "NaN images",
        lambda: sample_episodes(images_like(torch.float64, NAN), 2, 2, 1, 1),
        ValueError,
        "contain NaN",
    ),
    (
        "sample_indices",
        "bool images",
        lambda: sample_indices(IMAGES.bool(), 2, 2, 1, 1),
        TypeError,
        "torch.bool",
    ),
    (
        "episode_sampler",
        "float images in 0..255",
        lambda: episode_sampler(
            images_like(torch.float32), tasks=2, ways=2, shots=1, queries=1
        ),
        ValueError,
        "not scaled",
    ),
    (
        "episode_sampler",
        "tasks zero",
        lambda: episode_sampler(IMAGES, tasks=0, ways=2, shots=1, queries=1)(gen()),
        ValueError,
        "tasks must be positive",
    ),
    (
        "episode_sampler",
        "int generator",
        lambda: episode_sampler(IMAGES, tasks=2, ways=2, shots=1, queries=1)(7),
        TypeError,
        r"torch\.Generator",
    ),
    (
        "FixedEpisodes",
        "count",
        lambda: fixed(count=0),
        ValueError,
        "count must be positive",
    ),
    ("FixedEpisodes", "seed 2**64", lambda: fixed(seed=2**64), ValueError, "64 bits"),
    (
        "FixedEpisodes",
        "seed float",
        lambda: fixed(seed=1.5),
        TypeError,
        "seed must be an int",
    ),
    ("FixedEpisodes", "seed negative", lambda: fixed(seed=-1), ValueError, "seed"),
    (
        "FixedEpisodes",
        "NaN images",
        lambda: fixed(images_like(torch.float32, NAN)),
        ValueError,
        "NaN",
    ),
    (
        "FixedEpisodes",
        "index type",
        lambda: fixed()[1.0],
        TypeError,
        "indexed by an int",
    ),
    (
        "materialise",
        "index of other images",
        lambda: materialise(IMAGES[:2], sample_indices(IMAGES, 2, 5, 1, 1, gen())),
        ValueError,
        "drawn for other images",
    ),
    # --- evaluation ---
    (
        "mean_confidence_interval",
        "empty",
        lambda: evaluate.mean_confidence_interval([]),
        ValueError,
        "one",
    ),
    (
        "mean_confidence_interval",
        "NaN",
        lambda: evaluate.mean_confidence_interval([0.5, NAN]),
        ValueError,
        "NaN",
    ),
    (
        "mean_confidence_interval",
        "strings",
        lambda: evaluate.mean_confidence_interval(["0.5", "0.7"]),
        TypeError,
        "real numbers",
    ),
    (
        "median_confidence_interval",
        "empty",
        lambda: evaluate.median_confidence_interval([]),
        ValueError,
        "at least one value",
    ),
    (
        "median_confidence_interval",
        "NaN",
        lambda: evaluate.median_confidence_interval([0.5, NAN, 1.0]),
        ValueError,
        "NaN or -inf.*nan_to_num",
    ),
    (
        "median_confidence_interval",
        "level above 1",
        lambda: evaluate.median_confidence_interval([0.5, 1.0], level=95),
        ValueError,
        "level must be a probability",
    ),
    (
        "accuracy",
        "shape",
        lambda: evaluate.accuracy(torch.zeros(3).long(), torch.zeros(4).long()),
        ValueError,
        "shape",
    ),
    (
        "accuracy",
        "empty",
        lambda: evaluate.accuracy(torch.zeros(0, 3), torch.zeros(0).long()),
        ValueError,
        "non-empty",
    ),
    (
        "accuracy",
        "NaN scores",
        lambda: evaluate.accuracy(torch.full((4, 3), NAN), torch.zeros(4).long()),
        ValueError,
        "NaN",
    ),
    (
        "accuracy",
        "probabilities as targets",
        lambda: evaluate.accuracy(torch.eye(3), torch.eye(3)),
        TypeError,
        r"probabilities.*argmax",
    ),
    (
        "accuracy",
        "float labels",
        lambda: evaluate.accuracy(torch.tensor([0.2, 0.9]), torch.tensor([0, 1])),
        TypeError,
        "1-D floating-point",
    ),
    (
        "accuracy",
        "scores wider than ways",
        lambda: evaluate.accuracy(torch.zeros(4, 20), torch.zeros(4).long(), ways=3),
        ValueError,
        "20 columns but the episode is 3-way",
    ),
    (
        "accuracy",
        "int32 labels",
        lambda: evaluate.accuracy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int32)),
        TypeError,
        r"int64.*\.long\(\)",
    ),
    (
        "evaluate",
        "NaN images",
        lambda: evaluate.evaluate(
            baselines.nearest_neighbour, [nan_episode()], progress=False
        ),
        ValueError,
        "contains NaN",
    ),
    (
        "evaluate",
        "NaN scores",
        accuracy_of([episode()], torch.full((6, 3), NAN)),
        ValueError,
        "NaN",
    ),
    (
        "evaluate",
        "20 outputs on 3-way",
        lambda: evaluate.evaluate(twenty_outputs, [episode()], progress=False),
        ValueError,
        r"20 columns but the episode is 3-way.*Conv4\(ways=3\)",
    ),
    (
        "evaluate",
        "predicted label 15",
        accuracy_of([episode()], torch.full((6,), 15)),
        ValueError,
        r"labels \[15\] outside 0..2",
    ),
    (
        "evaluate",
        "one episode",
        lambda: evaluate.evaluate(
            baselines.nearest_neighbour, episode(), progress=False
        ),
        TypeError,
        "wrap it in a list",
    ),
    (
        "evaluate",
        "no episodes",
        lambda: evaluate.evaluate(baselines.nearest_neighbour, [], progress=False),
        ValueError,
        "empty",
    ),
    (
        "evaluate",
        "classify not callable",
        lambda: evaluate.evaluate("1-NN", [episode()], progress=False),
        TypeError,
        "classify must be a function",
    ),
    (
        "evaluate",
        "device name",
        lambda: evaluate.evaluate(
            baselines.nearest_neighbour, [episode()], device="gpu", progress=False
        ),
        ValueError,
        "not a device name",
    ),
    (
        "fixed_test_episodes",
        "profile name",
        lambda: evaluate.fixed_test_episodes(IMAGES, 2, 1, "smoke"),
        TypeError,
        r"get_profile\('smoke'\)",
    ),
    # --- baselines ---
    (
        "logistic_regression",
        "l2",
        lambda: baselines.logistic_regression(episode(), l2=-1),
        ValueError,
        "l2",
    ),
    (
        "logistic_regression",
        "l2 inf",
        lambda: baselines.logistic_regression(episode(), l2=INF),
        ValueError,
        "l2 must be a finite positive",
    ),
    (
        "logistic_regression",
        "iters",
        lambda: baselines.logistic_regression(episode(), max_iter=0),
        ValueError,
        "max_iter",
    ),
    (
        "logistic_regression",
        "iters type",
        lambda: baselines.logistic_regression(episode(), max_iter=10.5),
        TypeError,
        "max_iter must be an int",
    ),
    (
        "nearest_neighbour",
        "uint8 episode",
        lambda: baselines.nearest_neighbour(
            changed(support_x=(episode().support_x * 255).to(torch.uint8))
        ),
        TypeError,
        r"floating-point.*x\.float\(\) / 255",
    ),
    (
        "nearest_neighbour",
        "a batch of episodes",
        lambda: baselines.nearest_neighbour(sample_episodes(IMAGES, 2, 2, 1, 1)),
        TypeError,
        "EpisodeBatch",
    ),
    (
        "nearest_neighbour",
        "labels out of range",
        lambda: baselines.nearest_neighbour(bad_label_episode()),
        ValueError,
        r"support_y holds labels \[3\]",
    ),
    # --- sinusoid ---
    (
        "sample_sinusoid_tasks",
        "shots",
        lambda: sample_sinusoid_tasks(2, 0, 5),
        ValueError,
        "shots",
    ),
    (
        "sample_sinusoid_tasks",
        "tasks",
        lambda: sample_sinusoid_tasks(0, 5, 5),
        ValueError,
        "tasks",
    ),
    (
        "sample_sinusoid_tasks",
        "int generator",
        lambda: sample_sinusoid_tasks(2, 5, 5, 3),
        TypeError,
        r"torch\.Generator",
    ),
    (
        "sample_sinusoid_tasks",
        "dtype string",
        lambda: sample_sinusoid_tasks(2, 5, 5, dtype="float32"),
        TypeError,
        "dtype must be a floating-point torch.dtype",
    ),
    (
        "sample_sinusoid_tasks",
        "distribution dict",
        lambda: sample_sinusoid_tasks(2, 5, 5, distribution={"amplitude": (0, 1)}),
        TypeError,
        "SinusoidDistribution",
    ),
    (
        "SinusoidDistribution",
        "infinite amplitude",
        lambda: SinusoidDistribution(amplitude=(0.1, INF)),
        ValueError,
        r"amplitude range\[1\] must be finite",
    ),
    (
        "SinusoidDistribution",
        "empty range",
        lambda: SinusoidDistribution(amplitude=(5.0, 0.1)),
        ValueError,
        "low < high",
    ),
    (
        "SinusoidDistribution",
        "scalar range",
        lambda: SinusoidDistribution(x=5.0),
        TypeError,
        "pair",
    ),
    (
        "sinusoid",
        "int inputs",
        sinusoid_call(torch.arange(5), torch.tensor(1.0), torch.tensor(0.0)),
        TypeError,
        "x must be a floating-point tensor",
    ),
    (
        "sinusoid",
        "shapes",
        sinusoid_call(torch.zeros(3, 4, 1), torch.ones(2), torch.zeros(2)),
        ValueError,
        r"x must be \[T=2, M, 1\]",
    ),
    # --- MAML, Reptile, models (the cases the library already had)
    (
        "Conv4",
        "channels",
        lambda: Conv4(1, 3)(torch.zeros(2, 3, 28, 28)),
        ValueError,
        r"expects images \[B, 1, 28, 28\], got \(2, 3, 28, 28\)",
    ),
    (
        "Conv4",
        "rank",
        lambda: Conv4(1, 3)(torch.zeros(3, 28, 28)),
        ValueError,
        r"got \(3, 28, 28\)",
    ),
    ("Conv4", "ways", lambda: Conv4(1, ways=0), ValueError, "ways"),
    (
        "MLP",
        "input",
        lambda: MLP()(torch.zeros(4, 3)),
        ValueError,
        r"\[B, 1\], got \(4, 3\)",
    ),
    ("maml.adapt", "inner_lr", maml_args(inner_lr=0.0), ValueError, "inner_lr"),
    (
        "maml.adapt",
        "inner_lr neg",
        maml_args(inner_lr=-0.4),
        ValueError,
        "inner_lr.*-0.4",
    ),
    ("maml.adapt", "steps", maml_args(steps=0), ValueError, "steps"),
    ("maml.adapt", "steps type", maml_args(steps=1.0), TypeError, "steps"),
    (
        "reptile_task_weights",
        "inner_lr",
        lambda: reptile_task_weights(
            MLP(hidden=(4,)),
            dict(MLP(hidden=(4,)).named_parameters()),
            {},
            torch.zeros(2, 3, 1),
            torch.zeros(2, 3, 1),
            inner_lr=0.0,
            steps=1,
        ),
        ValueError,
        "inner_lr",
    ),
    # --- ProtoNet ---
    (
        "protonet_loss",
        "label",
        lambda: protonet.protonet_loss(embed(), bad_label_episode()),
        ValueError,
        "support_y",
    ),
    (
        "protonet_loss",
        "empty class",
        lambda: protonet.protonet_loss(embed(), missing_class_episode()),
        ValueError,
        "class",
    ),
    (
        "protonet_loss",
        "distance",
        lambda: protonet.protonet_loss(embed(), episode(), distance="manhattan"),
        ValueError,
        "manhattan",
    ),
    (
        "protonet_loss",
        "float64 images, float32 model",
        lambda: protonet.protonet_loss(
            embed(),
            changed(
                support_x=episode().support_x.double(),
                query_x=episode().query_x.double(),
            ),
        ),
        TypeError,
        r"float64 but the model's parameters are torch\.float32",
    ),
    (
        "protonet_loss",
        "uint8 images",
        lambda: protonet.protonet_loss(
            embed(), changed(support_x=(episode().support_x * 255).to(torch.uint8))
        ),
        TypeError,
        "floating-point",
    ),
    (
        "protonet_loss",
        "NaN images",
        lambda: protonet.protonet_loss(embed(), nan_episode()),
        ValueError,
        "NaN",
    ),
    (
        "protonet_loss",
        "int32 labels",
        lambda: protonet.protonet_loss(
            embed(), changed(query_y=episode().query_y.int())
        ),
        TypeError,
        "int64",
    ),
    (
        "protonet_loss",
        "a batch of episodes",
        lambda: protonet.protonet_loss(
            embed(), sample_episodes(images_like(), 2, 2, 1, 1)
        ),
        TypeError,
        "EpisodeBatch",
    ),
    (
        "protonet_logits",
        "probabilities as labels",
        lambda: protonet.protonet_logits(
            embed(), episode().support_x, torch.rand(6), episode().query_x, ways=3
        ),
        TypeError,
        "support_y must be an integer tensor",
    ),
    (
        "protonet_logits",
        "ways zero",
        lambda: protonet.protonet_logits(
            embed(), episode().support_x, episode().support_y, episode().query_x, ways=0
        ),
        ValueError,
        "ways must be positive",
    ),
    (
        "prototypes",
        "shapes",
        lambda: protonet.prototypes(torch.zeros(4, 3), torch.zeros(5).long(), 2),
        ValueError,
        "support",
    ),
    (
        "squared_distances",
        "dims",
        lambda: protonet.squared_distances(torch.zeros(4, 3), torch.zeros(2, 5)),
        ValueError,
        "3.*5|5.*3",
    ),
    (
        "squared_distances",
        "dtypes",
        lambda: protonet.squared_distances(
            torch.zeros(4, 3), torch.zeros(2, 3).double()
        ),
        TypeError,
        "same dtype",
    ),
    (
        "make_protonet_step",
        "int64 images",
        lambda: protonet.make_protonet_step(
            embed(), images_like(torch.int64), ways=2, shots=1, queries=1
        ),
        TypeError,
        "int64",
    ),
    (
        "make_protonet_step",
        "NaN images",
        lambda: protonet.make_protonet_step(
            embed(), images_like(torch.float32, NAN), ways=2, shots=1, queries=1
        ),
        ValueError,
        "NaN",
    ),
    (
        "make_protonet_step",
        "0x0 images",
        lambda: protonet.make_protonet_step(
            embed(), torch.zeros(6, 4, 1, 0, 0), ways=2, shots=1, queries=1
        ),
        ValueError,
        "empty",
    ),
    (
        "make_protonet_step",
        "int generator",
        lambda: protonet.make_protonet_step(
            embed(), IMAGES, ways=2, shots=1, queries=1
        )(0),
        TypeError,
        r"torch\.Generator",
    ),
    (
        "make_protonet_step",
        "device name",
        lambda: protonet.make_protonet_step(
            embed(), IMAGES, ways=2, shots=1, queries=1, device="gpu"
        ),
        ValueError,
        "not a device name",
    ),
    (
        "protonet_classifier",
        "not a module",
        lambda: protonet.protonet_classifier(lambda x: x),
        TypeError,
        r"embedding must be a torch\.nn\.Module",
    ),
    (
        "linear_classifier_weights",
        "1-D prototypes",
        lambda: protonet.linear_classifier_weights(torch.zeros(5)),
        ValueError,
        "prototypes must be a 2-D tensor",
    ),
    # --- Siamese ---
    (
        "sample_pairs",
        "odd pairs",
        lambda: siamese.sample_pairs(IMAGES, 3),
        ValueError,
        "pairs",
    ),
    (
        "sample_pairs",
        "NaN images",
        lambda: siamese.sample_pairs(images_like(torch.float32, NAN), 4),
        ValueError,
        "NaN",
    ),
    (
        "sample_pairs",
        "int64 images",
        lambda: siamese.sample_pairs(images_like(torch.int64), 4),
        TypeError,
        "int64",
    ),
    (
        "sample_pairs",
        "int generator",
        lambda: siamese.sample_pairs(IMAGES, 4, generator=1),
        TypeError,
        r"torch\.Generator",
    ),
    (
        "verification_loss",
        "labels 2 and -1",
        pairs(torch.tensor([1.0, 2.0, -1.0, 0.0])),
        ValueError,
        r"1 \(same class\) or 0 .*\[-1\.0, 2\.0\]",
    ),
    (
        "verification_loss",
        "label shape",
        pairs(torch.ones(3)),
        ValueError,
        "one label per pair",
    ),
    (
        "verification_loss",
        "not a Siamese network",
        lambda: siamese.verification_loss(
            embed(), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), torch.ones(2)
        ),
        TypeError,
        "SiameseNetwork",
    ),
    (
        "SiameseNetwork",
        "features",
        lambda: siamese.SiameseNetwork(embed(), features=0),
        ValueError,
        "features must be positive",
    ),
    (
        "SiameseNetwork",
        "float64 input",
        lambda: siamese_model()(
            torch.rand(2, 1, 8, 8).double(), torch.rand(2, 1, 8, 8).double()
        ),
        TypeError,
        "x1 is torch.float64 but the model's parameters are torch.float32",
    ),
    (
        "SiameseNetwork",
        "uint8 input",
        lambda: siamese_model()(IMAGES[0], IMAGES[1]),
        TypeError,
        "floating-point",
    ),
    (
        "make_siamese_step",
        "one class",
        lambda: siamese.make_siamese_step(siamese_model(), IMAGES[:1], pairs=4),
        ValueError,
        ">= 2 classes",
    ),
    (
        "make_siamese_step",
        "float images in 0..255",
        lambda: siamese.make_siamese_step(
            siamese_model(), images_like(torch.float32), pairs=4
        ),
        ValueError,
        "not scaled",
    ),
    (
        "siamese_scores",
        "labels out of range",
        lambda: siamese.siamese_scores(siamese_model(), bad_label_episode()),
        ValueError,
        "outside 0..2",
    ),
    (
        "siamese_scores",
        "NaN images",
        lambda: siamese.siamese_scores(siamese_model(), nan_episode()),
        ValueError,
        "NaN",
    ),
    # --- Matching networks ---
    (
        "matching_loss",
        "label",
        lambda: matching.matching_loss(embed(), bad_label_episode()),
        ValueError,
        "support_y",
    ),
    (
        "matching_loss",
        "infinite scale",
        lambda: matching.matching_loss(embed(), episode(), scale=INF),
        ValueError,
        "scale must be a finite positive number, got inf",
    ),
    (
        "matching_loss",
        "absurd scale",
        lambda: matching.matching_loss(embed(), episode(), scale=1e308),
        ValueError,
        "scale must be at most 10000",
    ),
    (
        "matching_loss",
        "scale string",
        lambda: matching.matching_loss(embed(), episode(), scale="10"),
        TypeError,
        "scale must be a positive number",
    ),
    (
        "matching_loss",
        "NaN images",
        lambda: matching.matching_loss(embed(), nan_episode()),
        ValueError,
        "NaN",
    ),
    (
        "make_matching_step",
        "infinite scale",
        lambda: matching.make_matching_step(
            embed(), IMAGES, ways=2, shots=1, queries=1, scale=INF
        ),
        ValueError,
        "scale must be a finite",
    ),
    (
        "make_matching_step",
        "NaN images",
        lambda: matching.make_matching_step(
            embed(), images_like(torch.float32, NAN), ways=2, shots=1, queries=1
        ),
        ValueError,
        "NaN",
    ),
    (
        "matching_log_probs",
        "probabilities as labels",
        lambda: matching.matching_log_probs(
            embed(), episode().support_x, torch.rand(6), episode().query_x, ways=3
        ),
        TypeError,
        "support_y must be an integer tensor",
    ),
    (
        "matching_classifier",
        "NaN scale",
        lambda: matching.matching_classifier(embed(), scale=NAN),
        ValueError,
        "scale must be a finite",
    ),
    (
        "attention",
        "similarity",
        lambda: matching.attention(
            torch.zeros(2, 3), torch.zeros(2, 3), similarity="dot"
        ),
        ValueError,
        "similarity must be one of",
    ),
    # --- plots and tables ---
    (
        "ResultsTable",
        "unknown setting",
        lambda: plots.ResultsTable(["a"]).add("m", {"b": None}),
        ValueError,
        "Unknown settings",
    ),
    (
        "ResultsTable",
        "a string of settings",
        lambda: plots.ResultsTable("5w1s"),
        TypeError,
        r"for one setting write \['5w1s'\]",
    ),
    (
        "ResultsTable",
        "duplicate settings",
        lambda: plots.ResultsTable(["a", "a"]),
        ValueError,
        "distinct",
    ),
    (
        "ResultsTable",
        "paper for an unknown setting",
        lambda: plots.ResultsTable(["a"]).add("m", {}, paper={"b": 98.0}),
        ValueError,
        r"Unknown settings \['b'\] in paper",
    ),
    (
        "ResultsTable",
        "paper fraction",
        lambda: plots.ResultsTable(["a"]).add("m", {}, paper={"a": 0.987}),
        ValueError,
        "fraction: write 98.7",
    ),
    (
        "ResultsTable",
        "a float result",
        lambda: plots.ResultsTable(["a"]).add("m", {"a": 0.95}),
        TypeError,
        "must be an Accuracy",
    ),
    (
        "plot_learning_curve",
        "lengths",
        lambda: plots.plot_learning_curve([1, 2], [1]),
        ValueError,
        "2 steps but 1 values",
    ),
    (
        "plot_learning_curve",
        "strings",
        lambda: plots.plot_learning_curve([1, 2], ["0.5", "0.6"]),
        TypeError,
        "values must hold real numbers",
    ),
    (
        "plot_learning_curve",
        "negative errors",
        lambda: plots.plot_learning_curve([1, 2], [0.5, 0.6], errors=[0.1, -0.1]),
        ValueError,
        "non-negative",
    ),
    (
        "show_episode",
        "max_queries zero",
        lambda: plots.show_episode(episode(), max_queries=0),
        ValueError,
        "max_queries must be positive",
    ),
    (
        "show_episode",
        "a batch",
        lambda: plots.show_episode(sample_episodes(IMAGES, 2, 2, 1, 1)),
        TypeError,
        "EpisodeBatch",
    ),
    (
        "show_characters",
        "class out of range",
        lambda: plots.show_characters(IMAGES, [0, 9]),
        ValueError,
        "class 9 is out of range",
    ),
    (
        "show_characters",
        "too many examples",
        lambda: plots.show_characters(IMAGES, [0], examples=5),
        ValueError,
        "examples=5 but each class has only 4",
    ),
    (
        "show_characters",
        "row labels",
        lambda: plots.show_characters(IMAGES, [0, 1], examples=2, row_labels=["a"]),
        ValueError,
        "1 row_labels for 2 classes",
    ),
    # --- training config, checkpoints ---
    ("TrainConfig", "steps", lambda: TrainConfig(steps=0), ValueError, "steps.*0"),
    ("TrainConfig", "seed", lambda: TrainConfig(steps=5, seed=-2), ValueError, "seed"),
    (
        "TrainConfig",
        "every type",
        lambda: TrainConfig(steps=5, eval_every=2.5),
        TypeError,
        "eval_every",
    ),
    (
        "TrainConfig",
        "dir",
        lambda: TrainConfig(steps=5, checkpoint_dir=""),
        ValueError,
        "checkpoint_dir",
    ),
    (
        "load_checkpoint",
        "flipped byte in the weights",
        flipped_checkpoint,
        ValueError,
        r"corrupted: its content does not match the SHA-256 hash.*last\.pt",
    ),
    (
        "load_checkpoint",
        "missing file",
        lambda: checkpoint.load_checkpoint(Path(tempfile.gettempdir()) / "none.pt"),
        FileNotFoundError,
        "No checkpoint at",
    ),
    (
        "check_compatible",
        "momentum changed",
        resume_with(momentum=0.5),
        ValueError,
        r"momentum: 0\.9 -> 0\.5.*delete",
    ),
    (
        "check_compatible",
        "weight decay changed",
        resume_with(weight_decay=1e-4),
        ValueError,
        r"weight_decay: 0\.0 -> 0\.0001",
    ),
    (
        "check_compatible",
        "scheduler step size changed",
        resume_with(step_size=3),
        ValueError,
        r"scheduler: step_size: 5 -> 3",
    ),
    (
        "experiment_to_dict",
        "a class",
        lambda: checkpoint.experiment_to_dict(TrainConfig),
        TypeError,
        "dataclass instance",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [c[2:] for c in CASES],
    ids=[f"{c[0]}: {c[1]}" for c in CASES],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_table_is_long_and_its_ids_are_unique():
    assert len(CASES) >= 150
    ids = [(c[0], c[1]) for c in CASES]
    assert len(set(ids)) == len(ids)


def test_the_resumed_run_with_the_same_settings_still_resumes(tmp_path, capsys):
    """The refusals above are not a refusal of everything."""
    first = _train(tmp_path)
    again = _train(tmp_path)
    assert "already finished" in capsys.readouterr().out
    assert torch.equal(first.weight, again.weight)


def test_the_flipped_byte_changes_a_weight_that_torch_would_load(tmp_path):
    """The corruption case is real: unverified, the file loads a wrong weight."""
    model = _train(tmp_path)
    path = tmp_path / "last.pt"
    flip_weight_byte(path, model)
    raw = torch.load(path, weights_only=True)  # torch itself does not notice
    stored, trained = raw["model"]["weight"][0, 0], model.weight.detach()[0, 0]
    assert torch.isfinite(stored) and not torch.equal(stored, trained)
    with pytest.raises(ValueError, match="corrupted"):
        checkpoint.load_checkpoint(path)


def test_the_survey_classifies_outcomes():
    """benchmarks/bad_inputs_survey.py replays this table; its three outcomes."""
    spec = importlib.util.spec_from_file_location(
        "survey", REPO / "benchmarks" / "bad_inputs_survey.py"
    )
    survey = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(survey)

    def divide():
        return 1 / 0

    assert survey.classify(divide, ZeroDivisionError, "division")[0] == "clear"
    assert survey.classify(divide, ValueError, "division")[0] == "confusing"
    assert survey.classify(divide, ZeroDivisionError, "zero size")[0] == "confusing"
    outcome, message = survey.classify(lambda: 0.25, ValueError, "")
    assert outcome == "silent" and "0.25" in message
