"""Tests of metalearn.mistakes: each wrong pattern computes what its docstring says,
and differs from the right function of the library by what the appendix shows.

Every comparison runs in float64 on small models, so the differences asserted
here are properties of the patterns, not rounding. Each test would fail if the
wrong version happened to be right (equal to the library's function).
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import toy_episode
from torch import nn
from torch.func import functional_call

from metalearn import maml, mistakes, protonet
from metalearn.episodes import Episode, FixedEpisodes, sample_episodes
from metalearn.evaluate import evaluate
from metalearn.models import MLP
from metalearn.sinusoid import SinusoidTasks, sample_sinusoid_tasks
from metalearn.training import TrainConfig, train

SINUSOID = {"inner_lr": 0.01, "loss_fn": F.mse_loss}


def flat_gradient(loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return torch.cat([g.flatten() for g in grads])


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def sinusoid_setting(seed: int, tasks: int = 10) -> tuple[nn.Module, SinusoidTasks]:
    torch.manual_seed(seed)
    model = MLP().double()
    generator = torch.Generator().manual_seed(100 + seed)
    batch = sample_sinusoid_tasks(tasks, 10, 10, generator, dtype=torch.float64)
    return model, batch


def true_meta_gradient(model: nn.Module, batch, steps: int = 1) -> torch.Tensor:
    params = dict(model.named_parameters())
    loss, _ = maml.meta_loss(
        model, params, {}, batch, steps=steps, first_order=False, **SINUSOID
    )
    return flat_gradient(loss, model)


def linear_classifier(ways: int = 5, pixels: int = 64) -> nn.Module:
    """Logistic regression on flattened pixels, from zero weights (theta = 0)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(pixels, ways)).double()
    for p in model.parameters():
        nn.init.zeros_(p)
    return model


def double(episode: Episode) -> Episode:
    return Episode(
        episode.support_x.double(),
        episode.support_y,
        episode.query_x.double(),
        episode.query_y,
        episode.classes,
    )


# --- every function says it is wrong and names the right one --------------------------


def public_functions():
    return [
        (name, f)
        for name, f in inspect.getmembers(mistakes, inspect.isfunction)
        if f.__module__ == mistakes.__name__ and not name.startswith("_")
    ]


def test_every_public_function_is_named_and_documented_as_wrong():
    functions = public_functions()
    assert len(functions) == len(mistakes.__all__) == 8
    for name, function in functions:
        assert name.startswith("wrong_"), name
        doc = inspect.getdoc(function)
        assert doc.startswith("WRONG ON PURPOSE:"), name
        assert "Use instead" in doc, f"{name} does not name the right function"


def test_the_right_functions_named_in_the_docstrings_exist():
    for name, function in public_functions():
        used = re.search(r"Use instead(.*?)(\n\n|$)", inspect.getdoc(function), re.S)
        targets = re.findall(r":func:`(metalearn\.[\w.]+)`", used.group(1))
        if name != "wrong_query_is_support":  # its fix is data, not a function
            assert targets, f"{name} names no library function to use instead"
        for target in targets:
            module, _, attribute = target.rpartition(".")
            assert callable(getattr(importlib.import_module(module), attribute))


# --- the inner loop walks the examples one by one -------------------------------------


def test_per_sample_meta_loss_is_the_loss_of_the_last_example_after_its_own_step():
    # Independent reference: linear regression in closed form, loss (x.t - y)^2.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    theta = model.weight.detach().T.clone()  # [3, 1]
    alpha = 0.1
    for j in range(4):
        residual = x[j : j + 1] @ theta - y[j : j + 1]
        theta = theta - alpha * 2 * x[j : j + 1].T @ residual
    expected = (x[-1:] @ theta - y[-1:]).pow(2).mean()
    wrong = mistakes.wrong_per_sample_meta_loss(
        model,
        dict(model.named_parameters()),
        {},
        x,
        y,
        inner_lr=alpha,
        loss_fn=F.mse_loss,
    )
    torch.testing.assert_close(wrong, expected, rtol=1e-12, atol=1e-14)


def test_per_sample_meta_loss_depends_on_the_order_of_the_examples():
    model, batch = sinusoid_setting(0)
    params = dict(model.named_parameters())
    x, y = batch.support_x[0], batch.support_y[0]
    order = torch.arange(9, -1, -1)
    forward = mistakes.wrong_per_sample_meta_loss(model, params, {}, x, y, **SINUSOID)
    backward = mistakes.wrong_per_sample_meta_loss(
        model, params, {}, x[order], y[order], **SINUSOID
    )
    difference = float((forward - backward).detach())
    assert abs(difference) > 1e-3 * float(forward.detach())
    # MAML's meta-loss does not care about the order of the support set.
    reordered = batch._replace(
        support_x=batch.support_x[:, order], support_y=batch.support_y[:, order]
    )
    right = [
        maml.meta_loss(model, params, {}, b, steps=1, first_order=False, **SINUSOID)[0]
        for b in (batch, reordered)
    ]
    torch.testing.assert_close(right[0], right[1])


