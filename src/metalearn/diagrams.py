"""Conceptual figures: the picture that opens each idea of the book.

Result plots (learning curves, accuracy tables) live in :mod:`metalearn.plots`;
the functions here draw what a method *does*: an episode on real Omniglot
images, MAML's initialisation in parameter space and the paths of MAML,
first-order MAML, Reptile and joint training on the exact 2-D quadratic tasks
of :mod:`metalearn.quadratic`, ProtoNet's prototypes and decision regions in a
2-D embedding, and the Siamese and Matching network architectures. Each takes
its data as arguments, draws from it (nothing is made up), and returns the
figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from metalearn.episodes import Episode, sample_episode
from metalearn.quadratic import (
    QuadraticTasks,
    adapted,
    fixed_point,
    maml_objective,
    trajectory,
)

COLOURS = plt.get_cmap("tab10").colors
METHOD_STYLE = {  # one colour per method, the same in every figure of the book
    "joint": ("joint training", "tab:gray"),
    "reptile": ("Reptile", "tab:green"),
    "fomaml": ("first-order MAML", "tab:orange"),
    "maml": ("MAML", "tab:blue"),
}


# ---------------------------------------------------------------- episodes


def _mosaic(episode: Episode, pad: int = 4) -> tuple[np.ndarray, int, int, int]:
    """One image: a row per label, support images, a gap, then query images."""
    ways = episode.ways
    shots = episode.support_x.shape[0] // ways
    queries = episode.query_x.shape[0] // ways
    side = episode.support_x.shape[-1]
    cell = side + pad
    cols = shots + 1 + queries
    canvas = np.zeros((ways * cell + pad, cols * cell + pad))
    for label in range(ways):
        row = [*episode.support_x[episode.support_y == label],
               None, *episode.query_x[episode.query_y == label]]
        for col, image in enumerate(row):
            if image is None:
                continue
            top, left = pad + label * cell, pad + col * cell
            canvas[top : top + side, left : left + side] = image[0].cpu().numpy()
    return canvas, shots, queries, cell


def _draw_episode(ax: Axes, episode: Episode, title: str, colour: str) -> None:
    canvas, shots, queries, cell = _mosaic(episode)
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
    height = canvas.shape[0]
    for start, count, name in ((0, shots, "support"), (shots + 1, queries, "query")):
        ax.add_patch(Rectangle((start * cell + 1, 1), count * cell + 2, height - 3,
                               fill=False, edgecolor=colour, linewidth=2))
        ax.text(start * cell + 2, -3, name, color=colour, fontsize=9, va="bottom")
    for label in range(episode.ways):
        ax.text(-4, 4 + label * cell + cell / 2, str(label), ha="right", va="center",
                fontsize=9)
    ax.set_title(title, fontsize=10, pad=16)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def episode_diagram(
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    generator: torch.Generator,
    *,
    ways: int = 3,
    shots: int = 1,
    queries: int = 2,
    train_tasks: int = 2,
) -> Figure:
    """Meta-training episodes from training classes beside a meta-test episode.

    Each episode shows its support set (a row per label ``0..N-1``, labelled
    examples) and its query set (the images to classify); the labels are drawn
    afresh in every episode, and the meta-test episode comes from classes no
    training episode contains.

    Args:
        train_images, test_images: ``[classes, examples, 1, H, W]`` (disjoint
            classes, e.g. Omniglot's ``train`` and ``test`` splits).
        generator: the source of the episodes.
        ways, shots, queries: N, K and queries per class of every episode.
        train_tasks: how many meta-training episodes to draw.
    """
    episodes = [sample_episode(train_images, ways, shots, queries, generator)
                for _ in range(train_tasks)]
    test = sample_episode(test_images, ways, shots, queries, generator)
    fig, axes = plt.subplots(1, train_tasks + 1,
                             figsize=(2.4 * (train_tasks + 1), 2.2 + 0.5 * ways))
    for i, (ax, episode) in enumerate(zip(axes[:-1], episodes, strict=True)):
        _draw_episode(ax, episode, f"meta-training task {i + 1}", "tab:blue")
    _draw_episode(axes[-1], test, "meta-test task\n(new characters)", "tab:red")
    axes[-1].title.set_color("tab:red")
    fig.suptitle(
        f"{ways}-way {shots}-shot episodes: learn from the support set, "
        "be scored on the query set", fontsize=11)
    fig.tight_layout()
    return fig


# ------------------------------------------------- MAML in parameter space


def _extent(points: torch.Tensor, margin: float = 1.0) -> tuple[float, ...]:
    lo, hi = points.min(0).values - margin, points.max(0).values + margin
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def _contours(ax: Axes, function: Callable[[torch.Tensor], torch.Tensor],
              extent: tuple[float, ...], label: str) -> None:
    xs = torch.linspace(extent[0], extent[1], 120, dtype=torch.float64)
    ys = torch.linspace(extent[2], extent[3], 120, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    values = torch.stack([function(torch.stack([x, y]))
                          for x, y in zip(grid_x.flatten(), grid_y.flatten(),
                                          strict=True)]).reshape(grid_x.shape)
    levels = np.quantile(values.numpy(), np.linspace(0.02, 0.9, 10))
    ax.contour(grid_x.numpy(), grid_y.numpy(), values.numpy(),
                         levels=np.unique(levels), colors="0.8", linewidths=0.8)


def maml_parameter_space(
    tasks: QuadraticTasks, *, inner_lr: float, steps: int = 1
) -> Figure:
    """MAML's initialisation against joint training's, on exact quadratic tasks.

    Stars: every task's optimum ``c_i``. Circle: the MAML initialisation (the
    minimiser of ``mean_i L_i(phi_i(theta))``), with solid arrows to the
    weights ``phi_i`` that ``steps`` inner SGD steps reach on each task. Square:
    the jointly trained ``theta`` (the minimiser of ``mean_i L_i(theta)``), with
    dashed arrows to its adapted weights. Contours: the MAML objective.
    """
    theta_maml = fixed_point("maml", tasks, inner_lr=inner_lr, steps=steps)
    theta_joint = fixed_point("joint", tasks, inner_lr=inner_lr, steps=steps)
    phi_maml = adapted(tasks, theta_maml, inner_lr=inner_lr, steps=steps)
    phi_joint = adapted(tasks, theta_joint, inner_lr=inner_lr, steps=steps)
    everything = torch.cat([tasks.optimum, theta_maml[None], theta_joint[None]])
    extent = _extent(everything)
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    _contours(ax, lambda t: maml_objective(tasks, t, inner_lr=inner_lr, steps=steps),
              extent, "MAML objective")
    for i in range(len(tasks)):
        colour = COLOURS[i % len(COLOURS)]
        ax.plot(*tasks.optimum[i], marker="*", markersize=15, color=colour,
                linestyle="none", label="task optimum $c_i$" if i == 0 else None)
        for start, end, style in ((theta_maml, phi_maml[i], "-"),
                                  (theta_joint, phi_joint[i], "--")):
            ax.add_patch(FancyArrowPatch(start.numpy(), end.numpy(),
                                         arrowstyle="-|>", mutation_scale=12,
                                         color=colour, linestyle=style, alpha=0.8))
    ax.plot(*theta_maml, "o", color="tab:blue", markersize=11,
            label=r"MAML initialisation $\theta$ (arrows: $\phi_i$)")
    ax.plot(*theta_joint, "s", color="tab:gray", markersize=10,
            label=r"joint training $\theta$ (dashed: $\phi_i$)")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_title(f"{steps} inner step(s) of size {inner_lr} from each initialisation")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def method_trajectories(
    tasks: QuadraticTasks,
    start: torch.Tensor,
    *,
    inner_lr: float,
    steps: int,
    meta_lr: float,
    iterations: int,
) -> Figure:
    """Meta-training paths of joint training, Reptile, FOMAML and MAML from ``start``.

    Every path follows its method's exact update direction
    (:func:`metalearn.quadratic.direction`) with the same meta learning rate;
    each ends at its own fixed point (marked), and only MAML's minimises the
    MAML objective drawn as contours.
    """
    paths = {kind: trajectory(kind, tasks, start, inner_lr=inner_lr, steps=steps,
                              meta_lr=meta_lr, iterations=iterations)
             for kind in METHOD_STYLE}
    everything = torch.cat([tasks.optimum, *paths.values()])
    extent = _extent(everything, margin=0.5)
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    _contours(ax, lambda t: maml_objective(tasks, t, inner_lr=inner_lr, steps=steps),
              extent, "MAML objective")
    ax.plot(*tasks.optimum.T, "*", color="0.5", markersize=11, label="task optima")
    for kind, path in paths.items():
        name, colour = METHOD_STYLE[kind]
        ax.plot(*path.T, "-", color=colour, linewidth=1.8, label=name)
        ax.plot(*path[-1], "o", color=colour, markersize=8)
    ax.plot(*start, "kx", markersize=9, label="common start")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_title(f"{iterations} meta-updates, {steps} inner steps of {inner_lr}")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


# ----------------------------------------------- prototypes and their regions


def nearest_prototype(points: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``[M]``: the index of the nearest prototype (squared Euclidean) of each point."""
    return torch.cdist(points, prototypes).argmin(dim=1)


