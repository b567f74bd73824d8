"""Tests of metalearn.siamese against explicit per-pair computations."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from conftest import tiny_embedding, toy_images
from torch import nn

from metalearn.checkpoint import describe_tensor
from metalearn.episodes import Episode, sample_episode
from metalearn.evaluate import evaluate
from metalearn.siamese import (
    SiameseNetwork,
    make_siamese_step,
    sample_pairs,
    siamese_classifier,
    siamese_scores,
    verification_loss,
)
from metalearn.training import TrainConfig, train


def tiny_siamese(seed: int = 0, dim: int = 16) -> SiameseNetwork:
    return SiameseNetwork(tiny_embedding(seed, dim), features=dim)


def fixed_pairs(pairs: int = 16, seed: int = 0):
    return sample_pairs(toy_images(), pairs, torch.Generator().manual_seed(seed))


# --- the model --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_similarity_is_symmetric(mode):
    model = tiny_siamese()
    model.train(mode == "train")
    x1, x2, _ = fixed_pairs()
    p12, p21 = model.similarity(x1, x2), model.similarity(x2, x1)
    torch.testing.assert_close(p12, p21)
    assert p12.shape == (16,) and bool(((p12 > 0) & (p12 < 1)).all())
    assert float(p12.detach().std()) > 0  # not a constant that is trivially symmetric


def test_similarity_is_sigmoid_of_weighted_l1():
    model = tiny_siamese().double().eval()
    x1, x2, _ = fixed_pairs()
    x1, x2 = x1.double(), x2.double()
    alpha, b = model.head.weight[0].tolist(), float(model.head.bias.detach()[0])
    expected = []
    with torch.no_grad():  # one pair at a time, the sum over j written out
        for a, c in zip(x1, x2, strict=True):
            h1, h2 = model.embedding(a[None])[0], model.embedding(c[None])[0]
            diffs = (h1 - h2).tolist()
            weighted = sum(w * abs(d) for w, d in zip(alpha, diffs, strict=True))
            expected.append(1 / (1 + math.exp(-(weighted + b))))
        similarity = model.similarity(x1, x2)
    torch.testing.assert_close(similarity, torch.tensor(expected, dtype=torch.float64))


def test_twins_share_weights():
    model = tiny_siamese()
    x1, x2, same = fixed_pairs()
    loss, _ = verification_loss(model, x1, x2, same)
    loss.backward()
    names = [name for name, _ in model.named_parameters()]
    assert names == [n for n in names if n.startswith(("embedding.", "head."))]
    assert model.head.weight.shape == (1, 16)


# --- pairs --------------------------------------------------------------------------


def test_pair_sampler_half_same_half_different():
    classes, examples = 10, 6
    # Every image stores its own (class, example) so pairs can be decoded.
    code = torch.arange(classes * examples, dtype=torch.uint8).reshape(
        classes, examples
    )
    images = code[:, :, None, None, None].expand(-1, -1, 1, 2, 2).contiguous()
    x1, x2, same = sample_pairs(images, 400, torch.Generator().manual_seed(0))
    id1 = (x1[:, 0, 0, 0] * 255).round().long()
    id2 = (x2[:, 0, 0, 0] * 255).round().long()
    c1, e1, c2, e2 = id1 // examples, id1 % examples, id2 // examples, id2 % examples
    assert same.tolist() == [1.0] * 200 + [0.0] * 200
    assert torch.equal(c1[:200], c2[:200]) and bool((e1[:200] != e2[:200]).all())
    assert bool((c1[200:] != c2[200:]).all())
    assert x1.dtype == torch.float32 and float(x1.max()) <= 1.0
    assert len(set(c1.tolist())) == classes  # every class gets drawn
    again = sample_pairs(images, 400, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((x1, x2, same), again, strict=True))


def test_verification_loss_is_binary_cross_entropy():
    model = tiny_siamese().eval()
    x1, x2, same = fixed_pairs()
    loss, metrics = verification_loss(model, x1, x2, same)
    with torch.no_grad():
        p = model.similarity(x1, x2)
        expected = -(same * p.log() + (1 - same) * (1 - p).log()).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    assert metrics["acc"] == pytest.approx(
        float(((p > 0.5) == (same > 0.5)).float().mean())
    )


def test_loss_falls_on_fixed_pairs():
    model = tiny_siamese()
    x1, x2, same = fixed_pairs(pairs=32)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss, _ = verification_loss(model, x1, x2, same)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_step_is_reproducible_with_the_same_seed():
    images = toy_images()
    first = tiny_siamese()
    second = copy.deepcopy(first)
    step_a = make_siamese_step(first, images, pairs=16)
    step_b = make_siamese_step(second, images, pairs=16)
    loss_a, metrics_a = step_a(torch.Generator().manual_seed(3))
    loss_b, metrics_b = step_b(torch.Generator().manual_seed(3))
    assert torch.equal(loss_a, loss_b) and metrics_a == metrics_b
    loss_c, _ = step_b(torch.Generator().manual_seed(4))
    assert not torch.equal(loss_a, loss_c)


# --- one-shot classification ---------------------------------------------------------


@pytest.mark.parametrize("shots", [1, 3])
def test_scores_pick_the_most_similar_support_example(shots):
    model = tiny_siamese().double().eval()
    episode = sample_episode(
        toy_images(), 4, shots, 2, torch.Generator().manual_seed(5)
    )
    episode = Episode(
        episode.support_x.double(),
        episode.support_y,
        episode.query_x.double(),
        episode.query_y,
        episode.classes,
    )
    scores = siamese_scores(model, episode)
    assert scores.shape == (8, 4)
    with torch.no_grad():  # every (query, support) pair through the network
        for q, query in enumerate(episode.query_x):
            pair = model(query.expand_as(episode.support_x), episode.support_x)
            for k in range(4):
                best = pair[episode.support_y == k].max()
                torch.testing.assert_close(scores[q, k], best)
            assert int(scores[q].argmax()) == int(episode.support_y[pair.argmax()])


def test_classifier_with_negative_unit_weights_is_l1_nearest_neighbour():
    # alpha = -1, b = 0 on raw pixels: p = sigmoid(-||x1 - x2||_1), so one-shot
    # classification must agree with an independent L1 nearest-neighbour rule.
    model = SiameseNetwork(nn.Flatten(), features=64)
    with torch.no_grad():
        model.head.weight.fill_(-1.0)
        model.head.bias.zero_()
    g = torch.Generator().manual_seed(6)
    episodes = [sample_episode(toy_images(), 5, 2, 3, g) for _ in range(4)]
    result = evaluate(siamese_classifier(model), episodes, progress=False)
    expected = []
    for episode in episodes:
        l1 = torch.cdist(episode.query_x.flatten(1), episode.support_x.flatten(1), p=1)
        predicted = episode.support_y[l1.argmin(dim=1)]
        expected.append(float((predicted == episode.query_y).float().mean()))
    assert result.per_episode == pytest.approx(tuple(expected))
    assert result.mean > 0.9  # the toy classes are far apart in pixel space


def test_verification_training_transfers_to_one_shot_tasks_on_unseen_classes():
    images = toy_images(classes=40, examples=10, nuisance=3.0)
    torch.manual_seed(0)
    model = SiameseNetwork(nn.Sequential(nn.Flatten(), nn.Linear(64, 16)), 16)
    g = torch.Generator().manual_seed(1)
    test = [sample_episode(images[30:], 5, 1, 3, g) for _ in range(20)]
    before = evaluate(siamese_classifier(model), test, progress=False)
    step = make_siamese_step(model, images[:30], pairs=64)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        loss, _ = step(generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = evaluate(siamese_classifier(model), test, progress=False)
    assert before.mean < 0.5 and after.mean > 0.7, (before, after)  # chance 0.2


# --- bad inputs ------------------------------------------------------------------


def test_bad_inputs_raise():
    model = tiny_siamese()
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        model(x, x[:3])
    with pytest.raises(ValueError, match="expected \\[8, 32\\]"):
        SiameseNetwork(model.embedding, features=32)(x, x)
    with pytest.raises(ValueError, match="even and positive"):
        sample_pairs(toy_images(), 7)
    with pytest.raises(ValueError, match=">= 2 classes"):
        make_siamese_step(model, toy_images(classes=1), pairs=4)
    with pytest.raises(ValueError, match="one label per pair"):
        verification_loss(model, x, x, torch.ones(3))
    episode = sample_episode(toy_images(), 3, 1, 1, torch.Generator().manual_seed(0))
    bad = dataclasses.replace(episode, support_y=torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="outside 0..2"):
        siamese_scores(model, bad)
    missing = dataclasses.replace(episode, support_y=torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
        siamese_scores(model, missing)


# --- the step's identity (stored in checkpoints) ------------------------------------


def test_step_identity_and_other_images_are_refused_on_resume(tmp_path):
    images = toy_images()
    step = make_siamese_step(tiny_siamese(), images, pairs=8)
    assert step.identity == {
        "method": "siamese",
        "pairs": 8,
        "images": describe_tensor(images),
    }

    def run(images, pairs=8):
        model = tiny_siamese()
        step = make_siamese_step(model, images, pairs=pairs)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        config = TrainConfig(steps=2, checkpoint_dir=str(tmp_path))
        train(model, optimiser, step, config, progress=False)

    run(images)
    with pytest.raises(ValueError, match=r"step\.pairs: 8 -> 16"):
        run(images, pairs=16)
    with pytest.raises(ValueError, match=r"step\.images\.sha256: '[0-9a-f]+' -> '"):
        run(toy_images(seed=1))  # same shape, other pixels
