"""Tests for metalearn.reptile against the closed form on quadratic losses.

For a linear model with squared loss and noise-free targets ``y = X c``, the
task loss is ``0.5 (theta - c)^T A (theta - c)`` with ``A = 2 X^T X / n``, so
``k`` SGD steps give exactly ``phi = c + (I - alpha A)^k (theta - c)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn.episodes import Episode, EpisodeBatch
from metalearn.models import Conv4
from metalearn.reptile import (
    make_reptile_step,
    reptile_classifier,
    reptile_loss,
    reptile_task_weights,
)

DIMS, POINTS, TASKS = 3, 4, 5


def quadratic_tasks(seed: int = 0):
    """Linear-regression tasks with exact solutions ``c_i``, and their ``A_i``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(TASKS, POINTS, DIMS, generator=generator, dtype=torch.float64)
    c = torch.randn(TASKS, DIMS, generator=generator, dtype=torch.float64)
    y = x @ c[:, :, None]  # [T, n, 1], noise-free
    a = 2 * x.transpose(1, 2) @ x / POINTS  # [T, d, d]
    query_x = torch.randn(TASKS, 2, DIMS, generator=generator, dtype=torch.float64)
    batch = EpisodeBatch(x, y, query_x, query_x @ c[:, :, None], torch.zeros(TASKS, 1))
    return batch, c, a


def closed_form_phi(theta, c, a, inner_lr, steps):
    eye = torch.eye(DIMS, dtype=torch.float64)
    return torch.stack(
        [
            c[i]
            + torch.linalg.matrix_power(eye - inner_lr * a[i], steps) @ (theta - c[i])
            for i in range(TASKS)
        ]
    )  # [T, d]


@pytest.mark.parametrize("vectorise", [True, False])
@pytest.mark.parametrize("steps", [1, 4])
def test_task_weights_equal_closed_form(vectorise, steps):
    torch.manual_seed(0)
    model = nn.Linear(DIMS, 1, bias=False).double()
    batch, c, a = quadratic_tasks()
    theta = model.weight.detach().flatten().clone()
    phi = reptile_task_weights(
        model,
        dict(model.named_parameters()),
        {},
        batch.support_x,
        batch.support_y,
        inner_lr=0.1,
        steps=steps,
        loss_fn=F.mse_loss,
        vectorise=vectorise,
    )
    assert phi["weight"].shape == (TASKS, 1, DIMS)
    assert not phi["weight"].requires_grad
    expected = closed_form_phi(theta, c, a, 0.1, steps)
    torch.testing.assert_close(phi["weight"][:, 0], expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(model.weight.detach().flatten(), theta)  # theta untouched


@pytest.mark.parametrize("vectorise", [True, False])
def test_sgd_on_surrogate_is_the_reptile_update(vectorise):
    torch.manual_seed(0)
    model = nn.Linear(DIMS, 1, bias=False).double()
    batch, c, a = quadratic_tasks(1)
    theta = model.weight.detach().flatten().clone()
    epsilon, inner_lr, steps = 0.3, 0.05, 3
    optimiser = torch.optim.SGD(model.parameters(), lr=epsilon)
    optimiser.zero_grad()
    loss, metrics = reptile_loss(
        model,
        dict(model.named_parameters()),
        {},
        batch,
        inner_lr=inner_lr,
        steps=steps,
        loss_fn=F.mse_loss,
        vectorise=vectorise,
    )
    loss.backward()
    optimiser.step()
    phi = closed_form_phi(theta, c, a, inner_lr, steps)
    expected = theta + epsilon * (phi - theta).mean(dim=0)  # Nichol et al., Alg. 2
    torch.testing.assert_close(
        model.weight.detach().flatten(), expected, rtol=1e-12, atol=1e-12
    )
    distance = (theta - phi.mean(dim=0)).norm()
    assert metrics["update_norm"] == pytest.approx(float(distance), rel=1e-10)
    assert float(loss.detach()) == pytest.approx(0.5 * float(distance) ** 2, rel=1e-10)
    query_loss = torch.stack(
        [
            F.mse_loss(batch.query_x[i] @ phi[i][:, None], batch.query_y[i])
            for i in range(TASKS)
        ]
    ).mean()
    assert metrics["query_loss"] == pytest.approx(float(query_loss), rel=1e-10)
    assert "query_acc" not in metrics  # regression


def test_vmap_equals_loop_on_conv4():
    torch.manual_seed(0)
    model = Conv4(1, 3, hidden=4, image_size=16).double()
    generator = torch.Generator().manual_seed(2)
    support_x = torch.rand(3, 6, 1, 16, 16, generator=generator, dtype=torch.float64)
    support_y = torch.arange(3).repeat_interleave(2).expand(3, -1)
    kwargs = dict(inner_lr=0.2, steps=2)
    params = dict(model.named_parameters())
    vmapped = reptile_task_weights(model, params, {}, support_x, support_y, **kwargs)
    looped = reptile_task_weights(
        model, params, {}, support_x, support_y, vectorise=False, **kwargs
    )
    for name in params:
        torch.testing.assert_close(vmapped[name], looped[name], rtol=1e-12, atol=1e-12)
        # A conv bias just before a batch norm has zero gradient (the norm
        # subtracts the mean), so only the other parameters must move.
        if not (name.startswith("features") and name.endswith("0.bias")):
            assert not torch.equal(vmapped[name][0], params[name])  # it moved


def omniglot_like() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (8, 4, 1, 16, 16), generator=generator).to(torch.uint8)


