"""Transfer learning: pre-training, heads on frozen features, fine-tuning."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import scipy.optimize
import torch
import torch.nn.functional as F
from torch import nn

from metalearn.episodes import Episode, FixedEpisodes
from metalearn.evaluate import evaluate
from metalearn.models import Conv4
from metalearn.profiles import PROFILES
from metalearn.protonet import protonet_classifier
from metalearn.transfer import (
    PretrainRecipe,
    backbone_of,
    cosine_classifier_logits,
    embed_episode,
    evaluate_finetune_curve,
    evaluate_heads,
    evaluate_timed,
    finetune_classifier,
    finetune_curve_logits,
    first_episodes,
    fit_logistic_regression,
    frozen_classifier,
    imagenet_inputs,
    linear_probe_logits,
    make_classification_step,
    nearest_centroid_logits,
    pretrain_recipe,
    rfs_logits,
    transfer_budget,
)

HEADS = {
    "nearest centroid": nearest_centroid_logits,
    "linear probe": linear_probe_logits,
    "Baseline++": cosine_classifier_logits,
    "RFS": rfs_logits,
}


def separable_features(ways=5, shots=5, queries=10, dim=16, seed=0):
    """Features of ``ways`` well separated Gaussian clusters (support, query)."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(ways, dim, generator=g)

    def draw(per_class):
        labels = torch.arange(ways).repeat_interleave(per_class)
        noise = 0.3 * torch.randn(len(labels), dim, generator=g)
        return centres[labels] + noise, labels

    (support_z, support_y), (query_z, query_y) = draw(shots), draw(queries)
    return support_z, support_y, query_z, query_y


@pytest.fixture(scope="module")
def test_images(omniglot_data):
    return omniglot_data.split("test")


@pytest.fixture(scope="module")
def small_backbone():
    torch.manual_seed(0)
    return Conv4(hidden=8, head=False)


# ------------------------------------------------------------ pre-training


def test_pretraining_loss_falls_on_real_omniglot(omniglot_data):
    images = omniglot_data.split("train")[:40]  # 40 characters, 20 drawings each
    torch.manual_seed(0)
    model = Conv4(ways=40, hidden=32)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    step = make_classification_step(model, images, batch_size=64)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss, metrics = step(generator)
        loss.backward()
        optimiser.step()
        losses.append(metrics["loss"])
    assert losses[0] > math.log(40) - 0.5  # starts near chance
    assert np.mean(losses[-5:]) < losses[0] - 1.0, losses
    assert step.identity["classes"] == 40 and step.identity["batch_size"] == 64


