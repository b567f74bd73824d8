"""Figures and tables used throughout the book.

Every figure has labelled axes and a title; every results table shows the mean
accuracy with its 95% confidence interval and, where there is one, the number
published in the paper, marked as such.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from metalearn.checks import check_images, check_positive_int, check_real_sequence
from metalearn.episodes import Episode, check_episode
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
        images: ``[classes, examples, 1, H, W]``, ``uint8`` or floats in [0, 1].
        classes: which rows of ``images`` to show.
        examples: how many examples of each class.
        row_labels: a label per row (e.g. alphabet and character id).

    Raises:
        TypeError, ValueError: bad images (:func:`metalearn.checks.check_images`),
            a class index out of range, ``examples`` not in ``1..examples of
            images``, or a number of row labels other than ``len(classes)``.
    """
    check_images(images, values=False)
    if images.shape[2] != 1:
        raise ValueError(
            f"images must have one channel [classes, examples, 1, H, W], got "
            f"{tuple(images.shape)}."
        )
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
        raise TypeError(f"classes must be a non-empty list of ints, got {classes!r}.")
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral):
            raise TypeError(f"classes must hold ints, got {c!r}.")
        if not 0 <= c < images.shape[0]:
            raise ValueError(
                f"class {c} is out of range: images hold {images.shape[0]} classes."
            )
    check_positive_int("examples", examples)
    if examples > images.shape[1]:
        raise ValueError(
            f"examples={examples} but each class has only {images.shape[1]}."
        )
    if row_labels is not None and len(row_labels) != len(classes):
        raise ValueError(
            f"{len(row_labels)} row_labels for {len(classes)} classes; give one "
            "label per class."
        )
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
    """Support set (a row per label) beside up to ``max_queries`` queries per label.

    Every support example is drawn; a class with fewer support examples than
    another leaves blank cells, and the title then gives the range of shots.

    Raises:
        TypeError, ValueError: a bad episode
            (:func:`metalearn.episodes.check_episode`) or ``max_queries`` not a
            positive int.
    """
    check_episode(episode)
    check_positive_int("max_queries", max_queries)
    ways = episode.ways
    support_counts = torch.bincount(episode.support_y.cpu(), minlength=ways)
    query_counts = torch.bincount(episode.query_y.cpu(), minlength=ways)
    shots = int(support_counts.max())
    fewest = int(support_counts.min())
    queries = min(max_queries, int(query_counts.max()))
    cols = shots + 1 + queries
    fig, axes = plt.subplots(
        ways, cols, figsize=(1.1 * cols, 1.1 * ways), squeeze=False
    )
    for label in range(ways):
        support = episode.support_x[episode.support_y == label]
        query = episode.query_x[episode.query_y == label]
        for k in range(shots):
            if k < len(support):
                _show(axes[label, k], support[k])
            else:
                axes[label, k].axis("off")
        axes[label, shots].axis("off")
        for q in range(queries):
            if q < len(query):
                _show(axes[label, shots + 1 + q], query[q])
            else:
                axes[label, shots + 1 + q].axis("off")
        axes[label, 0].set_ylabel(f"label {label}", rotation=0, ha="right", va="center")
    axes[0, 0].set_title("support", loc="left")
    if queries:
        axes[0, shots + 1].set_title("query (hidden labels)", loc="left")
    shot_text = f"{shots}-shot" if fewest == shots else f"{fewest}- to {shots}-shot"
    fig.suptitle(f"A {ways}-way {shot_text} episode")
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

    Raises:
        TypeError: a sequence that does not hold real numbers.
        ValueError: lengths that differ, no values, NaN steps, or negative or
            NaN errors. (NaN *values* are allowed: they leave a gap.)
    """
    steps, values = (
        check_real_sequence("steps", steps),
        check_real_sequence("values", values),
    )
    if len(steps) != len(values):
        raise ValueError(f"{len(steps)} steps but {len(values)} values.")
    if not values:
        raise ValueError("values is empty: there is nothing to plot.")
    if any(math.isnan(x) for x in steps):
        raise ValueError("steps contain NaN.")
    if errors is not None:
        errors = check_real_sequence("errors", errors)
        if len(errors) != len(values):
            raise ValueError(f"{len(errors)} errors but {len(values)} values.")
        if not all(e >= 0 for e in errors):
            raise ValueError(f"errors must be non-negative half-widths, got {errors}.")
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

    Raises:
        TypeError: ``settings`` is a string (``"5w1s"`` would become the columns
            5, w, 1, s) or holds something other than strings.
        ValueError: no settings, or a setting named twice.
    """

    settings: list[str]
    rows: list[tuple[str, dict[str, Accuracy | None], dict[str, float | None]]] = field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        if isinstance(self.settings, str) or not isinstance(self.settings, Sequence):
            raise TypeError(
                f"settings must be a list of setting names, got {self.settings!r}; "
                f"for one setting write [{self.settings!r}]."
            )
        settings = list(self.settings)
        if not settings or not all(isinstance(s, str) for s in settings):
            raise TypeError(
                f"settings must be a non-empty list of strings, got {settings!r}."
            )
        if len(set(settings)) != len(settings):
            raise ValueError(f"settings must be distinct, got {settings}.")
        self.settings = settings

    def add(
        self,
        method: str,
        results: dict[str, Accuracy | None],
        paper: dict[str, float | None] | None = None,
    ) -> None:
        """Add a method; ``paper`` maps a setting to a published accuracy in %.

        Raises:
            TypeError: ``method`` is not a string, ``results`` not a dict of
                :class:`~metalearn.evaluate.Accuracy` (or ``None``), ``paper``
                not a dict of numbers (or ``None``).
            ValueError: a setting (in ``results`` or ``paper``) that the table
                does not have, or a paper number that is not a percentage in
                (1, 100] (a fraction such as 0.987 is refused: write 98.7).
        """
        if not isinstance(method, str):
            raise TypeError(f"method must be a string, got {method!r}.")
        if not isinstance(results, Mapping):
            raise TypeError(
                f"results must be a dict setting -> Accuracy, got {results!r}."
            )
        paper = {} if paper is None else paper
        if not isinstance(paper, Mapping):
            raise TypeError(f"paper must be a dict setting -> %, got {paper!r}.")
        for where, entries in (("results", results), ("paper", paper)):
            unknown = set(entries) - set(self.settings)
            if unknown:
                raise ValueError(
                    f"Unknown settings {sorted(unknown, key=str)} in {where}; "
                    f"table has {self.settings}."
                )
        for setting, result in results.items():
            if result is not None and not isinstance(result, Accuracy):
                raise TypeError(
                    f"results[{setting!r}] must be an Accuracy (from "
                    f"metalearn.evaluate.evaluate) or None, got {result!r}."
                )
        for setting, value in paper.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(
                    f"paper[{setting!r}] must be a number (a percentage), got "
                    f"{value!r}."
                )
            if not 1 < value <= 100:
                hint = (
                    f" It looks like a fraction: write {100 * value:g}."
                    if 0 <= value <= 1
                    else ""
                )
                raise ValueError(
                    f"paper[{setting!r}] = {value!r} is not a percentage in "
                    f"(1, 100].{hint}"
                )
        self.rows.append((method, dict(results), dict(paper)))

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
