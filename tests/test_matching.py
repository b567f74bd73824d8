"""Tests of metalearn.matching against explicit attention sums and ProtoNet."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import as_double, tiny_embedding, toy_episode, toy_images
from torch import nn

from metalearn.checkpoint import describe_tensor
from metalearn.episodes import Episode, FixedEpisodes, sample_episode
from metalearn.evaluate import accuracy, evaluate
from metalearn.matching import (
    attention,
    cosine_similarities,
    label_log_probs,
    make_matching_step,
    matching_classifier,
    matching_log_probs,
    matching_loss,
    similarities,
)
from metalearn.protonet import protonet_logits
from metalearn.training import TrainConfig, train

# --- attention ----------------------------------------------------------------------


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_attention_rows_sum_to_one(similarity):
    g = torch.Generator().manual_seed(0)
    query, support = torch.randn(7, 5, generator=g), torch.randn(10, 5, generator=g)
    a = attention(query, support, similarity=similarity, scale=3.0)
    assert a.shape == (7, 10)
    assert bool((a >= 0).all())
    torch.testing.assert_close(a.sum(dim=1), torch.ones(7))


def test_cosine_similarities_equal_loop():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    y = torch.randn(3, 6, generator=g, dtype=torch.float64)
    loop = torch.stack([F.cosine_similarity(x[i : i + 1], y) for i in range(4)])
    torch.testing.assert_close(cosine_similarities(x, y), loop)
    torch.testing.assert_close(similarities(x, y, scale=2.5), 2.5 * loop)


def test_label_log_probs_equal_log_of_attention_weighted_one_hot_labels():
    g = torch.Generator().manual_seed(2)
    query = torch.randn(6, 4, generator=g, dtype=torch.float64)
    support = torch.randn(9, 4, generator=g, dtype=torch.float64)
    support_y = torch.tensor([2, 0, 1, 1, 2, 0, 0, 1, 2])
    a = attention(query, support)  # [6, 9]
    y_hat = a @ F.one_hot(support_y, 3).double()  # sum_i a(x, x_i) y_i
    log_p = label_log_probs(similarities(query, support), support_y, 3)
    torch.testing.assert_close(log_p, y_hat.log())
    torch.testing.assert_close(
        log_p.exp().sum(dim=1), torch.ones(6, dtype=torch.float64)
    )


def test_label_log_probs_stay_finite_where_the_naive_log_underflows():
    scores = torch.tensor([[0.0, -200.0, -400.0]])  # float32 exp(-200) == 0
    support_y = torch.tensor([0, 1, 2])
    naive = (scores.softmax(1) @ F.one_hot(support_y, 3).float()).log()
    assert bool(torch.isinf(naive).any())
    log_p = label_log_probs(scores, support_y, 3)
    torch.testing.assert_close(log_p, torch.tensor([[0.0, -200.0, -400.0]]))


# --- loss ---------------------------------------------------------------------------


def test_loss_is_nll_of_attention_weighted_labels():
    episode = toy_episode(seed=3)
    embedding = tiny_embedding(batch_norm=False)
    loss, metrics = matching_loss(embedding, episode)
    with torch.no_grad():  # embed one image at a time; explicit attention sum
        support = torch.cat([embedding(x[None]) for x in episode.support_x])
        query = torch.cat([embedding(x[None]) for x in episode.query_x])
        cos = F.cosine_similarity(query[:, None, :], support[None, :, :], dim=2)
        y_hat = cos.softmax(dim=1) @ F.one_hot(episode.support_y, 5).float()
        expected = -y_hat[torch.arange(15), episode.query_y].log().mean()
        acc = float((y_hat.argmax(1) == episode.query_y).float().mean())
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    assert metrics["acc"] == pytest.approx(acc)


@pytest.mark.parametrize(("similarity", "scale"), [("cosine", 1.0), ("cosine", 10.0)])
def test_loss_falls_on_fixed_episode(similarity, scale):
    episode = toy_episode(seed=4)
    embedding = tiny_embedding()
    optimiser = torch.optim.Adam(embedding.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss, _ = matching_loss(embedding, episode, similarity=similarity, scale=scale)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.9 * losses[0], losses


# --- when Matching networks and ProtoNet coincide -----------------------------------


def matching_and_protonet(shots: int, queries: int):
    """Euclidean Matching-network and ProtoNet log-probabilities, 5-way, float64."""
    episode = as_double(toy_episode(shots=shots, queries=queries, seed=5))
    embedding = tiny_embedding().double().eval()
    args = (embedding, episode.support_x, episode.support_y, episode.query_x)
    matching = matching_log_probs(*args, ways=5, similarity="euclidean")
    protonet = protonet_logits(*args, ways=5).log_softmax(dim=1)
    return matching, protonet


def test_one_shot_matching_with_euclidean_similarity_equals_protonet():
    matching, protonet = matching_and_protonet(shots=1, queries=4)
    torch.testing.assert_close(matching, protonet)
    assert torch.equal(matching.argmax(1), protonet.argmax(1))


def test_five_shot_matching_and_protonet_differ():
    # With K > 1 a prototype is a mean, attention a mixture: not the same model.
    matching, protonet = matching_and_protonet(shots=5, queries=2)
    assert not torch.allclose(matching, protonet, atol=1e-3)


# --- training-loop contract and evaluation -------------------------------------------


def test_step_is_reproducible_with_the_same_seed():
    images = toy_images()
    first = tiny_embedding()
    second = copy.deepcopy(first)
    kwargs = {"ways": 5, "shots": 1, "queries": 3}
    step_a = make_matching_step(first, images, **kwargs)
    step_b = make_matching_step(second, images, **kwargs)
    loss_a, metrics_a = step_a(torch.Generator().manual_seed(7))
    loss_b, metrics_b = step_b(torch.Generator().manual_seed(7))
    assert torch.equal(loss_a, loss_b) and metrics_a == metrics_b
    loss_c, _ = step_b(torch.Generator().manual_seed(8))
    assert not torch.equal(loss_a, loss_c)


def test_training_transfers_to_unseen_classes():
    images = toy_images(classes=40, examples=10, nuisance=3.0)
    torch.manual_seed(0)
    embedding = nn.Sequential(nn.Flatten(), nn.Linear(64, 16))
    test = FixedEpisodes(images[30:], count=20, ways=5, shots=1, queries=3, seed=0)
    before = evaluate(matching_classifier(embedding), test, progress=False)
    step = make_matching_step(embedding, images[:30], ways=10, shots=1, queries=4)
    optimiser = torch.optim.Adam(embedding.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        loss, _ = step(generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = evaluate(matching_classifier(embedding), test, progress=False)
    assert before.mean < 0.7 and after.mean > 0.9, (before, after)  # chance 0.2


def test_classifier_returns_log_probabilities_for_evaluate():
    embedding = tiny_embedding().eval()
    classify = matching_classifier(embedding, similarity="cosine", scale=5.0)
    g = torch.Generator().manual_seed(9)
    episodes = [sample_episode(toy_images(), 4, 2, 2, g) for _ in range(3)]
    log_p = classify(episodes[0])
    assert log_p.shape == (8, 4)
    torch.testing.assert_close(log_p.exp().sum(1), torch.ones(8))
    result = evaluate(classify, episodes, progress=False)
    expected = [accuracy(classify(e), e.query_y) for e in episodes]
    assert result.per_episode == pytest.approx(tuple(expected))


# --- bad inputs ------------------------------------------------------------------


def test_bad_inputs_raise():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="similarity must be one of"):
        attention(z, z, similarity="dot")
    with pytest.raises(ValueError, match="scale must be a finite positive"):
        attention(z, z, scale=0.0)
    with pytest.raises(ValueError, match=r"labels \[5\] outside 0..2"):
        label_log_probs(torch.zeros(2, 4), torch.tensor([0, 1, 2, 5]), 3)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no example"):
        label_log_probs(torch.zeros(2, 4), torch.tensor([0, 1, 1, 0]), 3)
    with pytest.raises(ValueError, match="one column per support label"):
        label_log_probs(torch.zeros(2, 5), torch.tensor([0, 1, 2, 0]), 3)
    with pytest.raises(ValueError, match="same dimension D"):
        cosine_similarities(torch.randn(2, 3), torch.randn(2, 4))
    episode = toy_episode()
    with pytest.raises(ValueError, match="support_x has 9 examples"):
        matching_loss(
            tiny_embedding(),
            Episode(
                episode.support_x[:-1],
                episode.support_y,
                episode.query_x,
                episode.query_y,
                episode.classes,
            ),
        )
    with pytest.raises(ValueError, match="ways=13 but images hold only 12"):
        make_matching_step(tiny_embedding(), toy_images(), ways=13, shots=1, queries=1)


# --- the step's identity (stored in checkpoints) ------------------------------------


def test_step_identity_and_a_changed_scale_is_refused_on_resume(tmp_path):
    images = toy_images()
    step = make_matching_step(tiny_embedding(), images, ways=4, shots=1, queries=2)
    assert step.identity == {
        "method": "matching",
        "ways": 4,
        "shots": 1,
        "queries": 2,
        "similarity": "cosine",
        "scale": 1.0,
        "images": describe_tensor(images),
    }

    def run(scale):
        embedding = tiny_embedding()
        step = make_matching_step(
            embedding, images, ways=4, shots=1, queries=2, scale=scale
        )
        optimiser = torch.optim.Adam(embedding.parameters(), lr=1e-3)
        config = TrainConfig(steps=2, checkpoint_dir=str(tmp_path))
        train(embedding, optimiser, step, config, progress=False)

    run(1.0)
    with pytest.raises(ValueError, match=r"step\.scale: 1\.0 -> 10\.0"):
        run(10.0)
