"""Two costs of few-shot learning: compute per training step, and training tasks.

**Compute.** What one training step of each method keeps for its backward
pass (:func:`backward_graphs_diagram`, the picture), and the fall-back
measurement of second-order MAML's cost against the number of inner steps
(:func:`second_order_costs`, in the format that the Omniglot MAML chapter
records) for a run in which that chapter has not run.

**Task efficiency.** How test accuracy grows with the number of classes seen
in training. :class:`ClassSubsetRecipe` trains a Prototypical Network
(Snell et al. 2017) or a plain classifier (the pre-training of
:mod:`metalearn.transfer`, scored by nearest centroids on its features) on the
first ``c`` characters of one fixed random order of the training characters
(:func:`training_classes`), optionally with their rotations as new classes.
Both methods process the same number of images per optimiser step (eq.
{eq}`efficiency-budget`): ProtoNet's ``N`` -way ``K`` -shot episode with ``Q``
queries per class holds ``N (K + Q)`` images, the pre-training mini-batch holds
as many. :func:`task_efficiency_recipes` lists one recipe per point of a
profile; :func:`plot_task_efficiency` and :func:`task_efficiency_table` show
the measured points.

References:
    Snell, Swersky and Zemel (2017), *Prototypical Networks for Few-shot
    Learning*, NeurIPS. Chen et al. (2019), *A Closer Look at Few-shot
    Classification*, ICLR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from torch import nn

from metalearn.checks import check_bool, check_images, check_positive_int, check_seed
from metalearn.cost import measure_step
from metalearn.data.omniglot import omniglot, rotate_classes
from metalearn.evaluate import Accuracy
from metalearn.maml import make_maml_step
from metalearn.models import Conv4
from metalearn.profiles import Profile
from metalearn.protonet import make_protonet_step, protonet_classifier
from metalearn.transfer import (
    backbone_of,
    frozen_classifier,
    make_classification_step,
    nearest_centroid_logits,
)
from metalearn.zoo import Build

METHODS = ("protonet", "pretrain")
LABELS = {"protonet": "ProtoNet", "pretrain": "pre-training + nearest centroid"}
COLOURS = {"protonet": "tab:blue", "pretrain": "tab:green"}
ROTATIONS = 4  # a character and its rotations by 90, 180 and 270 degrees


# ------------------------------------------------------------------- compute


def second_order_costs(
    images: torch.Tensor,
    inner_steps: Sequence[int],
    *,
    meta_batch: int,
    repeats: int = 1,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Time and autograd memory of one MAML and one FOMAML meta-iteration.

    The measurement of the Omniglot MAML chapter, for each number of inner
    steps: a fresh ``Conv4(ways=5)`` (seed 0), 5-way 1-shot tasks with one
    query per class, inner step 0.4, ``meta_batch`` tasks, timed by
    :func:`metalearn.cost.measure_step` (one warm-up, the median of
    ``repeats``). The result has the layout that chapter records as
    ``second_order_cost``, so either can be read the same way.

    Args:
        images: training classes ``[classes, examples, 1, 28, 28]``.
        inner_steps: the inner-step counts to measure, e.g. ``[1, 2, 3]``.
        meta_batch: tasks per meta-iteration.
        repeats: timed calls per point.
        device: where to compute (default: the CPU).

    Returns:
        ``{"inner_steps": [...], "meta_batch": m, "MAML": {"seconds": [...],
        "saved_mib": [...]}, "FOMAML": {...}}``.
    """
    check_images(images, values=False)
    check_positive_int("meta_batch", meta_batch)
    check_positive_int("repeats", repeats)
    counts = list(inner_steps)
    if not counts:
        raise ValueError("inner_steps is empty; pass e.g. [1, 2, 3].")
    for steps in counts:
        check_positive_int("inner_steps[i]", steps)
    device = torch.device(device) if device is not None else torch.device("cpu")
    images = images.to(device)
    result: dict[str, Any] = {"inner_steps": counts, "meta_batch": meta_batch}
    for method in ("MAML", "FOMAML"):
        seconds, saved = [], []
        for steps in counts:
            torch.manual_seed(0)
            model = Conv4(ways=5).to(device)
            step = make_maml_step(
                model, images, ways=5, shots=1, queries=1,
                meta_batch_size=meta_batch, inner_lr=0.4, steps=steps,
                first_order=method == "FOMAML",
            )
            cost = measure_step(step, repeats=repeats, device=device)
            seconds.append(cost.seconds)
            saved.append(cost.saved_bytes / 2**20)
        result[method] = {"seconds": seconds, "saved_mib": saved}
    return result


