"""Tests for metalearn.conv4_batched: the Conv-4 of every task as batched GEMMs.

Reference: the module itself, :class:`metalearn.models.Conv4` called task by
task with :func:`torch.func.functional_call`. The meta-gradients built on it
are tested in ``tests/test_maml.py`` (loop, learn2learn, finite differences).
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from metalearn import conv4_batched
from metalearn.models import MLP, Conv4


def per_task_weights(model: Conv4, tasks: int, seed: int) -> dict[str, torch.Tensor]:
    """Different weights for every task: the model's plus seeded noise."""
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.stack(
            [
                p.detach()
                + 0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype)
                for _ in range(tasks)
            ]
        )
        for name, p in model.named_parameters()
    }


@pytest.mark.parametrize(
    ("image_size", "in_channels"), [(28, 1), (16, 1), (21, 3)], ids=str
)
def test_logits_equal_the_module_task_by_task(image_size, in_channels):
    torch.manual_seed(0)
    model = Conv4(in_channels, 5, hidden=6, image_size=image_size).double()
    params = per_task_weights(model, 3, seed=1)
    x = torch.randn(3, 7, in_channels, image_size, image_size, dtype=torch.float64)
    ours = conv4_batched.logits(model, params, x)
    reference = torch.stack(
        [
            functional_call(model, {n: p[i] for n, p in params.items()}, (x[i],))
            for i in range(3)
        ]
    )
    assert ours.shape == (3, 7, 5)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


def test_each_task_uses_only_its_own_weights_and_images():
    torch.manual_seed(0)
    model = Conv4(1, 4, hidden=4, image_size=16).double()
    params = per_task_weights(model, 3, seed=2)
    x = torch.randn(3, 5, 1, 16, 16, dtype=torch.float64)
    before = conv4_batched.logits(model, params, x)
    changed = {n: p.clone() for n, p in params.items()}
    changed["features.0.0.weight"][1] += 1.0  # task 1's first filters only
    x_changed = x.clone()
    x_changed[2] += 1.0  # task 2's images only
    after = conv4_batched.logits(model, changed, x_changed)
    assert torch.equal(after[0], before[0])
    assert not torch.allclose(after[1], before[1])
    assert not torch.allclose(after[2], before[2])


def test_supports_and_rejects():
    model = Conv4(1, 5, hidden=4, image_size=16)
    assert conv4_batched.supports(model, {})
    assert not conv4_batched.supports(Conv4(1, 5, hidden=4, head=False), {})
    assert not conv4_batched.supports(MLP(), {})
    assert not conv4_batched.supports(model, {"extra": torch.zeros(1)})
    params = per_task_weights(model, 2, seed=0)
    with pytest.raises(ValueError, match="Conv4 expects images"):
        conv4_batched.logits(model, params, torch.zeros(2, 3, 1, 28, 28))
    with pytest.raises(ValueError, match="Conv4 expects images"):
        conv4_batched.logits(model, params, torch.zeros(6, 1, 16, 16))
    with pytest.raises(TypeError, match="needs a Conv4"):
        conv4_batched.logits(MLP(), params, torch.zeros(2, 3, 1, 16, 16))
