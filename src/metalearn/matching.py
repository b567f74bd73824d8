"""Matching networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, 2016).

A query :math:`\\hat x` is classified by attention over the labelled support
set :math:`S = \\{(x_i, y_i)\\}`,

.. math:: \\hat y = \\sum_i a(\\hat x, x_i)\\, y_i, \\qquad
          a(\\hat x, x_i) = \\frac{\\exp c(f(\\hat x), g(x_i))}
                                 {\\sum_j \\exp c(f(\\hat x), g(x_j))},

with one-hot labels :math:`y_i` and the cosine similarity :math:`c`; the loss
is the negative log-likelihood of the true label under :math:`\\hat y`. It is a
differentiable, weighted nearest-neighbour classifier trained on episodes.

What this module implements: the *plain* variant with one shared embedding,
:math:`f = g` (any ``[B, C, H, W] -> [B, D]`` module, e.g.
``Conv4(head=False)``). The paper's optional *full-context embeddings* (a
bidirectional LSTM over the support set for :math:`g` and an attention LSTM
for :math:`f`) are **not** implemented; Vinyals et al. report that they help
little on Omniglot.

Two options beyond the paper, for the chapter's comparisons:
``similarity="euclidean"`` uses the negative squared Euclidean distance as
:math:`c`, which makes one-shot Matching networks *identical* to one-shot
Prototypical Networks (each prototype is then the single support example);
``scale`` multiplies :math:`c` (an inverse temperature; the paper's is 1, which
bounds cosine logits to ``[-1, 1]`` and keeps the attention soft).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from metalearn.checkpoint import describe_tensor
from metalearn.checks import (
    check_choice,
    check_device,
    check_float_tensor,
    check_labels,
    check_module,
    check_positive_float,
    check_support_and_query,
)
from metalearn.episodes import (
    Episode,
    check_embedded_episode,
    episode_sampler,
)
from metalearn.protonet import _device_of, squared_distances

#: ``c(f(x), g(x_i))``: the paper's cosine, or minus the squared Euclidean distance.
SIMILARITIES = ("cosine", "euclidean")

Step = Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]]


#: The largest ``scale`` accepted: beyond it the attention is a hard argmax and
#: the gradients of float32 logits overflow long before anything is learned.
MAX_SCALE = 1e4


def _check_options(similarity: str, scale: float) -> None:
    check_choice("similarity", similarity, SIMILARITIES)
    check_positive_float(
        "scale",
        scale,
        maximum=MAX_SCALE,
        hint="It is an inverse temperature: the paper's is 1, values of 10 to 100 "
        "sharpen the attention.",
    )


def cosine_similarities(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``cos(x_i, y_j)`` for all pairs.

    Args:
        x: ``[N, D]``.
        y: ``[M, D]``.

    Returns:
        ``[N, M]`` in ``[-1, 1]``.
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            raise ValueError(f"{name} must be a 2-D tensor [examples, D].")
        check_float_tensor(name, t, dims=2, layout="[examples, D]", finite=False)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same dimension D, got x {tuple(x.shape)} and "
            f"y {tuple(y.shape)}."
        )
    return F.normalize(x, dim=1) @ F.normalize(y, dim=1).T


def similarities(
    query_embeddings: torch.Tensor,
    support_embeddings: torch.Tensor,
    *,
    similarity: str = "cosine",
    scale: float = 1.0,
) -> torch.Tensor:
    """The attention logits ``scale * c(f(x), g(x_i))``, ``[N*Q, N*K]``."""
    _check_options(similarity, scale)
    if similarity == "cosine":
        scores = cosine_similarities(query_embeddings, support_embeddings)
    else:
        scores = -squared_distances(query_embeddings, support_embeddings)
    return scale * scores


def attention(
    query_embeddings: torch.Tensor,
    support_embeddings: torch.Tensor,
    *,
    similarity: str = "cosine",
    scale: float = 1.0,
) -> torch.Tensor:
    """The attention ``a(x, x_i) = softmax_i c(f(x), g(x_i))``.

    Args:
        query_embeddings: ``[N*Q, D]``.
        support_embeddings: ``[N*K, D]``.
        similarity: ``"cosine"`` (the paper) or ``"euclidean"``.
        scale: positive multiplier of the similarity.

    Returns:
        ``[N*Q, N*K]``; every row is a probability vector over the support set.

    Raises:
        ValueError: an unknown similarity, a scale that is not finite and
            positive, embeddings that are not 2-D or differ in ``D``.
    """
    scores = similarities(
        query_embeddings, support_embeddings, similarity=similarity, scale=scale
    )
    return scores.softmax(dim=1)


def label_log_probs(
    scores: torch.Tensor, support_y: torch.Tensor, ways: int
) -> torch.Tensor:
    """``log sum_i a(x, x_i) y_i`` from attention logits, in log space.

    The probability of class ``k`` is the attention mass on its support
    examples, so
    :math:`\\log \\hat y_k = \\operatorname{logsumexp}_{i: y_i = k} s_i -
    \\operatorname{logsumexp}_i s_i`; computing it this way never takes the log
    of a probability that has underflowed to 0.

    Args:
        scores: ``[N*Q, N*K]`` attention logits (:func:`similarities`).
        support_y: ``[N*K]`` labels in ``0..ways-1``, every class present.
        ways: N.

    Returns:
        ``[N*Q, ways]`` log-probabilities (each row's exp sums to 1).
    """
    check_labels(support_y, ways, name="support_y", every_class=True)
    if scores.dim() != 2 or scores.shape[1] != support_y.shape[0]:
        raise ValueError(
            f"scores must have shape [queries, {support_y.shape[0]}] (one column "
            f"per support label), got {tuple(scores.shape)}."
        )
    classes = torch.arange(ways, device=scores.device)
    member = support_y.to(scores.device)[None, :] == classes[:, None]  # [N, N*K]
    per_class = scores[:, None, :].masked_fill(~member, float("-inf"))  # [NQ,N,NK]
    return per_class.logsumexp(dim=2) - scores.logsumexp(dim=1, keepdim=True)


def matching_log_probs(
    embedding: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    *,
    ways: int,
    similarity: str = "cosine",
    scale: float = 1.0,
) -> torch.Tensor:
    """Query log-probabilities ``log y_hat`` of a Matching network (f = g).

    Args:
        embedding: maps ``[B, C, H, W]`` to ``[B, D]``; used for both ``f`` and
            ``g``. Support and query are embedded in one forward pass.
        support_x: ``[N*K, C, H, W]``.
        support_y: ``[N*K]`` labels in ``0..ways-1``.
        query_x: ``[N*Q, C, H, W]``.
        ways: N.
        similarity: ``"cosine"`` or ``"euclidean"``.
        scale: positive multiplier of the similarity.

    Returns:
        ``[N*Q, ways]`` log-probabilities.

    Raises:
        TypeError: a non-module embedding, images that are not floating point
            or differ from the embedding's dtype/device, labels not ``int64``.
        ValueError: NaN/infinite images, labels outside ``0..ways-1``, a class
            without support example, sizes that disagree, bad options.
    """
    _check_options(similarity, scale)
    check_support_and_query(embedding, support_x, support_y, query_x, ways)
    if support_x.shape[1:] != query_x.shape[1:]:
        raise ValueError(
            f"support_x {tuple(support_x.shape)} and query_x "
            f"{tuple(query_x.shape)} have different example shapes."
        )
    return _log_probs(embedding, support_x, support_y, query_x, ways, similarity, scale)


def _log_probs(
    embedding: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    ways: int,
    similarity: str,
    scale: float,
) -> torch.Tensor:
    """:func:`matching_log_probs` on inputs already checked."""
    z = embedding(torch.cat([support_x, query_x]))  # [N*K + N*Q, D]
    if z.dim() != 2:
        raise ValueError(
            f"the embedding must return [B, D], got shape {tuple(z.shape)}."
        )
    support_z, query_z = z[: support_x.shape[0]], z[support_x.shape[0] :]
    scores = similarities(query_z, support_z, similarity=similarity, scale=scale)
    return label_log_probs(scores, support_y, ways)


def matching_loss(
    embedding: nn.Module,
    episode: Episode,
    *,
    similarity: str = "cosine",
    scale: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The negative log-likelihood of the query labels, and accuracy.

    Args:
        embedding: maps ``[B, C, H, W]`` to ``[B, D]``.
        episode: an N-way episode with labels in ``0..N-1``.
        similarity: ``"cosine"`` or ``"euclidean"``.
        scale: positive multiplier of the similarity.

    Returns:
        ``(loss, {"loss": float, "acc": float})``.

    Raises:
        TypeError, ValueError: a bad episode
            (:func:`metalearn.episodes.check_episode`), an embedding whose
            dtype/device differ from the episode's, bad options.
    """
    _check_options(similarity, scale)
    check_embedded_episode(embedding, episode)
    return _loss(embedding, episode, similarity, scale)


def _loss(
    embedding: nn.Module, episode: Episode, similarity: str, scale: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`matching_loss` on an episode already checked."""
    log_probs = _log_probs(
        embedding,
        episode.support_x,
        episode.support_y,
        episode.query_x,
        episode.ways,
        similarity,
        scale,
    )
    loss = F.nll_loss(log_probs, episode.query_y)
    acc = (log_probs.argmax(dim=1) == episode.query_y).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc)}


def make_matching_step(
    embedding: nn.Module,
    images: torch.Tensor,
    *,
    ways: int,
    shots: int,
    queries: int,
    similarity: str = "cosine",
    scale: float = 1.0,
    device: torch.device | str | None = None,
) -> Step:
    """A training step for :func:`metalearn.training.train`.

    Args:
        embedding: maps ``[B, C, H, W]`` to ``[B, D]``.
        images: ``[classes, examples, C, H, W]`` training images.
        ways: N of the training episodes.
        shots: K of the training episodes.
        queries: query examples per class.
        similarity: ``"cosine"`` or ``"euclidean"``.
        scale: positive multiplier of the similarity.
        device: where to compute; ``None`` means the embedding's device.

    Returns:
        ``step(generator) -> (loss, {"loss", "acc"})`` on one episode sampled
        with ``generator``. ``step.identity`` (method, sizes, options and a
        fingerprint of ``images``) is stored in training checkpoints.

    Raises:
        TypeError, ValueError: bad images or sizes (checked once, here), bad
            options, a non-module embedding or a bad device.
    """
    check_module("embedding", embedding)
    sample = episode_sampler(images, tasks=1, ways=ways, shots=shots, queries=queries)
    _check_options(similarity, scale)
    device = check_device("device", device)

    def step(generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        episode = sample(generator)[0]  # = sample_episode, images checked once
        target = _device_of(embedding) if device is None else device
        return _loss(embedding, episode.to(target), similarity, float(scale))

    step.identity = {
        "method": "matching",
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "similarity": similarity,
        "scale": float(scale),
        "images": describe_tensor(images),
    }
    return step


def matching_classifier(
    embedding: nn.Module, *, similarity: str = "cosine", scale: float = 1.0
) -> Callable[[Episode], torch.Tensor]:
    """A classifier for :func:`metalearn.evaluate.evaluate`.

    The embedding is used in whatever mode it is in. Support and query go
    through it in one batch, so a batch norm with per-batch statistics (that of
    ``metalearn.models.Conv4``, in either mode) normalises with the statistics
    of the whole episode; ``nn.BatchNorm2d`` needs ``embedding.eval()`` to use
    its running statistics instead.

    Returns:
        A function ``Episode -> [N*Q, N]`` query log-probabilities.
    """
    check_module("embedding", embedding)
    _check_options(similarity, scale)

    def classify(episode: Episode) -> torch.Tensor:
        return matching_log_probs(
            embedding,
            episode.support_x,
            episode.support_y,
            episode.query_x,
            ways=episode.ways,
            similarity=similarity,
            scale=scale,
        )

    return classify
