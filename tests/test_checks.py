"""Tests of metalearn.checks: what each check accepts, refuses, and what it costs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from metalearn import checks


@pytest.mark.parametrize(
    "images",
    [
        torch.randint(0, 256, (3, 2, 1, 4, 4), dtype=torch.uint8),
        torch.rand(3, 2, 1, 4, 4),  # intensities in [0, 1]
        torch.rand(3, 2, 1, 4, 4, dtype=torch.float64),
        torch.rand(3, 2, 1, 4, 4).half(),
        torch.randn(3, 2, 1, 4, 4) * 3,  # standardised values, negative ones too
        torch.full((3, 2, 1, 4, 4), 1.0),  # the edge of [0, 1]
    ],
    ids=["uint8", "float32 [0,1]", "float64 [0,1]", "float16", "standardised", "ones"],
)
def test_images_that_are_accepted(images):
    assert checks.check_images(images) is images


@pytest.mark.parametrize(
    ("images", "error", "pattern"),
    [
        (torch.zeros(3, 2, 1, 4, 4, dtype=torch.int64), TypeError, "int64"),
        (torch.zeros(3, 2, 1, 4, 4, dtype=torch.bool), TypeError, "torch.bool"),
        (torch.zeros(3, 2, 1, 4, 4, dtype=torch.complex64), TypeError, "complex"),
        (torch.zeros(3, 2, 4, 4, dtype=torch.uint8), ValueError, "shape"),
        (torch.zeros(3, 0, 1, 4, 4, dtype=torch.uint8), ValueError, "zero-sized"),
        (torch.full((3, 2, 1, 4, 4), 255.0), ValueError, r"\[255, 255\]"),
        (torch.full((3, 2, 1, 4, 4), 1.5), ValueError, "not scaled"),
        (torch.full((3, 2, 1, 4, 4), math.nan), ValueError, "NaN"),
        (torch.full((3, 2, 1, 4, 4), -math.inf), ValueError, "infinite"),
        ([[0]], TypeError, "torch.Tensor"),
    ],
)
def test_images_that_are_refused(images, error, pattern):
    with pytest.raises(error, match=pattern):
        checks.check_images(images)


def test_image_values_are_one_pass_and_skipped_where_there_are_none(monkeypatch):
    calls = []
    real = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda x: calls.append(x.shape) or real(x))
    checks.check_images(torch.rand(3, 2, 1, 4, 4))
    assert calls == [(3, 2, 1, 4, 4)]  # one pass over the float images
    checks.check_images(torch.zeros(3, 2, 1, 4, 4, dtype=torch.uint8))
    checks.check_images(torch.rand(3, 2, 1, 4, 4), values=False)
    checks.check_images(torch.empty(3, 2, 1, 4, 4, device="meta"))
    assert len(calls) == 1  # uint8, values=False and meta tensors need no pass


def test_labels():
    counts = checks.check_labels(torch.tensor([0, 2, 2]), 3, every_class=False)
    assert counts.tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no example"):
        checks.check_labels(torch.tensor([0, 2, 2]), 3, every_class=True)
    with pytest.raises(ValueError, match=r"labels \[3, 7\] outside 0..2"):
        checks.check_labels(torch.tensor([0, 3, 7]), 3, every_class=False)
    with pytest.raises(TypeError, match=r"\.argmax\(dim=1\)"):
        checks.check_labels(torch.tensor([0.1, 0.9]), 2, every_class=False)
    with pytest.raises(TypeError, match=r"int64.*y\.long\(\)"):
        checks.check_labels(torch.tensor([0, 1]).int(), 2, name="y", every_class=False)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        checks.check_labels(torch.zeros(2, 2).long(), 2, every_class=False)
    with pytest.raises(TypeError, match="ways must be an int"):
        checks.check_labels(torch.tensor([0]), 2.0, every_class=False)


def test_scalars():
    assert checks.check_positive_float("lr", np.float64(0.5)) == 0.5
    assert checks.check_positive_float("lr", 3) == 3.0
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="lr must be a finite positive"):
            checks.check_positive_float("lr", bad)
    for bad in ("0.1", True, 1j, torch.tensor(0.1), None):
        with pytest.raises(TypeError, match="lr must be a positive number"):
            checks.check_positive_float("lr", bad)
    with pytest.raises(ValueError, match="at most 10"):
        checks.check_positive_float("lr", 11, maximum=10)
    assert checks.check_seed("seed", 2**64 - 1) == 2**64 - 1
    torch.Generator().manual_seed(2**64 - 1)  # the largest seed torch takes
    with pytest.raises(ValueError, match="64 bits"):
        checks.check_seed("seed", 2**64)
    with pytest.raises(TypeError, match="seed must be an int"):
        checks.check_seed("seed", 1.0)
    assert checks.check_interval("x", [0, 1]) == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"x\[0\] must be finite"):
        checks.check_interval("x", (-math.inf, 1))
    with pytest.raises(TypeError, match="pair"):
        checks.check_interval("x", "01")
    assert checks.check_real_sequence("v", torch.tensor([1, 2])) == [1.0, 2.0]
    with pytest.raises(TypeError, match="sequence"):
        checks.check_real_sequence("v", 3)
    with pytest.raises(ValueError, match="one of"):
        checks.check_choice("distance", "l1", ("l2",))


def test_objects():
    generator = torch.Generator()
    assert checks.check_generator("g", generator) is generator
    assert checks.check_generator("g", None) is None
    with pytest.raises(TypeError, match=r"manual_seed\(seed\)"):
        checks.check_generator("g", 0)
    with pytest.raises(TypeError, match="torch.Generator"):
        checks.check_generator("g", None, optional=False)
    assert checks.check_device("d", "cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        checks.check_device("d", "gpu")
    with pytest.raises(TypeError, match="torch.device"):
        checks.check_device("d", 0.5)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        checks.check_module("model", lambda x: x)


def test_tensors_against_a_module():
    model = nn.Linear(3, 2)
    x = torch.zeros(4, 3)
    assert checks.check_float_tensor("x", x, dims=2, module=model) is x
    with pytest.raises(TypeError, match=r"float64 but the model's parameters are"):
        checks.check_float_tensor("x", x.double(), module=model)
    with pytest.raises(TypeError, match=r"x\.float\(\) / 255"):
        checks.check_float_tensor("x", x.to(torch.uint8))
    with pytest.raises(ValueError, match="must have 3 dimensions"):
        checks.check_float_tensor("x", x, dims=3)
    with pytest.raises(ValueError, match="empty"):
        checks.check_float_tensor("x", x[:0])
    with pytest.raises(ValueError, match="x contains NaN"):
        checks.check_float_tensor("x", torch.tensor([0.0, math.nan]))
    checks.check_float_tensor("x", torch.tensor([math.nan]), finite=False)
    checks.check_matches_module("x", x.double(), nn.ReLU())  # no parameters


def test_scores():
    scores = torch.zeros(4, 3)
    assert checks.check_scores("s", scores, rows=4, ways=3) is scores
    with pytest.raises(ValueError, match="20 columns but the episode is 3-way"):
        checks.check_scores("s", torch.zeros(4, 20), rows=4, ways=3)
    with pytest.raises(ValueError, match="5 rows but there are 4 queries"):
        checks.check_scores("s", torch.zeros(5, 3), rows=4, ways=3)
    with pytest.raises(ValueError, match="NaN"):
        checks.check_scores("s", torch.full((4, 3), math.nan), rows=4, ways=3)
    # -inf is a legitimate score (e.g. a log-probability that underflowed).
    checks.check_scores("s", torch.full((4, 3), -math.inf), rows=4, ways=3)
