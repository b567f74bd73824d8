"""The 2-D quadratic tasks: closed forms against autograd and against iterates."""

from __future__ import annotations

import pytest
import torch

from metalearn import maml
from metalearn.quadratic import (
    QuadraticTasks,
    adapted,
    direction,
    fixed_point,
    maml_objective,
    sample_quadratic_tasks,
    trajectory,
)

ALPHA, STEPS = 0.3, 2


@pytest.fixture
def tasks() -> QuadraticTasks:
    return sample_quadratic_tasks(5, torch.Generator().manual_seed(0))


def test_maml_direction_is_the_gradient_of_the_maml_objective(tasks):
    theta = torch.tensor([0.7, -1.2], dtype=torch.float64, requires_grad=True)
    objective = maml_objective(tasks, theta, inner_lr=ALPHA, steps=STEPS)
    (autograd,) = torch.autograd.grad(objective, theta)
    exact = direction("maml", tasks, theta.detach(), inner_lr=ALPHA, steps=STEPS)
    torch.testing.assert_close(autograd, exact, rtol=1e-12, atol=1e-12)


def test_directions_match_the_library_meta_gradients(tasks):
    """MAML and FOMAML as metalearn.maml computes them on a linear 'model'."""
    theta = torch.tensor([0.3, 0.4], dtype=torch.float64)

    class Quadratic(torch.nn.Module):  # the parameter is theta; the input picks a task
        def __init__(self) -> None:
            super().__init__()
            self.theta = torch.nn.Parameter(theta.clone())

        def forward(self, task_index: torch.Tensor) -> torch.Tensor:
            return self.theta.expand(task_index.shape[0], 2)

    def loss_fn(outputs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        i = int(task[0])
        d = outputs[0] - tasks.optimum[i]
        return 0.5 * d @ tasks.curvature[i] @ d

    model = Quadratic()
    index = torch.arange(len(tasks)).reshape(-1, 1)
    batch = type("Batch", (), dict(support_x=index, support_y=index,
                                   query_x=index, query_y=index))
    for first_order, kind in ((False, "maml"), (True, "fomaml")):
        model.zero_grad()
        loss, _ = maml.meta_loss(model, dict(model.named_parameters()), {}, batch,
                                 inner_lr=ALPHA, steps=STEPS, first_order=first_order,
                                 loss_fn=loss_fn, vectorise=False)
        loss.backward()
        exact = direction(kind, tasks, theta, inner_lr=ALPHA, steps=STEPS)
        torch.testing.assert_close(model.theta.grad, exact, rtol=1e-12, atol=1e-12)


def test_reptile_direction_is_theta_minus_the_adapted_weights(tasks):
    theta = torch.tensor([-0.5, 2.0], dtype=torch.float64)
    phi = adapted(tasks, theta, inner_lr=ALPHA, steps=STEPS)
    torch.testing.assert_close(
        direction("reptile", tasks, theta, inner_lr=ALPHA, steps=STEPS),
        (theta - phi).mean(0), rtol=1e-12, atol=1e-12)
    # With one inner step Reptile is joint training with step alpha.
    torch.testing.assert_close(
        direction("reptile", tasks, theta, inner_lr=ALPHA, steps=1),
        ALPHA * direction("joint", tasks, theta, inner_lr=ALPHA, steps=1))


@pytest.mark.parametrize("kind", ["maml", "fomaml", "reptile", "joint"])
def test_gradient_descent_ends_at_the_fixed_point(tasks, kind):
    start = torch.tensor([4.0, 4.0], dtype=torch.float64)
    path = trajectory(kind, tasks, start, inner_lr=ALPHA, steps=STEPS, meta_lr=0.5,
                      iterations=3000)
    end = fixed_point(kind, tasks, inner_lr=ALPHA, steps=STEPS)
    torch.testing.assert_close(path[-1], end, rtol=1e-8, atol=1e-8)
    assert path.shape == (3001, 2)


def test_the_four_methods_end_at_different_points(tasks):
    ends = {k: fixed_point(k, tasks, inner_lr=ALPHA, steps=STEPS)
            for k in ("maml", "fomaml", "reptile", "joint")}
    names = sorted(ends)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert (ends[a] - ends[b]).norm() > 1e-3, (a, b)
    # MAML's end minimises the MAML objective: lower than joint training's end.
    def objective(theta):
        return maml_objective(tasks, theta, inner_lr=ALPHA, steps=STEPS)

    assert objective(ends["maml"]) < objective(ends["joint"])


def test_bad_tasks_are_refused():
    with pytest.raises(ValueError, match="symmetric"):
        QuadraticTasks(torch.tensor([[[1.0, 2.0], [0.0, 1.0]]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="positive definite"):
        QuadraticTasks(-torch.eye(2)[None], torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"\[n, 2, 2\]"):
        QuadraticTasks(torch.eye(3)[None], torch.zeros(1, 3))
    with pytest.raises(ValueError, match="kind must be"):
        direction("sgd", sample_quadratic_tasks(2, torch.Generator()),
                  torch.zeros(2, dtype=torch.float64), inner_lr=0.1, steps=1)
