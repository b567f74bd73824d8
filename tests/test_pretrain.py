"""Tests of metalearn.pretrain: joint pre-training on pooled tasks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from metalearn.models import MLP
from metalearn.pretrain import finetune_curve, make_pretrain_step, pooled_points
from metalearn.sinusoid import sample_sinusoid_tasks
from metalearn.training import TrainConfig, train


def sampler(dtype=torch.float32):
    return lambda g: sample_sinusoid_tasks(4, 5, 3, g, dtype=dtype)


def test_pooled_points_keep_every_point_of_every_task():
    batch = sample_sinusoid_tasks(4, 5, 3, torch.Generator().manual_seed(1))
    x, y = pooled_points(batch)
    assert x.shape == (4 * 8, 1) and y.shape == (4 * 8, 1)
    # Task 2's points sit at rows 16..23: its 5 support then its 3 query points.
    assert torch.equal(x[16:21], batch.support_x[2])
    assert torch.equal(y[21:24], batch.query_y[2])


def test_gradient_equals_pooled_mse_computed_independently():
    torch.manual_seed(0)
    model = MLP().double()
    step = make_pretrain_step(model, sampler(torch.float64))
    loss, metrics = step(torch.Generator().manual_seed(3))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    # Independent reference: a sum of squared errors over tasks and points,
    # divided by the total count, with the same generator draws.
    batch = sample_sinusoid_tasks(
        4, 5, 3, torch.Generator().manual_seed(3), dtype=torch.float64
    )
    total, count = 0.0, 0
    for i in range(4):
        for x, y in (
            (batch.support_x[i], batch.support_y[i]),
            (batch.query_x[i], batch.query_y[i]),
        ):
            total = total + ((model(x) - y) ** 2).sum()
            count += x.shape[0]
    reference = total / count
    expected = torch.autograd.grad(reference, list(model.parameters()))
    assert torch.allclose(loss, reference, rtol=1e-12, atol=0)
    assert metrics["loss"] == pytest.approx(float(reference.detach()), rel=1e-12)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_training_approaches_the_best_single_function():
    # For A ~ U[0.1, 5], phase ~ U[0, pi], the best task-agnostic predictor is
    # E[y | x] = -E[A] (2 / pi) cos x, with risk E[A^2] / 2 - (E[A] 2 / pi)^2 / 2
    # (~2.94), while predicting 0 has risk E[A^2] / 2 (~4.25). Pre-training
    # must get between the two, and can never beat the first.
    torch.manual_seed(0)
    model = MLP()
    step = make_pretrain_step(model, lambda g: sample_sinusoid_tasks(25, 10, 10, g))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(model, optimiser, step, TrainConfig(steps=300), progress=False)
    mean_a = (0.1 + 5.0) / 2
    mean_a2 = (5.0**3 - 0.1**3) / (3 * 4.9)
    best = mean_a2 / 2 - (mean_a * 2 / math.pi) ** 2 / 2
    held_out = sample_sinusoid_tasks(2000, 10, 10, torch.Generator().manual_seed(9))
    x, y = pooled_points(held_out)
    with torch.no_grad():
        risk = float(F.mse_loss(model(x), y))
        zero = float(y.pow(2).mean())
    assert zero == pytest.approx(mean_a2 / 2, rel=0.03)
    assert best * 0.97 < risk < best + 0.25 * (zero - best), (risk, best, zero)


def test_same_seed_gives_equal_losses():
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MLP()
        step = make_pretrain_step(model, sampler())
        losses.append(step(torch.Generator().manual_seed(7))[0])
    assert torch.equal(losses[0], losses[1])


def test_custom_loss_is_used():
    model = MLP()
    step = make_pretrain_step(model, sampler(), loss_fn=F.l1_loss)
    loss, _ = step(torch.Generator().manual_seed(0))
    x, y = pooled_points(
        sample_sinusoid_tasks(4, 5, 3, torch.Generator().manual_seed(0))
    )
    torch.testing.assert_close(loss, F.l1_loss(model(x), y))


def test_bad_arguments_are_rejected():
    with pytest.raises(TypeError, match="model"):
        make_pretrain_step("mlp", sampler())
    with pytest.raises(TypeError, match="sample"):
        make_pretrain_step(MLP(), None)
    with pytest.raises(TypeError, match="loss_fn"):
        make_pretrain_step(MLP(), sampler(), loss_fn=3)
    with pytest.raises(ValueError, match="no parameters"):
        make_pretrain_step(torch.nn.ReLU(), sampler())
    batch = sample_sinusoid_tasks(2, 3, 3, torch.Generator().manual_seed(0))
    bad = batch._replace(query_x=batch.query_x.expand(-1, -1, 2))
    with pytest.raises(ValueError, match="trailing"):
        pooled_points(bad)


def test_finetune_curve_matches_plain_sgd_on_a_copy():
    # Independent reference: a deep copy of the model trained with
    # torch.optim.SGD on one task's support set, query loss after each step.
    torch.manual_seed(0)
    model = MLP(hidden=(8, 8)).double()
    batch = sample_sinusoid_tasks(
        3, 5, 7, torch.Generator().manual_seed(2), dtype=torch.float64
    )
    curve = finetune_curve(model, batch, inner_lr=0.05, max_steps=4)
    assert curve.shape == (5, 3) and not curve.requires_grad
    for task in range(3):
        copy = MLP(hidden=(8, 8)).double()
        copy.load_state_dict(model.state_dict())
        optimiser = torch.optim.SGD(copy.parameters(), lr=0.05)
        expected = []
        for step in range(5):
            with torch.no_grad():
                expected.append(
                    float(F.mse_loss(copy(batch.query_x[task]), batch.query_y[task]))
                )
            if step < 4:
                optimiser.zero_grad()
                F.mse_loss(
                    copy(batch.support_x[task]), batch.support_y[task]
                ).backward()
                optimiser.step()
        torch.testing.assert_close(
            curve[:, task], torch.tensor(expected, dtype=torch.float64)
        )
    # the model itself is untouched
    assert torch.equal(
        curve[0], finetune_curve(model, batch, inner_lr=0.05, max_steps=1)[0]
    )


def test_finetune_curve_rejects_bad_arguments():
    batch = sample_sinusoid_tasks(2, 3, 3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="steps"):
        finetune_curve(MLP(), batch, inner_lr=0.01, max_steps=0)
    with pytest.raises(ValueError, match="inner_lr"):
        finetune_curve(MLP(), batch, inner_lr=-1.0, max_steps=2)
