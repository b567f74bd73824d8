"""The meta-RL figures of the applications chapter: the task family, the
trajectories of a policy as it adapts, and return against adaptation steps."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from metalearn.evaluate import mean_confidence_interval
from metalearn.rl.maml import Trajectories


def _axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax


def plot_navigation_tasks(
    goals: torch.Tensor,
    trajectories: Trajectories | None = None,
    *,
    ax: Axes | None = None,
    low: float = -0.5,
    high: float = 0.5,
) -> Figure:
    """The 2-D navigation task family: the goal square, goals, the start.

    Args:
        goals: ``[T, 2]`` goals to draw (one task each).
        trajectories: optionally, rollouts of task 0 ``[T, R, H, 2]`` to draw
            (e.g. of a random policy: what the agent does before it learns).
    """
    if goals.dim() != 2 or goals.shape[1] != 2:
        raise ValueError(f"goals must be [T, 2], got {tuple(goals.shape)}.")
    goals = goals.detach().cpu()
    fig, ax = _axes(ax, (4.6, 4.4))
    ax.add_patch(plt.Rectangle((low, low), high - low, high - low, fill=False,
                               ls="--", color="0.5", label="goal distribution"))
    if trajectories is not None:
        for path in trajectories.observations[0].detach().cpu():
            ax.plot(path[:, 0], path[:, 1], color="tab:blue", lw=0.8, alpha=0.5)
        ax.plot([], [], color="tab:blue", lw=0.8, label="rollouts, task 0")
    ax.scatter(goals[:, 0], goals[:, 1], marker="*", s=90, color="tab:red",
               label=f"{len(goals)} goals (tasks)", zorder=3)
    ax.scatter([0.0], [0.0], marker="o", s=50, color="black", label="start",
               zorder=3)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_aspect("equal")
    ax.set_title("2-D navigation: one task = one hidden goal")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_trajectories(
    batches: Mapping[str, Trajectories],
    goal: torch.Tensor,
    *,
    task: int = 0,
    rollouts: int = 5,
    ax: Axes | None = None,
    title: str = "",
) -> Figure:
    """The paths of ``rollouts`` episodes of one task, for each batch.

    Each episode is a thin line (a Gaussian policy's paths are noisy); the
    thick line of the same colour is their mean position at every time step,
    the path the policy heads along. The goal is always inside the axes, and
    the legend sits below them so that it hides no path.

    Args:
        batches: e.g. ``{"before adaptation": t0, "after 1 step": t1, ...}``.
        goal: ``[2]``, the task's goal.
        task: which task of the batches to draw.
        rollouts: how many of its episodes to draw per batch.
    """
    fig, ax = _axes(ax, (4.6, 4.4))
    goal = goal.detach().cpu()
    for (label, batch), colour in zip(batches.items(), plt.cm.viridis(
            torch.linspace(0.0, 0.85, len(batches)).tolist()), strict=True):
        paths = batch.observations[task, :rollouts].detach().cpu()  # [r, H, 2]
        for path in paths:
            ax.plot(path[:, 0], path[:, 1], color=colour, lw=0.6, alpha=0.35)
        mean = paths.mean(dim=0)  # [H, 2]
        ax.plot(mean[:, 0], mean[:, 1], color=colour, lw=2.5, label=label)
    ax.scatter([float(goal[0])], [float(goal[1])], marker="*", s=220,
               color="tab:red", edgecolor="black", label="goal", zorder=3)
    ax.scatter([0.0], [0.0], marker="o", s=40, color="black", zorder=3)
    ax.update_datalim([(float(goal[0]), float(goal[1])), (0.0, 0.0)])
    ax.autoscale_view()
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or "rollouts as the policy adapts")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=2, frameon=False)
    return fig


def plot_adaptation_curves(
    returns: Mapping[str, torch.Tensor],
    *,
    ax: Axes | None = None,
    ylabel: str = "average return (mean ± 95% CI over goals)",
    title: str = "",
) -> Figure:
    """Return against adaptation steps, one line per method with 95% CIs.

    Args:
        returns: ``{method: [S + 1, T]}``, e.g.
            :attr:`metalearn.rl.maml.AdaptationCurve.returns`.
    """
    fig, ax = _axes(ax, (5.2, 3.6))
    for name, values in returns.items():
        if values.dim() != 2:
            raise ValueError(f"returns[{name!r}] must be [S + 1, T], got "
                             f"{tuple(values.shape)}.")
        stats = [mean_confidence_interval(row.tolist()) for row in values.cpu()]
        ax.errorbar(range(len(stats)), [m for m, _ in stats],
                    yerr=[c for _, c in stats], marker="o", capsize=3, label=name)
    ax.set_xlabel("policy-gradient steps on the new task")
    ax.set_xticks(range(max(len(v) for v in returns.values())))
    ax.set_ylabel(ylabel)
    ax.set_title(title or "adaptation to new goals")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
