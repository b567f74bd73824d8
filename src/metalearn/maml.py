"""Model-Agnostic Meta-Learning (MAML) and first-order MAML, with torch.func.

MAML (Finn, Abbeel and Levine, 2017) learns an initialisation ``theta`` from
which a few gradient steps on a task's support set give weights that do well
on the task's query set. For one inner step (eq. {eq}`maml-inner`),

.. math:: \\theta'_i = \\theta - \\alpha \\nabla_\\theta
          \\mathcal{L}^{\\text{support}}_{T_i}(\\theta),

and the meta-objective over a meta-batch of tasks (eq. {eq}`maml-outer`) is

.. math:: \\min_\\theta \\frac{1}{T} \\sum_i
          \\mathcal{L}^{\\text{query}}_{T_i}(\\theta'_i).

Its gradient carries the Jacobian ``I - alpha * H`` of the inner step (the
second-order term); first-order MAML (``first_order=True``) drops it.

Everything here is a pure function of a parameter dictionary: the inner loop
never writes into the module (no ``.data``, no ``load_state_dict``), so the
adapted weights stay in the autograd graph of the meta-parameters and
``loss.backward()`` yields the meta-gradient on ``model.parameters()``, also
through :func:`torch.func.vmap` over tasks. ``alpha`` is ``inner_lr``; the meta
learning rate ``beta`` belongs to the optimiser of the training loop.

Meta-SGD (Li, Zhou, Chen and Li, 2017) learns ``alpha`` too, one rate per
scalar of ``theta``:

.. math:: \\theta'_i = \\theta - \\alpha \\circ \\nabla_\\theta
          \\mathcal{L}^{\\text{support}}_{T_i}(\\theta),

with ``\\circ`` the elementwise product, and minimises the same meta-objective
over ``(theta, alpha)``. Every function of this module that takes ``inner_lr``
also accepts such rates: a mapping parameter name -> tensor (see
:func:`check_inner_lr_tensors`). The meta-loss is then a function of the rate
tensors as well, and ``loss.backward()`` fills their ``.grad`` too;
:mod:`metalearn.metasgd` holds the module that owns them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from metalearn.checkpoint import describe_tensor
from metalearn.checks import check_positive_int
from metalearn.episodes import Episode, episode_sampler
from metalearn.models import op_by_op_batch_norm

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Params = dict[str, torch.Tensor]
# alpha: one positive float (MAML), or one tensor per parameter (Meta-SGD).
InnerLR = float | Mapping[str, torch.Tensor]
Step = Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]]
MAX_INNER_LR = 1e3  # a float inner_lr above this is refused (a typo, not a choice)


class TaskBatch(Protocol):
    """Anything with a meta-batch of tasks stacked along dim 0.

    :class:`~metalearn.episodes.EpisodeBatch` and
    :class:`~metalearn.sinusoid.SinusoidTasks` both qualify.

    Shapes: ``support_x [T, N*K, ...]``, ``support_y [T, N*K, ...]``,
    ``query_x [T, N*Q, ...]``, ``query_y [T, N*Q, ...]``.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


