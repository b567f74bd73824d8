"""Prototypical Networks (Snell, Swersky & Zemel, 2017).

An embedding :math:`f_\\phi` maps every image to a point in :math:`\\mathbb{R}^D`.
Each class is represented by the mean of its embedded support examples, its
*prototype* (eq. {eq}`protonet-prototype`); a query is classified by a softmax
over its negative squared Euclidean distances to the prototypes
(eqs. {eq}`protonet-distance` and {eq}`protonet-softmax`), and the embedding is
trained end to end on the episode loss {eq}`protonet-loss`.

Because :math:`-\\lVert z - c_k\\rVert^2 = 2 c_k^\\top z - \\lVert c_k\\rVert^2 -
\\lVert z\\rVert^2` and the last term is the same for every class, ProtoNet is
a linear classifier on the embedding with :math:`w_k = 2 c_k` and
:math:`b_k = -\\lVert c_k\\rVert^2` (:func:`linear_classifier_weights`).

The functions take any embedding ``nn.Module`` that maps ``[B, C, H, W]`` to
``[B, D]``, e.g. ``metalearn.models.Conv4(head=False)``. Training uses the
generic loop of :mod:`metalearn.training` through :func:`make_protonet_step`;
Snell et al. train with Adam (``1e-3``) and halve the learning rate every 2,000
episodes (``torch.optim.lr_scheduler.StepLR(optimiser, 2000, gamma=0.5)``).

Example:
    >>> import torch
    >>> from torch import nn
    >>> embedding = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> support_x, support_y = torch.randn(6, 1, 2, 2), torch.tensor([0, 0, 1, 1, 2, 2])
    >>> logits = protonet_logits(embedding, support_x, support_y,
    ...                          torch.randn(5, 1, 2, 2), ways=3)
    >>> logits.shape
    torch.Size([5, 3])
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
    check_support_and_query,
)
from metalearn.episodes import (
    Episode,
    check_embedded_episode,
    episode_sampler,
)

#: The distances of Snell et al.'s ablation (Table/Fig. on distance choice).
DISTANCES = ("euclidean", "cosine")

Step = Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]]

__all__ = [  # check_labels lives in metalearn.checks; importable from here too
    "DISTANCES",
    "check_labels",
    "cosine_distances",
    "linear_classifier_weights",
    "make_protonet_step",
    "protonet_classifier",
    "protonet_logits",
    "protonet_loss",
    "prototypes",
    "squared_distances",
]


def _check_embeddings(name: str, embeddings: torch.Tensor) -> None:
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else ""
        raise ValueError(
            f"{name} must be a 2-D tensor [examples, D], got {shape or embeddings!r}. "
            "Does the embedding flatten its output (e.g. Conv4(head=False))?"
        )
    check_float_tensor(name, embeddings, dims=2, layout="[examples, D]", finite=False)


def _check_embedding_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    _check_embeddings("x", x)
    _check_embeddings("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same dimension D, got x {tuple(x.shape)} and "
            f"y {tuple(y.shape)}."
        )
    if x.dtype != y.dtype or x.device != y.device:
        raise TypeError(
            f"x ({x.dtype}, {x.device}) and y ({y.dtype}, {y.device}) must have "
            "the same dtype and device."
        )


def prototypes(
    support_embeddings: torch.Tensor, support_y: torch.Tensor, ways: int
) -> torch.Tensor:
    """The class means of the embedded support set, eq. {eq}`protonet-prototype`.

    :math:`c_k = \\frac{1}{|S_k|} \\sum_{(x_i, y_i) \\in S_k} f_\\phi(x_i)`, computed
    with one ``index_add`` (a scatter-sum) and a division by the class counts,
    so the cost does not grow with a Python loop over classes and the result
    does not depend on the order of the support examples.

    Args:
        support_embeddings: ``[N*K, D]`` embedded support examples.
        support_y: ``[N*K]`` int64 labels in ``0..ways-1``.
        ways: N, the number of classes.

    Returns:
        ``[ways, D]``: row ``k`` is the prototype of class ``k``.

    Raises:
        ValueError: shapes disagree, a label is outside ``0..ways-1``, or a
            class has no support example.
    """
    _check_embeddings("support_embeddings", support_embeddings)
    counts = check_labels(support_y, ways, name="support_y", every_class=True)
    if support_embeddings.shape[0] != support_y.shape[0]:
        raise ValueError(
            f"support_embeddings has {support_embeddings.shape[0]} rows but "
            f"support_y has {support_y.shape[0]} labels."
        )
    dim = support_embeddings.shape[1]
    sums = support_embeddings.new_zeros(ways, dim).index_add(
        0, support_y, support_embeddings
    )  # [ways, D]
    return sums / counts.to(support_embeddings.dtype).unsqueeze(1)


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """All squared Euclidean distances, eq. {eq}`protonet-distance`.

    Computed as :math:`\\lVert x\\rVert^2 + \\lVert y\\rVert^2 - 2 x^\\top y`,
    clamped at 0. Why this form: it costs one matrix product (``O(NMD)`` flops
    in BLAS, ``O(NM)`` extra memory) instead of the ``[N, M, D]`` tensor of the
    broadcast difference used by the reference code. ``torch.cdist(x, y) ** 2``
    would compute the same expansion (for more than 25 rows) and then a square
    root that the square undoes; here the value and its gradient
    :math:`2(x - y)` are plain polynomials. Cancellation can make the expansion
    slightly negative when ``x`` is close to ``y`` (absolute error of order
    ``eps * ||x||^2``, the same as ``cdist``'s); the clamp removes that.

    Args:
        x: ``[N, D]``.
        y: ``[M, D]``.

    Returns:
        ``[N, M]`` with entry ``(i, j) = ||x_i - y_j||^2 >= 0``.
    """
    _check_embedding_pair(x, y)
    x_norms = x.pow(2).sum(dim=1, keepdim=True)  # [N, 1]
    y_norms = y.pow(2).sum(dim=1).unsqueeze(0)  # [1, M]
    return (x_norms + y_norms - 2 * x @ y.T).clamp_min(0)  # [N, M]


def cosine_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 - cos(x_i, y_j)`` for all pairs (the cosine arm of Snell et al.'s ablation).

    Args:
        x: ``[N, D]``.
        y: ``[M, D]``.

    Returns:
        ``[N, M]`` in ``[0, 2]``.
    """
    _check_embedding_pair(x, y)
    return 1 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).T


