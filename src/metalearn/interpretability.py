"""What a learned embedding shows: the neighbours of a prototype, the confusions.

A metric learner such as a Prototypical Network is a map ``f`` from images to
points; everything it knows is in which points lie close together. Two views
of that geometry, both on all the drawings of a set of characters
``[classes, examples, 1, H, W]`` (e.g. the 423 test characters x 20 drawers):

* **Retrieval.** The prototype of a character is the mean of its first ``K``
  embedded drawings (eq. {eq}`protonet-prototype`). Rank every *other*
  drawing of every character by its squared distance to it (eq.
  {eq}`protonet-distance`): if the embedding has learned what makes the
  character, the ``R = examples - K`` nearest drawings are that character's
  own remaining drawings. :func:`retrieval_precision` is the fraction that
  are, per character (the R-precision of information retrieval), eq.
  {eq}`challenges-rprecision`.
* **Confusions.** Classify each remaining drawing by its nearest prototype
  among *all* characters at once (a ``classes``-way problem, far harder than
  a 5-way episode); :func:`prototype_confusion` counts who is taken for whom,
  :func:`most_confused` lists the pairs mistaken for each other most often.

The same functions take raw pixels (:func:`pixel_features`) as the
untrained baseline. The book's Conv-4 normalises with the statistics of each
batch, so :func:`embed_drawings` embeds all drawings in large batches of a
fixed random order: each drawing is normalised with the statistics of a broad
sample of the set, not of one episode.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from metalearn.checks import check_images, check_module, check_positive_int, check_seed
from metalearn.protonet import squared_distances


def _check_features(features: object) -> torch.Tensor:
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        raise ValueError(
            "features must be a tensor [classes, examples, D] (e.g. from "
            f"embed_drawings or pixel_features), got {features!r:.80}."
        )
    if not features.is_floating_point() or not bool(torch.isfinite(features).all()):
        raise ValueError("features must hold finite floats.")
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 classes, got {features.shape[0]}.")
    return features


def _check_shots(features: torch.Tensor, shots: int) -> None:
    check_positive_int("shots", shots)
    if shots >= features.shape[1]:
        raise ValueError(
            f"shots={shots} leaves no drawing to retrieve: each class has "
            f"{features.shape[1]} examples; use shots <= {features.shape[1] - 1}."
        )


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Raw pixels as features: ``[classes, examples, H*W]`` floats in [0, 1]."""
    check_images(images)
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return x.flatten(2)


