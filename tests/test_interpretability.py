"""metalearn.interpretability: retrieval and confusions in a learned embedding."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from metalearn import interpretability as ip  # noqa: E402
from metalearn.models import Conv4  # noqa: E402


def clustered(classes: int = 6, examples: int = 5, spread: float = 0.1, seed=0):
    """Features ``[classes, examples, 3]``: tight clusters around random centres."""
    g = torch.Generator().manual_seed(seed)
    centres = 10 * torch.randn(classes, 1, 3, generator=g)
    return centres + spread * torch.randn(classes, examples, 3, generator=g)


def brute_force_precision(features: torch.Tensor, shots: int) -> list[float]:
    """R-precision from its definition, one class at a time, with plain loops."""
    classes, examples, _ = features.shape
    bank = [(c, features[c, e]) for c in range(classes) for e in range(shots, examples)]
    scores = []
    for c in range(classes):
        centre = features[c, :shots].mean(0)
        ranked = sorted(bank, key=lambda item: float(((item[1] - centre) ** 2).sum()))
        retrieved = ranked[: examples - shots]
        scores.append(sum(owner == c for owner, _ in retrieved) / len(retrieved))
    return scores


def test_retrieval_precision_matches_its_definition():
    features = clustered(spread=6.0)  # overlapping clusters: imperfect retrieval
    for shots in (1, 3):
        fast = ip.retrieval_precision(features, shots).tolist()
        assert fast == pytest.approx(brute_force_precision(features, shots))
    assert 0 < min(ip.retrieval_precision(features, 1)) < 1  # the test can fail
    assert ip.retrieval_precision(clustered(spread=0.01), 1).tolist() == [1.0] * 6


def test_confusion_counts_every_remaining_drawing_once():
    features = clustered(spread=6.0)
    confusion = ip.prototype_confusion(features, shots=2)
    assert confusion.shape == (6, 6)
    assert confusion.sum(dim=1).tolist() == [3] * 6  # 5 drawings - 2 shots
    centres = features[:, :2].mean(1)
    for c in range(6):  # against a per-drawing loop
        for e in range(2, 5):
            nearest = int(((features[c, e] - centres) ** 2).sum(1).argmin())
            assert confusion[c, nearest] >= 1
    clean = ip.prototype_confusion(clustered(spread=0.01), shots=2)
    assert torch.equal(clean, torch.diag(torch.full((6,), 3)))


def test_most_confused_adds_both_directions_and_orders_ties():
    confusion = torch.tensor([[9, 2, 0, 1],
                              [1, 9, 0, 0],
                              [0, 0, 9, 3],
                              [2, 0, 0, 9]])
    assert ip.most_confused(confusion, 10) == [(0, 1, 3), (0, 3, 3), (2, 3, 3)]
    assert ip.most_confused(confusion, 1) == [(0, 1, 3)]
    assert ip.most_confused(torch.eye(3, dtype=torch.long), 5) == []
    with pytest.raises(ValueError, match="square"):
        ip.most_confused(torch.zeros(2, 3), 1)


def test_nearest_neighbours_are_sorted_and_exact():
    bank = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    indices, distances = ip.nearest_neighbours(torch.tensor([0.9, 0.0]), bank, 3)
    assert indices.tolist() == [2, 0, 1]
    assert distances.tolist() == pytest.approx([0.01, 0.81, 4.41])
    with pytest.raises(ValueError, match="exceeds"):
        ip.nearest_neighbours(torch.zeros(2), bank, 5)


def test_embedding_in_shuffled_batches_keeps_each_drawing_in_its_place():
    images = torch.randint(0, 256, (7, 3, 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    flat = nn.Flatten()  # no batch statistics: order and batching must not matter
    z = ip.embed_drawings(flat, images, batch_size=4, seed=1)
    assert torch.equal(z, images.float().div(255).flatten(2))
    assert torch.equal(ip.pixel_features(images), z)
    torch.manual_seed(0)
    conv = ip.embed_drawings(Conv4(head=False), images, batch_size=8)
    assert conv.shape == (7, 3, 64) and torch.isfinite(conv).all()
    with pytest.raises(ValueError, match="features"):
        ip.retrieval_precision(torch.zeros(4, 5), 1)
    with pytest.raises(ValueError, match="shots=3 leaves no drawing"):
        ip.retrieval_precision(torch.zeros(4, 3, 2), 3)


def test_the_figures_draw():
    images = torch.randint(0, 256, (6, 5, 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    features = clustered(spread=6.0)
    fig = ip.plot_prototype_neighbours(images, features, [0, 3], shots=1,
                                       neighbours=4, labels=["a", "b"])
    assert len(fig.axes) == 2 * (1 + 1 + 4)
    plt.close(fig)
    pairs = ip.most_confused(ip.prototype_confusion(features, 1), 3)
    fig = ip.plot_confused_pairs(images, pairs, examples=2, classified=8,
                                 names=[f"#{i}" for i in range(6)])
    assert "most often" in fig._suptitle.get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="same \\[classes, examples\\]"):
        ip.plot_prototype_neighbours(images[:, :4], features, [0])