def _row(ax: Axes, y: float, boxes: Sequence[tuple[str, bool]], colour: str) -> list:
    """Boxes left to right at height ``y``; red-edged where kept for backward."""
    drawn, x = [], 2.6
    for i, (text, kept) in enumerate(boxes):
        width = 1.9 if i else 1.0
        ax.add_patch(FancyBboxPatch(
            (x, y - 0.38), width, 0.76, boxstyle="round,pad=0.05",
            facecolor="tab:red" if kept else colour, alpha=0.25 if kept else 0.12,
            edgecolor="tab:red" if kept else "0.5", linewidth=1.4 if kept else 0.8))
        ax.text(x + width / 2, y, text, ha="center", va="center", fontsize=8.5)
        if drawn:
            ax.add_patch(FancyArrowPatch(
                (drawn[-1][1] + 0.05, y), (x - 0.05, y), arrowstyle="-|>",
                mutation_scale=11, color="0.35"))
        drawn.append((x, x + width))
        x += width + 0.45
    return drawn


def backward_graphs_diagram(inner_steps: int = 3) -> Figure:
    """What one training step of MAML, FOMAML, Reptile and ProtoNet differentiates.

    One row per method: the forward computation from the meta-parameters
    :math:`\\theta` (inner steps on the support set, then the query loss),
    with the parts whose graph autograd keeps for the meta-gradient edged in
    red. Second-order MAML keeps every inner step (memory grows with
    ``inner_steps``); FOMAML keeps only the query pass at the adapted weights;
    Reptile differentiates each inner step on its own and never through the
    chain; ProtoNet has no inner loop: one pass over the episode.
    """
    check_positive_int("inner_steps", inner_steps)
    fig, ax = plt.subplots(figsize=(11, 4.6))
    ax.set(xlim=(0, 16.5), ylim=(0.2, 8.6))
    ax.axis("off")
    chain = [(f"inner step {i + 1}\n(support)", True) for i in range(inner_steps)]
    rows = {
        "MAML": ([("$\\theta$", False), *chain, ("query loss\nat $\\phi_k$", True)],
                 "backward through all $k$ inner steps:\nmemory grows with $k$"),
        "first-order MAML": (
            [("$\\theta$", False), *[(t, False) for t, _ in chain],
             ("query loss\nat $\\phi_k$", True)],
            "backward through the query pass only;\nits gradient is applied to "
            "$\\theta$"),
        "Reptile": (
            [("$\\theta$", False), *[(t, False) for t, _ in chain],
             ("$\\theta + \\epsilon(\\phi_k - \\theta)$", False)],
            "each inner step differentiated alone;\nno meta-gradient, no query "
            "loss"),
        "ProtoNet": ([("$\\theta$", False), ("embed support\nand queries", True),
                      ("prototypes,\nquery loss", True)],
                     "one forward and backward pass\nover the episode"),
    }
    for i, (method, (boxes, note)) in enumerate(rows.items()):
        y = 7.6 - 2.1 * i
        ax.text(0.1, y, method, fontsize=10, weight="bold", va="center")
        drawn = _row(ax, y, boxes, "tab:blue")
        ax.text(drawn[-1][1] + 0.3, y, note, fontsize=8, va="center")
    ax.add_patch(Rectangle((0.2, 0.35), 0.35, 0.25, facecolor="tab:red", alpha=0.25,
                           edgecolor="tab:red"))
    ax.text(0.7, 0.47, "graph kept by autograd for the training gradient",
            fontsize=8, va="center")
    ax.set_title(f"What one training step keeps for its backward pass "
                 f"(k = {inner_steps} inner steps)")
    fig.tight_layout()
    return fig


