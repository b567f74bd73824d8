"""The conceptual figures draw what they say, from the data they are given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from metalearn import diagrams  # noqa: E402
from metalearn.episodes import sample_episode  # noqa: E402
from metalearn.quadratic import fixed_point, sample_quadratic_tasks  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def images(classes: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (classes, 6, 1, 12, 12), generator=g,
                         dtype=torch.uint8)


def test_episode_diagram_shows_training_and_test_tasks():
    fig = diagrams.episode_diagram(images(), images(seed=1), torch.Generator(),
                                   ways=3, shots=2, queries=2, train_tasks=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["meta-training task 1", "meta-training task 2"]
    assert "meta-test task" in titles[2]
    assert "3-way 2-shot" in fig._suptitle.get_text()
    for ax in fig.axes:  # support and query boxes, labels 0..2
        assert len(ax.patches) == 2
        assert {t.get_text() for t in ax.texts} >= {"support", "query", "0", "1", "2"}


def test_maml_picture_marks_both_initialisations():
    tasks = sample_quadratic_tasks(3, torch.Generator().manual_seed(0))
    fig = diagrams.maml_parameter_space(tasks, inner_lr=0.4, steps=2)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    maml = next(v for k, v in lines.items() if k.startswith("MAML"))
    expected = fixed_point("maml", tasks, inner_lr=0.4, steps=2)
    assert maml.get_xdata()[0] == pytest.approx(float(expected[0]))
    assert len(ax.patches) == 2 * len(tasks)  # an arrow per task and start
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


def test_trajectories_end_at_each_method_fixed_point():
    tasks = sample_quadratic_tasks(3, torch.Generator().manual_seed(1))
    start = torch.tensor([3.0, 3.0], dtype=torch.float64)
    fig = diagrams.method_trajectories(tasks, start, inner_lr=0.3, steps=2,
                                       meta_lr=0.5, iterations=2000)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    for kind, (name, _) in diagrams.METHOD_STYLE.items():
        end = fixed_point(kind, tasks, inner_lr=0.3, steps=2)
        path = lines[name]
        assert path.get_xdata()[-1] == pytest.approx(float(end[0]), abs=1e-6)
        assert path.get_ydata()[-1] == pytest.approx(float(end[1]), abs=1e-6)


def test_nearest_prototype_is_the_argmin_of_squared_distances():
    g = torch.Generator().manual_seed(2)
    points, centres = torch.randn(50, 2, generator=g), torch.randn(4, 2, generator=g)
    expected = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    assert torch.equal(diagrams.nearest_prototype(points, centres), expected)


def test_prototype_regions_reports_the_query_accuracy():
    episode = sample_episode(images(), 3, 2, 3, torch.Generator().manual_seed(0))

    def embed(x):  # a fixed 2-D "embedding": two pixel means
        return torch.stack([x.flatten(1)[:, :72].mean(1), x.flatten(1)[:, 72:].mean(1)],
                           1)

    ax = diagrams.prototype_regions(embed, episode, resolution=50)
    z = embed(torch.cat([episode.support_x, episode.query_x])).double()
    centres = torch.stack([z[:6][episode.support_y == k].mean(0) for k in range(3)])
    accuracy = (diagrams.nearest_prototype(z[6:], centres) == episode.query_y)
    assert f"query accuracy {100 * accuracy.double().mean():.0f}%" in ax.get_title()
    assert ax.get_xlabel() == "embedding dimension 1"
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        diagrams.prototype_regions(lambda x: x.flatten(1), episode)


def test_architecture_sketches_draw_their_inputs():
    pair = [torch.rand(1, 12, 12), torch.rand(1, 12, 12)]
    fig = diagrams.siamese_diagram(pair)
    assert len(fig.axes[0].images) == 2 and "Siamese" in fig.axes[0].get_title()
    fig = diagrams.matching_diagram([torch.rand(1, 12, 12)] * 3, torch.rand(1, 12, 12))
    assert len(fig.axes[0].images) == 4 and "Matching" in fig.axes[0].get_title()
    assert diagrams.siamese_diagram().axes  # placeholders without images
