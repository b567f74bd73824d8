"""Examples of what NOT to do: mistaken meta-learning code, rebuilt on purpose.

**Every function in this module is wrong on purpose.** Each one rebuilds, in a
few lines of our own, a mistaken pattern of the source documents the course
grew from, so that the appendix *Common mistakes in meta-learning code*
(``chapters/common_mistakes.ipynb``) can measure what the pattern computes
and ``tests/test_mistakes.py`` can assert how far it is from the right
function of the library. Every name starts with ``wrong_``, and every
docstring says what is wrong and which function to use instead. Never train
or evaluate a model with them.

The wrong functions and what to use instead:

- :func:`wrong_per_sample_meta_loss`: use :func:`metalearn.maml.meta_loss`;
- :func:`wrong_reclone_adapt`: use :func:`metalearn.maml.adapt`;
- :func:`wrong_query_is_support`: use the batch as sampled, whose query set
  is held out, in :func:`metalearn.maml.meta_loss` and in evaluations;
- :func:`wrong_meta_loss_unadapted`: use :func:`metalearn.maml.meta_loss`;
- :func:`wrong_prototypes_by_reshape`: use :func:`metalearn.protonet.prototypes`;
- :func:`wrong_protonet_logits_by_reshape`: use
  :func:`metalearn.protonet.protonet_logits`;
- :func:`wrong_protonet_loss_by_reshape` and
  :func:`wrong_protonet_loss_on_predictions`: use
  :func:`metalearn.protonet.protonet_loss`.

Two more mistakes of the same documents, the adaptation thrown away before the
query loss and the inner step written into the meta-parameters in place, are
measured in the MAML chapter (section "What the seed documents get wrong");
:func:`wrong_meta_loss_unadapted` rebuilds the first only so that the appendix
can draw which data each loss depends on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from metalearn.checks import check_positive_int
from metalearn.episodes import Episode
from metalearn.maml import TaskBatch, adapt, check_inner_loop, check_task_batch
from metalearn.protonet import (
    check_labels,
    prototypes,
    squared_distances,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Params = dict[str, torch.Tensor]
Batch = TypeVar("Batch")


def _check_pair(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{what}: inputs and targets must be tensors.")
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(
            f"{what}: {x.shape[0]} inputs and {y.shape[0]} targets; they must "
            "agree and be at least one."
        )


# --- MAML ------------------------------------------------------------------------


def wrong_per_sample_meta_loss(
    model: nn.Module,
    params: Params,
    buffers: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    inner_lr: float,
    loss_fn: LossFn = F.cross_entropy,
) -> torch.Tensor:
    """WRONG ON PURPOSE: one inner step per *example*, then the loss on the last one.

    The pattern: a task's examples are walked one by one, each taken as an
    inner gradient step, and the "meta-loss" is the loss on the last example
    after the last step::

        theta_0 = theta
        theta_j = theta_{j-1} - inner_lr * grad loss(x_j, y_j; theta_{j-1})
        return loss(x_M, y_M; theta_M)

    There is no support/query split (the example the loss is taken on is the
    one the last step has just been fitted to, so the number measures
    memorisation, not generalisation), no meta-batch, and the result depends
    on the order of the examples. The inner gradients are kept in the graph
    (second order), so the only difference from MAML is the pattern.

    Use instead :func:`metalearn.maml.meta_loss`: every task adapted on its
    whole support set (eq. {eq}`maml-inner`), the loss taken on its held-out
    query set and averaged over a meta-batch (eq. {eq}`maml-outer`).

    Shapes: ``x [M, ...]``, ``y [M, ...]`` (the task's examples, in order).
    """
    _check_pair(x, y, "wrong_per_sample_meta_loss")
    check_inner_loop(inner_lr, 1)
    weights = dict(params)
    for j in range(x.shape[0]):  # one "inner step" per example
        outputs = functional_call(model, (weights, buffers), (x[j : j + 1],))
        loss = loss_fn(outputs, y[j : j + 1])
        grads = torch.autograd.grad(loss, list(weights.values()), create_graph=True)
        weights = {
            name: w - inner_lr * g
            for (name, w), g in zip(weights.items(), grads, strict=True)
        }
    outputs = functional_call(model, (weights, buffers), (x[-1:],))
    return loss_fn(outputs, y[-1:])  # the last example, just trained on


def wrong_reclone_adapt(
    model: nn.Module,
    params: Params,
    buffers: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    *,
    inner_lr: float,
    steps: int,
    first_order: bool,
    loss_fn: LossFn = F.cross_entropy,
) -> Params:
    """WRONG ON PURPOSE: ``steps`` adaptations, each restarted from ``theta``.

    The pattern: the copy of the meta-parameters is made *inside* the loop of
    inner steps (in learn2learn terms, ``learner = maml.clone()`` inside
    ``for _ in range(steps)``), so every step starts again from ``theta`` and
    only the last one is kept. The code reads as ``steps`` inner steps and is
    reported as such, but the result is exactly one step,
    ``theta - inner_lr * grad L_support(theta)``, whatever ``steps`` is.

    Use instead :func:`metalearn.maml.adapt`, where step ``j + 1`` starts from
    the weights of step ``j`` (copy once, before the loop).

    Returns:
        The "adapted" parameters: those of one inner step from ``params``.
    """
    _check_pair(support_x, support_y, "wrong_reclone_adapt")
    check_inner_loop(inner_lr, steps)

    def support_loss(weights: Params) -> torch.Tensor:
        outputs = functional_call(model, (weights, buffers), (support_x,))
        return loss_fn(outputs, support_y)

    adapted = dict(params)
    for _ in range(steps):
        weights = dict(params)  # the copy is re-made at every step: the bug
        grads = grad(support_loss)(weights)
        if first_order:
            grads = {name: g.detach() for name, g in grads.items()}
        adapted = {name: w - inner_lr * grads[name] for name, w in weights.items()}
    return adapted


def wrong_query_is_support(batch: Batch) -> Batch:
    """WRONG ON PURPOSE: the same tasks, with the support set as their query set.

    The pattern: the outer (meta) loss, or the accuracy reported at test time,
    is computed on the very examples the inner loop adapted to. Passed to
    :func:`metalearn.maml.meta_loss`, this gives the meta-objective
    ``mean_i L_support_i(theta'_i)``, the training loss after adaptation;
    passed to an evaluation, it reports how well the adapted model fits its
    own training examples. Neither says anything about new examples.

    Use instead the batch or episode as sampled, whose query examples are
    disjoint from its support examples.

    Args:
        batch: an :class:`~metalearn.episodes.Episode`, an
            :class:`~metalearn.episodes.EpisodeBatch` (dataclasses) or a
            :class:`~metalearn.sinusoid.SinusoidTasks` (a named tuple).

    Returns:
        A batch of the same type with ``query_x = support_x`` and
        ``query_y = support_y``.
    """
    for name in ("support_x", "support_y", "query_x", "query_y"):
        if not isinstance(getattr(batch, name, None), torch.Tensor):
            raise TypeError(
                f"wrong_query_is_support needs a batch with tensor {name}, got "
                f"{type(batch).__name__}."
            )
    changes = {"query_x": batch.support_x, "query_y": batch.support_y}
    if dataclasses.is_dataclass(batch):
        return dataclasses.replace(batch, **changes)
    if hasattr(batch, "_replace"):
        return batch._replace(**changes)
    raise TypeError(
        f"wrong_query_is_support takes a dataclass or a named tuple, got "
        f"{type(batch).__name__}."
    )


def wrong_meta_loss_unadapted(
    model: nn.Module,
    params: Params,
    buffers: Params,
    batch: TaskBatch,
    *,
    inner_lr: float,
    steps: int,
    loss_fn: LossFn = F.cross_entropy,
) -> torch.Tensor:
    """WRONG ON PURPOSE: adapt every task, then take the query loss at ``theta``.

    The pattern of mistake (a) of the MAML chapter: the adapted weights are
    computed and thrown away (e.g. the query loss is taken on a fresh copy of
    the model), so the result is the query loss without adaptation, and its
    gradient is that of joint training on the query sets.

    Use instead :func:`metalearn.maml.meta_loss`.
    """
    tasks = check_task_batch(batch)
    for i in range(tasks):  # computed, then ignored: the bug
        adapt(
            model,
            params,
            buffers,
            batch.support_x[i],
            batch.support_y[i],
            inner_lr=inner_lr,
            steps=steps,
            first_order=False,
            loss_fn=loss_fn,
        )
    losses = [
        loss_fn(
            functional_call(model, (params, buffers), (batch.query_x[i],)),
            batch.query_y[i],
        )
        for i in range(tasks)
    ]
    return torch.stack(losses).mean()


# --- Prototypical Networks --------------------------------------------------------


def wrong_prototypes_by_reshape(
    support_embeddings: torch.Tensor, ways: int, shots: int
) -> torch.Tensor:
    """WRONG ON PURPOSE: class means over an axis that does not group by class.

    The pattern: the embedded support set ``[N*K, D]`` is reshaped to
    ``[K, N, D]`` and averaged over its first axis, which assumes the examples
    are ordered shot by shot (``class 0, 1, ..., N-1, class 0, 1, ...``). The
    episodes of this course, like most samplers, are ordered class by class
    (``0, ..., 0, 1, ..., 1, ...``). For ``K = 1`` both orders coincide and
    the result is right, which is how the bug survives a 1-shot test; for
    ``K > 1`` row ``n`` averages examples ``n, N + n, 2N + n, ...``, which mix
    classes (for ``N = K`` every row holds one example of every class).

    Use instead :func:`metalearn.protonet.prototypes`, which groups the
    examples by their labels and does not depend on their order.

    Shapes: ``support_embeddings [N*K, D]`` -> ``[N, D]``.
    """
    check_positive_int("ways", ways)
    check_positive_int("shots", shots)
    if support_embeddings.dim() != 2 or support_embeddings.shape[0] != ways * shots:
        raise ValueError(
            f"support_embeddings must be [ways*shots, D] = [{ways * shots}, D], got "
            f"{tuple(support_embeddings.shape)}."
        )
    return support_embeddings.reshape(shots, ways, -1).mean(dim=0)  # the bug


def _shots_of(episode: Episode) -> int:
    counts = check_labels(episode.support_y, episode.ways, every_class=True)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"every class needs the same number of shots, got {counts}.")
    return int(counts[0])


def wrong_protonet_logits_by_reshape(
    embedding: nn.Module, episode: Episode
) -> torch.Tensor:
    """WRONG ON PURPOSE: ProtoNet logits with :func:`wrong_prototypes_by_reshape`.

    Use instead :func:`metalearn.protonet.protonet_logits` (or
    :func:`metalearn.protonet.protonet_classifier` for an evaluation).

    Returns:
        ``[N*Q, N]``: minus the squared distances to the mixed-up "prototypes".
    """
    ways, shots = episode.ways, _shots_of(episode)
    z = embedding(torch.cat([episode.support_x, episode.query_x]))  # [N*K+N*Q, D]
    support_z, query_z = z[: ways * shots], z[ways * shots :]
    centres = wrong_prototypes_by_reshape(support_z, ways, shots)  # [N, D]
    return -squared_distances(query_z, centres)


def wrong_protonet_loss_by_reshape(
    embedding: nn.Module, episode: Episode
) -> tuple[torch.Tensor, dict[str, float]]:
    """WRONG ON PURPOSE: the ProtoNet episode loss on mixed-up "prototypes".

    Cross-entropy of :func:`wrong_protonet_logits_by_reshape`; the graph is
    intact, so it trains, but towards "prototypes" that are not class means.

    Use instead :func:`metalearn.protonet.protonet_loss`.

    Returns:
        ``(loss, {"loss": float, "acc": float})``, like ``protonet_loss``.
    """
    logits = wrong_protonet_logits_by_reshape(embedding, episode)
    loss = F.cross_entropy(logits, episode.query_y)
    acc = (logits.argmax(dim=1) == episode.query_y).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc)}


def wrong_protonet_loss_on_predictions(
    embedding: nn.Module, episode: Episode
) -> tuple[torch.Tensor, dict[str, float]]:
    """WRONG ON PURPOSE: a loss taken on the ``argmin`` predictions, not the distances.

    The pattern: each query is first assigned to its nearest prototype
    (``argmin`` of the distances, eq. {eq}`protonet-distance`), and the loss
    compares those hard predictions, here as one-hot scores, with the labels.
    An ``argmin`` is piecewise constant and returns integers: autograd stops
    there, so the loss has no graph to the embedding. ``loss.backward()``
    raises "element 0 of tensors does not require grad", and if that error is
    silenced (``loss.requires_grad_()``, a common "fix"), every parameter
    keeps ``.grad = None`` and the optimiser never changes a weight.

    Use instead :func:`metalearn.protonet.protonet_loss`: the cross-entropy of
    the softmax over negative distances (eq. {eq}`protonet-loss`), smooth in
    the embedding.

    Returns:
        ``(loss, {"loss": float, "acc": float})``; ``loss.requires_grad`` is
        ``False``.
    """
    ways = episode.ways
    z = embedding(torch.cat([episode.support_x, episode.query_x]))
    support_z, query_z = z[: episode.support_y.numel()], z[episode.support_y.numel() :]
    centres = prototypes(support_z, episode.support_y, ways)  # right prototypes
    predictions = squared_distances(query_z, centres).argmin(dim=1)  # [N*Q] ints
    scores = F.one_hot(predictions, ways).to(z.dtype)  # no graph: the bug
    loss = F.cross_entropy(scores, episode.query_y)
    acc = (predictions == episode.query_y).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc)}


__all__ = [
    "wrong_meta_loss_unadapted",
    "wrong_per_sample_meta_loss",
    "wrong_protonet_logits_by_reshape",
    "wrong_protonet_loss_by_reshape",
    "wrong_protonet_loss_on_predictions",
    "wrong_prototypes_by_reshape",
    "wrong_query_is_support",
    "wrong_reclone_adapt",
]
