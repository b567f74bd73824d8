"""Joint pre-training on the pooled data of many tasks: the transfer baseline.

The MAML paper (Finn, Abbeel and Levine, 2017, Section 5.1) compares MAML on
sinusoid regression with a network "pretrained on all of the tasks", i.e.
trained by ordinary regression on the pooled points of many sampled tasks, and
then fine-tuned with gradient steps on the support set of a new task. The
pre-training objective for a meta-batch of ``T`` tasks is the loss of the model
*itself* (no adaptation) on every point of every task,

.. math:: \\min_\\theta \\; \\mathcal{L}\\big(f_\\theta(X), Y\\big),
          \\quad X = \\bigcup_i \\mathcal{S}_i \\cup \\mathcal{Q}_i ,

where, for the mean squared error, the pooled loss is the mean over all
``T * (K + Q)`` points. Fine-tuning at test time needs no new code: it is
:func:`metalearn.maml.adapt` with ``first_order=True`` from the pre-trained
weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from metalearn.maml import (
    LossFn,
    Step,
    TaskBatch,
    adapt,
    callable_name,
    check_inner_loop,
    check_task_batch,
    model_device,
)
from metalearn.models import op_by_op_batch_norm


def pooled_points(batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """All support and query points of a meta-batch, flattened into one batch.

    Args:
        batch: tasks stacked along dim 0 (e.g. a
            :class:`~metalearn.sinusoid.SinusoidTasks`).

    Returns:
        ``(x, y)``: the inputs and targets of every point of every task.

    Shapes:
        ``support_x [T, K, ...]``, ``query_x [T, Q, ...]`` -> ``x [T*(K+Q), ...]``
        (the same for the targets).

    Raises:
        ValueError: support and query tensors disagree on the trailing shape.
    """
    check_task_batch(batch)
    pairs = {
        "x": (batch.support_x, batch.query_x),
        "y": (batch.support_y, batch.query_y),
    }
    pooled = []
    for name, (support, query) in pairs.items():
        if support.dim() < 2 or support.shape[2:] != query.shape[2:]:
            raise ValueError(
                f"support_{name} {tuple(support.shape)} and query_{name} "
                f"{tuple(query.shape)} must be [T, M, ...] with equal trailing dims."
            )
        pooled.append(torch.cat([support, query], dim=1).flatten(0, 1))
    return pooled[0], pooled[1]  # [T*(K+Q), ...], [T*(K+Q), ...]


def make_pretrain_step(
    model: nn.Module,
    sample: Callable[[torch.Generator], TaskBatch],
    *,
    loss_fn: LossFn = F.mse_loss,
    device: torch.device | str | None = None,
) -> Step:
    """A training-loop ``step`` that pre-trains ``model`` on the pooled tasks.

    Each call samples a meta-batch with the given generator, pools all its
    support and query points (:func:`pooled_points`) and returns the loss of
    ``model`` on them: plain supervised learning on data from many tasks, the
    "pretrained" baseline of Finn et al. (2017), Section 5.1. Use it with
    :func:`metalearn.training.train` and e.g. ``torch.optim.Adam``.

    Args:
        model: the network to pre-train; its forward pass takes ``x`` pooled
            over tasks (``[T*(K+Q), 1]`` for sinusoids).
        sample: ``sample(generator)`` returns a meta-batch with a
            ``.to(device)`` method, e.g. ``lambda g: sample_sinusoid_tasks(25,
            10, 10, g)``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; MSE by default.
        device: where to put each batch; ``None``: the model's device.

    Returns:
        ``step(generator) -> (loss, {"loss": float})``; ``loss.backward()``
        gives the gradient of the pooled loss on ``model.parameters()``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, or ``sample`` or
            ``loss_fn`` is not callable.
        ValueError: ``model`` has no parameters.

    Example:
        >>> from metalearn.models import MLP
        >>> from metalearn.sinusoid import sample_sinusoid_tasks
        >>> step = make_pretrain_step(
        ...     MLP(), lambda g: sample_sinusoid_tasks(25, 10, 10, g))
        >>> loss, metrics = step(torch.Generator().manual_seed(0))
        >>> loss.dim(), sorted(metrics)
        (0, ['loss'])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not callable(sample):
        raise TypeError(f"sample must be callable as sample(generator): {sample!r}.")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {loss_fn!r}.")
    target = torch.device(device) if device is not None else model_device(model)

    def step(generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = pooled_points(sample(generator).to(target))
        loss = loss_fn(model(x), y)
        return loss, {"loss": float(loss.detach())}

    step.identity = {  # what shapes the loss (see metalearn.training)
        "method": "pretrain",
        "loss_fn": callable_name(loss_fn),
        "tasks": getattr(sample, "identity", None),
    }
    return step


def finetune_curve(
    model: nn.Module,
    batch: TaskBatch,
    *,
    inner_lr: float,
    max_steps: int,
    loss_fn: LossFn = F.mse_loss,
) -> torch.Tensor:
    """Query loss of every task after 0, 1, ..., ``max_steps`` fine-tuning steps.

    From the weights of ``model`` (meta-learned or pre-trained), each task
    takes SGD steps of size ``inner_lr`` on its own support set (eq.
    {eq}`maml-inner` repeated, i.e. :func:`metalearn.maml.adapt` with
    ``first_order=True``), and after every step its query loss is recorded.
    This is the test protocol of Finn et al. (2017), Figure 2 and 3: every
    gradient step uses the same K support points. Tasks are processed
    together with :func:`torch.func.vmap`; nothing is written into ``model``.

    Args:
        model: the network (no buffers are updated).
        batch: the test tasks (e.g. :class:`~metalearn.sinusoid.SinusoidTasks`).
        inner_lr: alpha, the fine-tuning step size (> 0).
        max_steps: the last number of steps recorded (>= 1).
        loss_fn: the task loss (MSE by default).

    Returns:
        ``losses[j, i]``: the query loss of task ``i`` after ``j`` steps, detached.

    Shapes:
        ``batch.support_x [T, K, ...]``, ``batch.query_x [T, Q, ...]`` ->
        ``losses [max_steps + 1, T]``.
    """
    check_inner_loop(inner_lr, max_steps)
    check_task_batch(batch)
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    tasks = batch.support_x.shape[0]
    # Every task starts from theta: give each its own copy along dim 0.
    weights = {n: p.expand(tasks, *p.shape) for n, p in params.items()}

    def query_loss(w: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, (w, buffers), (x,)), y)

    def one_step(w: dict, x: torch.Tensor, y: torch.Tensor) -> dict:
        return adapt(
            model,
            w,
            buffers,
            x,
            y,
            inner_lr=inner_lr,
            steps=1,
            first_order=True,
            loss_fn=loss_fn,
        )

    losses = []
    with torch.enable_grad():
        for step in range(max_steps + 1):
            if step > 0:
                with op_by_op_batch_norm():
                    weights = vmap(one_step)(weights, batch.support_x, batch.support_y)
                weights = {n: w.detach() for n, w in weights.items()}
            with torch.no_grad():
                with op_by_op_batch_norm():
                    losses.append(
                        vmap(query_loss)(weights, batch.query_x, batch.query_y)
                    )
    return torch.stack(losses)  # [max_steps + 1, T]
