"""Tests for metalearn.models: the Conv-4, its batch norm, and the MLP."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.func import functional_call

from metalearn.models import MLP, BatchNorm, Conv4, count_parameters


def test_batch_norm_equals_torch_batch_norm_in_training_mode():
    # Independent reference: nn.BatchNorm2d in training mode normalises with
    # the biased per-batch variance, like ours; forward and backward must agree.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 5, 4, generator=generator, dtype=torch.float64) * 3 + 1
    ours = BatchNorm(3).double()
    reference = nn.BatchNorm2d(3, eps=ours.eps).double().train()
    with torch.no_grad():
        for module in (ours, reference):
            module.weight.copy_(torch.tensor([0.5, -1.0, 2.0]))
            module.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x_ours = x.clone().requires_grad_()
    x_ref = x.clone().requires_grad_()
    out_ours, out_ref = ours(x_ours), reference(x_ref)
    torch.testing.assert_close(out_ours, out_ref, rtol=1e-12, atol=1e-12)
    cotangent = torch.randn(out_ours.shape, generator=generator, dtype=torch.float64)
    (out_ours * cotangent).sum().backward()
    (out_ref * cotangent).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad)
    torch.testing.assert_close(ours.bias.grad, reference.bias.grad)


def test_batch_norm_has_no_running_statistics():
    norm = BatchNorm(2)
    assert dict(norm.named_buffers()) == {}
    x = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    train_out = norm.train()(x)
    eval_out = norm.eval()(x)
    assert torch.equal(train_out, eval_out)
    # Per-batch statistics: each channel has mean 0 and variance 1 at the output.
    torch.testing.assert_close(train_out.mean(dim=(0, 2, 3)), torch.zeros(2))
    torch.testing.assert_close(
        train_out.var(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-3, rtol=0
    )


def test_batch_norm_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"\(4, 3, 2, 2\)"):
        BatchNorm(2)(torch.zeros(4, 3, 2, 2))


@pytest.mark.parametrize(
    ("image_size", "hidden", "embedding_dim"), [(28, 64, 64), (16, 4, 4), (84, 4, 100)]
)
def test_conv4_output_shapes(image_size, hidden, embedding_dim):
    x = torch.rand(3, 1, image_size, image_size)
    model = Conv4(1, ways=5, hidden=hidden, image_size=image_size)
    assert model(x).shape == (3, 5)
    assert model.embedding_dim == embedding_dim
    embed = Conv4(1, hidden=hidden, head=False, image_size=image_size)
    assert embed(x).shape == (3, embedding_dim)
    assert embed.head is None


def test_conv4_has_the_paper_architecture():
    model = Conv4(1, ways=5, hidden=64)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, BatchNorm)]
    assert len(convs) == 4 and len(norms) == 4
    assert all(c.kernel_size == (3, 3) and c.out_channels == 64 for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # 3x3 convs: 1*64*9+64, 3 * (64*64*9+64); norms 4*128; head 64*5+5.
    expected = (64 * 9 + 64) + 3 * (64 * 64 * 9 + 64) + 4 * 128 + (64 * 5 + 5)
    assert count_parameters(model) == expected


def test_conv4_functional_call_matches_module():
    torch.manual_seed(0)
    model, other = Conv4(1, 5, hidden=4, image_size=16), Conv4(1, 5, 4, image_size=16)
    x = torch.rand(5, 1, 16, 16)
    params = dict(model.named_parameters())
    assert torch.equal(functional_call(model, params, (x,)), model(x))
    # Another network's weights, without touching the module.
    out = functional_call(model, dict(other.named_parameters()), (x,))
    torch.testing.assert_close(out, other(x))
    assert not torch.allclose(out, model(x))


def test_conv4_is_transductive():
    # Batch statistics: an image's logits depend on the rest of its batch.
    torch.manual_seed(0)
    model = Conv4(1, 5, hidden=4, image_size=16)
    x = torch.rand(6, 1, 16, 16)
    assert not torch.allclose(model(x)[:2], model(x[:2]))


@pytest.mark.parametrize(
    "shape", [(1, 28, 28), (2, 3, 28, 28), (2, 1, 27, 28), (1, 2, 1, 28, 28)]
)
def test_conv4_rejects_bad_inputs(shape):
    with pytest.raises(ValueError, match=r"Conv4 expects images"):
        Conv4(1, 5, hidden=4)(torch.zeros(shape))


def test_conv4_rejects_bad_sizes():
    with pytest.raises(ValueError, match="image_size"):
        Conv4(image_size=8)
    with pytest.raises(ValueError, match="hidden"):
        Conv4(hidden=0)
    with pytest.raises(TypeError, match="ways"):
        Conv4(ways=5.0)


def test_mlp_shapes_and_size():
    model = MLP()
    assert model(torch.rand(7, 1)).shape == (7, 1)
    # 1-40-40-1: (1*40+40) + (40*40+40) + (40*1+1)
    assert count_parameters(model) == 80 + 1640 + 41
    wide = MLP(3, (5,), 2)
    assert wide(torch.rand(4, 3)).shape == (4, 2)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert [lin.out_features for lin in linears] == [40, 40, 1] and len(relus) == 2


@pytest.mark.parametrize("shape", [(7,), (7, 2), (2, 7, 1)])
def test_mlp_rejects_bad_inputs(shape):
    with pytest.raises(ValueError, match=r"MLP expects inputs \[B, 1\]"):
        MLP()(torch.zeros(shape))


@pytest.mark.parametrize(
    ("make", "x", "words"),
    [
        (lambda: Conv4(1, 5, hidden=4, image_size=16),
         torch.zeros(2, 1, 16, 16, dtype=torch.uint8), "x.float() / 255"),
        (lambda: Conv4(1, 5, hidden=4, image_size=16),
         torch.zeros(2, 1, 16, 16, dtype=torch.float64), "float64"),
        (lambda: MLP(), torch.zeros(3, 1, dtype=torch.int64), "floating-point"),
        (lambda: MLP(), torch.zeros(3, 1, dtype=torch.float64), "model.to"),
    ],
)
def test_inputs_of_the_wrong_dtype_are_named(make, x, words):
    with pytest.raises(TypeError, match=re.escape(words)):
        make()(x)