def plot_step_costs(
    second_order: Mapping[str, Any],
    references: Mapping[str, tuple[float, float]],
) -> Figure:
    """Seconds and MiB per training step: MAML and FOMAML against inner steps.

    Args:
        second_order: the layout of :func:`second_order_costs` (or the record
            ``second_order_cost`` of the Omniglot MAML chapter).
        references: label -> ``(seconds, MiB)`` of one training step of
            another method (e.g. Reptile's and ProtoNet's book recipes),
            drawn as horizontal lines.
    """
    for key in ("inner_steps", "meta_batch", "MAML", "FOMAML"):
        if key not in second_order:
            raise ValueError(
                f"second_order has no {key!r}; pass the result of "
                "second_order_costs or the recorded 'second_order_cost'."
            )
    steps = list(second_order["inner_steps"])
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4))
    for panel, (ax, field, unit) in enumerate(zip(
            axes, ("seconds", "saved_mib"),
            ("seconds per training step", "MiB saved for the backward pass"),
            strict=True)):
        for method, style in (("MAML", "o-"), ("FOMAML", "s-")):
            values = list(second_order[method][field])
            if len(values) != len(steps):
                raise ValueError(
                    f"{method} has {len(values)} {field} for {len(steps)} inner "
                    "step counts."
                )
            ax.plot(steps, values, style, label=f"{method} (meta-batch "
                    f"{second_order['meta_batch']}, 5-way 1-shot)")
        for i, (label, pair) in enumerate(references.items()):
            ax.axhline(pair[panel], ls="--", color=f"C{i + 2}", label=label)
        ax.set(xlabel="inner steps in training", ylabel=unit, xticks=steps)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_title("time of one training step")
    axes[1].set_title("memory autograd holds for it")
    axes[1].legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------- task efficiency


def subset_order(count: int, seed: int = 0) -> torch.Tensor:
    """One fixed random order of ``count`` classes (``torch.randperm``, ``seed``).

    Its first ``c`` entries are the training classes of a point with ``c``
    characters, so the subsets are nested: the 25 characters of the smallest
    point are among the 100 of the next, and so on.
    """
    check_positive_int("count", count)
    check_seed("seed", seed)
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))


def training_classes(
    images: torch.Tensor, characters: int, *, rotate: bool, seed: int = 0
) -> torch.Tensor:
    """The first ``characters`` classes of :func:`subset_order`, maybe rotated.

    Args:
        images: the training characters ``[classes, examples, C, H, W]``.
        characters: how many of them to keep (``1..classes``).
        rotate: also add each kept character's rotations by 90, 180 and 270
            degrees as new classes (:func:`metalearn.data.rotate_classes`).
        seed: the seed of the order.

    Returns:
        ``[characters, examples, C, H, W]``, or ``4 * characters`` classes
        with ``rotate`` (the originals first, then each rotation).
    """
    check_images(images, values=False)
    check_positive_int("characters", characters)
    check_bool("rotate", rotate)
    if characters > images.shape[0]:
        raise ValueError(
            f"characters={characters} but images hold only {images.shape[0]} "
            "classes; use at most that many."
        )
    kept = images[subset_order(images.shape[0], seed)[:characters].to(images.device)]
    return rotate_classes(kept) if rotate else kept


