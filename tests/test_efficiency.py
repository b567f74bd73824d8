"""metalearn.efficiency: the challenges chapter's compute and task-efficiency code."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import omniglot_root  # noqa: E402

from metalearn import efficiency, zoo  # noqa: E402
from metalearn.episodes import sample_episode  # noqa: E402
from metalearn.evaluate import Accuracy  # noqa: E402
from metalearn.profiles import CAPPED_FIELDS, PROFILES, get_profile  # noqa: E402
from metalearn.transfer import (  # noqa: E402
    backbone_of,
    embed_episode,
    nearest_centroid_logits,
)


@pytest.fixture
def cache(tmp_path, monkeypatch, omniglot_cache):
    """A fresh checkpoint cache that still finds the decoded Omniglot."""
    monkeypatch.setenv("METALEARN_DATA", str(omniglot_root()))
    for cached in omniglot_cache.glob("omniglot-*.pt"):
        (tmp_path / cached.name).write_bytes(cached.read_bytes())
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    monkeypatch.delenv("METALEARN_MAX_STEPS", raising=False)
    return tmp_path


def fake_images(classes: int = 30, examples: int = 3) -> torch.Tensor:
    """Distinct uint8 'characters' whose class is readable from pixel (0, 0)."""
    images = torch.randint(0, 256, (classes, examples, 1, 28, 28),
                           generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    images[:, :, 0, 0, 0] = torch.arange(classes, dtype=torch.uint8)[:, None]
    return images


# ----------------------------------------------------------- the subsets


def test_subset_order_is_a_seeded_permutation():
    order = efficiency.subset_order(1028, seed=0)
    assert sorted(order.tolist()) == list(range(1028))
    assert torch.equal(order, efficiency.subset_order(1028, seed=0))
    assert not torch.equal(order, efficiency.subset_order(1028, seed=1))
    with pytest.raises(ValueError, match="seed"):
        efficiency.subset_order(10, seed=-1)


def test_training_classes_are_nested_and_rotations_are_the_rotated_originals():
    images = fake_images()
    order = efficiency.subset_order(30, seed=3).tolist()
    small = efficiency.training_classes(images, 5, rotate=False, seed=3)
    large = efficiency.training_classes(images, 12, rotate=False, seed=3)
    ids = lambda t: t[:, 0, 0, 0, 0].tolist()  # noqa: E731 - the class of each row
    assert ids(small) == order[:5] and ids(large) == order[:12]
    assert set(ids(small)) <= set(ids(large))  # nested
    rotated = efficiency.training_classes(images, 5, rotate=True, seed=3)
    assert rotated.shape == (20, 3, 1, 28, 28)
    assert torch.equal(rotated[:5], small)
    for k in (1, 2, 3):  # then each rotation of the same five characters
        assert torch.equal(rotated[5 * k: 5 * (k + 1)],
                           torch.rot90(small, k, dims=(-2, -1)))
    with pytest.raises(ValueError, match="only 30 classes"):
        efficiency.training_classes(images, 31, rotate=False)
    with pytest.raises(TypeError, match="rotate"):
        efficiency.training_classes(images, 3, rotate=1)


# ----------------------------------------------------------- the recipes


def recipe(method: str, **changes) -> efficiency.ClassSubsetRecipe:
    base = dict(name=f"t-{method}", method=method, characters=25, rotate=True,
                steps=2)
    return efficiency.ClassSubsetRecipe(**{**base, **changes})


def test_both_methods_process_the_same_images_per_step():
    protonet, pretrain = recipe("protonet"), recipe("pretrain")
    assert protonet.queries == 2  # 20-way 1-shot: 20 * (1 + 2) = 60 images
    assert protonet.ways * (protonet.shots + protonet.queries) == 60
    assert protonet.images_processed == pretrain.images_processed == 120
    assert protonet.classes == 100 and recipe("protonet", rotate=False).classes == 25
    with pytest.raises(ValueError, match="multiple of ways=20"):
        recipe("protonet", images_per_step=50)
    with pytest.raises(ValueError, match="at least one query"):
        recipe("protonet", images_per_step=20)
    with pytest.raises(ValueError, match="method"):
        recipe("maml")


def test_the_profiles_budget_every_point_equally():
    for profile in PROFILES.values():
        recipes = efficiency.task_efficiency_recipes(profile)
        assert len(recipes) == 2 * len(profile.efficiency_characters) * len(
            profile.efficiency_rotations)
        assert len({r.name for r in recipes}) == len(recipes)
        assert {r.images_processed for r in recipes} == {
            60 * profile.efficiency_steps}
        assert max(profile.efficiency_characters) <= 1028
        for r in recipes:
            dataclasses.asdict(r)  # plain data: it goes into the checkpoint
            if r.method == "protonet":
                assert r.ways <= r.classes  # 20-way episodes need 20 classes
    assert "efficiency_steps" in CAPPED_FIELDS
    assert PROFILES["short"].efficiency_characters == (25, 100, 400, 1028)


def test_the_recipes_build_equal_steps_from_equal_filters(cache):
    smoke = get_profile("smoke")
    builds = {m: recipe(m).build(torch.device("cpu"), smoke)
              for m in efficiency.METHODS}
    identity = {m: b.step.identity for m, b in builds.items()}
    assert identity["protonet"]["ways"] * (
        1 + identity["protonet"]["queries"]) == identity["pretrain"]["batch_size"]
    assert identity["pretrain"]["classes"] == 100  # 25 characters x 4 rotations
    features = {m: b.model.features.state_dict() for m, b in builds.items()}
    for name, tensor in features["protonet"].items():
        assert torch.equal(tensor, features["pretrain"][name]), name
    for build in builds.values():
        assert build.validate is None and build.scheduler is not None
    too_few = recipe("protonet", characters=4, rotate=False)
    with pytest.raises(ValueError, match="cannot make 20-way episodes"):
        too_few.build(torch.device("cpu"), smoke)


def test_a_point_trains_through_the_zoo_and_classifies(cache):
    smoke = get_profile("smoke")
    for method in efficiency.METHODS:
        made = recipe(method, characters=30, steps=3)
        trained = zoo.fit_recipe(made, profile=smoke, device="cpu")
        assert trained.fitted.steps == 3 and not trained.loaded
        again = zoo.fit_recipe(made, profile=smoke, device="cpu")
        assert again.loaded
        episode = sample_episode(torch.rand(8, 4, 1, 28, 28), 5, 1, 2,
                                 torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert again.classifier()(episode).shape == (10, 5)
        if method == "pretrain":  # the backbone keeps the faster channels-last
            backbone = made.embedding(again.model)
            assert backbone.features[1][0].weight.is_contiguous(
                memory_format=torch.channels_last)
            with torch.no_grad():  # and scores as the contiguous copy does
                support, query = embed_episode(backbone_of(again.model), episode)
                expected = nearest_centroid_logits(support, episode.support_y, query, 5)
                assert torch.allclose(again.classifier()(episode), expected,
                                      rtol=1e-4, atol=1e-3)
        else:
            assert made.embedding(again.model) is again.model


# ----------------------------------------------------- table and figures


def point(method: str, characters: int, rotate: bool, mean: float, ci95: float):
    made = recipe(method, characters=characters, rotate=rotate)
    accuracy = Accuracy(mean=mean, ci95=ci95, episodes=600, per_episode=())
    return efficiency.Point(made, accuracy, train_seconds=60.0)


def test_the_table_reports_the_gap_and_whether_the_intervals_separate():
    points = [point("protonet", 25, False, 0.80, 0.01),
              point("pretrain", 25, False, 0.70, 0.01),
              point("protonet", 100, True, 0.90, 0.02),
              point("pretrain", 100, True, 0.89, 0.02)]
    table = efficiency.task_efficiency_table(points).splitlines()
    assert len(table) == 4
    assert table[2] == ("| 25 | no | 25 | 120 | 80.00 ± 1.00 % | 70.00 ± 1.00 % | "
                        "+10.0 points (clear) |")
    assert table[3].startswith("| 100 | yes | 400 |")
    assert table[3].endswith("+1.0 points (within the intervals) |")
    with pytest.raises(TypeError, match="Point"):
        efficiency.task_efficiency_table([])


def test_findings_compare_the_ends_and_rotations_with_as_many_characters():
    points = [point("protonet", 25, False, 0.70, 0.01),
              point("protonet", 100, False, 0.80, 0.01),
              point("protonet", 400, False, 0.85, 0.01),
              point("protonet", 100, True, 0.84, 0.01),
              point("pretrain", 25, False, 0.60, 0.02)]
    lines = efficiency.findings(points)
    assert lines == [
        "- ProtoNet, without rotations: 400 characters against 25: +15.0 points "
        "(clear).",
        "- ProtoNet, 400 classes: 100 characters with rotations against 400 "
        "distinct characters: -1.0 points (within the intervals).",
    ]
    assert efficiency.gap(points[1].accuracy, points[0].accuracy).startswith("+10.0")


def test_the_figure_has_one_line_per_method_and_rotation_on_a_log_axis():
    points = [point(m, c, r, 0.5 + 0.001 * c, 0.01) for m in efficiency.METHODS
              for c in (25, 100) for r in (False, True)]
    ax = efficiency.plot_task_efficiency(points)
    assert ax.get_xscale() == "log" and ax.get_title() and ax.get_ylabel()
    assert len(ax.get_legend().get_texts()) == 4
    plt.close(ax.figure)


def test_the_diagrams_draw(omniglot_data):
    fig = efficiency.task_efficiency_diagram(omniglot_data.split("train"))
    assert "Task efficiency" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="must increase"):
        efficiency.task_efficiency_diagram(omniglot_data.split("train"), (100, 25))
    fig = efficiency.backward_graphs_diagram(inner_steps=2)
    assert "k = 2" in fig.axes[0].get_title()
    plt.close(fig)


# -------------------------------------------------------------- compute


def test_second_order_memory_grows_linearly_and_first_order_stays_flat():
    costs = efficiency.second_order_costs(fake_images(8, 4), [1, 2, 3], meta_batch=1)
    maml, fomaml = costs["MAML"]["saved_mib"], costs["FOMAML"]["saved_mib"]
    assert costs["inner_steps"] == [1, 2, 3] and costs["meta_batch"] == 1
    assert maml[0] < maml[1] < maml[2]
    # each inner step keeps the same graph: equal increments (to a few bytes)
    assert maml[2] - maml[1] == pytest.approx(maml[1] - maml[0], rel=0.02)
    assert fomaml[0] == pytest.approx(fomaml[1]) == pytest.approx(fomaml[2])
    assert fomaml[0] < maml[0]
    assert all(s > 0 for s in costs["MAML"]["seconds"] + costs["FOMAML"]["seconds"])
    fig = efficiency.plot_step_costs(costs, {"ProtoNet": (0.1, 5.0)})
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="inner_steps is empty"):
        efficiency.second_order_costs(fake_images(8, 4), [], meta_batch=1)
    with pytest.raises(ValueError, match="no 'FOMAML'"):
        efficiency.plot_step_costs({"inner_steps": [1], "meta_batch": 1,
                                    "MAML": {}}, {})