def test_classification_step_labels_are_the_rows():
    """A model that reads the class off the image gets every label right."""
    classes, examples = 6, 4
    images = torch.arange(classes).float().view(classes, 1, 1, 1, 1)
    images = images.expand(classes, examples, 1, 2, 2) / 10

    class Reader(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            value = (x[:, 0, 0, 0] * 10).round().long()
            return 100 * F.one_hot(value, classes).float() + self.unused

    step = make_classification_step(Reader(), images, batch_size=24)
    loss, metrics = step(torch.Generator().manual_seed(0))
    assert metrics["acc"] == 1.0 and float(loss.detach()) < 1e-6


def test_classification_step_bad_arguments():
    model = Conv4(ways=3, hidden=4)
    images = torch.zeros(3, 2, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match="exceeds the 6 images"):
        make_classification_step(model, images, batch_size=7)
    with pytest.raises(TypeError, match="batch_size"):
        make_classification_step(model, images, batch_size=2.0)
    wrong = make_classification_step(Conv4(ways=5, hidden=4), images, batch_size=4)
    with pytest.raises(ValueError, match="one logit per training class"):
        wrong(torch.Generator().manual_seed(0))


def test_backbone_of_copies_the_blocks():
    torch.manual_seed(0)
    model = Conv4(ways=7, hidden=8)
    backbone = backbone_of(model)
    x = torch.rand(5, 1, 28, 28)
    assert backbone.head is None
    torch.testing.assert_close(backbone(x), model.features(x).flatten(1))
    with torch.no_grad():
        next(backbone.parameters()).add_(1.0)
    assert not torch.equal(backbone(x), model.features(x).flatten(1))
    fast = backbone_of(model.to(memory_format=torch.channels_last))
    assert fast.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_recipe_and_budgets_cover_every_profile():
    for name, profile in PROFILES.items():
        budget = transfer_budget(profile)
        made = pretrain_recipe(profile)
        assert made.name == "pretrain-conv4" and made.steps == profile.pretrain_steps
        assert budget.twenty_way_episodes <= profile.eval_episodes, name
        assert budget.finetune_all_episodes <= profile.eval_episodes, name
        assert 0 in budget.curve_steps and budget.finetune_steps in budget.curve_steps
    capped = dataclasses.replace(PROFILES["paper"], name="paper", eval_episodes=2)
    assert transfer_budget(capped).twenty_way_episodes == 2
    with pytest.raises(ValueError, match="No transfer budget"):
        transfer_budget(dataclasses.replace(PROFILES["short"], name="laptop"))
    with pytest.raises(TypeError, match="Profile"):
        transfer_budget("short")


def test_recipe_build_trains_through_fit(omniglot_data):
    from metalearn.experiments import fit

    profile = PROFILES["smoke"]
    made = PretrainRecipe(name="pretrain-test", steps=3, batch_size=16, hidden=8)
    build = made.build(torch.device("cpu"), profile)
    fitted = fit(made.name, build.model, build.optimiser, build.step, made.steps,
                 evaluate=build.validate, scheduler=build.scheduler, profile=profile,
                 resume=False)
    assert fitted.steps == 3 and 0 <= fitted.history.eval["acc_1shot"][-1] <= 1
    assert build.model.head.out_features == 4 * 1028  # rotations as classes


# -------------------------------------------------- heads on frozen features


@pytest.mark.parametrize("name", HEADS)
def test_heads_solve_a_linearly_separable_toy(name):
    support_z, support_y, query_z, query_y = separable_features()
    logits = HEADS[name](support_z, support_y, query_z, 5)
    assert logits.shape == (50, 5)
    assert (logits.argmax(1) == query_y).float().mean() >= 0.99


def test_linear_probe_on_one_shot_toy():
    support_z, support_y, query_z, query_y = separable_features(shots=1)
    logits = linear_probe_logits(support_z, support_y, query_z, 5)
    assert (logits.argmax(1) == query_y).float().mean() >= 0.99


def _objective(weight_and_bias, x, y, ways, l2, summed_c=None):
    """The logistic-regression objective in NumPy (independent of torch)."""
    dim = x.shape[1]
    weight = weight_and_bias[: dim * ways].reshape(dim, ways)
    bias = weight_and_bias[dim * ways :]
    scores = x @ weight + bias
    scores = scores - scores.max(1, keepdims=True)
    log_p = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    nll = -log_p[np.arange(len(y)), y]
    if summed_c is not None:  # scikit-learn's form: ||W||^2 / 2 + C * sum CE
        return 0.5 * (weight**2).sum() + summed_c * nll.sum()
    return nll.mean() + 0.5 * l2 * (weight**2).sum()


def _scipy_fit(x, y, ways, **form):
    start = np.zeros(x.shape[1] * ways + ways)
    found = scipy.optimize.minimize(
        _objective, start, args=(x, y, ways, form.get("l2"), form.get("summed_c")),
        method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000})
    dim = x.shape[1]
    return found.x[: dim * ways].reshape(dim, ways), found.x[dim * ways :]


def test_logistic_regression_matches_scipy():
    support_z, support_y, _, _ = separable_features(ways=3, shots=4, dim=5, seed=1)
    weight, bias = fit_logistic_regression(support_z, support_y, 3, l2=0.1)
    ref_w, ref_b = _scipy_fit(support_z.double().numpy(), support_y.numpy(), 3,
                              l2=0.1)
    # Two solvers, two implementations of the objective: minimisers agree.
    np.testing.assert_allclose(weight.numpy(), ref_w, atol=1e-4)
    np.testing.assert_allclose(bias.numpy() - bias.numpy().mean(),
                               ref_b - ref_b.mean(), atol=1e-4)


