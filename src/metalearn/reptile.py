"""Reptile: a first-order meta-learner that moves theta towards adapted weights.

For each task ``i`` of a meta-batch, Reptile runs ``k`` steps of SGD on the
task from ``theta`` to get ``phi_i``, then moves the initialisation towards
their mean (Nichol, Achiam and Schulman, 2018, Algorithm 2; eq.
{eq}`reptile-update`)::

    theta <- theta + epsilon * mean_i(phi_i - theta)

No gradient flows through the inner loop. To fit the generic training loop
(which calls ``loss.backward()`` and ``optimiser.step()``), :func:`reptile_loss`
returns the surrogate ``0.5 * ||theta - mean_i(phi_i)||^2`` with ``phi``
detached: its gradient is ``theta - mean_i(phi_i)``, so
``torch.optim.SGD(model.parameters(), lr=epsilon)`` performs exactly the
Reptile update (another optimiser, e.g. Adam, gives a Reptile variant that
treats ``theta - mean(phi)`` as a gradient, as Nichol et al. also discuss).

The inner loop here is plain SGD on the support set (the paper uses Adam on
mini-batches); ``inner_lr`` and ``steps`` are its step size and count.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from metalearn.checks import check_positive_int
from metalearn.episodes import Episode, episode_sampler
from metalearn.maml import (
    LossFn,
    Params,
    Step,
    TaskBatch,
    adapt,
    callable_name,
    check_inner_loop,
    check_task_batch,
    images_identity,
    maml_classifier,
    model_device,
    query_metrics,
)
from metalearn.models import op_by_op_batch_norm


def reptile_task_weights(
    model: nn.Module,
    params: Params,
    buffers: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    *,
    inner_lr: float,
    steps: int,
    loss_fn: LossFn = F.cross_entropy,
    vectorise: bool = True,
) -> Params:
    """``phi_i``: the weights after ``steps`` SGD steps on each task, from theta.

    Every task starts from the same ``params`` (detached: Reptile needs no
    gradient through the inner loop) and runs :func:`metalearn.maml.adapt`
    with ``first_order=True`` on its own support set.

    Args:
        model: the network.
        params: theta (name -> tensor); not modified.
        buffers: model buffers.
        support_x: the tasks' training inputs.
        support_y: their targets.
        inner_lr: the inner SGD step size (> 0).
        steps: k, the inner SGD steps (>= 1).
        loss_fn: the task loss.
        vectorise: :func:`torch.func.vmap` over tasks, or a Python loop.

    Returns:
        ``phi``: name -> tensor with a leading task dimension, detached.

    Shapes:
        ``support_x [T, N*K, ...]``, ``support_y [T, N*K, ...]``;
        ``phi[name]`` is ``[T, *params[name].shape]``.
    """
    check_inner_loop(inner_lr, steps)
    if support_x.shape[0] != support_y.shape[0]:
        raise ValueError(
            f"support_x {tuple(support_x.shape)} and support_y "
            f"{tuple(support_y.shape)} disagree on the number of tasks."
        )
    theta = {name: p.detach() for name, p in params.items()}

    def one_task(x: torch.Tensor, y: torch.Tensor) -> Params:
        return adapt(
            model,
            theta,
            buffers,
            x,
            y,
            inner_lr=inner_lr,
            steps=steps,
            first_order=True,
            loss_fn=loss_fn,
        )

    if vectorise:
        with op_by_op_batch_norm():
            phi = vmap(one_task)(support_x, support_y)
    else:
        per_task = [one_task(x, y) for x, y in zip(support_x, support_y, strict=True)]
        phi = {name: torch.stack([w[name] for w in per_task]) for name in theta}
    return {name: w.detach() for name, w in phi.items()}


def reptile_loss(
    model: nn.Module,
    params: Params,
    buffers: Params,
    batch: TaskBatch,
    *,
    inner_lr: float,
    steps: int,
    loss_fn: LossFn = F.cross_entropy,
    vectorise: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The Reptile surrogate loss on a meta-batch, whose gradient is the update.

    Computes ``phi_i`` with :func:`reptile_task_weights` on each task's
    support set and returns ``0.5 * sum_p ||theta_p - mean_i(phi_i,p)||^2``
    (``phi`` detached), whose gradient with respect to ``theta`` is
    ``theta - mean_i(phi_i)``: one SGD step with learning rate ``epsilon``
    is the Reptile meta-update (eq. {eq}`reptile-update`).

    Args:
        model, params, buffers: as in :func:`metalearn.maml.meta_loss`.
        batch: the tasks; the inner loop trains on ``support_*`` and the
            metrics score ``phi_i`` on ``query_*``.
        inner_lr: inner SGD step size. steps: k. loss_fn: the task loss.
        vectorise: ``vmap`` over tasks, or a loop.

    Returns:
        ``(surrogate, metrics)`` with metrics ``update_norm`` (``||theta -
        mean(phi)||``), ``query_loss`` and, for classification, ``query_acc``
        of the adapted weights (no gradient).
    """
    check_task_batch(batch)
    phi = reptile_task_weights(
        model,
        params,
        buffers,
        batch.support_x,
        batch.support_y,
        inner_lr=inner_lr,
        steps=steps,
        loss_fn=loss_fn,
        vectorise=vectorise,
    )
    target = {name: w.mean(dim=0) for name, w in phi.items()}  # mean_i phi_i
    surrogate = sum(0.5 * (params[name] - target[name]).pow(2).sum() for name in params)
    with torch.no_grad():

        def query_outputs(weights: Params, x: torch.Tensor) -> torch.Tensor:
            return functional_call(model, (weights, buffers), (x,))

        if vectorise:
            with op_by_op_batch_norm():
                outputs = vmap(query_outputs)(phi, batch.query_x)  # [T, N*Q, N]
        else:
            outputs = torch.stack(
                [
                    query_outputs({n: w[i] for n, w in phi.items()}, batch.query_x[i])
                    for i in range(batch.query_x.shape[0])
                ]
            )
        losses = torch.stack(
            [loss_fn(out, y) for out, y in zip(outputs, batch.query_y, strict=True)]
        )
    metrics = {
        "update_norm": float((2 * surrogate.detach()).sqrt()),
        "query_loss": float(losses.mean()),
    }
    metrics.update(query_metrics(outputs, batch.query_y))
    return surrogate, metrics


