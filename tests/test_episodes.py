import dataclasses

import pytest
import torch

from metalearn import episodes as episodes_module
from metalearn.episodes import (
    Episode,
    FixedEpisodes,
    check_episode,
    check_episode_batch,
    episode_sampler,
    sample_episode,
    sample_episodes,
)


@pytest.fixture
def images():
    # 12 classes x 8 examples of 1x4x4 images; pixel value encodes class, example
    classes = torch.arange(12).view(12, 1, 1, 1, 1) * 10
    examples = torch.arange(8).view(1, 8, 1, 1, 1)
    return (classes + examples).expand(12, 8, 1, 4, 4).to(torch.uint8).clone()


def decode(x):
    """Recover (class, example) from the pixel code of the fixture."""
    code = (x[:, 0, 0, 0] * 255).round().long()
    return code // 10, code % 10


def test_shapes_labels_and_dtypes(images):
    episode = sample_episode(images, ways=5, shots=2, queries=3)
    assert isinstance(episode, Episode)
    assert episode.support_x.shape == (10, 1, 4, 4)
    assert episode.query_x.shape == (15, 1, 4, 4)
    assert episode.support_x.dtype == torch.float32
    assert 0 <= episode.support_x.min() and episode.support_x.max() <= 1
    assert episode.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert episode.query_y.tolist() == sum(([k] * 3 for k in range(5)), [])
    assert episode.ways == 5


def test_each_label_is_one_class_with_disjoint_examples(images):
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        episode = sample_episode(images, 4, 3, 5, generator=generator)
        s_class, s_example = decode(episode.support_x)
        q_class, q_example = decode(episode.query_x)
        assert len(set(episode.classes.tolist())) == 4  # distinct classes
        for label in range(4):
            cls = episode.classes[label]
            assert (s_class[episode.support_y == label] == cls).all()
            assert (q_class[episode.query_y == label] == cls).all()
            support = set(s_example[episode.support_y == label].tolist())
            query = set(q_example[episode.query_y == label].tolist())
            assert len(support) == 3 and len(query) == 5 and not support & query


def test_label_order_is_random(images):
    generator = torch.Generator().manual_seed(1)
    first_class = {
        int(sample_episode(images, 3, 1, 1, generator).classes[0]) for _ in range(50)
    }
    assert len(first_class) > 5  # label 0 goes to many different classes


def test_same_seed_same_episode(images):
    a = sample_episode(images, 5, 1, 2, torch.Generator().manual_seed(3))
    b = sample_episode(images, 5, 1, 2, torch.Generator().manual_seed(3))
    c = sample_episode(images, 5, 1, 2, torch.Generator().manual_seed(4))
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    assert not torch.equal(a.classes, c.classes) or not torch.equal(
        a.support_x, c.support_x
    )


def test_batched_form(images):
    batch = sample_episodes(images, 6, 5, 1, 2, torch.Generator().manual_seed(0))
    assert len(batch) == 6
    assert batch.support_x.shape == (6, 5, 1, 4, 4)
    assert batch.query_y.shape == (6, 10)
    assert torch.equal(batch[2].support_x, batch.support_x[2])


def test_fixed_episodes_are_reproducible_and_consistent(images):
    a = FixedEpisodes(images, 30, 5, 2, 3, seed=9)
    b = FixedEpisodes(images, 30, 5, 2, 3, seed=9)
    assert len(a) == 30 and "seed=9" in repr(a)
    for i in (0, 17, -1):
        assert torch.equal(a[i].query_x, b[i].query_x)
    assert len(list(a)) == 30
    with pytest.raises(IndexError):
        a[30]


def test_episodes_live_on_the_device_of_the_images(images):
    # Images on a GPU must give labels on that GPU (a CUDA run crashed when the
    # labels stayed on the CPU); the "meta" device stands in for a GPU here.
    on_meta = images.to("meta")
    batch = sample_episodes(on_meta, tasks=2, ways=3, shots=1, queries=2)
    fixed = FixedEpisodes(on_meta, count=2, ways=3, shots=1, queries=2, seed=0)[0]
    for tensors in (batch, fixed):
        for name in ("support_x", "support_y", "query_x", "query_y"):
            assert getattr(tensors, name).device.type == "meta", name