def test_rfs_is_scikit_learns_objective_on_unit_features():
    """l2 = 1 / (C n) on normalised features gives sklearn's C-form minimiser."""
    support_z, support_y, query_z, _ = separable_features(ways=3, shots=4, dim=5)
    unit = F.normalize(support_z, dim=1).double().numpy()
    ref_w, ref_b = _scipy_fit(unit, support_y.numpy(), 3, summed_c=1.0)
    expected = F.normalize(query_z, dim=1).double().numpy() @ ref_w + ref_b
    logits = rfs_logits(support_z, support_y, query_z, 3, C=1.0)
    got = logits.double().numpy()
    np.testing.assert_allclose(got - got.mean(1, keepdims=True),
                               expected - expected.mean(1, keepdims=True),
                               atol=1e-4)


def test_cosine_classifier_is_a_scaled_cosine_with_a_learned_scale():
    support_z, support_y, query_z, _ = separable_features(ways=4, shots=3)
    untrained = cosine_classifier_logits(support_z, support_y, query_z, 4, steps=1,
                                         lr=1e-12, init_scale=7.0)
    centres = F.normalize(
        torch.stack([F.normalize(support_z, dim=1)[support_y == k].mean(0)
                     for k in range(4)]), dim=1)
    torch.testing.assert_close(untrained,
                               7.0 * F.normalize(query_z, dim=1) @ centres.T)
    trained = cosine_classifier_logits(support_z, support_y, query_z, 4, steps=50)
    scale = float(trained.abs().max() / untrained.abs().max() * 7.0)
    assert abs(scale - 7.0) > 0.1  # the scale moved
    assert float(trained.abs().max()) <= scale + 1e-4  # |cos| <= 1


def test_nearest_centroid_is_protonet(test_images, small_backbone):
    episode = FixedEpisodes(test_images, 1, 5, 2, 3, seed=0)[0]
    ours = frozen_classifier(small_backbone, nearest_centroid_logits)(episode)
    with torch.no_grad():
        theirs = protonet_classifier(small_backbone)(episode)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("labels", "outside 0..4"),
        ("nan", "finite"),
        ("dim", "feature dimension"),
        ("rows", "rows"),
    ],
)
def test_heads_reject_bad_inputs(change, match):
    support_z, support_y, query_z, _ = separable_features()
    if change == "labels":
        support_y = support_y + 1
    elif change == "nan":
        query_z = query_z.clone()
        query_z[0, 0] = math.nan
    elif change == "dim":
        query_z = query_z[:, :3]
    else:
        support_z = support_z[:-1]
    for head in HEADS.values():
        with pytest.raises(ValueError, match=match):
            head(support_z, support_y, query_z, 5)


def test_bad_head_options():
    support_z, support_y, query_z, _ = separable_features()
    with pytest.raises(ValueError, match="l2"):
        linear_probe_logits(support_z, support_y, query_z, 5, l2=0.0)
    with pytest.raises(ValueError, match="C must be"):
        rfs_logits(support_z, support_y, query_z, 5, C=-1.0)


# ------------------------------------------------------------- fine-tuning


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("part", ["last", "all"])
def test_finetuning_leaves_the_model_bitwise_unchanged(test_images, part):
    torch.manual_seed(0)
    backbone = Conv4(hidden=8, head=False)
    before = _state(backbone)
    episode = FixedEpisodes(test_images, 1, 5, 1, 2, seed=3)[0]
    curve = finetune_curve_logits(backbone, episode, checkpoints=[0, 5], part=part)
    after = backbone.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in backbone.parameters())
    assert torch.equal(curve[0], torch.zeros(10, 5))  # the zero head
    assert not torch.equal(curve[5], curve[0])