@dataclass(frozen=True)
class ClassSubsetRecipe:
    """ProtoNet or pre-training on a subset of the training characters (a zoo recipe).

    Train with :func:`metalearn.zoo.fit_recipe`. Both methods start from the
    same Conv-4 filters (``seed``), use Adam with a cosine schedule from ``lr``
    to 0, and push ``images_per_step`` images through the network per step:
    ProtoNet as one ``ways``-way ``shots``-shot episode with
    ``images_per_step / ways - shots`` queries per class, pre-training as a
    mini-batch of that many images classified among all training classes.
    Both are scored at test time by the nearest-centroid rule on the features,
    eq. {eq}`protonet-softmax`. No validation runs during training.
    """

    name: str  # the checkpoint's name
    method: str  # "protonet" or "pretrain"
    characters: int  # training characters kept (first of subset_order)
    rotate: bool  # also their 90/180/270-degree rotations, as new classes
    steps: int  # optimiser steps
    images_per_step: int = 60  # images through the Conv-4 per step (both methods)
    ways: int = 20  # N of ProtoNet's training episodes (<= the classes)
    shots: int = 1  # K of ProtoNet's training episodes
    lr: float = 3e-3  # Adam's initial learning rate
    hidden: int = 64  # Conv-4 filters (64-dimensional features on 28x28)
    subset_seed: int = 0  # seed of the order of the training characters
    train_split: str = "train"  # the Omniglot characters to draw from
    seed: int = 0  # initial weights

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}.")
        for field in ("characters", "steps", "images_per_step", "ways", "shots"):
            check_positive_int(field, getattr(self, field))
        check_bool("rotate", self.rotate)
        if self.images_per_step % self.ways or self.queries < 1:
            raise ValueError(
                f"images_per_step={self.images_per_step} must be a multiple of "
                f"ways={self.ways} with at least one query per class beyond the "
                f"{self.shots} shots (e.g. {self.ways * (self.shots + 2)})."
            )

    @property
    def queries(self) -> int:
        """Q of ProtoNet's episodes: ``images_per_step / ways - shots``."""
        return self.images_per_step // self.ways - self.shots

    @property
    def classes(self) -> int:
        """The number of training classes: the characters, times 4 with rotations."""
        return self.characters * (ROTATIONS if self.rotate else 1)

    @property
    def images_processed(self) -> int:
        """The budget, eq. {eq}`efficiency-budget`: ``steps * images_per_step``."""
        return self.steps * self.images_per_step

    def build(self, device: torch.device, profile: Profile) -> Build:
        """Model, step, Adam and its cosine schedule (no validation callback)."""
        images = training_classes(
            omniglot().split(self.train_split), self.characters,
            rotate=self.rotate, seed=self.subset_seed,
        ).to(device)
        if self.method == "protonet" and self.ways > len(images):
            raise ValueError(
                f"{len(images)} training classes cannot make {self.ways}-way "
                f"episodes; use ways <= {len(images)} or more characters."
            )
        torch.manual_seed(self.seed)  # the same filters for both methods
        if self.method == "protonet":
            net = Conv4(hidden=self.hidden, head=False)
        else:
            net = Conv4(ways=len(images), hidden=self.hidden)
        layout = torch.channels_last if device.type == "cpu" else torch.preserve_format
        model = net.to(device, memory_format=layout)  # channels-last: faster on CPU
        if self.method == "protonet":
            step = make_protonet_step(
                model, images, ways=self.ways, shots=self.shots, queries=self.queries
            )
        else:
            step = make_classification_step(
                model, images, batch_size=self.images_per_step
            )
        optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, self.steps)
        return Build(model, step, optimiser, scheduler, None)

    def embedding(self, model: nn.Module) -> nn.Module:
        """The network whose features are scored: ProtoNet's, or the backbone.

        For pre-training, :func:`metalearn.transfer.backbone_of` the model,
        kept in the model's channels-last layout on a CPU (``backbone_of``
        reads the layout of the first filters, ``[64, 1, 3, 3]``, which are
        contiguous in both layouts, and returns the slower contiguous one).
        """
        if self.method == "protonet":
            return model
        backbone = backbone_of(model)
        weight = model.features[1][0].weight  # [64, 64, 3, 3]: its layout is clear
        if weight.is_contiguous(memory_format=torch.channels_last) and not (
                weight.is_contiguous()):
            backbone = backbone.to(memory_format=torch.channels_last)
        return backbone

    def classifier(self, model: nn.Module, **options: Any):
        """``classify(episode)``: nearest centroid on the learned features."""
        if self.method == "protonet":
            return protonet_classifier(model, **options)
        return frozen_classifier(self.embedding(model), nearest_centroid_logits)


def task_efficiency_recipes(profile: Profile) -> list[ClassSubsetRecipe]:
    """One recipe per point and method, with the profile's budget.

    For each choice of ``profile.efficiency_rotations`` and each count of
    ``profile.efficiency_characters``: a ProtoNet and a pre-training recipe,
    each of ``profile.efficiency_steps`` steps of 60 images.
    """
    if not isinstance(profile, Profile):
        raise TypeError(f"profile must be a Profile, got {profile!r}.")
    recipes = []
    for rotate in profile.efficiency_rotations:
        for characters in profile.efficiency_characters:
            for method in METHODS:
                suffix = "-rot" if rotate else ""
                recipes.append(ClassSubsetRecipe(
                    name=f"taskeff-{method}-{characters}c{suffix}", method=method,
                    characters=characters, rotate=rotate,
                    steps=profile.efficiency_steps))
    return recipes


@dataclass(frozen=True)
class Point:
    """One measured point: a recipe, its test accuracy and its training time."""

    recipe: ClassSubsetRecipe
    accuracy: Accuracy  # on the fixed 5-way 1-shot test episodes
    train_seconds: float  # training wall time (validation excluded)
    loaded: bool = False  # True: from a finished checkpoint, nothing trained here

    @property
    def label(self) -> str:
        return LABELS[self.recipe.method]


def gap(a: Accuracy, b: Accuracy) -> str:
    """``a - b`` in points, and whether the two 95% intervals are apart ("clear")."""
    clear = abs(a.mean - b.mean) > a.ci95 + b.ci95
    difference = round(100 * (a.mean - b.mean), 1) + 0.0  # + 0.0: no "-0.0"
    return (f"{difference:+.1f} points "
            f"({'clear' if clear else 'within the intervals'})")