def check_inner_lr_tensors(
    inner_lr: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]
) -> None:
    """Raise unless ``inner_lr`` holds Meta-SGD rates that fit ``params``.

    Meta-SGD's ``alpha`` (Li et al. 2017, Section 3) is one tensor per
    parameter, multiplied elementwise with that parameter's gradient. So
    ``inner_lr`` must have exactly the keys of ``params``, and each rate must
    be a floating-point tensor with its parameter's dtype and device, whose
    shape broadcasts to the parameter's shape (the same shape, or a scalar
    tensor for one rate per parameter tensor). The values are not checked:
    learned rates may turn negative during meta-training, and reading the
    values would synchronise the device.

    Raises:
        ValueError: missing or unexpected keys; a shape that does not
            broadcast to the parameter's; a rate on another device.
        TypeError: ``inner_lr`` is not a mapping; a rate that is not a tensor,
            not floating-point, or of another dtype than its parameter.
    """
    if not isinstance(inner_lr, Mapping):
        raise TypeError(f"inner_lr must be a mapping name -> tensor, got {inner_lr!r}.")
    missing = [name for name in params if name not in inner_lr]
    unexpected = [name for name in inner_lr if name not in params]
    if missing or unexpected:
        raise ValueError(
            "inner_lr (per-parameter rates) must have exactly the keys of params; "
            f"missing {missing}, unexpected {unexpected}."
        )
    for name, rate in inner_lr.items():
        param = params[name]
        if not isinstance(rate, torch.Tensor):
            raise TypeError(f"inner_lr[{name!r}] must be a tensor, got {rate!r}.")
        if not rate.is_floating_point():
            raise TypeError(
                f"inner_lr[{name!r}] must be a floating-point tensor, got dtype "
                f"{rate.dtype}; e.g. torch.full_like(param, 0.4)."
            )
        if rate.dtype != param.dtype:
            raise TypeError(
                f"inner_lr[{name!r}] has dtype {rate.dtype} but its parameter has "
                f"{param.dtype}; convert the rates with .to(param.dtype)."
            )
        if rate.device != param.device:
            raise ValueError(
                f"inner_lr[{name!r}] is on {rate.device} but its parameter is on "
                f"{param.device}."
            )
        try:
            shape = torch.broadcast_shapes(rate.shape, param.shape)
        except RuntimeError:
            shape = None
        if shape != param.shape:
            raise ValueError(
                f"inner_lr[{name!r}] has shape {tuple(rate.shape)}, which does not "
                f"broadcast to its parameter's shape {tuple(param.shape)}."
            )


def check_inner_loop(
    inner_lr: InnerLR, steps: int, params: Mapping[str, torch.Tensor] | None = None
) -> None:
    """Raise ``ValueError``/``TypeError`` unless ``inner_lr > 0`` and ``steps >= 1``.

    With ``params``, ``inner_lr`` may also be Meta-SGD's per-parameter rates,
    a mapping checked by :func:`check_inner_lr_tensors` against ``params``
    (those rates need not be positive). Without ``params`` only a float is
    accepted, as before.
    """
    if params is not None and isinstance(inner_lr, Mapping):
        check_inner_lr_tensors(inner_lr, params)
    elif isinstance(inner_lr, bool) or not isinstance(inner_lr, (int, float)):
        alternative = "" if params is None else ", or a mapping name -> tensor"
        raise TypeError(f"inner_lr must be a float{alternative}, got {inner_lr!r}.")
    elif not 0 < inner_lr < math.inf:  # also rejects NaN
        raise ValueError(f"inner_lr (alpha) must be finite and > 0, got {inner_lr}.")
    elif inner_lr > MAX_INNER_LR:
        raise ValueError(
            f"inner_lr (alpha) = {inner_lr:g} is far beyond any useful step size "
            f"(at most {MAX_INNER_LR:g}; MAML uses 0.4 on Omniglot, 0.01 on "
            "sinusoids): the inner step would send the weights to infinity."
        )
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {steps!r}.")
    if steps < 1:
        raise ValueError(f"steps (inner gradient steps) must be >= 1, got {steps}.")


def check_support(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    loss_fn: LossFn,
) -> None:
    """Refuse what would make an inner loop silently wrong (metadata only).

    * ``params`` must name exactly the model's parameters (an extra or missing
      key would be ignored or fall back to the module's own weights);
    * the support set must not be empty (no step would be taken);
    * the default cross-entropy needs integer class labels: float targets
      (regression) need ``loss_fn=F.mse_loss``, else the loss is nonsense.
    Under ``torch.func.vmap`` the shapes seen are those of one task.
    """
    names = {name for name, _ in model.named_parameters()}
    if names and set(params) != names:
        missing, extra = sorted(names - set(params)), sorted(set(params) - names)
        raise ValueError(
            "params must have exactly the model's parameter names (pass "
            f"dict(model.named_parameters())); missing {missing}, unexpected {extra}."
        )
    if not isinstance(support_x, torch.Tensor) or not isinstance(
        support_y, torch.Tensor
    ):
        raise TypeError("support_x and support_y must be tensors.")
    if support_x.dim() == 0 or support_x.shape[0] == 0:
        raise ValueError(
            "The support set is empty: a task needs at least one support example "
            "to adapt on."
        )
    if support_x.shape[0] != support_y.shape[0]:
        raise ValueError(
            f"support_x has {support_x.shape[0]} examples but support_y "
            f"{support_y.shape[0]} targets."
        )
    if loss_fn is F.cross_entropy and support_y.is_floating_point():
        raise TypeError(
            f"support_y is {support_y.dtype} but loss_fn is the default "
            "cross-entropy, which needs int64 class labels: for regression pass "
            "loss_fn=F.mse_loss."
        )


