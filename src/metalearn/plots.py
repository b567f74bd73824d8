"""Figures and tables used throughout the book.

Every figure has labelled axes and a title; every results table shows the mean
accuracy with its 95% confidence interval and, where there is one, the number
published in the paper, marked as such.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from metalearn.episodes import Episode
from metalearn.evaluate import Accuracy


def _show(ax: Axes, image: torch.Tensor) -> None:
    vmax = 1.0 if image.is_floating_point() else 255
    ax.imshow(image.squeeze(0).cpu().numpy(), cmap="gray_r", vmin=0, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])


def show_characters(
    images: torch.Tensor,
    classes: Sequence[int],
    examples: int = 5,
    row_labels: Sequence[str] | None = None,
) -> Figure:
    """A grid: one row per class in ``classes``, ``examples`` drawings per row.

    Args:
        images: ``[classes, examples, 1, H, W]``.
        classes: which rows of ``images`` to show.
        examples: how many examples of each class.
        row_labels: a label per row (e.g. alphabet and character id).
    """
    rows = len(classes)
    fig, axes = plt.subplots(
        rows, examples, figsize=(1.1 * examples, 1.1 * rows), squeeze=False
    )
    for r, c in enumerate(classes):
        for e in range(examples):
            _show(axes[r, e], images[c, e])
        if row_labels is not None:
            axes[r, 0].set_ylabel(
                row_labels[r], rotation=0, ha="right", va="center", fontsize=8
            )
    fig.suptitle("Omniglot: each row is one character, drawn by different people")
    fig.tight_layout()
    return fig


def show_episode(episode: Episode, max_queries: int = 5) -> Figure:
    """Support set (a row per label) beside up to ``max_queries`` queries per label."""
    ways = episode.ways
    shots = episode.support_x.shape[0] // ways
    queries = min(max_queries, episode.query_x.shape[0] // ways)
    cols = shots + 1 + queries
    fig, axes = plt.subplots(
        ways, cols, figsize=(1.1 * cols, 1.1 * ways), squeeze=False
    )
    for label in range(ways):
        support = episode.support_x[episode.support_y == label]
        query = episode.query_x[episode.query_y == label]
        for k in range(shots):
            _show(axes[label, k], support[k])
        axes[label, shots].axis("off")
        for q in range(queries):
            _show(axes[label, shots + 1 + q], query[q])
        axes[label, 0].set_ylabel(f"label {label}", rotation=0, ha="right", va="center")
    axes[0, 0].set_title("support", loc="left")
    axes[0, shots + 1].set_title("query (hidden labels)", loc="left")
    fig.suptitle(f"A {ways}-way {shots}-shot episode")
    fig.tight_layout()
    return fig


def plot_learning_curve(
    steps: Sequence[float],
    values: Sequence[float],
    *,
    errors: Sequence[float] | None = None,
    label: str | None = None,
    ylabel: str = "accuracy",
    xlabel: str = "meta-training step",
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One curve of a metric against steps (or shots...); call again to add curves.

    ``errors`` (e.g. 95% CI half-widths) are drawn as error bars.
    """
    if len(steps) != len(values):
        raise ValueError(f"{len(steps)} steps but {len(values)} values.")
    if errors is not None and len(errors) != len(values):
        raise ValueError(f"{len(errors)} errors but {len(values)} values.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.errorbar(
        steps, values, yerr=errors, marker="o", markersize=3, capsize=3, label=label
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if label:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax


@dataclass
class ResultsTable:
    """Rows of ``method x setting -> accuracy``, rendered as HTML or Markdown.

    Each cell is an :class:`~metalearn.evaluate.Accuracy` shown as mean ± 95% CI
    in percent; ``paper`` cells hold published numbers, marked as such.
    """

    settings: list[str]
    rows: list[tuple[str, dict[str, Accuracy | None], dict[str, float | None]]] = field(
        default_factory=list
    )

    def add(
        self,
        method: str,
        results: dict[str, Accuracy | None],
        paper: dict[str, float | None] | None = None,
    ) -> None:
        """Add a method; ``paper`` maps a setting to a published accuracy in %."""
        unknown = set(results) - set(self.settings)
        if unknown:
            raise ValueError(
                f"Unknown settings {sorted(unknown)}; table has {self.settings}."
            )
        self.rows.append((method, results, paper or {}))

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        has_paper = any(paper for _, _, paper in self.rows)
        header = ["method"]
        for s in self.settings:
            header.append(f"{s} (ours)")
            if has_paper:
                header.append(f"{s} (paper)")
        body = []
        for method, results, paper in self.rows:
            row = [method]
            for s in self.settings:
                result = results.get(s)
                row.append(str(result) if result is not None else "–")
                if has_paper:
                    value = paper.get(s)
                    row.append(f"{value:.1f} %" if value is not None else "–")
            body.append(row)
        return header, body

    def to_markdown(self) -> str:
        header, body = self._cells()
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:  # the plain-text output of a notebook cell
        return self.to_markdown()

    def _repr_html_(self) -> str:
        header, body = self._cells()
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in body
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def plot_validation_curves(
    fitted: dict[str, object],
    metric: str,
    *,
    against: str = "time",
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Validation accuracy of several trainings against training time or steps.

    Args:
        fitted: label -> a :class:`metalearn.experiments.Fitted` (or anything
            with a ``history``), e.g. ``{"MAML": trained.fitted, ...}``.
        metric: the evaluation metric to draw, e.g. ``"acc_1shot"``.
        against: ``"time"`` (minutes of training, validation excluded: the fair
            axis for methods whose steps cost differently) or ``"steps"``.
    """
    if against not in ("time", "steps"):
        raise ValueError(f"against must be 'time' or 'steps', got {against!r}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    for label, run in fitted.items():
        history = run.history
        if metric not in history.eval:
            raise ValueError(
                f"{label} has no evaluation metric {metric!r}; it has "
                f"{sorted(history.eval)}."
            )
        if against == "time":
            x = [s / 60 for s in history.eval["train_seconds"]]
        else:
            x = history.eval_steps
        ax.plot(x, [100 * v for v in history.eval[metric]], marker="o",
                markersize=3, label=label)
    ax.set_xlabel("training time (minutes, validation excluded)" if against == "time"
                  else "training step")
    ax.set_ylabel(f"validation accuracy, {metric.removeprefix('acc_')} (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
