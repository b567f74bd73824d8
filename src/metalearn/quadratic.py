"""A 2-D family of quadratic tasks on which MAML, FOMAML and Reptile are exact.

Task ``i`` has the loss :math:`L_i(\\theta) = \\tfrac12 (\\theta - c_i)^\\top A_i
(\\theta - c_i)` with a symmetric positive definite ``A_i`` (2x2) and its optimum
``c_i``; support and query losses are the same function. Then ``k`` inner SGD
steps of size ``alpha`` (eq. {eq}`maml-inner`) are linear in ``theta``::

    phi_i - c_i = M_i (theta - c_i),   M_i = (I - alpha A_i)^k,

and every meta-gradient of the MAML chapter has a closed form (the matrices are
symmetric and commute with ``A_i``), averaged over tasks:

* MAML (eq. {eq}`maml-metagrad-k`): ``M_i A_i M_i (theta - c_i)``, the gradient
  of the MAML objective ``mean_i L_i(phi_i(theta))``;
* first-order MAML (eq. {eq}`fomaml-grad`): ``A_i M_i (theta - c_i)``;
* Reptile (eq. {eq}`reptile-update`, the direction ``theta - phi_i``):
  ``(I - M_i)(theta - c_i)``;
* joint training on all tasks: ``A_i (theta - c_i)``.

Each is ``mean_i G_i (theta - c_i)`` for a symmetric ``G_i``, so gradient descent
on it converges to ``(sum_i G_i)^{-1} sum_i G_i c_i`` (:func:`fixed_point`): four
different points in the plane, which the chapter draws. The module exists for
those pictures and for checking the formulas; the tests compare each closed
form with autograd and with the iterates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("maml", "fomaml", "reptile", "joint")


@dataclass(frozen=True)
class QuadraticTasks:
    """``n`` quadratic tasks in the plane.

    Shapes: ``curvature [n, 2, 2]`` (symmetric positive definite ``A_i``),
    ``optimum [n, 2]`` (``c_i``).
    """

    curvature: torch.Tensor
    optimum: torch.Tensor

    def __post_init__(self) -> None:
        a, c = self.curvature, self.optimum
        if a.dim() != 3 or a.shape[1:] != (2, 2) or c.shape != (a.shape[0], 2):
            raise ValueError(
                f"curvature must be [n, 2, 2] and optimum [n, 2], got "
                f"{tuple(a.shape)} and {tuple(c.shape)}."
            )
        if not torch.allclose(a, a.transpose(1, 2)):
            raise ValueError("every curvature matrix A_i must be symmetric.")
        if not bool((torch.linalg.eigvalsh(a) > 0).all()):
            raise ValueError("every curvature matrix A_i must be positive definite.")

    def __len__(self) -> int:
        return int(self.optimum.shape[0])

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """``[n]``: every task's loss at ``theta [2]``."""
        d = theta - self.optimum  # [n, 2]
        return 0.5 * torch.einsum("ni,nij,nj->n", d, self.curvature, d)


def sample_quadratic_tasks(
    tasks: int, generator: torch.Generator, *, spread: float = 2.0
) -> QuadraticTasks:
    """Random tasks: optima ``~ N(0, spread^2 I)``, curvatures in [0.2, 2]."""
    if tasks < 1:
        raise ValueError(f"tasks must be >= 1, got {tasks}.")
    angle = torch.rand(tasks, generator=generator, dtype=torch.float64) * torch.pi
    rotation = torch.stack(
        [torch.stack([angle.cos(), -angle.sin()], 1),
         torch.stack([angle.sin(), angle.cos()], 1)], 1
    )  # [n, 2, 2]
    eigen = 0.2 + 1.8 * torch.rand(tasks, 2, generator=generator, dtype=torch.float64)
    curvature = rotation @ torch.diag_embed(eigen) @ rotation.transpose(1, 2)
    curvature = 0.5 * (curvature + curvature.transpose(1, 2))  # exactly symmetric
    optimum = spread * torch.randn(tasks, 2, generator=generator, dtype=torch.float64)
    return QuadraticTasks(curvature, optimum)


def _step_matrix(tasks: QuadraticTasks, inner_lr: float, steps: int) -> torch.Tensor:
    """``M_i = (I - alpha A_i)^k``, ``[n, 2, 2]``."""
    eye = torch.eye(2, dtype=tasks.curvature.dtype)
    return torch.linalg.matrix_power(eye - inner_lr * tasks.curvature, steps)


def adapted(
    tasks: QuadraticTasks, theta: torch.Tensor, *, inner_lr: float, steps: int
) -> torch.Tensor:
    """``phi_i`` ``[n, 2]``: ``steps`` SGD steps of size ``inner_lr`` from ``theta``."""
    phi = theta.expand_as(tasks.optimum)
    for _ in range(steps):  # eq. maml-inner, written out
        phi = phi - inner_lr * torch.einsum("nij,nj->ni", tasks.curvature,
                                            phi - tasks.optimum)
    return phi


def maml_objective(
    tasks: QuadraticTasks, theta: torch.Tensor, *, inner_lr: float, steps: int
) -> torch.Tensor:
    """``mean_i L_i(phi_i(theta))``, differentiable (eq. {eq}`maml-outer`)."""
    phi = adapted(tasks, theta, inner_lr=inner_lr, steps=steps)
    d = phi - tasks.optimum
    return (0.5 * torch.einsum("ni,nij,nj->n", d, tasks.curvature, d)).mean()


def _weights(kind: str, tasks: QuadraticTasks, inner_lr: float, steps: int):
    """``G_i`` of the kind: the direction is ``mean_i G_i (theta - c_i)``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    a, m = tasks.curvature, _step_matrix(tasks, inner_lr, steps)
    eye = torch.eye(2, dtype=a.dtype)
    return {"maml": m @ a @ m, "fomaml": a @ m, "reptile": eye - m, "joint": a}[kind]


def direction(
    kind: str,
    tasks: QuadraticTasks,
    theta: torch.Tensor,
    *,
    inner_lr: float,
    steps: int,
) -> torch.Tensor:
    """The update direction ``[2]`` of ``kind`` at ``theta`` (descend along -it)."""
    g = _weights(kind, tasks, inner_lr, steps)
    return torch.einsum("nij,nj->i", g, theta - tasks.optimum) / len(tasks)


def fixed_point(
    kind: str, tasks: QuadraticTasks, *, inner_lr: float, steps: int
) -> torch.Tensor:
    """Where descent along :func:`direction` ends: ``(sum G_i)^-1 sum G_i c_i``."""
    g = _weights(kind, tasks, inner_lr, steps)
    return torch.linalg.solve(g.sum(0), torch.einsum("nij,nj->i", g, tasks.optimum))


def trajectory(
    kind: str,
    tasks: QuadraticTasks,
    theta: torch.Tensor,
    *,
    inner_lr: float,
    steps: int,
    meta_lr: float,
    iterations: int,
) -> torch.Tensor:
    """``[iterations + 1, 2]``: ``theta``, then ``theta - meta_lr * direction``..."""
    points = [theta]
    for _ in range(iterations):
        theta = theta - meta_lr * direction(
            kind, tasks, theta, inner_lr=inner_lr, steps=steps
        )
        points.append(theta)
    return torch.stack(points)