def _check_distance(distance: str) -> None:
    check_choice("distance", distance, DISTANCES)


def _check_inputs(
    embedding: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    ways: int,
) -> None:
    """The checks of :func:`protonet_logits` (once per call, on small tensors)."""
    check_support_and_query(embedding, support_x, support_y, query_x, ways)


def _embed(
    embedding: nn.Module, support_x: torch.Tensor, query_x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed support and query in one forward pass (as the reference code does,
    so batch-norm statistics in training mode cover the whole episode)."""
    if support_x.shape[1:] != query_x.shape[1:]:
        raise ValueError(
            f"support_x {tuple(support_x.shape)} and query_x "
            f"{tuple(query_x.shape)} have different example shapes."
        )
    z = embedding(torch.cat([support_x, query_x]))  # [N*K + N*Q, D]
    _check_embeddings("embedding(x)", z)
    return z[: support_x.shape[0]], z[support_x.shape[0] :]


def protonet_logits(
    embedding: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    *,
    ways: int,
    distance: str = "euclidean",
) -> torch.Tensor:
    """Query logits: negative distances to the prototypes.

    The softmax of these logits is eq. {eq}`protonet-softmax`,
    :math:`p_\\phi(y = k \\mid x) \\propto \\exp(-d(f_\\phi(x), c_k))`.

    Args:
        embedding: maps ``[B, C, H, W]`` to ``[B, D]``.
        support_x: ``[N*K, C, H, W]``.
        support_y: ``[N*K]`` labels in ``0..ways-1``.
        query_x: ``[N*Q, C, H, W]``.
        ways: N.
        distance: ``"euclidean"`` (squared Euclidean, the paper's choice) or
            ``"cosine"`` (``1 - cos``, the ablation).

    Returns:
        ``[N*Q, ways]`` logits.

    Raises:
        TypeError: a non-module embedding, images that are not floating point
            or differ from the embedding's dtype/device, labels not ``int64``.
        ValueError: NaN/infinite images, labels outside ``0..ways-1``, a class
            without support example, sizes that disagree, an unknown distance.
    """
    _check_distance(distance)
    _check_inputs(embedding, support_x, support_y, query_x, ways)
    return _logits(embedding, support_x, support_y, query_x, ways, distance)


def _logits(
    embedding: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    ways: int,
    distance: str,
) -> torch.Tensor:
    """:func:`protonet_logits` on inputs already checked."""
    support_z, query_z = _embed(embedding, support_x, query_x)
    centres = prototypes(support_z, support_y, ways)  # [N, D]
    if distance == "euclidean":
        return -squared_distances(query_z, centres)  # [N*Q, N]
    return -cosine_distances(query_z, centres)


def protonet_loss(
    embedding: nn.Module, episode: Episode, *, distance: str = "euclidean"
) -> tuple[torch.Tensor, dict[str, float]]:
    """The episode loss, eq. {eq}`protonet-loss`, and accuracy.

    :math:`J(\\phi) = -\\frac{1}{|Q|} \\sum_{(x, y) \\in Q} \\log p_\\phi(y \\mid x)`,
    the mean cross-entropy of the query logits (:func:`protonet_logits`). For
    raw tensors build ``Episode(support_x, support_y, query_x, query_y,
    classes=torch.arange(ways))``.

    Args:
        embedding: maps ``[B, C, H, W]`` to ``[B, D]``.
        episode: an N-way episode with labels in ``0..N-1``.
        distance: ``"euclidean"`` or ``"cosine"``.

    Returns:
        ``(loss, {"loss": float, "acc": float})``; ``loss`` is a scalar with a
        graph to the embedding's parameters, ``acc`` the query accuracy.

    Raises:
        TypeError, ValueError: a bad episode
            (:func:`metalearn.episodes.check_episode`), an embedding whose
            dtype/device differ from the episode's, an unknown distance.
    """
    _check_distance(distance)
    check_embedded_episode(embedding, episode)
    return _loss(embedding, episode, distance)


def _loss(
    embedding: nn.Module, episode: Episode, distance: str
) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`protonet_loss` on an episode already checked."""
    logits = _logits(
        embedding,
        episode.support_x,
        episode.support_y,
        episode.query_x,
        episode.ways,
        distance,
    )
    loss = F.cross_entropy(logits, episode.query_y)
    acc = (logits.argmax(dim=1) == episode.query_y).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc)}


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def make_protonet_step(
    embedding: nn.Module,
    images: torch.Tensor,
    *,
    ways: int,
    shots: int,
    queries: int,
    distance: str = "euclidean",
    device: torch.device | str | None = None,
) -> Step:
    """A training step for :func:`metalearn.training.train`.

    The training ``ways`` and ``shots`` are free: Snell et al. train with more
    ways (60) than they test with (5 or 20), which makes each episode harder
    and the embedding better.

    Args:
        embedding: maps ``[B, C, H, W]`` to ``[B, D]``.
        images: ``[classes, examples, C, H, W]`` training images.
        ways: N of the training episodes.
        shots: K of the training episodes.
        queries: query examples per class.
        distance: ``"euclidean"`` or ``"cosine"``.
        device: where to compute; ``None`` means the embedding's device.

    Returns:
        ``step(generator) -> (loss, {"loss", "acc"})``: samples one episode
        with ``generator`` and returns :func:`protonet_loss` on it. Its
        attribute ``step.identity`` (a plain dict: method, sizes, distance
        and a fingerprint of ``images``) is stored in training checkpoints,
        so a resumed run with other settings is refused.

    Raises:
        TypeError, ValueError: bad images or sizes (checked once, here), an
            unknown distance, a non-module embedding or a bad device.
    """
    check_module("embedding", embedding)
    sample = episode_sampler(images, tasks=1, ways=ways, shots=shots, queries=queries)
    _check_distance(distance)
    device = check_device("device", device)

    def step(generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        episode = sample(generator)[0]  # = sample_episode, images checked once
        target = _device_of(embedding) if device is None else device
        return _loss(embedding, episode.to(target), distance)

    step.identity = {
        "method": "protonet",
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "distance": distance,
        "images": describe_tensor(images),
    }
    return step


def protonet_classifier(
    embedding: nn.Module, *, distance: str = "euclidean"
) -> Callable[[Episode], torch.Tensor]:
    """A classifier for :func:`metalearn.evaluate.evaluate`.

    The embedding is used in whatever mode it is in. Support and query go
    through it in one batch, so a batch norm with per-batch statistics (that of
    ``metalearn.models.Conv4``, in either mode) normalises with the statistics
    of the whole episode; ``nn.BatchNorm2d`` needs ``embedding.eval()`` to use
    its running statistics instead.

    Returns:
        A function ``Episode -> [N*Q, N]`` query logits.
    """
    check_module("embedding", embedding)
    _check_distance(distance)

    def classify(episode: Episode) -> torch.Tensor:
        return protonet_logits(
            embedding,
            episode.support_x,
            episode.support_y,
            episode.query_x,
            ways=episode.ways,
            distance=distance,
        )

    return classify


def linear_classifier_weights(
    prototypes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ProtoNet as a linear classifier: ``w_k = 2 c_k``, ``b_k = -||c_k||^2``.

    Expanding eq. {eq}`protonet-distance`,
    :math:`-\\lVert z - c_k\\rVert^2 = w_k^\\top z + b_k - \\lVert z\\rVert^2`; the
    last term does not depend on ``k``, so ``z @ W.T + b`` has the same softmax
    and the same argmax as the ProtoNet logits.

    Args:
        prototypes: ``[ways, D]`` (from :func:`prototypes`).

    Returns:
        ``(W [ways, D], b [ways])``.
    """
    _check_embeddings("prototypes", prototypes)
    return 2 * prototypes, -prototypes.pow(2).sum(dim=1)