def adapt(
    model: nn.Module,
    params: Params,
    buffers: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    *,
    inner_lr: InnerLR,
    steps: int,
    first_order: bool,
    loss_fn: LossFn = F.cross_entropy,
) -> Params:
    """The inner loop: ``steps`` SGD steps on the support loss, from ``params``.

    Implements eq. {eq}`maml-inner`, repeated ``steps`` times::

        theta_{j+1} = theta_j - inner_lr * grad L_support(theta_j)

    or, with per-parameter rates (a mapping), Meta-SGD's update (Li et al.
    2017, Section 3), elementwise for every parameter ``name``::

        theta_{j+1}[name] = theta_j[name]
                            - inner_lr[name] * grad L_support(theta_j)[name]

    Each gradient is taken with :func:`torch.func.grad`, so the returned
    weights are differentiable functions of ``params`` (and of the rate
    tensors): backpropagating a query loss through them includes the
    second-order term (the products of ``I - inner_lr * H_j``). With
    ``first_order=True`` the inner gradients are detached, so ``d theta_k / d
    theta = I`` (first-order MAML, Finn et al. 2017, Section 5.2); the rates
    still get a gradient, since ``theta_k`` is linear in them (``d theta_k /
    d inner_lr[name] = -sum_j g_j[name]``, elementwise, with the detached
    gradients ``g_j``), as in learn2learn's ``MetaSGD(first_order=True)``.
    Nothing is written into ``model``; works inside :func:`torch.func.vmap`
    (rates shared by all tasks), and under ``torch.no_grad``.

    Args:
        model: the network, called as ``functional_call(model, (params,
            buffers), support_x)``.
        params: meta-parameters ``theta``, e.g. ``dict(model.named_parameters())``.
        buffers: e.g. ``dict(model.named_buffers())`` (empty for :class:`Conv4`).
        support_x: the support inputs of one task.
        support_y: their targets.
        inner_lr: alpha: the inner step size (a float > 0), or Meta-SGD's
            rates, a mapping with the keys of ``params`` to floating tensors
            of their parameters' shapes (or broadcastable to them, e.g.
            scalar tensors), dtypes and devices; any sign (see
            :func:`check_inner_lr_tensors`).
        steps: the number of inner gradient steps (>= 1).
        first_order: drop the second-order term (FOMAML).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; cross-entropy by
            default, ``F.mse_loss`` for regression.

    Returns:
        The adapted parameters ``theta'``, a new dict with the keys of ``params``.

    Shapes:
        ``support_x [N*K, C, H, W]`` (or ``[K, 1]`` for sinusoids),
        ``support_y [N*K]``; every adapted tensor has its parameter's shape.

    References:
        Finn, Abbeel and Levine (2017), *Model-Agnostic Meta-Learning for Fast
        Adaptation of Deep Networks*, ICML, Algorithm 1 line 7 (eq. 1).
        Li, Zhou, Chen and Li (2017), *Meta-SGD: Learning to Learn Quickly for
        Few-Shot Learning*, arXiv:1707.09835, Section 3 (the Meta-SGD
        learner ``theta' = theta - alpha o grad L(theta)``).
    """
    check_inner_loop(inner_lr, steps, params)
    if not params:
        raise ValueError("params is empty: pass dict(model.named_parameters()).")
    check_support(model, params, support_x, support_y, loss_fn)

    def support_loss(weights: Params) -> torch.Tensor:
        outputs = functional_call(model, (weights, buffers), (support_x,))
        return loss_fn(outputs, support_y)

    for _ in range(steps):
        grads = grad(support_loss)(params)
        if first_order:
            grads = {name: g.detach() for name, g in grads.items()}
        params = _gradient_step(params, grads, inner_lr)
    return params


def _gradient_step(params: Params, grads: Params, inner_lr: InnerLR) -> Params:
    # One inner step theta - alpha * grad (Meta-SGD: alpha o grad, elementwise).
    if isinstance(inner_lr, Mapping):
        return {n: p - inner_lr[n] * grads[n] for n, p in params.items()}
    return {n: p - inner_lr * grads[n] for n, p in params.items()}