def reptile_step_from_sampler(
    model: nn.Module,
    sample: Callable[[torch.Generator], TaskBatch],
    *,
    inner_lr: float,
    steps: int,
    loss_fn: LossFn = F.cross_entropy,
    vectorise: bool = True,
    device: torch.device | str | None = None,
) -> Step:
    """A training-loop ``step`` for Reptile on any task sampler.

    Pair it with ``torch.optim.SGD(model.parameters(), lr=epsilon)`` for the
    update of Nichol et al. (2018).

    Returns:
        ``step(generator) -> (surrogate, metrics)`` (see :func:`reptile_loss`).
    """
    check_inner_loop(inner_lr, steps)
    target = torch.device(device) if device is not None else model_device(model)

    def step(generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        batch = sample(generator).to(target)
        return reptile_loss(
            model,
            dict(model.named_parameters()),
            dict(model.named_buffers()),
            batch,
            inner_lr=inner_lr,
            steps=steps,
            loss_fn=loss_fn,
            vectorise=vectorise,
        )

    step.identity = {  # what shapes the update (see metalearn.maml's steps)
        "method": "reptile",
        "inner_lr": float(inner_lr),
        "steps": steps,
        "loss_fn": callable_name(loss_fn),
        "tasks": getattr(sample, "identity", None),
    }
    return step


def make_reptile_step(
    model: nn.Module,
    images: torch.Tensor,
    *,
    ways: int,
    shots: int,
    queries: int,
    meta_batch_size: int,
    inner_lr: float,
    steps: int,
    device: torch.device | str | None = None,
    vectorise: bool = True,
) -> Step:
    """A training-loop ``step`` for N-way K-shot Reptile on an image tensor.

    Each call samples ``meta_batch_size`` episodes; the inner loop trains on
    the ``shots`` support examples per class, the ``queries`` only feed the
    metrics.

    Args:
        model: e.g. :class:`~metalearn.models.Conv4`.
        images: ``[classes, examples, C, H, W]``.
        ways: N. shots: K (inner-loop examples per class). queries: per class.
        meta_batch_size: tasks per meta-update.
        inner_lr: inner SGD step size. steps: k, inner SGD steps.
        device: where to compute; ``None``: the model's device.
        vectorise: ``vmap`` over tasks, or a loop.

    Returns:
        ``step(generator) -> (surrogate, metrics)``.
    """
    sample = episode_sampler(
        images, tasks=meta_batch_size, ways=ways, shots=shots, queries=queries
    )
    check_positive_int("meta_batch_size", meta_batch_size)
    sample.identity = images_identity(
        images, tasks=meta_batch_size, ways=ways, shots=shots, queries=queries
    )
    return reptile_step_from_sampler(
        model,
        sample,
        inner_lr=inner_lr,
        steps=steps,
        vectorise=vectorise,
        device=device,
    )


def reptile_classifier(
    model: nn.Module,
    *,
    inner_lr: float,
    steps: int,
    loss_fn: LossFn = F.cross_entropy,
) -> Callable[[Episode], torch.Tensor]:
    """Meta-test-time Reptile: ``steps`` SGD steps on the support set, then predict.

    The same procedure as MAML's evaluation (:func:`metalearn.maml.maml_classifier`);
    use it with :func:`metalearn.evaluate.evaluate`.

    Returns:
        ``classify(episode) -> logits [N*Q, N]``.
    """
    return maml_classifier(model, inner_lr=inner_lr, steps=steps, loss_fn=loss_fn)