def per_sample_gradient(model: nn.Module, batch) -> torch.Tensor:
    params = dict(model.named_parameters())
    losses = [
        mistakes.wrong_per_sample_meta_loss(model, params, {}, x, y, **SINUSOID)
        for x, y in zip(batch.support_x, batch.support_y, strict=True)
    ]
    return flat_gradient(torch.stack(losses).mean(), model)


def reclone_gradient(model: nn.Module, batch, steps: int = 5) -> torch.Tensor:
    params = dict(model.named_parameters())
    losses = []
    for i in range(len(batch.support_x)):
        adapted = mistakes.wrong_reclone_adapt(
            model,
            params,
            {},
            batch.support_x[i],
            batch.support_y[i],
            steps=steps,
            first_order=False,
            **SINUSOID,
        )
        outputs = functional_call(model, adapted, (batch.query_x[i],))
        losses.append(F.mse_loss(outputs, batch.query_y[i]))
    return flat_gradient(torch.stack(losses).mean(), model)


def support_as_query_gradient(model: nn.Module, batch) -> torch.Tensor:
    wrong = mistakes.wrong_query_is_support(batch)
    return true_meta_gradient(model, wrong)


@pytest.mark.parametrize(
    "wrong_gradient, steps, min_error, max_cosine",
    [
        (per_sample_gradient, 1, 1.0, 0.5),
        (support_as_query_gradient, 1, 0.5, 0.8),
        (reclone_gradient, 5, 0.5, 0.9),
    ],
    ids=["per-sample", "query-is-support", "reclone-5-steps"],
)
def test_wrong_meta_gradients_are_far_from_maml(
    wrong_gradient, steps, min_error, max_cosine
):
    # The appendix's measurement on its first five draws (sinusoids, MLP 1-40-40-1,
    # float64, 10 tasks of 10 + 10 points, alpha = 0.01). Measured means: relative
    # error 2.4 / 0.77 / 0.95 and cosine 0.12 / 0.57 / 0.77 (per-sample,
    # query-is-support, reclone); a right gradient would score 0 and 1.
    errors, cosines = [], []
    for seed in range(5):
        model, batch = sinusoid_setting(seed)
        right = true_meta_gradient(model, batch, steps=steps)
        wrong = wrong_gradient(model, batch)
        errors.append(relative_error(wrong, right))
        cosines.append(cosine(wrong, right))
    assert sum(errors) / 5 > min_error
    assert sum(cosines) / 5 < max_cosine


# --- several "steps" that are one -----------------------------------------------------


@pytest.mark.parametrize("first_order", [True, False])
def test_reclone_adapt_is_exactly_one_step_whatever_steps_says(first_order):
    episode = double(toy_episode(shots=1))
    model = linear_classifier()
    params = dict(model.named_parameters())
    args = (model, params, {}, episode.support_x, episode.support_y)
    options = {"inner_lr": 0.4, "first_order": first_order}
    one = maml.adapt(*args, steps=1, **options)
    five = maml.adapt(*args, steps=5, **options)
    wrong = mistakes.wrong_reclone_adapt(*args, steps=5, **options)
    for name in params:
        torch.testing.assert_close(wrong[name], one[name], rtol=0, atol=1e-15)
    gap = max(float((five[n] - one[n]).detach().abs().max()) for n in params)
    assert gap > 1e-2  # five real steps go further than one

    def support_loss(weights):
        logits = functional_call(model, weights, (episode.support_x,))
        return float(F.cross_entropy(logits, episode.support_y).detach())

    assert support_loss(five) < 0.5 * support_loss(wrong)


# --- the outer loss on the support set ------------------------------------------------


def test_query_is_support_replaces_the_query_set_and_keeps_the_type():
    episode = toy_episode()
    batch = sample_episodes(
        torch.rand(6, 4, 1, 8, 8), 2, 3, 1, 2, torch.Generator().manual_seed(0)
    )
    tasks = sample_sinusoid_tasks(2, 3, 4, torch.Generator().manual_seed(0))
    for original in (episode, batch, tasks):
        wrong = mistakes.wrong_query_is_support(original)
        assert type(wrong) is type(original)
        assert wrong.query_x is original.support_x
        assert wrong.query_y is original.support_y
        assert wrong.support_x is original.support_x
    with pytest.raises(TypeError, match="support_x"):
        mistakes.wrong_query_is_support(object())