def _reference_finetune(backbone, episode, *, part, steps, head_lr, backbone_lr):
    """The same recipe written with modules: deepcopy, freeze, nn.Linear, Adam."""
    model = copy.deepcopy(backbone)
    for name, p in model.named_parameters():
        p.requires_grad_(part == "all" or name.startswith("features.3."))
    head = nn.Linear(model.embedding_dim, episode.ways)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam([{"params": trained, "lr": backbone_lr},
                                  {"params": head.parameters(), "lr": head_lr}])
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(head(model(episode.support_x)), episode.support_y).backward()
        optimiser.step()
    with torch.no_grad():
        everything = torch.cat([episode.support_x, episode.query_x])
        return head(model(everything))[len(episode.support_y):]


@pytest.mark.parametrize("part", ["last", "all"])
def test_finetuning_matches_a_module_reference(test_images, small_backbone, part):
    episode = FixedEpisodes(test_images, 1, 5, 2, 3, seed=4)[0]
    options = dict(part=part, head_lr=1e-2, backbone_lr=1e-3)
    ours = finetune_curve_logits(small_backbone, episode, checkpoints=[4], **options)
    expected = _reference_finetune(small_backbone, episode, steps=4, **options)
    torch.testing.assert_close(ours[4], expected, rtol=1e-4, atol=1e-5)


def test_finetune_bad_arguments(test_images, small_backbone):
    episode = FixedEpisodes(test_images, 1, 5, 1, 2, seed=0)[0]
    with pytest.raises(ValueError, match="part must be one of"):
        finetune_curve_logits(small_backbone, episode, checkpoints=[1], part="head")
    with pytest.raises(ValueError, match="learning rates"):
        finetune_curve_logits(small_backbone, episode, checkpoints=[1], head_lr=0)
    with pytest.raises(ValueError, match="non-negative"):
        finetune_curve_logits(small_backbone, episode, checkpoints=[-1])
    with pytest.raises(TypeError, match="head=False"):
        finetune_curve_logits(Conv4(ways=5, hidden=4), episode, checkpoints=[1])


# ------------------------------------------------------------- evaluation


def _classifiers(backbone):
    made = {name: frozen_classifier(backbone, head) for name, head in HEADS.items()}
    made["fine-tune last"] = finetune_classifier(backbone, steps=2, part="last")
    made["fine-tune all"] = finetune_classifier(backbone, steps=2, part="all")
    return made


def test_every_evaluator_takes_the_same_episodes_and_gives_an_accuracy(
    test_images, small_backbone
):
    episodes = FixedEpisodes(test_images, 3, 5, 1, 2, seed=0)
    for name, classify in _classifiers(small_backbone).items():
        result = evaluate(classify, episodes, progress=False)
        assert 0.0 <= result.mean <= 1.0, name
        assert math.isfinite(result.ci95) and result.ci95 >= 0, name
        assert result.episodes == 3
        timed = evaluate_timed(classify, episodes)
        assert timed.accuracy.per_episode == result.per_episode, name
        assert timed.seconds_per_episode > 0


def test_evaluate_heads_shares_one_embedding(test_images, small_backbone):
    episodes = FixedEpisodes(test_images, 4, 5, 2, 2, seed=1)
    shared = evaluate_heads(small_backbone, episodes, HEADS)
    for name, head in HEADS.items():
        alone = evaluate(frozen_classifier(small_backbone, head), episodes,
                         progress=False)
        assert shared[name].accuracy.per_episode == alone.per_episode, name
        assert shared[name].seconds_per_episode > 0
    with pytest.raises(ValueError, match="heads is empty"):
        evaluate_heads(small_backbone, episodes, {})


def test_finetune_curve_agrees_with_the_classifier(test_images, small_backbone):
    episodes = first_episodes(FixedEpisodes(test_images, 5, 5, 1, 2, seed=2), 2)
    assert len(episodes) == 2
    curve = evaluate_finetune_curve(small_backbone, episodes, checkpoints=[0, 3],
                                    part="last")
    assert curve[0].mean == pytest.approx(0.2)  # zero head: always label 0
    direct = evaluate(finetune_classifier(small_backbone, steps=3), episodes,
                      progress=False)
    assert curve[3].per_episode == direct.per_episode