def _task_query_loss(
    model: nn.Module,
    params: Params,
    buffers: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    *,
    inner_lr: InnerLR,
    steps: int,
    first_order: bool,
    loss_fn: LossFn,
) -> tuple[torch.Tensor, torch.Tensor]:
    # One task: adapt on the support set, then the query loss at theta'.
    adapted = adapt(
        model,
        params,
        buffers,
        support_x,
        support_y,
        inner_lr=inner_lr,
        steps=steps,
        first_order=first_order,
        loss_fn=loss_fn,
    )
    outputs = functional_call(model, (adapted, buffers), (query_x,))  # [N*Q, N]
    return loss_fn(outputs, query_y), outputs


def check_task_batch(batch: TaskBatch) -> int:
    """The number of tasks T in ``batch``; raises if its tensors disagree on T."""
    names = ("support_x", "support_y", "query_x", "query_y")
    for name in names:
        value = getattr(batch, name, None)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"batch.{name} must be a torch.Tensor, got {value!r}.")
    sizes = {name: getattr(batch, name).shape[0] for name in names}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"batch tensors disagree on the number of tasks: {sizes}.")
    tasks = sizes["support_x"]
    if tasks < 1:
        raise ValueError("batch holds no tasks.")
    return tasks


def query_metrics(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``query_acc`` for classification outputs ``[T, M, N]`` and targets ``[T, M]``.

    Returns an empty dict for regression (float targets).
    """
    if targets.dtype.is_floating_point or outputs.dim() != targets.dim() + 1:
        return {}
    hits = outputs.detach().argmax(dim=-1) == targets  # [T, M]
    return {"query_acc": float(hits.float().mean())}


def meta_loss(
    model: nn.Module,
    params: Params,
    buffers: Params,
    batch: TaskBatch,
    *,
    inner_lr: InnerLR,
    steps: int,
    first_order: bool,
    loss_fn: LossFn = F.cross_entropy,
    vectorise: bool = True,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The MAML meta-objective on a meta-batch: mean query loss after adaptation.

    Implements eq. {eq}`maml-outer`: for every task ``i``, adapt with
    :func:`adapt` on its support set, evaluate the loss of the adapted weights
    on its query set, and average over tasks. The returned loss is a function
    of ``params`` with the full autograd graph, so ``loss.backward()`` puts the
    MAML meta-gradient (second-order unless ``first_order``) into ``.grad`` of
    the tensors in ``params`` -- the model's own parameters if ``params =
    dict(model.named_parameters())`` -- and, with Meta-SGD's per-parameter
    rates, into ``.grad`` of the rate tensors as well.

    With ``vectorise=True`` all tasks run in one pass of
    :func:`torch.func.vmap` (the parameters are shared, the data batched); with
    ``vectorise=False`` a Python loop over tasks does the same work, one task
    at a time (a fallback for models that ``vmap`` cannot handle). Both give
    the same loss and meta-gradient up to floating-point rounding. Which is
    faster depends on the sizes: on one CPU thread (Conv-4, 5-way 1-shot, 32
    tasks) ``vmap`` won with 1 query per class (1.6 s vs 1.8 s) but lost with
    15 (16.7 s vs 7.5 s), because the query pass runs on per-task weights,
    which ``vmap`` turns into grouped convolutions over strided tensors.

    Args:
        model: the network, used only through ``functional_call``.
        params: meta-parameters theta (name -> tensor).
        buffers: model buffers (name -> tensor).
        batch: the tasks, e.g. an :class:`~metalearn.episodes.EpisodeBatch`.
        inner_lr: alpha (> 0), or Meta-SGD's per-parameter rates (see
            :func:`adapt`); rates are shared by all tasks, and the loss is
            differentiable with respect to them.
        steps: inner gradient steps (>= 1).
        first_order: drop the second-order term (first-order MAML).
        loss_fn: per-task loss ``loss_fn(outputs, targets)``.
        vectorise: ``vmap`` over tasks (``True``) or loop (``False``).
        chunk_size: with ``vectorise``, this many tasks at a time (``None``:
            all at once); trades memory for speed.

    Returns:
        ``(loss, metrics)``: the scalar meta-loss and ``{"query_loss": ...,
        "query_acc": ...}`` as floats (``query_acc`` only for classification).

    Shapes:
        ``batch.support_x [T, N*K, C, H, W]``, ``batch.support_y [T, N*K]``,
        ``batch.query_x [T, N*Q, C, H, W]``, ``batch.query_y [T, N*Q]``.
    """
    check_inner_loop(inner_lr, steps, params)
    tasks = check_task_batch(batch)
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)

    def one_task(p, support_x, support_y, query_x, query_y):
        return _task_query_loss(
            model,
            p,
            buffers,
            support_x,
            support_y,
            query_x,
            query_y,
            inner_lr=inner_lr,
            steps=steps,
            first_order=first_order,
            loss_fn=loss_fn,
        )

    data = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    if vectorise:
        batched = vmap(one_task, in_dims=(None, 0, 0, 0, 0), chunk_size=chunk_size)
        with op_by_op_batch_norm():
            losses, outputs = batched(params, *data)  # [T], [T, N*Q, N]
    else:
        results = [one_task(params, *(d[i] for d in data)) for i in range(tasks)]
        losses = torch.stack([loss for loss, _ in results])  # [T]
        outputs = torch.stack([out.detach() for _, out in results])  # [T, N*Q, N]
    loss = losses.mean()
    metrics = {"query_loss": float(loss.detach())}
    metrics.update(query_metrics(outputs, batch.query_y))
    return loss, metrics


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (``ValueError`` if it has none)."""
    for tensor in model.parameters():
        return tensor.device
    raise ValueError("model has no parameters to meta-learn.")


def callable_name(fn: Callable) -> str:
    """A stable name for ``fn`` in a step identity, e.g. ``"cross_entropy"``."""
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def rate_identity(inner_lr: InnerLR) -> float | str:
    """``inner_lr`` as a step's identity records it: a float, or a Meta-SGD marker."""
    if isinstance(inner_lr, Mapping):
        return "per-parameter rates (Meta-SGD)"
    return float(inner_lr)