def _check_points(points: Sequence[Point]) -> None:
    if not points or not all(isinstance(p, Point) for p in points):
        raise TypeError("points must be a non-empty list of efficiency.Point.")


def plot_task_efficiency(points: Sequence[Point], *, ax: Axes | None = None) -> Axes:
    """Test accuracy against the number of training classes, with 95% CIs.

    One line per method and per choice of rotations: solid circles for
    distinct characters only, dashed triangles where rotations multiply the
    classes by four. The x axis is logarithmic.
    """
    _check_points(points)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    for method in METHODS:
        for rotate, style in ((False, "o-"), (True, "^--")):
            chosen = sorted((p for p in points if p.recipe.method == method
                             and p.recipe.rotate == rotate),
                            key=lambda p: p.recipe.classes)
            if not chosen:
                continue
            ax.errorbar([p.recipe.classes for p in chosen],
                        [100 * p.accuracy.mean for p in chosen],
                        yerr=[100 * p.accuracy.ci95 for p in chosen], fmt=style,
                        color=COLOURS[method], capsize=3,
                        label=f"{LABELS[method]}, "
                              f"{'with rotations' if rotate else 'characters only'}")
    ax.set_xscale("log")
    ax.set(xlabel="training classes (log scale)",
           ylabel="test accuracy, 5-way 1-shot (%)",
           title="Accuracy against the number of training classes (95% CI)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax


def task_efficiency_table(points: Sequence[Point]) -> str:
    """A Markdown table: one row per training set, one column per method.

    The difference column is ProtoNet minus pre-training, in points, marked
    *clear* when the two 95% intervals do not overlap.
    """
    _check_points(points)
    rows: dict[tuple[int, bool], dict[str, Point]] = {}
    for p in points:
        rows.setdefault((p.recipe.characters, p.recipe.rotate), {})[p.recipe.method] = p
    lines = ["| characters | rotations | classes | images processed | ProtoNet | "
             "pre-training + NC | ProtoNet - pre-training |",
             "|---|---|---|---|---|---|---|"]
    for (characters, rotate), by_method in sorted(rows.items(),
                                                   key=lambda r: (r[0][1], r[0][0])):
        first = next(iter(by_method.values())).recipe
        cells = [str(by_method[m].accuracy) if m in by_method else "–"
                 for m in METHODS]
        difference = "–"
        if all(m in by_method for m in METHODS):
            difference = gap(*(by_method[m].accuracy for m in METHODS))
        lines.append(f"| {characters:,} | {'yes' if rotate else 'no'} | "
                     f"{first.classes:,} | {first.images_processed:,} | "
                     f"{' | '.join(cells)} | {difference} |")
    return "\n".join(lines)


def _thumbnail(ax: Axes, image: torch.Tensor, x: float, y: float, size: float) -> None:
    pixels = image.squeeze(0).float().cpu().numpy()
    ax.imshow(pixels, cmap="gray_r", vmin=0, vmax=pixels.max() or 1,
              extent=(x, x + size, y, y + size), zorder=3)


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str,
         colour: str) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.08",
                                facecolor=colour, alpha=0.15, edgecolor=colour))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5)