def prototype_regions(
    embed: Callable[[torch.Tensor], torch.Tensor],
    episode: Episode,
    *,
    resolution: int = 300,
    ax: Axes | None = None,
) -> Axes:
    """A ProtoNet's decision regions in a 2-D embedding, for one episode.

    ``embed`` maps images ``[B, C, H, W]`` to points ``[B, 2]`` (support and
    query are embedded together, as ProtoNet does). Small markers: support
    embeddings; stars: the prototypes (class means); dots: queries, coloured by
    their true class and ringed in black where the nearest prototype is wrong;
    shaded regions: where the nearest prototype is each class's (a Voronoi
    diagram, since the squared distance to a mean is a linear classifier).
    """
    ways = episode.ways
    with torch.no_grad():
        z = embed(torch.cat([episode.support_x, episode.query_x])).cpu().double()
    if z.dim() != 2 or z.shape[1] != 2:
        raise ValueError(f"embed must return [B, 2] points, got {tuple(z.shape)}.")
    n_support = episode.support_x.shape[0]
    support, query = z[:n_support], z[n_support:]
    labels = episode.support_y.cpu()
    centres = torch.stack([support[labels == k].mean(0) for k in range(ways)])
    extent = _extent(z, margin=0.15 * float((z.max(0).values - z.min(0).values).max()))
    xs = torch.linspace(extent[0], extent[1], resolution, dtype=torch.float64)
    ys = torch.linspace(extent[2], extent[3], resolution, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    region = nearest_prototype(torch.stack([grid_x.flatten(), grid_y.flatten()], 1),
                               centres).reshape(grid_x.shape)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    colours = [COLOURS[k % len(COLOURS)] for k in range(ways)]
    ax.contourf(grid_x.numpy(), grid_y.numpy(), region.numpy(),
                levels=np.arange(ways + 1) - 0.5, colors=colours, alpha=0.18)
    predicted = nearest_prototype(query, centres)
    truth = episode.query_y.cpu()
    for k in range(ways):
        ax.scatter(*support[labels == k].T, marker="^", color=colours[k], s=40,
                   label="support" if k == 0 else None)
        mine = truth == k
        wrong = mine & (predicted != truth)
        ax.scatter(*query[mine].T, color=colours[k], s=14,
                   label="queries" if k == 0 else None)
        ax.scatter(*query[wrong].T, facecolors="none", edgecolors="black", s=60,
                   linewidths=1.2, label="misclassified" if k == 0 else None)
        ax.scatter(*centres[k], marker="*", color=colours[k], s=320,
                   edgecolors="black", label="prototype $c_k$" if k == 0 else None)
    accuracy = float((predicted == truth).double().mean())
    ax.set_xlabel("embedding dimension 1")
    ax.set_ylabel("embedding dimension 2")
    ax.set_title(f"{ways}-way episode: regions of the nearest prototype "
                 f"(query accuracy {100 * accuracy:.0f}%)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return ax


# ------------------------------------------------------ architecture sketches


class _Box:
    """A labelled rounded box; arrows attach to the middles of its edges."""

    def __init__(self, ax: Axes, x: float, y: float, text: str, *,
                 colour: str = "tab:blue", width: float = 2.2,
                 height: float = 1.2) -> None:
        self.x, self.y, self.w, self.h = x, y, width, height
        ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                    boxstyle="round,pad=0.08", facecolor=colour,
                                    alpha=0.2, edgecolor=colour, linewidth=1.2))
        ax.text(x, y, text, ha="center", va="center", fontsize=10)

    @property
    def left(self) -> tuple[float, float]:
        return self.x - self.w / 2 - 0.1, self.y

    @property
    def right(self) -> tuple[float, float]:
        return self.x + self.w / 2 + 0.1, self.y


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float],
           style: str = "-", colour: str = "0.3") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14,
                                 color=colour, linestyle=style, linewidth=1.2))


