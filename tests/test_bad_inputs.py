"""One table of the mistakes a reader can make, and the error each must raise.

Every public function of ``metalearn`` that takes sizes, learning rates, step
counts, images, labels, profile names or checkpoints validates them; each row
below calls one with a bad value and checks the exception type and that the
message names the argument (and, where useful, its value).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metalearn import baselines, evaluate, maml, matching, plots, protonet, siamese
from metalearn.data import omniglot, rotate_classes
from metalearn.episodes import Episode, FixedEpisodes, sample_episode, sample_episodes
from metalearn.models import MLP, Conv4
from metalearn.profiles import get_profile
from metalearn.reptile import reptile_task_weights
from metalearn.runtime import seed_everything
from metalearn.sinusoid import sample_sinusoid_tasks
from metalearn.training import TrainConfig

IMAGES = torch.zeros(6, 4, 1, 8, 8, dtype=torch.uint8)


def episode(ways=3, shots=2, queries=2, size=8):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (ways, shots + queries, 1, size, size), generator=g)
    return sample_episode(images.to(torch.uint8), ways, shots, queries, g)


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


CASES = [
    # (id, call, exception, message regex)
    ("profile name", lambda: get_profile("fast"), ValueError, "'fast'.*'smoke'"),
    ("seed negative", lambda: seed_everything(-1), ValueError, "seed.*-1"),
    ("omniglot size", lambda: omniglot(image_size=200), ValueError, "image_size.*200"),
    ("omniglot size type", lambda: omniglot(image_size="28"), TypeError, "image_size"),
    ("ways > classes", lambda: sample_episode(IMAGES, 7, 1, 1), ValueError, "ways=7"),
    ("shots+queries", lambda: sample_episode(IMAGES, 2, 3, 2), ValueError, "= 5"),
    ("ways zero", lambda: sample_episode(IMAGES, 0, 1, 1), ValueError, "ways.*0"),
    ("shots negative", lambda: sample_episode(IMAGES, 2, -1, 1), ValueError, "shots"),
    ("queries type", lambda: sample_episode(IMAGES, 2, 1, 1.5), TypeError, "queries"),
    ("images rank", lambda: sample_episode(IMAGES[0], 2, 1, 1), ValueError, "images"),
    ("tasks zero", lambda: sample_episodes(IMAGES, 0, 2, 1, 1), ValueError, "tasks"),
    ("fixed count", lambda: FixedEpisodes(IMAGES, 0, 2, 1, 1, 0), ValueError, "tasks"),
    ("rotate shape", lambda: rotate_classes(IMAGES[..., :5]), ValueError, "images"),
    ("ci empty", lambda: evaluate.mean_confidence_interval([]), ValueError, "one"),
    (
        "accuracy shape",
        lambda: evaluate.accuracy(torch.zeros(3), torch.zeros(4)),
        ValueError,
        "shape",
    ),
    (
        "logreg l2",
        lambda: baselines.logistic_regression(episode(), l2=-1),
        ValueError,
        "l2",
    ),
    (
        "logreg iters",
        lambda: baselines.logistic_regression(episode(), max_iter=0),
        ValueError,
        "max_iter",
    ),
    (
        "table setting",
        lambda: plots.ResultsTable(["a"]).add("m", {"b": None}),
        ValueError,
        "Unknown settings",
    ),
    (
        "curve lengths",
        lambda: plots.plot_learning_curve([1, 2], [1]),
        ValueError,
        "2 steps but 1 values",
    ),
    (
        "conv4 channels",
        lambda: Conv4(1, 3)(torch.zeros(2, 3, 28, 28)),
        ValueError,
        r"expects images \[B, 1, 28, 28\], got \(2, 3, 28, 28\)",
    ),
    (
        "conv4 rank",
        lambda: Conv4(1, 3)(torch.zeros(3, 28, 28)),
        ValueError,
        r"got \(3, 28, 28\)",
    ),
    ("conv4 ways", lambda: Conv4(1, ways=0), ValueError, "ways"),
    (
        "mlp input",
        lambda: MLP()(torch.zeros(4, 3)),
        ValueError,
        r"\[B, 1\], got \(4, 3\)",
    ),
    ("maml inner_lr", maml_args(inner_lr=0.0), ValueError, "inner_lr"),
    ("maml inner_lr neg", maml_args(inner_lr=-0.4), ValueError, "inner_lr.*-0.4"),
    ("maml steps", maml_args(steps=0), ValueError, "steps"),
    ("maml steps type", maml_args(steps=1.0), TypeError, "steps"),
    ("sinusoid shots", lambda: sample_sinusoid_tasks(2, 0, 5), ValueError, "shots"),
    ("sinusoid tasks", lambda: sample_sinusoid_tasks(0, 5, 5), ValueError, "tasks"),
    (
        "protonet label",
        lambda: protonet.protonet_loss(embed(), bad_label_episode()),
        ValueError,
        "support_y",
    ),
    (
        "protonet empty class",
        lambda: protonet.protonet_loss(embed(), missing_class_episode()),
        ValueError,
        "class",
    ),
    (
        "prototypes shapes",
        lambda: protonet.prototypes(torch.zeros(4, 3), torch.zeros(5).long(), 2),
        ValueError,
        "support",
    ),
    (
        "distances dims",
        lambda: protonet.squared_distances(torch.zeros(4, 3), torch.zeros(2, 5)),
        ValueError,
        "3.*5|5.*3",
    ),
    (
        "protonet distance",
        lambda: protonet.protonet_loss(embed(), episode(), distance="manhattan"),
        ValueError,
        "manhattan",
    ),
    (
        "matching label",
        lambda: matching.matching_loss(embed(), bad_label_episode()),
        ValueError,
        "support_y",
    ),
    ("siamese odd pairs", lambda: siamese.sample_pairs(IMAGES, 3), ValueError, "pairs"),
    ("train steps", lambda: TrainConfig(steps=0), ValueError, "steps.*0"),
    ("train seed", lambda: TrainConfig(steps=5, seed=-2), ValueError, "seed"),
    (
        "train every type",
        lambda: TrainConfig(steps=5, eval_every=2.5),
        TypeError,
        "eval_every",
    ),
    (
        "train dir",
        lambda: TrainConfig(steps=5, checkpoint_dir=""),
        ValueError,
        "checkpoint_dir",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_reptile_bad_inner_lr():
    model = MLP(hidden=(4,))
    params = dict(model.named_parameters())
    x = torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match="inner_lr"):
        reptile_task_weights(model, params, {}, x, x, inner_lr=0.0, steps=1)


def test_the_table_is_long():
    assert len(CASES) >= 35