def test_query_is_support_reports_memorisation_on_real_episodes(omniglot_data):
    # theta = 0, 5 inner steps: the adapted classifier fits every support image,
    # and the held-out queries show what it really learned.
    images = omniglot_data.split("test")
    episodes = FixedEpisodes(images, 30, 5, 1, 5, seed=0)
    model = linear_classifier(pixels=28 * 28).float()
    classify = maml.maml_classifier(model, inner_lr=0.4, steps=5)
    held_out = evaluate(classify, episodes, progress=False)
    on_support = evaluate(
        classify,
        [mistakes.wrong_query_is_support(e) for e in episodes],
        progress=False,
    )
    assert on_support.mean == 1.0
    assert held_out.mean < 0.7


# --- which data each loss depends on (the appendix's first figure) --------------------


def target_dependence(loss_of) -> tuple[torch.Tensor, torch.Tensor]:
    model, batch = sinusoid_setting(3, tasks=1)
    support_y = batch.support_y.clone().requires_grad_()
    query_y = batch.query_y.clone().requires_grad_()
    batch = batch._replace(support_y=support_y, query_y=query_y)
    loss = loss_of(model, dict(model.named_parameters()), batch)
    grads = torch.autograd.grad(loss, [support_y, query_y], allow_unused=True)
    return tuple(
        torch.zeros_like(t) if g is None else g.abs()
        for g, t in zip(grads, (support_y, query_y), strict=True)
    )


def right_maml(model, params, batch):
    return maml.meta_loss(
        model, params, {}, batch, steps=1, first_order=False, **SINUSOID
    )[0]


def unadapted(model, params, batch):
    return mistakes.wrong_meta_loss_unadapted(
        model, params, {}, batch, steps=1, **SINUSOID
    )


def per_sample(model, params, batch):
    return mistakes.wrong_per_sample_meta_loss(
        model, params, {}, batch.support_x[0], batch.support_y[0], **SINUSOID
    )


def support_as_query(model, params, batch):
    return right_maml(model, params, mistakes.wrong_query_is_support(batch))


@pytest.mark.parametrize(
    "loss_of, uses_support, uses_query",
    [
        (right_maml, True, True),
        (unadapted, False, True),
        (per_sample, True, False),
        (support_as_query, True, False),
    ],
    ids=["maml", "unadapted", "per-sample", "query-is-support"],
)
def test_which_targets_each_loss_depends_on(loss_of, uses_support, uses_query):
    on_support, on_query = target_dependence(loss_of)
    assert bool((on_support > 1e-8).all()) is uses_support
    assert bool((on_support == 0).all()) is not uses_support
    assert bool((on_query > 1e-8).all()) is uses_query
    assert bool((on_query == 0).all()) is not uses_query


def test_unadapted_meta_loss_is_the_query_loss_at_theta():
    model, batch = sinusoid_setting(2, tasks=3)
    params = dict(model.named_parameters())
    wrong = unadapted(model, params, batch)
    expected = torch.stack(
        [
            F.mse_loss(model(x), y)
            for x, y in zip(batch.query_x, batch.query_y, strict=True)
        ]
    ).mean()
    torch.testing.assert_close(wrong, expected)
    assert (
        relative_error(flat_gradient(wrong, model), true_meta_gradient(model, batch))
        > 0.05
    )


# --- prototypes over the wrong axis ---------------------------------------------------


def test_reshape_prototypes_are_right_at_one_shot():
    z = torch.randn(5, 7, dtype=torch.float64)
    y = torch.arange(5)  # class-major order, as the episodes of the course
    assert torch.equal(mistakes.wrong_prototypes_by_reshape(z, 5, 1), z)
    torch.testing.assert_close(protonet.prototypes(z, y, 5), z)


@pytest.mark.parametrize("ways, shots", [(5, 5), (5, 3), (3, 4)])
def test_reshape_prototypes_mix_classes_when_shots_exceed_one(ways, shots):
    labels = torch.arange(ways).repeat_interleave(shots)  # class-major
    identity = torch.eye(ways * shots, dtype=torch.float64)
    weights = mistakes.wrong_prototypes_by_reshape(identity, ways, shots)  # [N, N*K]
    right = protonet.prototypes(identity, labels, ways)
    assert not torch.allclose(weights, right)
    ones = torch.ones(ways, dtype=weights.dtype)
    torch.testing.assert_close(weights.sum(dim=1), ones)
    mixed = [len(labels[weights[n] > 0].unique()) for n in range(ways)]
    assert max(mixed) > 1  # some "prototype" averages several classes
    if ways == shots:  # each row holds one example of every class
        assert mixed == [ways] * ways