def images_identity(
    images: torch.Tensor, *, tasks: int, ways: int, shots: int, queries: int
) -> dict[str, object]:
    """The sizes of an episode sampler over ``images``, as recorded in an identity."""
    return {
        "images": describe_tensor(images),  # shape, dtype and SHA-256
        "tasks": tasks,
        "ways": ways,
        "shots": shots,
        "queries": queries,
    }


def maml_step_from_sampler(
    model: nn.Module,
    sample: Callable[[torch.Generator], TaskBatch],
    *,
    inner_lr: InnerLR,
    steps: int,
    first_order: bool,
    loss_fn: LossFn = F.cross_entropy,
    vectorise: bool = True,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
) -> Step:
    """A training-loop ``step`` for MAML on any task sampler.

    Args:
        model: the meta-learned network; its parameters are theta.
        sample: ``sample(generator)`` returns a meta-batch (:class:`TaskBatch`
            with a ``.to(device)`` method), e.g. ``lambda g:
            sample_sinusoid_tasks(25, 10, 10, g)``.
        inner_lr, steps, first_order, loss_fn, vectorise, chunk_size: as in
            :func:`meta_loss`.
        device: where to put each batch; ``None``: the model's device.

    Returns:
        ``step(generator) -> (loss, metrics)``; ``loss.backward()`` gives the
        meta-gradient on ``model.parameters()`` (and on the rate tensors, if
        ``inner_lr`` maps names to them: the step keeps those tensors, so an
        optimiser that updates them in place is seen by every later step).
    """
    check_inner_loop(inner_lr, steps, dict(model.named_parameters()))
    target = torch.device(device) if device is not None else model_device(model)

    def step(generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        batch = sample(generator).to(target)
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        return meta_loss(
            model,
            params,
            buffers,
            batch,
            inner_lr=inner_lr,
            steps=steps,
            first_order=first_order,
            loss_fn=loss_fn,
            vectorise=vectorise,
            chunk_size=chunk_size,
        )

    # What shapes the computation, for the checkpoint (metalearn.training): a
    # resumed run with another inner_lr, steps, ... is refused. vmap or loop
    # and chunk_size change only the rounding, so they are not part of it.
    step.identity = {
        "method": "fomaml" if first_order else "maml",
        "inner_lr": rate_identity(inner_lr),
        "steps": steps,
        "first_order": first_order,
        "loss_fn": callable_name(loss_fn),
        "tasks": getattr(sample, "identity", None),
    }
    return step


def make_maml_step(
    model: nn.Module,
    images: torch.Tensor,
    *,
    ways: int,
    shots: int,
    queries: int,
    meta_batch_size: int,
    inner_lr: InnerLR,
    steps: int,
    first_order: bool,
    device: torch.device | str | None = None,
    vectorise: bool = True,
    chunk_size: int | None = None,
) -> Step:
    """A training-loop ``step`` for N-way K-shot MAML on an image tensor.

    Each call samples ``meta_batch_size`` episodes with the given generator
    and returns :func:`meta_loss` on them. Use with
    ``metalearn.training.train`` and e.g. ``torch.optim.Adam(model.parameters(),
    lr=meta_lr)`` (beta in Algorithm 1 of Finn et al. 2017).

    Args:
        model: e.g. :class:`~metalearn.models.Conv4` with ``ways`` outputs.
        images: ``[classes, examples, C, H, W]`` (e.g. Omniglot's train split).
        ways: N. shots: K. queries: query examples per class.
        meta_batch_size: T, tasks per meta-update (32 in the paper, 5-way).
        inner_lr: alpha (0.4 in the paper for Omniglot), or Meta-SGD's
            per-parameter rates (see :func:`adapt`).
        steps: inner gradient steps in training (1 in the paper, 5-way).
        first_order: first-order MAML.
        device: where to compute; ``None``: the model's device.
        vectorise: ``vmap`` over tasks, or a loop.
        chunk_size: with ``vectorise``, tasks per chunk.

    Returns:
        ``step(generator) -> (loss, {"query_loss", "query_acc"})``.
    """
    sample = episode_sampler(
        images, tasks=meta_batch_size, ways=ways, shots=shots, queries=queries
    )
    check_positive_int("meta_batch_size", meta_batch_size)
    sample.identity = images_identity(
        images, tasks=meta_batch_size, ways=ways, shots=shots, queries=queries
    )
    return maml_step_from_sampler(
        model,
        sample,
        inner_lr=inner_lr,
        steps=steps,
        first_order=first_order,
        vectorise=vectorise,
        chunk_size=chunk_size,
        device=device,
    )


def maml_classifier(
    model: nn.Module,
    *,
    inner_lr: InnerLR,
    steps: int,
    loss_fn: LossFn = F.cross_entropy,
) -> Callable[[Episode], torch.Tensor]:
    """Meta-test-time MAML: adapt on an episode's support set, score its queries.

    For :func:`metalearn.evaluate.evaluate`, which runs under ``torch.no_grad``;
    the inner gradients are still computed (:func:`torch.func.grad` ignores an
    outer ``no_grad``, and grad mode is enabled explicitly besides). The
    meta-parameters (and Meta-SGD's rates) are detached, so evaluation never
    touches their graph.

    Args:
        model: the meta-trained network.
        inner_lr: alpha at test time, or Meta-SGD's meta-learned per-parameter
            rates (see :func:`adapt`), read afresh at every call.
        steps: inner steps at test time (3 in the paper for Omniglot 5-way).
        loss_fn: the support loss.

    Returns:
        ``classify(episode) -> logits [N*Q, N]``.
    """
    check_inner_loop(inner_lr, steps, dict(model.named_parameters()))

    def classify(episode: Episode) -> torch.Tensor:
        params = {name: p.detach() for name, p in model.named_parameters()}
        buffers = {name: b.detach() for name, b in model.named_buffers()}
        rates = inner_lr
        if isinstance(inner_lr, Mapping):
            rates = {name: rate.detach() for name, rate in inner_lr.items()}
        with torch.enable_grad():
            adapted = adapt(
                model,
                params,
                buffers,
                episode.support_x,
                episode.support_y,
                inner_lr=rates,
                steps=steps,
                first_order=True,
                loss_fn=loss_fn,
            )
        with torch.no_grad():
            return functional_call(model, (adapted, buffers), (episode.query_x,))

    return classify