def _thumbnail(ax: Axes, image: torch.Tensor | None, x: float, y: float,
               size: float = 1.4) -> tuple[float, float]:
    """Draw an image (or a placeholder box); return the middle of its right edge."""
    if image is None:
        _Box(ax, x, y, "image", colour="0.5", width=size, height=size)
    else:
        ax.imshow(image.squeeze(0).cpu().numpy(), cmap="gray_r", vmin=0, vmax=1,
                  extent=(x - size / 2, x + size / 2, y - size / 2, y + size / 2))
    return x + size / 2 + 0.1, y


def _canvas(width: float, height: float, xmax: float, ymax: float,
            title: str) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, ymax)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    return fig, ax


def siamese_diagram(images: Sequence[torch.Tensor] | None = None) -> Figure:
    """A Siamese network: two weight-sharing embeddings, a weighted L1 distance.

    ``images``: optionally two images ``[1, H, W]`` to draw as the input pair.
    """
    pair = list(images) if images is not None else [None, None]
    fig, ax = _canvas(9, 3.6, 22, 9, "Siamese network (Koch et al. 2015): "
                      "do the two images show the same character?")
    features = []
    for row, (y, image) in enumerate(zip((7.0, 2.0), pair, strict=True)):
        edge = _thumbnail(ax, image, 1.0, y)
        net = _Box(ax, 4.6, y, "embedding $f_\\phi$\n(Conv-4)", width=2.8)
        h = _Box(ax, 8.2, y, f"$h_{row + 1}$", colour="tab:purple", width=1.2)
        _arrow(ax, edge, net.left)
        _arrow(ax, net.right, h.left)
        features.append(h)
    ax.annotate("", xy=(4.6, 2.75), xytext=(4.6, 6.25),
                arrowprops=dict(arrowstyle="<->", linestyle="--", color="tab:red"))
    ax.text(4.8, 4.5, "shared weights", color="tab:red", fontsize=9, va="center")
    distance = _Box(ax, 12.9, 4.5, "$\\sum_j \\alpha_j\\,|h_{1,j} - h_{2,j}| + b$",
                    colour="tab:orange", width=4.6)
    output = _Box(ax, 18.6, 4.5, "$\\sigma(\\cdot)$ = p(same)", colour="tab:green",
                  width=3.4)
    for h in features:
        _arrow(ax, h.right, distance.left)
    _arrow(ax, distance.right, output.left)
    ax.text(15.2, 0.6, "training: binary cross-entropy on same/different pairs\n"
            "one-shot test: the label of the most similar support image",
            ha="center", fontsize=9)
    return fig