def test_reshape_prototypes_bring_pixel_protonet_to_chance(omniglot_data):
    images = omniglot_data.split("test")
    pixels = nn.Flatten()
    right = protonet.protonet_classifier(pixels)

    def wrong(episode):
        return mistakes.wrong_protonet_logits_by_reshape(pixels, episode)

    one_shot = FixedEpisodes(images, 20, 5, 1, 5, seed=0)
    for episode in one_shot:  # the bug is invisible at K = 1
        torch.testing.assert_close(wrong(episode), right(episode))
    five_shot = FixedEpisodes(images, 40, 5, 5, 5, seed=0)
    right_acc = evaluate(right, five_shot, progress=False).mean
    wrong_acc = evaluate(wrong, five_shot, progress=False).mean
    assert right_acc > 0.55
    assert wrong_acc < 0.3


def test_reshape_loss_trains_but_right_loss_differs():
    episode = double(toy_episode(shots=2))
    torch.manual_seed(0)
    embedding = nn.Sequential(nn.Flatten(), nn.Linear(64, 8)).double()
    wrong, metrics = mistakes.wrong_protonet_loss_by_reshape(embedding, episode)
    right, _ = protonet.protonet_loss(embedding, episode)
    assert wrong.requires_grad and set(metrics) == {"loss", "acc"}
    assert abs(float((wrong - right).detach())) > 1e-3


# --- a loss on argmin predictions -----------------------------------------------------


def test_loss_on_predictions_has_no_gradient():
    episode = toy_episode()
    torch.manual_seed(0)
    embedding = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
    loss, metrics = mistakes.wrong_protonet_loss_on_predictions(embedding, episode)
    assert not loss.requires_grad and loss.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        loss.backward()
    right, right_metrics = protonet.protonet_loss(embedding, episode)
    assert metrics["acc"] == right_metrics["acc"]  # same predictions
    right.backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in embedding.parameters())


def test_silenced_loss_on_predictions_never_changes_a_weight():
    torch.manual_seed(0)
    embedding = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
    start = copy.deepcopy(embedding.state_dict())
    optimiser = torch.optim.Adam(embedding.parameters(), lr=1e-2)
    for seed in range(3):
        optimiser.zero_grad()
        loss, _ = mistakes.wrong_protonet_loss_on_predictions(
            embedding, toy_episode(seed=seed)
        )
        loss.requires_grad_()  # the "fix" that silences the error
        loss.backward()
        assert all(p.grad is None for p in embedding.parameters())
        optimiser.step()
    for name, value in embedding.state_dict().items():
        assert torch.equal(value, start[name])


def test_the_training_loop_refuses_a_loss_on_predictions():
    torch.manual_seed(0)
    embedding = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))

    def step(generator):
        loss, metrics = mistakes.wrong_protonet_loss_on_predictions(
            embedding, toy_episode()
        )
        return loss.requires_grad_(), metrics

    optimiser = torch.optim.Adam(embedding.parameters())
    with pytest.raises(ValueError, match="does not depend on any parameter"):
        train(embedding, optimiser, step, TrainConfig(steps=2), progress=False)


# --- loud errors where data enter -----------------------------------------------------


def test_bad_inputs_raise_specific_errors():
    model = nn.Linear(1, 1).double()
    params = dict(model.named_parameters())
    x = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="3 inputs and 2 targets"):
        mistakes.wrong_per_sample_meta_loss(
            model, params, {}, x, x[:2], inner_lr=0.1, loss_fn=F.mse_loss
        )
    with pytest.raises(ValueError, match="inner_lr"):
        mistakes.wrong_reclone_adapt(
            model, params, {}, x, x, inner_lr=-1.0, steps=2, first_order=True
        )
    with pytest.raises(ValueError, match=r"\[10, D\]"):
        mistakes.wrong_prototypes_by_reshape(torch.zeros(9, 4), 5, 2)
    uneven = Episode(
        torch.zeros(3, 1, 8, 8),
        torch.tensor([0, 0, 1]),
        torch.zeros(2, 1, 8, 8),
        torch.tensor([0, 1]),
        torch.arange(2),
    )
    with pytest.raises(ValueError, match="same number of shots"):
        mistakes.wrong_protonet_logits_by_reshape(nn.Flatten(), uneven)


def test_the_appendix_shows_each_wrong_function_without_its_docstring():
    # The appendix includes the wrong functions with `:lines:` that drop the
    # docstring; after an edit of mistakes.py they must still select exactly the
    # signature and the body.
    path = Path(__file__).resolve().parents[1] / "chapters" / "common_mistakes.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    shown = re.findall(r":pyobject: (\w+)\n:lines: ([\d,-]+)", text)
    assert len(shown) >= 5
    functions = {
        node.name: node
        for node in ast.parse(Path(mistakes.__file__).read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    for name, lines in shown:
        node = functions[name]
        docstring = node.body[0]
        expected = (
            f"1-{docstring.lineno - node.lineno},"
            f"{docstring.end_lineno - node.lineno + 2}-"
        )
        assert lines == expected, f"{name}: :lines: {lines}, expected {expected}"
