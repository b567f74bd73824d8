"""Siamese networks for one-shot recognition (Koch, Zemel & Salakhutdinov, 2015).

Two copies of one embedding (the *twins* share every weight) embed a pair of
images as :math:`h_1, h_2 \\in \\mathbb{R}^D`; a learned weighted L1 distance
gives the probability that the two images show the same class,

.. math:: p(x_1, x_2) = \\sigma\\Big(\\sum_j \\alpha_j \\lvert h_{1,j} - h_{2,j}
          \\rvert + b\\Big),

trained as binary *verification* on same-class and different-class pairs
(cross-entropy on the pair label). The network never sees an episode during
training; one-shot classification reuses it afterwards: a query gets the class
of the support example it is most similar to.

``p`` is exactly symmetric in its two inputs because ``|h1 - h2| = |h2 - h1|``.
Koch et al. also use affine distortions, layer-wise learning rates and a
105x105 network; this module keeps only the model and the loss, and works with
any embedding ``[B, C, H, W] -> [B, D]`` (e.g. ``Conv4(head=False)``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from metalearn.checkpoint import describe_tensor
from metalearn.checks import (
    check_device,
    check_float_tensor,
    check_generator,
    check_images,
    check_matches_module,
    check_module,
    check_positive_int,
    check_tensor,
    has_values,
)
from metalearn.episodes import Episode, check_episode

Step = Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]]


class SiameseNetwork(nn.Module):
    """Twin network with a learned weighted-L1 similarity (Koch et al., 2015).

    Args:
        embedding: the shared twin, ``[B, C, H, W] -> [B, D]``.
        features: D, the embedding dimension.

    Attributes:
        embedding: the shared twin.
        head: ``nn.Linear(D, 1)``: the weights :math:`\\alpha_j` and bias ``b``.

    Shapes:
        ``forward(x1 [P, C, H, W], x2 [P, C, H, W]) -> [P]`` logits; the
        probability of "same class" is their sigmoid (:meth:`similarity`).
    """

    def __init__(self, embedding: nn.Module, features: int) -> None:
        super().__init__()
        check_module("embedding", embedding)
        check_positive_int("features", features)
        self.embedding = embedding
        self.features = features
        self.head = nn.Linear(features, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, D]`` with a shape check."""
        h = self.embedding(x)
        if h.dim() != 2 or h.shape[1] != self.features:
            raise ValueError(
                f"the embedding returned shape {tuple(h.shape)}, expected "
                f"[{x.shape[0]}, {self.features}] (features={self.features})."
            )
        return h

    def pair_logits(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """``sum_j alpha_j |h1_j - h2_j| + b`` on embeddings (broadcasts).

        Args:
            h1: ``[..., D]``.
            h2: ``[..., D]``, broadcastable against ``h1``.

        Returns:
            ``[...]`` logits (before the sigmoid).
        """
        return self.head((h1 - h2).abs()).squeeze(-1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Logits that ``x1[i]`` and ``x2[i]`` show the same class, ``[P]``.

        Both sides go through the embedding in one batch, so batch-norm
        statistics in training mode are those of all ``2P`` images and do not
        depend on which side an image is on.
        """
        for name, x in (("x1", x1), ("x2", x2)):
            check_float_tensor(
                name, x, min_dims=2, layout="[pairs, C, H, W]", finite=False
            )
            check_matches_module(name, x, self)
        if x1.shape != x2.shape:
            raise ValueError(
                f"x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)} must have the "
                "same shape [pairs, C, H, W]."
            )
        h = self.embed(torch.cat([x1, x2]))  # [2P, D]
        return self.pair_logits(h[: x1.shape[0]], h[x1.shape[0] :])  # [P]

    def similarity(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """``p(x1, x2)`` in ``(0, 1)``, the probability of "same class", ``[P]``."""
        return torch.sigmoid(self(x1, x2))


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _check_pair_inputs(images: torch.Tensor, pairs: int) -> None:
    check_images(images)
    if isinstance(pairs, bool) or not isinstance(pairs, int):
        raise TypeError(f"pairs must be an int, got {pairs!r}.")
    if pairs <= 0 or pairs % 2:
        raise ValueError(f"pairs must be even and positive, got {pairs}.")
    classes, examples = images.shape[:2]
    if classes < 2 or examples < 2:
        raise ValueError(
            f"images need >= 2 classes and >= 2 examples per class, got "
            f"{classes} and {examples}."
        )


def sample_pairs(
    images: torch.Tensor, pairs: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw verification pairs: half from one class, half from two classes.

    The first ``pairs // 2`` pairs are two *different* examples of one class
    (uniform class); the rest are examples of two *different* classes (uniform
    ordered pair of classes, uniform examples).

    Args:
        images: ``[classes, examples, C, H, W]``; ``uint8`` is scaled to [0, 1].
        pairs: P, an even positive number of pairs.
        generator: the source of randomness (same seed -> same pairs).

    Returns:
        ``(x1 [P, C, H, W], x2 [P, C, H, W], same [P])`` with ``same`` 1.0 for a
        same-class pair and 0.0 otherwise (float, as the loss expects).

    Raises:
        ValueError: ``pairs`` is not even and positive, or ``images`` has fewer
            than two classes or two examples per class, or holds NaN, infinity
            or unscaled 0..255 floats.
        TypeError: ``images`` is not ``uint8`` or floating point, or
            ``generator`` is not a ``torch.Generator``.
    """
    _check_pair_inputs(images, pairs)
    check_generator("generator", generator)
    return _sample_pairs(images, pairs, generator)


def _sample_pairs(
    images: torch.Tensor, pairs: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`sample_pairs` on inputs already checked."""
    classes, examples = images.shape[:2]
    half = pairs // 2
    # Same class: example j = i + offset (mod E) with offset in 1..E-1, so j != i.
    same_class = torch.randint(classes, (half,), generator=generator)
    first = torch.randint(examples, (half,), generator=generator)
    second = (first + torch.randint(1, examples, (half,), generator=generator)) % (
        examples
    )
    # Different classes: class c2 = c1 + offset (mod C) with offset in 1..C-1.
    class1 = torch.randint(classes, (half,), generator=generator)
    class2 = (class1 + torch.randint(1, classes, (half,), generator=generator)) % (
        classes
    )
    example1 = torch.randint(examples, (half,), generator=generator)
    example2 = torch.randint(examples, (half,), generator=generator)
    c1 = torch.cat([same_class, class1])  # [P]
    c2 = torch.cat([same_class, class2])
    e1 = torch.cat([first, example1])
    e2 = torch.cat([second, example2])
    same = torch.cat([torch.ones(half), torch.zeros(half)])
    return _to_float(images[c1, e1]), _to_float(images[c2, e2]), same


def verification_loss(
    model: SiameseNetwork, x1: torch.Tensor, x2: torch.Tensor, same: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Binary cross-entropy of the pair prediction (Koch et al., eq. 2).

    :math:`L = -\\frac{1}{P} \\sum_i y_i \\log p_i + (1 - y_i) \\log (1 - p_i)`,
    computed from logits (``binary_cross_entropy_with_logits``) for stability.

    Args:
        model: the Siamese network.
        x1: ``[P, C, H, W]``.
        x2: ``[P, C, H, W]``.
        same: ``[P]`` 1.0 for same-class pairs, 0.0 otherwise.

    Returns:
        ``(loss, {"loss": float, "acc": float})``; ``acc`` is the fraction of
        pairs with ``(p > 0.5) == same``.

    Raises:
        TypeError: ``model`` is not a :class:`SiameseNetwork`, images are not
            floating point (or not of the model's dtype/device).
        ValueError: ``same`` is not one 0/1 label per pair, NaN/infinite images.
    """
    if not isinstance(model, SiameseNetwork):
        raise TypeError(f"model must be a SiameseNetwork, got {type(model).__name__}.")
    check_float_tensor("x1", x1, min_dims=2, layout="[pairs, C, H, W]")
    check_float_tensor("x2", x2, min_dims=2, layout="[pairs, C, H, W]")
    check_tensor("same", same)
    if same.is_complex():
        raise TypeError(f"same must hold real 0/1 labels, got dtype {same.dtype}.")
    if same.shape != x1.shape[:1]:
        raise ValueError(
            f"same must have shape [{x1.shape[0]}] (one label per pair), got "
            f"{tuple(same.shape)}."
        )
    if has_values(same):
        bad = same[(same != 0) & (same != 1)]
        if bad.numel():
            raise ValueError(
                "same must hold 1 (same class) or 0 (different classes), got "
                f"{sorted(set(bad.tolist()))}."
            )
    return _verification_loss(model, x1, x2, same)


def _verification_loss(
    model: SiameseNetwork, x1: torch.Tensor, x2: torch.Tensor, same: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`verification_loss` on inputs already checked."""
    logits = model(x1, x2)  # [P]
    target = same.to(dtype=logits.dtype, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, target)
    acc = ((logits > 0) == (target > 0.5)).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc)}


def make_siamese_step(
    model: SiameseNetwork,
    images: torch.Tensor,
    *,
    pairs: int,
    device: torch.device | str | None = None,
) -> Step:
    """A training step for :func:`metalearn.training.train`.

    Args:
        model: the Siamese network.
        images: ``[classes, examples, C, H, W]`` training images.
        pairs: P, pairs per step (even; half same-class).
        device: where to compute; ``None`` means the model's device.

    Returns:
        ``step(generator) -> (loss, {"loss", "acc"})``: samples ``pairs`` pairs
        with ``generator`` (:func:`sample_pairs`) and returns
        :func:`verification_loss` on them. ``step.identity`` (method, pairs and
        a fingerprint of ``images``) is stored in training checkpoints.

    Raises:
        TypeError, ValueError: bad images (checked once, here), ``pairs`` or
            device, or ``model`` is not a :class:`SiameseNetwork`.
    """
    if not isinstance(model, SiameseNetwork):
        raise TypeError(f"model must be a SiameseNetwork, got {type(model).__name__}.")
    _check_pair_inputs(images, pairs)
    device = check_device("device", device)

    def step(generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        check_generator("generator", generator, optional=False)
        x1, x2, same = _sample_pairs(images, pairs, generator)
        target = next(model.parameters()).device if device is None else device
        return _verification_loss(model, x1.to(target), x2.to(target), same.to(target))

    step.identity = {
        "method": "siamese",
        "pairs": pairs,
        "images": describe_tensor(images),
    }
    return step


def siamese_scores(model: SiameseNetwork, episode: Episode) -> torch.Tensor:
    """One-shot classification by the most similar support example.

    Every query is compared with every support example (the embeddings are
    computed once, the pairwise weighted L1 logits on all ``N*Q x N*K``
    pairs); the score of class ``k`` is the largest logit over the support
    examples of class ``k``, so the argmax is the label of the most similar
    support example (for ``K = 1`` this is exactly Koch et al.'s rule).

    Args:
        model: the Siamese network, used in whatever mode it is in (support
            and query are embedded in one batch).
        episode: an N-way K-shot episode.

    Returns:
        ``[N*Q, N]`` scores (logits of "same class"; apply a sigmoid for
        probabilities).

    Raises:
        TypeError, ValueError: ``model`` is not a :class:`SiameseNetwork`, or
            a bad episode (:func:`metalearn.episodes.check_episode`) or one
            whose dtype/device differ from the model's.
    """
    if not isinstance(model, SiameseNetwork):
        raise TypeError(f"model must be a SiameseNetwork, got {type(model).__name__}.")
    check_episode(episode)
    check_matches_module("episode.support_x", episode.support_x, model)
    ways = episode.ways
    n_support = episode.support_x.shape[0]
    h = model.embed(torch.cat([episode.support_x, episode.query_x]))
    support_h, query_h = h[:n_support], h[n_support:]  # [N*K, D], [N*Q, D]
    logits = model.pair_logits(query_h[:, None, :], support_h[None, :, :])  # [NQ, NK]
    index = episode.support_y.to(logits.device).expand(logits.shape[0], -1)
    scores = logits.new_full((logits.shape[0], ways), float("-inf"))
    return scores.scatter_reduce(1, index, logits, reduce="amax")  # [N*Q, N]


def siamese_classifier(model: SiameseNetwork) -> Callable[[Episode], torch.Tensor]:
    """A classifier for :func:`metalearn.evaluate.evaluate`: :func:`siamese_scores`.

    Returns:
        A function ``Episode -> [N*Q, N]`` query scores.
    """
    if not isinstance(model, SiameseNetwork):
        raise TypeError(f"model must be a SiameseNetwork, got {type(model).__name__}.")

    def classify(episode: Episode) -> torch.Tensor:
        return siamese_scores(model, episode)

    return classify