def matching_diagram(
    support: Sequence[torch.Tensor] | None = None, query: torch.Tensor | None = None
) -> Figure:
    """A Matching network: attention of a query over the embedded support set.

    ``support``: optionally three support images (labels 0, 1, 2) and ``query``
    one query image, each ``[1, H, W]``, drawn as the inputs.
    """
    shown = list(support) if support is not None else [None, None, None]
    fig, ax = _canvas(10, 5.2, 26, 13.5, "Matching network (Vinyals et al. 2016): "
                      "a query attends over the support set")
    query_edge = _thumbnail(ax, query, 1.6, 1.2)
    ax.text(0.7, 1.2, "query\n$\\hat x$", ha="right", va="center", fontsize=9)
    query_net = _Box(ax, 5.2, 1.2, "$f_\\phi(\\hat x)$", width=2.2)
    _arrow(ax, query_edge, query_net.left)
    similarities = []
    for label, (y, image) in enumerate(zip((11.6, 8.4, 5.2), shown, strict=True)):
        edge = _thumbnail(ax, image, 1.6, y)
        ax.text(0.7, y, f"$x_{label}$\ny={label}", ha="right", va="center",
                fontsize=9)
        net = _Box(ax, 5.2, y, f"$g_\\phi(x_{label})$", width=2.2)
        sim = _Box(ax, 10.6, y, f"$c(f_\\phi(\\hat x), g_\\phi(x_{label}))$",
                   colour="tab:orange", width=4.4)
        _arrow(ax, edge, net.left)
        _arrow(ax, net.right, sim.left)
        _arrow(ax, query_net.right, (sim.x - 1.2, sim.y - sim.h / 2 - 0.1),
               style="--", colour="tab:blue")
        similarities.append(sim)
    attention = _Box(ax, 16.3, 8.4, "softmax over $i$:\n$a(\\hat x, x_i)$",
                     colour="tab:red", width=3.8, height=2.0)
    for sim in similarities:
        _arrow(ax, sim.right, attention.left)
    output = _Box(ax, 22.3, 8.4, "$P(y \\mid \\hat x) =$\n"
                  "$\\sum_i a(\\hat x, x_i)\\, y_i$", colour="tab:green",
                  width=4.4, height=2.0)
    _arrow(ax, attention.right, output.left)
    ax.text(18.5, 2.4, "c: scaled cosine similarity; with one shot and the\n"
            "negative squared distance, this is exactly ProtoNet", ha="center",
            fontsize=9)
    return fig