def task_efficiency_diagram(
    images: torch.Tensor,
    characters: Sequence[int] = (25, 100, 400, 1028),
    *,
    seed: int = 0,
    images_per_step: int = 60,
    ways: int = 20,
) -> Figure:
    """The design of the task-efficiency experiment, drawn on real characters.

    Left: the nested subsets of the training characters (the first of
    :func:`subset_order`, a few drawn inside the smallest) and one character
    with its three rotations. Middle: the two trainings, each fed the same
    number of images per step. Right: the shared test.

    Args:
        images: the training characters ``[classes, examples, 1, H, W]``.
        characters: the subset sizes, increasing.
        seed: the seed of the order (as in :func:`training_classes`).
        images_per_step: the images of one step of either method.
        ways: N of ProtoNet's training episodes.
    """
    check_images(images, values=False)
    sizes = list(characters)
    if not sizes or sizes != sorted(sizes) or sizes[-1] > images.shape[0]:
        raise ValueError(
            f"characters must increase and stay within {images.shape[0]}, got "
            f"{characters!r}."
        )
    for size in sizes:
        check_positive_int("characters[i]", size)
    check_positive_int("images_per_step", images_per_step)
    check_positive_int("ways", ways)
    order = subset_order(images.shape[0], seed)
    fig, ax = plt.subplots(figsize=(12, 4.6))
    ax.set(xlim=(0, 24.5), ylim=(0, 9.6))
    ax.set_aspect("equal")
    ax.axis("off")
    for depth, size in enumerate(reversed(sizes)):  # nested, largest outside
        inset = 0.55 * depth
        ax.add_patch(Rectangle((0.2 + inset, 2.6 + inset), 7.6 - 2 * inset,
                               6.6 - 2 * inset, fill=False, edgecolor=f"C{depth}",
                               linewidth=1.4))
        ax.text(0.35 + inset, 8.95 - inset, f"{size:,} characters", fontsize=8,
                color=f"C{depth}", va="top")
    for i in range(3):  # three characters of the smallest subset
        _thumbnail(ax, images[order[i], 0], 2.0 + 1.4 * i, 4.7, 1.2)
    ax.text(4.0, 2.15, "nested random subsets of the training characters",
            ha="center", fontsize=8.5)
    for k in range(ROTATIONS):  # one character and its rotations
        rotated = torch.rot90(images[order[0], 0], k, dims=(-2, -1))
        _thumbnail(ax, rotated, 0.6 + 1.25 * k, 0.2, 1.0)
    ax.text(5.6, 0.7, "with rotations:\n4 classes per\ncharacter", fontsize=8,
            va="center")
    queries = images_per_step // ways - 1
    _box(ax, 10.0, 5.6, 6.4, 2.6,
         f"ProtoNet\n{ways}-way 1-shot episodes:\n{ways} support + {ways * queries} "
         f"query images\n= {images_per_step} images per step", COLOURS["protonet"])
    _box(ax, 10.0, 1.2, 6.4, 2.6,
         f"pre-training\nmini-batches of {images_per_step} images,\ncross-entropy "
         "over all training classes\n(the head is dropped afterwards)",
         COLOURS["pretrain"])
    _box(ax, 18.6, 3.4, 5.6, 2.6,
         "the book's fixed 5-way 1-shot\ntest episodes (new characters):\n"
         "nearest centroid on the\nlearned features", "tab:gray")
    for y in (6.9, 2.5):
        ax.add_patch(FancyArrowPatch((8.1, 5.6), (9.8, y), arrowstyle="-|>",
                                     mutation_scale=13, color="0.35"))
        ax.add_patch(FancyArrowPatch((16.6, y), (18.4, 4.7), arrowstyle="-|>",
                                     mutation_scale=13, color="0.35"))
    ax.text(13.2, 4.7, "same steps x images\nfor every point", ha="center",
            va="center", fontsize=8.5, style="italic")
    ax.set_title("Task efficiency: the same budget, more or fewer training classes")
    fig.tight_layout()
    return fig


def summary_line(point: Point) -> str:
    """One printed line per trained point."""
    r = point.recipe
    origin = " (loaded from its checkpoint)" if point.loaded else ""
    return (f"{r.name:<28} {r.classes:>5,} classes, {r.images_processed:,} images, "
            f"{point.train_seconds / 60:4.1f} min{origin}: {point.accuracy}")


def findings(points: Sequence[Point]) -> list[str]:
    """Statements computed from the points, as Markdown bullets.

    Per method: the change from the fewest to the most characters (with and
    without rotations), and, where the profile has both, rotated classes
    against as many distinct characters (``c`` characters with rotations
    against ``4c`` characters without: the same number of classes).
    """
    _check_points(points)
    found = {(p.recipe.method, p.recipe.characters, p.recipe.rotate): p
             for p in points}
    lines = []
    for method in METHODS:
        for rotate in (False, True):
            counts = sorted(c for m, c, r in found if m == method and r == rotate)
            if len(counts) < 2:
                continue
            low, high = found[method, counts[0], rotate], found[method, counts[-1],
                                                                rotate]
            lines.append(
                f"- {LABELS[method]}, {'with' if rotate else 'without'} rotations: "
                f"{counts[-1]:,} characters against {counts[0]:,}: "
                f"{gap(high.accuracy, low.accuracy)}.")
        for (m, c, r), rotated in sorted(found.items()):
            plain = found.get((m, ROTATIONS * c, False))
            if m == method and r and plain is not None:
                lines.append(
                    f"- {LABELS[method]}, {rotated.recipe.classes:,} classes: {c:,} "
                    f"characters with rotations against {ROTATIONS * c:,} distinct "
                    f"characters: {gap(rotated.accuracy, plain.accuracy)}.")
    return lines