def test_make_reptile_step_contract():
    torch.manual_seed(0)
    model = Conv4(1, 3, hidden=4, image_size=16)
    step = make_reptile_step(
        model,
        omniglot_like(),
        ways=3,
        shots=2,
        queries=1,
        meta_batch_size=2,
        inner_lr=0.1,
        steps=2,
    )
    loss_a, metrics = step(torch.Generator().manual_seed(5))
    loss_b, _ = step(torch.Generator().manual_seed(5))
    assert torch.equal(loss_a, loss_b)
    assert set(metrics) == {"update_norm", "query_loss", "query_acc"}
    before = [p.detach().clone() for p in model.parameters()]
    loss_a.backward()
    # The gradient is theta - mean(phi): nonzero and finite.
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.isfinite(grads).all()
    assert float(grads.norm()) == pytest.approx(metrics["update_norm"], rel=1e-4)
    assert all(
        torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True)
    )


def test_reptile_classifier_shape():
    torch.manual_seed(0)
    model = Conv4(1, 3, hidden=4, image_size=16)
    images = omniglot_like().float() / 255
    episode = Episode(
        images[:3, 0],
        torch.arange(3),
        images[:3, 1:3].flatten(0, 1),
        torch.arange(3).repeat_interleave(2),
        torch.arange(3),
    )
    with torch.no_grad():
        logits = reptile_classifier(model, inner_lr=0.1, steps=2)(episode)
    assert logits.shape == (6, 3)
    assert not torch.allclose(logits, model(episode.query_x))


def test_rejects_bad_arguments():
    model = nn.Linear(DIMS, 1, bias=False).double()
    batch, _, _ = quadratic_tasks()
    params = dict(model.named_parameters())
    with pytest.raises(ValueError, match="inner_lr"):
        reptile_loss(model, params, {}, batch, inner_lr=0.0, steps=1)
    with pytest.raises(ValueError, match="steps"):
        reptile_task_weights(
            model, params, {}, batch.support_x, batch.support_y, inner_lr=0.1, steps=0
        )
    with pytest.raises(ValueError, match="number of tasks"):
        reptile_task_weights(
            model,
            params,
            {},
            batch.support_x,
            batch.support_y[:2],
            inner_lr=0.1,
            steps=1,
        )
    with pytest.raises(ValueError, match="meta_batch_size"):
        make_reptile_step(
            Conv4(1, 3, hidden=4, image_size=16),
            omniglot_like(),
            ways=3,
            shots=1,
            queries=1,
            meta_batch_size=0,
            inner_lr=0.1,
            steps=1,
        )