def test_real_omniglot_episode(omniglot_data):
    images = omniglot_data.split("test")
    episode = sample_episode(images, 20, 1, 5, torch.Generator().manual_seed(0))
    assert episode.support_x.shape == (20, 1, 28, 28)
    expected = images[episode.classes[3]].float() / 255
    assert any(torch.equal(episode.support_x[3], x) for x in expected)


@pytest.mark.parametrize(
    ("ways", "shots", "queries", "error", "match"),
    [
        (13, 1, 1, ValueError, "ways=13 but images hold only 12 classes"),
        (5, 5, 4, ValueError, r"shots \+ queries = 5 \+ 4 = 9"),
        (0, 1, 1, ValueError, "ways must be positive, got 0"),
        (5, -1, 1, ValueError, "shots must be positive, got -1"),
        (5, 1, 0, ValueError, "queries must be positive, got 0"),
        (5.0, 1, 1, TypeError, "ways must be an int"),
    ],
)
def test_bad_sizes(images, ways, shots, queries, error, match):
    with pytest.raises(error, match=match):
        sample_episode(images, ways, shots, queries)


def test_bad_images():
    with pytest.raises(ValueError, match=r"\[classes, examples, C, H, W\]"):
        sample_episode(torch.zeros(5, 20, 28, 28), 5, 1, 1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        sample_episode([[0]], 5, 1, 1)
    with pytest.raises(ValueError, match="tasks must be positive"):
        sample_episodes(torch.zeros(5, 4, 1, 2, 2), 0, 2, 1, 1)


# --- what the samplers accept, and when they check it --------------------------------


def test_float_images_are_used_as_given(images):
    floats = images.float() / 255
    a = sample_episode(images, 4, 2, 3, torch.Generator().manual_seed(5))
    b = sample_episode(floats, 4, 2, 3, torch.Generator().manual_seed(5))
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    standardised = (floats - floats.mean()) / floats.std()  # negative values too
    c = sample_episode(standardised, 4, 2, 3, torch.Generator().manual_seed(5))
    assert c.support_x.min() < 0


def test_unscaled_float_images_are_refused_with_the_fix(images):
    with pytest.raises(ValueError, match=r"images\.to\(torch\.uint8\).*images / 255"):
        sample_episode(images.float(), 4, 2, 3)


def test_a_sampler_checks_the_images_once(images, monkeypatch):
    calls = []
    real = episodes_module.check_images
    monkeypatch.setattr(
        episodes_module,
        "check_images",
        lambda *a, **k: calls.append(1) or real(*a, **k),
    )
    sample = episode_sampler(images.float() / 255, tasks=2, ways=3, shots=1, queries=2)
    fixed = FixedEpisodes(images, 5, 3, 1, 2, seed=0)
    built = len(calls)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        sample(generator)
    list(fixed)
    assert built == 2 and len(calls) == built  # no check at each draw


def test_check_episode(images):
    episode = sample_episode(images, 3, 2, 2, torch.Generator().manual_seed(0))
    assert check_episode(episode) is episode
    bad = [
        (dataclasses.replace(episode, support_y=episode.support_y + 1), "outside 0..2"),
        (dataclasses.replace(episode, query_y=episode.query_y[:-1]), "has 5 labels"),
        (
            dataclasses.replace(episode, query_x=episode.query_x[..., :2]),
            "different example shapes",
        ),
        (dataclasses.replace(episode, classes=torch.zeros(0)), "non-empty 1-D"),
    ]
    for value, pattern in bad:
        with pytest.raises(ValueError, match=pattern):
            check_episode(value)
    with pytest.raises(TypeError, match="EpisodeBatch of 2 tasks"):
        check_episode(sample_episodes(images, 2, 3, 1, 1))
    with pytest.raises(TypeError, match="floating-point"):
        check_episode(dataclasses.replace(episode, support_x=images[0, :6]))


def test_check_episode_batch(images):
    batch = sample_episodes(images, 2, 3, 1, 2, torch.Generator().manual_seed(0))
    assert check_episode_batch(batch) is batch
    with pytest.raises(TypeError, match="got a single Episode"):
        check_episode_batch(batch[0])
    wrong = dataclasses.replace(batch, query_y=batch.query_y[:, :-1])
    with pytest.raises(ValueError, match=r"query_x \(2, 6, 1, 4, 4\) and"):
        check_episode_batch(wrong)
    with pytest.raises(ValueError, match=r"labels \[3\] outside 0..2"):
        check_episode_batch(dataclasses.replace(batch, support_y=batch.support_y + 1))