def embed_drawings(
    embedding: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1024,
    seed: int = 0,
) -> torch.Tensor:
    """Embed every drawing: ``[classes, examples, D]``.

    The drawings are embedded ``batch_size`` at a time in one fixed random
    order (``seed``), without gradients, so a batch norm with per-batch
    statistics sees a broad mix of characters in every batch. The result is
    put back in the order of ``images``.

    Args:
        embedding: maps ``[B, C, H, W]`` to ``[B, D]`` (e.g. a ProtoNet's
            Conv-4, or :func:`metalearn.transfer.backbone_of` a pre-trained
            one). Used in whatever mode it is in.
        images: ``[classes, examples, C, H, W]``, ``uint8`` or floats in [0, 1].
    """
    check_module("embedding", embedding)
    check_images(images)
    check_positive_int("batch_size", batch_size)
    check_seed("seed", seed)
    classes, examples = images.shape[:2]
    flat = images.flatten(0, 1)  # [classes * examples, C, H, W]
    order = torch.randperm(len(flat), generator=torch.Generator().manual_seed(seed))
    parameter = next(embedding.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    chunks = []
    with torch.no_grad():
        for start in range(0, len(flat), batch_size):
            x = flat[order[start : start + batch_size].to(flat.device)].to(device)
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            z = embedding(x)
            if z.dim() != 2 or z.shape[0] != len(x):
                raise ValueError(
                    f"embedding returned {tuple(z.shape)} for {len(x)} images; it "
                    "must return [B, D] features (e.g. Conv4(head=False))."
                )
            chunks.append(z)
    z = torch.cat(chunks)  # [classes * examples, D], in the shuffled order
    restored = torch.empty_like(z)
    restored[order.to(z.device)] = z
    return restored.reshape(classes, examples, -1)


def prototypes_and_rest(
    features: torch.Tensor, shots: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prototypes of the first ``shots`` drawings; the other drawings, flattened.

    Returns:
        ``(prototypes [classes, D], rest [classes * (examples - shots), D],
        rest_labels [classes * (examples - shots)])``.
    """
    _check_features(features)
    _check_shots(features, shots)
    classes, examples = features.shape[:2]
    centres = features[:, :shots].mean(dim=1)  # eq. (protonet-prototype)
    rest = features[:, shots:].reshape(classes * (examples - shots), -1)
    labels = torch.arange(classes, device=features.device).repeat_interleave(
        examples - shots
    )
    return centres, rest, labels


def nearest_neighbours(
    prototype: torch.Tensor, bank: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` rows of ``bank`` nearest to ``prototype`` (squared L2).

    Args:
        prototype: ``[D]`` or ``[M, D]``.
        bank: ``[B, D]``.

    Returns:
        ``(indices, squared distances)``, each ``[count]`` (or ``[M, count]``),
        nearest first.
    """
    single = prototype.dim() == 1
    queries = prototype.unsqueeze(0) if single else prototype
    check_positive_int("count", count)
    if count > bank.shape[0]:
        raise ValueError(f"count={count} exceeds the {bank.shape[0]} rows of bank.")
    distances = squared_distances(queries, bank)  # [M, B]
    values, indices = distances.topk(count, dim=1, largest=False)
    return (indices[0], values[0]) if single else (indices, values)


def retrieval_precision(features: torch.Tensor, shots: int) -> torch.Tensor:
    """R-precision per class, eq. {eq}`challenges-rprecision`: ``[classes]``.

    For class ``c``: the fraction of the ``R = examples - shots`` drawings
    nearest to its prototype (among every class's drawings after the first
    ``shots``) that belong to ``c``. 1 is a perfect embedding; a random one
    scores about ``1 / classes``.
    """
    centres, rest, labels = prototypes_and_rest(features, shots)
    retrieved = features.shape[1] - shots
    indices, _ = nearest_neighbours(centres, rest, retrieved)  # [classes, R]
    own = torch.arange(len(centres), device=labels.device).unsqueeze(1)
    return (labels[indices] == own).double().mean(dim=1)


def prototype_confusion(features: torch.Tensor, shots: int) -> torch.Tensor:
    """Counts ``[classes, classes]``: row = true class, column = nearest prototype.

    Every drawing after the first ``shots`` of its class is classified by its
    nearest prototype among all classes (ProtoNet's rule, eq.
    {eq}`protonet-softmax`, over every class at once).
    """
    centres, rest, labels = prototypes_and_rest(features, shots)
    predicted = squared_distances(rest, centres).argmin(dim=1)
    classes = len(centres)
    flat = labels * classes + predicted
    counts = torch.bincount(flat, minlength=classes * classes)
    return counts.reshape(classes, classes)


def most_confused(confusion: torch.Tensor, count: int) -> list[tuple[int, int, int]]:
    """The ``count`` pairs of classes confused most often, in either direction.

    Returns:
        ``[(a, b, errors)]`` with ``a < b`` and ``errors = confusion[a, b] +
        confusion[b, a]``, most errors first (ties: smaller ``a``, then ``b``);
        only pairs with at least one error.
    """
    if (not isinstance(confusion, torch.Tensor) or confusion.dim() != 2
            or confusion.shape[0] != confusion.shape[1]):
        raise ValueError(f"confusion must be a square [classes, classes] tensor, "
                         f"got {confusion!r:.80}.")
    check_positive_int("count", count)
    pair = (confusion + confusion.T).triu(diagonal=1)
    a, b = torch.nonzero(pair, as_tuple=True)
    errors = pair[a, b]
    ranked = sorted(zip(errors.tolist(), a.tolist(), b.tolist(), strict=True),
                    key=lambda t: (-t[0], t[1], t[2]))
    return [(i, j, int(e)) for e, i, j in ranked[:count]]


def _draw(ax, image: torch.Tensor, colour: str | None = None) -> None:
    pixels = image.squeeze(0).float().cpu()
    ax.imshow(pixels.numpy(), cmap="gray_r", vmin=0, vmax=float(pixels.max()) or 1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour is not None:
            spine.set_color(colour)
            spine.set_linewidth(2.5)


def plot_prototype_neighbours(
    images: torch.Tensor,
    features: torch.Tensor,
    classes: Sequence[int],
    *,
    shots: int = 1,
    neighbours: int = 8,
    labels: Sequence[str] | None = None,
    title: str = "The test drawings nearest to each prototype",
) -> Figure:
    """Each chosen class's support drawings, then its prototype's nearest drawings.

    A row per class in ``classes``: the ``shots`` drawings whose mean is the
    prototype, a gap, then the ``neighbours`` nearest drawings among all
    classes' drawings after the first ``shots`` (as in
    :func:`retrieval_precision`), framed green when they are the same
    character and red when not.
    """
    check_images(images)
    _check_features(features)
    if tuple(images.shape[:2]) != tuple(features.shape[:2]):
        raise ValueError(
            f"images {tuple(images.shape[:2])} and features "
            f"{tuple(features.shape[:2])} must have the same [classes, examples]."
        )
    chosen = list(classes)
    if not chosen or not all(0 <= c < images.shape[0] for c in chosen):
        raise ValueError(f"classes must index the {images.shape[0]} classes.")
    if labels is not None and len(labels) != len(chosen):
        raise ValueError(f"{len(labels)} labels for {len(chosen)} classes.")
    centres, rest, rest_labels = prototypes_and_rest(features, shots)
    per_class = images.shape[1] - shots
    cols = shots + 1 + neighbours
    fig, axes = plt.subplots(len(chosen), cols, figsize=(0.95 * cols,
                                                         1.05 * len(chosen) + 0.9),
                             squeeze=False)
    for row, c in enumerate(chosen):
        for k in range(shots):
            _draw(axes[row, k], images[c, k], "tab:blue")
        axes[row, shots].axis("off")
        indices, _ = nearest_neighbours(centres[c], rest, neighbours)
        for j, index in enumerate(indices.tolist()):
            owner = int(rest_labels[index])
            drawing = shots + index % per_class
            _draw(axes[row, shots + 1 + j], images[owner, drawing],
                  "tab:green" if owner == c else "tab:red")
        if labels is not None:
            axes[row, 0].text(-0.2, 0.5, labels[row], transform=axes[row, 0].transAxes,
                              ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("support", fontsize=9, loc="left")
    axes[0, shots + 1].set_title(
        "nearest drawings to the prototype (green: same character, red: another)",
        fontsize=9, loc="left")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.14 if labels is not None else 0.03, right=0.98,
                        top=1 - 0.75 / fig.get_figheight(), bottom=0.02, hspace=0.2)
    return fig


def plot_confused_pairs(
    images: torch.Tensor,
    pairs: Sequence[tuple[int, int, int]],
    *,
    examples: int = 3,
    names: Sequence[str] | None = None,
    classified: int | None = None,
) -> Figure:
    """One row per confused pair: drawings of the first, then of the second.

    Args:
        images: ``[classes, examples, 1, H, W]``.
        pairs: from :func:`most_confused`.
        examples: drawings shown of each character.
        names: a name per class (e.g. its character id), for the row labels.
        classified: drawings of the pair that were classified (e.g. ``2 *
            (examples - shots)``), to print the errors as a fraction of them.
    """
    check_images(images)
    check_positive_int("examples", examples)
    if not pairs:
        raise ValueError("pairs is empty: nothing was confused.")
    if names is not None and len(names) != images.shape[0]:
        raise ValueError(f"{len(names)} names for {images.shape[0]} classes.")
    cols = 2 * examples + 1
    fig, axes = plt.subplots(len(pairs), cols,
                             figsize=(0.95 * cols + 1.8, 1.0 * len(pairs) + 0.7),
                             squeeze=False)
    for row, (a, b, errors) in enumerate(pairs):
        for k in range(examples):
            _draw(axes[row, k], images[a, k])
            _draw(axes[row, examples + 1 + k], images[b, k])
        axes[row, examples].axis("off")
        name_a, name_b = (names[a], names[b]) if names is not None else (a, b)
        count = f"{errors} of {classified}" if classified else f"{errors}"
        axes[row, 0].text(-0.25, 0.5, f"{name_a} / {name_b}\n{count} drawings\n"
                          "misclassified", transform=axes[row, 0].transAxes,
                          ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("first character", fontsize=9, loc="left")
    axes[0, examples + 1].set_title("second character", fontsize=9, loc="left")
    fig.suptitle("The pairs of test characters most often taken for each other",
                 fontsize=10)
    fig.subplots_adjust(left=0.2, right=0.98, top=0.88, bottom=0.03, hspace=0.25)
    return fig
