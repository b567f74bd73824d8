"""metalearn.cost: saved-tensor memory against hand-counted graphs, and timing."""

from __future__ import annotations

import pytest
import torch

from metalearn.cost import StepCost, measure_step, saved_tensor_bytes
from metalearn.maml import meta_loss
from metalearn.models import MLP


def test_saved_bytes_of_a_product_counts_both_factors():
    a = torch.randn(100, requires_grad=True)  # float32: 400 bytes
    b = torch.randn(100, requires_grad=True)
    loss = (a * b).sum()  # MulBackward saves a and b; SumBackward saves nothing
    assert saved_tensor_bytes(loss) == 800


def test_shared_storage_is_counted_once():
    a = torch.randn(50, requires_grad=True)
    loss = (a * a).sum()  # the same tensor saved twice
    assert saved_tensor_bytes(loss) == 200


def test_no_graph_means_no_saved_memory():
    assert saved_tensor_bytes(torch.ones(3).sum()) == 0
    with pytest.raises(TypeError, match="loss must be a tensor"):
        saved_tensor_bytes(1.0)


def sinusoid_batch(steps: int, first_order: bool):
    torch.manual_seed(0)
    model = MLP()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 10, 1, generator=generator) * 10 - 5
    y = torch.sin(x)

    class Batch:
        support_x, support_y, query_x, query_y = x, y, x, y

    loss, _ = meta_loss(
        model,
        dict(model.named_parameters()),
        {},
        Batch,
        inner_lr=0.01,
        steps=steps,
        first_order=first_order,
        loss_fn=torch.nn.functional.mse_loss,
    )
    return loss


def test_second_order_memory_grows_with_inner_steps_first_order_does_not():
    second = [saved_tensor_bytes(sinusoid_batch(k, False)) for k in (1, 2, 3)]
    first = [saved_tensor_bytes(sinusoid_batch(k, True)) for k in (1, 2, 3)]
    assert second[0] < second[1] < second[2]
    # Linear growth: each extra inner step keeps the same amount more.
    assert second[2] - second[1] == second[1] - second[0]
    assert first[0] == first[1] == first[2] < second[0]


def test_measure_step_times_and_measures():
    weight = torch.randn(20, 20, requires_grad=True)

    def step(generator):
        x = torch.randn(8, 20, generator=generator)
        return (x @ weight).pow(2).mean(), {}

    cost = measure_step(step, repeats=2)
    assert isinstance(cost, StepCost)
    assert cost.seconds > 0 and cost.cuda_peak_bytes is None
    # mm saves x (W's gradient needs it; x needs none), pow saves x @ W.
    assert cost.saved_bytes == 8 * 20 * 4 + 8 * 20 * 4
    assert weight.grad is not None
    with pytest.raises(ValueError, match="repeats"):
        measure_step(step, repeats=0)
