"""What one training step costs: wall time and the memory autograd keeps for it.

Used by the MAML chapter to measure the price of the second-order term. The
memory measure is exact and the same on every device: the bytes of the distinct
tensor storages that the autograd graph of a loss has saved for its backward
pass (the activations, and for second-order MAML the inner gradients' own
graphs). It is found by walking the graph from ``loss.grad_fn`` and reading
each node's ``_saved_*`` attributes. On a GPU, CUDA's allocator peak is
reported besides.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from metalearn.checks import check_positive_int


def saved_tensor_bytes(loss: torch.Tensor) -> int:
    """Bytes of the distinct storages the autograd graph of ``loss`` has saved.

    Args:
        loss: a tensor with a ``grad_fn`` (before ``backward()`` frees the graph).

    Returns:
        The sum of ``nbytes`` over distinct saved storages (0 if no graph).
    """
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss must be a tensor, got {type(loss).__name__}.")
    nodes, storages, stack = set(), {}, [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in nodes:
            continue
        nodes.add(node)
        for name in dir(node):
            if not name.startswith("_saved_"):
                continue
            try:
                value = getattr(node, name)
            except RuntimeError:  # freed by an earlier backward()
                continue
            values = value if isinstance(value, (tuple, list)) else (value,)
            for tensor in values:
                if isinstance(tensor, torch.Tensor):
                    storage = tensor.untyped_storage()
                    storages[(storage.data_ptr(), tensor.device)] = storage.nbytes()
        stack.extend(next_node for next_node, _ in node.next_functions)
    return sum(storages.values())


@dataclass(frozen=True)
class StepCost:
    """The cost of one training step (forward and backward)."""

    seconds: float  # median wall time over the repeats
    saved_bytes: int  # memory autograd keeps for the backward (saved_tensor_bytes)
    cuda_peak_bytes: int | None  # CUDA allocator peak during a step; None on CPU


def measure_step(
    step: Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]],
    *,
    repeats: int = 3,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> StepCost:
    """Time ``step`` (forward + ``backward()``) and measure its saved memory.

    One warm-up call, then ``repeats`` timed calls on the same batch (the
    generator is re-seeded each time). Gradients accumulate in ``.grad``;
    zero them afterwards if the model is trained further.

    Args:
        step: a training-loop step, ``step(generator) -> (loss, metrics)``.
        repeats: timed calls; the median is reported.
        seed: seed of the generator passed to ``step``.
        device: where the step computes (for CUDA synchronisation and peak).
    """
    check_positive_int("repeats", repeats)
    device = torch.device(device) if device is not None else torch.device("cpu")
    cuda = device.type == "cuda"

    def once() -> tuple[float, int]:
        if cuda:
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        loss, _ = step(torch.Generator().manual_seed(seed))
        if cuda:
            torch.cuda.synchronize(device)
        forward = time.perf_counter() - started
        saved = saved_tensor_bytes(loss)  # not timed
        started = time.perf_counter()
        loss.backward()
        if cuda:
            torch.cuda.synchronize(device)
        return forward + time.perf_counter() - started, saved

    once()  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    runs = [once() for _ in range(repeats)]
    return StepCost(
        seconds=statistics.median(seconds for seconds, _ in runs),
        saved_bytes=runs[-1][1],
        cuda_peak_bytes=int(torch.cuda.max_memory_allocated(device)) if cuda else None,
    )
