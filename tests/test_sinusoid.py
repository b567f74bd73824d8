"""Tests for metalearn.sinusoid: the MAML paper's regression tasks."""

from __future__ import annotations

import math

import pytest
import torch

from metalearn.sinusoid import (
    MAML_SINUSOID,
    SinusoidDistribution,
    SinusoidTasks,
    sample_sinusoid_tasks,
    sinusoid,
)


def test_shapes_and_tuple_unpacking():
    tasks = sample_sinusoid_tasks(7, 5, 3, torch.Generator().manual_seed(0))
    support_x, support_y, query_x, query_y, amplitude, phase = tasks
    assert support_x.shape == support_y.shape == (7, 5, 1)
    assert query_x.shape == query_y.shape == (7, 3, 1)
    assert amplitude.shape == phase.shape == (7,)
    assert all(t.dtype == torch.float32 for t in tasks)
    assert isinstance(tasks, SinusoidTasks) and tasks.support_x is support_x


def test_ranges_match_the_paper_and_are_covered():
    tasks = sample_sinusoid_tasks(2000, 10, 10, torch.Generator().manual_seed(1))
    assert MAML_SINUSOID.amplitude == (0.1, 5.0)
    assert MAML_SINUSOID.phase == (0.0, math.pi)
    assert MAML_SINUSOID.x == (-5.0, 5.0)
    for values, (low, high) in [
        (tasks.amplitude, (0.1, 5.0)),
        (tasks.phase, (0.0, math.pi)),
        (torch.cat([tasks.support_x, tasks.query_x]), (-5.0, 5.0)),
    ]:
        assert low <= float(values.min()) and float(values.max()) <= high
        # 2000+ uniform draws reach within 1% of each end of the range.
        width = high - low
        assert float(values.min()) < low + 0.01 * width
        assert float(values.max()) > high - 0.01 * width
        # The mean of a uniform is the midpoint (std err ~ 0.6% of the width).
        assert abs(float(values.mean()) - (low + high) / 2) < 0.03 * width


def test_targets_are_the_sine_waves():
    tasks = sample_sinusoid_tasks(
        4, 6, 2, torch.Generator().manual_seed(2), dtype=torch.float64
    )
    for i in range(4):
        a, p = float(tasks.amplitude[i]), float(tasks.phase[i])
        for x, y in [
            (tasks.support_x, tasks.support_y),
            (tasks.query_x, tasks.query_y),
        ]:
            expected = torch.tensor(
                [a * math.sin(float(v) - p) for v in x[i, :, 0]],
                dtype=torch.float64,
            )
            torch.testing.assert_close(y[i, :, 0], expected, rtol=1e-12, atol=1e-12)
            assert float(y[i].abs().max()) <= a + 1e-12
    grid = torch.linspace(-5, 5, 11)[:, None]
    curve = sinusoid(grid, torch.tensor(2.0), torch.tensor(0.5))
    torch.testing.assert_close(curve, 2.0 * torch.sin(grid - 0.5))


def test_seeding():
    first = sample_sinusoid_tasks(3, 5, 5, torch.Generator().manual_seed(42))
    again = sample_sinusoid_tasks(3, 5, 5, torch.Generator().manual_seed(42))
    other = sample_sinusoid_tasks(3, 5, 5, torch.Generator().manual_seed(43))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first.amplitude, other.amplitude)
    assert not torch.equal(first.support_x, other.support_x)


def test_to_device_and_custom_distribution():
    narrow = SinusoidDistribution(amplitude=(1.0, 1.0 + 1e-6), phase=(0.0, 1e-6))
    tasks = sample_sinusoid_tasks(
        2, 3, 3, torch.Generator().manual_seed(0), distribution=narrow
    ).to("cpu")
    torch.testing.assert_close(
        tasks.query_y, torch.sin(tasks.query_x), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(tasks=0, shots=5, queries=5), ValueError, "tasks"),
        (dict(tasks=2, shots=0, queries=5), ValueError, "shots"),
        (dict(tasks=2, shots=5, queries=-1), ValueError, "queries"),
        (dict(tasks=2.0, shots=5, queries=5), TypeError, "tasks"),
        (dict(tasks=2, shots=5, queries=5, dtype=torch.int64), TypeError, "dtype"),
    ],
)
def test_rejects_bad_sizes(kwargs, error, match):
    with pytest.raises(error, match=match):
        sample_sinusoid_tasks(**kwargs)


def test_rejects_empty_ranges():
    with pytest.raises(ValueError, match="amplitude"):
        SinusoidDistribution(amplitude=(5.0, 0.1))


def test_ranges_must_be_finite_pairs():
    distribution = SinusoidDistribution(amplitude=[1, 2])
    assert distribution.amplitude == (1.0, 2.0)  # stored as a tuple of floats
    with pytest.raises(ValueError, match=r"amplitude range\[1\] must be finite"):
        SinusoidDistribution(amplitude=(0.1, float("inf")))
    with pytest.raises(ValueError, match=r"x range\[0\] must be finite"):
        SinusoidDistribution(x=(float("nan"), 1.0))