def test_embed_episode_rejects_a_classifier_network(test_images):
    episode = FixedEpisodes(test_images, 1, 5, 1, 1, seed=0)[0]
    z_support, z_query = embed_episode(Conv4(hidden=4, head=False), episode)
    assert z_support.shape == (5, 4) and z_query.shape == (5, 4)
    bad = Episode(episode.support_x, episode.support_y, episode.query_x[:, :, :20],
                  episode.query_y, episode.classes)
    with pytest.raises(ValueError, match="different image shapes"):
        embed_episode(Conv4(hidden=4, head=False), bad)


# ----------------------------------------------------- ImageNet-style inputs


def test_imagenet_inputs_resize_and_normalise():
    images = torch.rand(2, 1, 28, 28)
    out = imagenet_inputs(images)
    assert out.shape == (2, 3, 224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    resized = F.interpolate(images, size=256, mode="bilinear", antialias=True,
                            align_corners=False)[..., 16:240, 16:240]
    torch.testing.assert_close(out, (resized - mean) / std, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        imagenet_inputs(images * 255)
    with pytest.raises(ValueError, match="uint8"):
        imagenet_inputs((images * 255).to(torch.uint8))


def test_pretrain_conv4_through_the_zoo(tmp_path, monkeypatch, omniglot_cache):
    from conftest import omniglot_root

    from metalearn import zoo
    from metalearn.data import omniglot

    monkeypatch.setenv("METALEARN_DATA", str(omniglot_root()))
    for cached in omniglot_cache.glob("omniglot-*.pt"):
        (tmp_path / cached.name).write_bytes(cached.read_bytes())
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    monkeypatch.delenv("METALEARN_MAX_STEPS", raising=False)
    if "pretrain-conv4" not in zoo.names():
        monkeypatch.setitem(zoo.REGISTRY, "pretrain-conv4", pretrain_recipe)
    smoke = PROFILES["smoke"]
    trained = zoo.load_or_train("pretrain-conv4", profile=smoke, device="cpu")
    assert not trained.loaded and trained.fitted.steps == smoke.pretrain_steps
    again = zoo.load_or_train("pretrain-conv4", profile=smoke, device="cpu")
    assert again.loaded
    for a, b in zip(trained.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)
    test_images = omniglot(omniglot_root(), download=False).split("test")
    episodes = FixedEpisodes(test_images, 2, 5, 1, 2, seed=0)
    accuracy = evaluate(again.classifier(), episodes, progress=False)
    assert 0 <= accuracy.mean <= 1


def test_plot_pipelines_draws_both_rows():
    import matplotlib.pyplot as plt

    from metalearn.transfer import plot_pipelines

    fig = plot_pipelines()
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "transfer learning" in texts and "meta-learning" in texts
    assert len(ax.patches) == 8 + 6  # 8 boxes, 6 arrows
    assert ax.get_title()
    plt.close(fig)


def test_first_episodes_is_a_lazy_prefix(test_images):
    from metalearn.transfer import EpisodePrefix

    fixed = FixedEpisodes(test_images, 6, 5, 1, 2, seed=0)
    prefix = first_episodes(fixed, 4)
    assert isinstance(prefix, EpisodePrefix) and len(prefix) == 4
    assert torch.equal(prefix[2].support_x, fixed[2].support_x)
    assert torch.equal(prefix[-1].query_x, fixed[3].query_x)
    assert len(list(prefix)) == 4 and len(first_episodes(fixed, 60)) == 6
    with pytest.raises(IndexError):
        prefix[4]
    with pytest.raises(ValueError, match="count"):
        first_episodes(fixed, 0)


def test_markdown_table():
    from metalearn.evaluate import Accuracy
    from metalearn.transfer import Measured, markdown_table

    result = Measured(Accuracy(0.9, 0.01, 2, (0.89, 0.91)), 0.02)
    table = markdown_table({"A": {"s1": result}, "B": {"s2": result}}, ["s1", "s2"],
                           extra={"ms": {"A": "20"}})
    lines = table.splitlines()
    assert lines[0] == "| method | s1 | s2 | ms |"
    assert lines[2] == "| A | 90.00 ± 1.00 % | – | 20 |"
    assert lines[3] == "| B | – | 90.00 ± 1.00 % | – |"
