"""Tests of metalearn.protonet against independent references (loops, cdist)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_embedding, toy_episode, toy_images
from torch import nn

from metalearn.checkpoint import describe_tensor
from metalearn.episodes import Episode, FixedEpisodes
from metalearn.evaluate import accuracy, evaluate
from metalearn.protonet import (
    check_labels,
    cosine_distances,
    linear_classifier_weights,
    make_protonet_step,
    protonet_classifier,
    protonet_logits,
    protonet_loss,
    prototypes,
    squared_distances,
)
from metalearn.training import TrainConfig, train

# --- prototypes -------------------------------------------------------------


def test_prototypes_equal_loop_means():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([2, 0, 1, 3, 2, 2, 0, 1, 3, 3, 0, 1])
    expected = torch.stack([z[y == k].mean(dim=0) for k in range(4)])
    torch.testing.assert_close(prototypes(z, y, 4), expected)


def test_prototypes_invariant_to_support_order():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(15, 8, generator=g, dtype=torch.float64)
    y = torch.arange(5).repeat_interleave(3)
    perm = torch.randperm(15, generator=g)
    torch.testing.assert_close(prototypes(z[perm], y[perm], 5), prototypes(z, y, 5))


def test_logits_invariant_to_support_order():
    episode = toy_episode()
    embedding = tiny_embedding().double().eval()
    perm = torch.randperm(episode.support_y.numel(), generator=torch.Generator())
    args = (episode.support_x.double(), episode.support_y)
    logits = protonet_logits(embedding, *args, episode.query_x.double(), ways=5)
    shuffled = protonet_logits(
        embedding,
        args[0][perm],
        args[1][perm],
        episode.query_x.double(),
        ways=5,
    )
    torch.testing.assert_close(shuffled, logits)


def test_prototypes_gradcheck():
    z = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 0, 2, 1, 1, 0])
    assert torch.autograd.gradcheck(lambda t: prototypes(t, y, 3), (z,))


# --- distances ----------------------------------------------------------------


def test_squared_distances_equal_double_loop_and_cdist():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.randn(5, 4, generator=g, dtype=torch.float64)
    loop = torch.tensor(
        [[float(((x[i] - y[j]) ** 2).sum()) for j in range(5)] for i in range(7)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(squared_distances(x, y), loop)
    torch.testing.assert_close(squared_distances(x, y), torch.cdist(x, y) ** 2)


def test_squared_distances_clamped_and_finite_gradient_at_zero():
    # Large norms make ||x||^2 + ||y||^2 - 2x.y cancel; the clamp keeps d >= 0.
    g = torch.Generator().manual_seed(4)
    x = (300 + torch.randn(64, 32, generator=g)).requires_grad_(True)
    d = squared_distances(x, x.detach())
    assert bool((d >= 0).all())
    # float32 cancellation error is of order eps * ||x||^2 (here ~3e6 * 1e-7).
    assert float(d.detach().diagonal().max()) < 1e-6 * float(
        x.detach().pow(2).sum(1).max()
    )
    d.sum().backward()
    assert bool(torch.isfinite(x.grad).all())


def test_cosine_distances_equal_loop():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    y = torch.randn(3, 6, generator=g, dtype=torch.float64)
    loop = torch.stack([1 - F.cosine_similarity(x[i : i + 1], y) for i in range(4)])
    torch.testing.assert_close(cosine_distances(x, y), loop)


# --- logits, loss, linear identity ---------------------------------------------


def test_logits_equal_independent_distance_computation():
    episode = toy_episode(ways=4, shots=3, queries=2, seed=6)
    embedding = tiny_embedding(batch_norm=False).double()
    logits = protonet_logits(
        embedding,
        episode.support_x.double(),
        episode.support_y,
        episode.query_x.double(),
        ways=4,
    )
    with torch.no_grad():  # embed one image at a time, average, double loop
        support = [embedding(x[None].double())[0] for x in episode.support_x]
        query = [embedding(x[None].double())[0] for x in episode.query_x]
        labels = episode.support_y.tolist()
        centres = []
        for k in range(4):
            members = [s for s, y in zip(support, labels, strict=True) if y == k]
            centres.append(sum(members) / len(members))
        expected = torch.tensor(
            [[-float(((q - c) ** 2).sum()) for c in centres] for q in query],
            dtype=torch.float64,
        )
    torch.testing.assert_close(logits.detach(), expected)


def test_loss_is_cross_entropy_of_negative_distances():
    episode = toy_episode(seed=7)
    embedding = tiny_embedding(batch_norm=False)
    loss, metrics = protonet_loss(embedding, episode)
    with torch.no_grad():
        z = embedding(torch.cat([episode.support_x, episode.query_x]))
        support, query = z[:10], z[10:]
        centres = torch.stack([support[2 * k : 2 * k + 2].mean(0) for k in range(5)])
        log_p = (-(torch.cdist(query, centres) ** 2)).log_softmax(dim=1)
        expected = -log_p[torch.arange(15), episode.query_y].mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-5)
    assert metrics["loss"] == pytest.approx(float(loss.detach()))
    assert metrics["acc"] == pytest.approx(accuracy(log_p, episode.query_y))


def test_linear_classifier_identity():
    g = torch.Generator().manual_seed(8)
    z = torch.randn(9, 6, generator=g, dtype=torch.float64)
    centres = torch.randn(4, 6, generator=g, dtype=torch.float64)
    weight, bias = linear_classifier_weights(centres)
    torch.testing.assert_close(weight, 2 * centres)
    linear = z @ weight.T + bias  # [9, 4]
    logits = -squared_distances(z, centres)
    # -||z - c_k||^2 = w_k.z + b_k - ||z||^2: a per-row constant apart ...
    torch.testing.assert_close(
        linear - logits, z.pow(2).sum(1, keepdim=True).expand(-1, 4)
    )
    # ... so the same argmax and the same softmax.
    assert torch.equal(linear.argmax(1), logits.argmax(1))
    torch.testing.assert_close(linear.softmax(1), logits.softmax(1))


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_loss_falls_on_fixed_episode(distance):
    episode = toy_episode(seed=9)
    embedding = tiny_embedding()
    optimiser = torch.optim.Adam(embedding.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss, _ = protonet_loss(embedding, episode, distance=distance)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


# --- training-loop contract and evaluation -----------------------------------------


def test_step_is_reproducible_with_the_same_seed():
    images = toy_images()
    first, second = tiny_embedding(), tiny_embedding()
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    kwargs = {"ways": 6, "shots": 2, "queries": 3}
    step_a = make_protonet_step(first, images, **kwargs)
    step_b = make_protonet_step(second, images, **kwargs)
    loss_a, metrics_a = step_a(torch.Generator().manual_seed(11))
    loss_b, metrics_b = step_b(torch.Generator().manual_seed(11))
    assert torch.equal(loss_a, loss_b)
    assert metrics_a == metrics_b
    loss_c, _ = step_b(torch.Generator().manual_seed(12))
    assert not torch.equal(loss_a, loss_c)


def test_training_on_10_way_episodes_transfers_to_unseen_5_way_tasks():
    images = toy_images(classes=40, examples=10, nuisance=3.0)
    torch.manual_seed(0)
    embedding = nn.Sequential(nn.Flatten(), nn.Linear(64, 16))
    test = FixedEpisodes(images[30:], count=20, ways=5, shots=1, queries=3, seed=0)
    before = evaluate(protonet_classifier(embedding), test, progress=False)
    batch_sizes = []
    embedding.register_forward_hook(lambda m, x, z: batch_sizes.append(len(x[0])))
    step = make_protonet_step(embedding, images[:30], ways=10, shots=1, queries=4)
    optimiser = torch.optim.Adam(embedding.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        loss, metrics = step(generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert batch_sizes[-30:] == [10 * 1 + 10 * 4] * 30  # 10-way training episodes
    assert set(metrics) == {"loss", "acc"}
    after = evaluate(protonet_classifier(embedding), test, progress=False)
    assert before.mean < 0.7 and after.mean > 0.9, (before, after)  # chance 0.2
    logits = protonet_classifier(embedding)(test[0])
    assert logits.shape == (15, 5)
    assert after.per_episode[0] == pytest.approx(accuracy(logits, test[0].query_y))


# --- bad inputs ------------------------------------------------------------------


def test_labels_outside_range_raise():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"labels \[3\] outside 0..2"):
        prototypes(z, torch.tensor([0, 1, 2, 3]), 3)
    with pytest.raises(ValueError, match=r"labels \[-1\] outside"):
        prototypes(z, torch.tensor([0, 1, 2, -1]), 3)
    with pytest.raises(TypeError, match="integer tensor"):
        prototypes(z, torch.tensor([0.0, 1.0, 2.0, 2.0]), 3)


def test_class_without_support_example_raises_and_names_it():
    with pytest.raises(ValueError, match=r"class\(es\) \[1, 3\] have no example"):
        prototypes(torch.randn(4, 3), torch.tensor([0, 0, 2, 2]), 4)
    assert check_labels(torch.tensor([0, 0]), 2, every_class=False).tolist() == [2, 0]


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="5 rows but support_y has 4"):
        prototypes(torch.randn(5, 3), torch.tensor([0, 1, 0, 1]), 2)
    with pytest.raises(ValueError, match="same dimension D"):
        squared_distances(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="2-D tensor"):
        squared_distances(torch.randn(3, 4, 1), torch.randn(3, 4))
    episode = toy_episode()
    with pytest.raises(ValueError, match="2-D tensor"):  # embedding not flattened
        protonet_loss(nn.Conv2d(1, 2, 3), episode)
    bad = Episode(
        episode.support_x[:-1],
        episode.support_y,
        episode.query_x,
        episode.query_y,
        episode.classes,
    )
    with pytest.raises(ValueError, match="support_x has 9 examples"):
        protonet_loss(tiny_embedding(), bad)
    bad_query = Episode(
        episode.support_x,
        episode.support_y,
        episode.query_x,
        episode.query_y + 5,
        episode.classes,
    )
    with pytest.raises(ValueError, match="query_y holds labels"):
        protonet_loss(tiny_embedding(), bad_query)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="distance must be one of"):
        protonet_classifier(tiny_embedding(), distance="manhattan")
    with pytest.raises(ValueError, match="shots \\+ queries"):
        make_protonet_step(tiny_embedding(), toy_images(), ways=5, shots=5, queries=5)


# --- the step's identity (stored in checkpoints) ------------------------------------


def test_step_identity_names_the_settings_and_the_images():
    images = toy_images()
    step = make_protonet_step(tiny_embedding(), images, ways=6, shots=2, queries=3)
    assert step.identity == {
        "method": "protonet",
        "ways": 6,
        "shots": 2,
        "queries": 3,
        "distance": "euclidean",
        "images": describe_tensor(images),
    }
    other = make_protonet_step(tiny_embedding(), images[1:], ways=6, shots=2, queries=3)
    assert other.identity["images"] != step.identity["images"]


def test_resuming_with_other_step_settings_is_refused(tmp_path):
    def run(**options):
        embedding = tiny_embedding()
        settings = {"ways": 5, "shots": 1, "queries": 2, **options}
        step = make_protonet_step(embedding, toy_images(), **settings)
        optimiser = torch.optim.Adam(embedding.parameters(), lr=1e-3)
        config = TrainConfig(steps=2, checkpoint_dir=str(tmp_path))
        train(embedding, optimiser, step, config, progress=False)

    run()
    with pytest.raises(ValueError, match=r"step\.shots: 1 -> 5"):
        run(shots=5)
    with pytest.raises(ValueError, match=r"step\.distance: 'euclidean' -> 'cosine'"):
        run(distance="cosine")
