"""Sinusoid regression: the toy task distribution of the MAML paper.

Each task is a sine wave ``y = amplitude * sin(x - phase)`` with amplitude
drawn from U[0.1, 5.0] and phase from U[0, pi]; inputs are drawn from
U[-5, 5], and the loss is the mean squared error (Finn, Abbeel and Levine,
2017, Section 5.1; the sign of the phase follows their reference code). A
learner sees K (``shots``) points of a new wave and must predict the rest.

Train MAML on it with :func:`metalearn.maml.maml_step_from_sampler`::

    step = maml_step_from_sampler(
        MLP(), lambda g: sample_sinusoid_tasks(25, 10, 10, g),
        inner_lr=0.01, steps=1, first_order=False, loss_fn=F.mse_loss)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from metalearn.checks import (
    check_float_tensor,
    check_generator,
    check_interval,
    check_positive_int,
)


@dataclass(frozen=True)
class SinusoidDistribution:
    """The ranges of the uniform distributions a sinusoid task is drawn from.

    Each range is a pair ``(low, high)`` of finite numbers with ``low < high``
    (an infinite bound would make every target infinite or NaN); it is stored
    as a tuple of floats.
    """

    amplitude: tuple[float, float] = (0.1, 5.0)  # A ~ U[0.1, 5.0] (Finn et al.)
    phase: tuple[float, float] = (0.0, math.pi)  # phase ~ U[0, pi]
    x: tuple[float, float] = (-5.0, 5.0)  # inputs x ~ U[-5, 5]

    def __post_init__(self) -> None:
        for name in ("amplitude", "phase", "x"):
            bounds = check_interval(f"{name} range", getattr(self, name))
            object.__setattr__(self, name, bounds)


MAML_SINUSOID = SinusoidDistribution()  # the paper's distribution


class SinusoidTasks(NamedTuple):
    """A meta-batch of ``T`` sinusoid tasks (unpacks like a tuple).

    Shapes (``K = shots``, ``Q = queries``)::

        support_x [T, K, 1]   support_y [T, K, 1]
        query_x   [T, Q, 1]   query_y   [T, Q, 1]
        amplitude [T]         phase     [T]
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    amplitude: torch.Tensor
    phase: torch.Tensor

    def to(self, device: torch.device | str) -> SinusoidTasks:
        """The same tasks on another device."""
        return SinusoidTasks(*(t.to(device) for t in self))


def sinusoid(
    x: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor
) -> torch.Tensor:
    """``amplitude * sin(x - phase)``, broadcast per task.

    Shapes: ``x [T, M, 1]``, ``amplitude [T]``, ``phase [T]`` -> ``[T, M, 1]``.
    Also accepts a shared grid ``x [M, 1]`` with scalar amplitude and phase.

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: the shapes do not match one of the two forms above.
    """
    check_float_tensor("x", x, finite=False)
    check_float_tensor("amplitude", amplitude, min_dims=0, finite=False)
    check_float_tensor("phase", phase, min_dims=0, finite=False)
    if amplitude.shape != phase.shape or amplitude.dim() > 1:
        raise ValueError(
            f"amplitude {tuple(amplitude.shape)} and phase {tuple(phase.shape)} "
            "must both be [T] (one per task) or both scalars."
        )
    if amplitude.dim() == 1 and (x.dim() != 3 or x.shape[0] != amplitude.shape[0]):
        raise ValueError(
            f"x must be [T={amplitude.shape[0]}, M, 1] for {amplitude.shape[0]} "
            f"amplitudes, got {tuple(x.shape)}."
        )
    if amplitude.dim() == 1:
        amplitude, phase = amplitude[:, None, None], phase[:, None, None]
    return amplitude * torch.sin(x - phase)


def _uniform(
    shape: tuple[int, ...],
    bounds: tuple[float, float],
    generator: torch.Generator | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)


def sample_sinusoid_tasks(
    tasks: int,
    shots: int,
    queries: int,
    generator: torch.Generator | None = None,
    *,
    distribution: SinusoidDistribution = MAML_SINUSOID,
    dtype: torch.dtype = torch.float32,
) -> SinusoidTasks:
    """Draw ``tasks`` sine waves and ``shots`` + ``queries`` points of each.

    Args:
        tasks: T, the number of tasks.
        shots: K, support points per task (5 or 10 in the paper).
        queries: query points per task.
        generator: the source of randomness; the same seed gives equal tensors.
        distribution: the ranges (default: the MAML paper's).
        dtype: a floating-point dtype for every tensor.

    Returns:
        A :class:`SinusoidTasks`; targets are noise-free.

    Raises:
        ValueError: a size is < 1. TypeError: a size is not an int,
            ``generator`` is not a ``torch.Generator``, ``distribution`` not a
            :class:`SinusoidDistribution` or ``dtype`` not a floating-point
            ``torch.dtype``.
    """
    check_positive_int("tasks", tasks)
    check_positive_int("shots", shots)
    check_positive_int("queries", queries)
    check_generator("generator", generator)
    if not isinstance(distribution, SinusoidDistribution):
        raise TypeError(
            "distribution must be a SinusoidDistribution, got "
            f"{type(distribution).__name__}."
        )
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"dtype must be a floating-point torch.dtype (e.g. torch.float32), "
            f"got {dtype!r}."
        )
    amplitude = _uniform((tasks,), distribution.amplitude, generator, dtype)  # [T]
    phase = _uniform((tasks,), distribution.phase, generator, dtype)  # [T]
    x = _uniform((tasks, shots + queries, 1), distribution.x, generator, dtype)
    y = sinusoid(x, amplitude, phase)  # [T, K+Q, 1]
    return SinusoidTasks(
        support_x=x[:, :shots],
        support_y=y[:, :shots],
        query_x=x[:, shots:],
        query_y=y[:, shots:],
        amplitude=amplitude,
        phase=phase,
    )
