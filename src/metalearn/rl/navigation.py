"""2-D point navigation: the first meta-RL task family of the MAML paper.

A point agent starts at the origin of the plane; its observation is its
position :math:`s_t \\in \\mathbb{R}^2`, its action :math:`a_t` a velocity,
clipped to :math:`[-0.1, 0.1]` per coordinate. A task is a goal :math:`g`
drawn uniformly from the square :math:`[-0.5, 0.5]^2`; the agent does not see
it and must find it from rewards alone. Each step pays minus the distance to
the goal,

.. math:: s_{t+1} = s_t + \\operatorname{clip}(a_t, -0.1, 0.1), \\qquad
          r_t = -\\lVert s_{t+1} - g \\rVert_2,

for a horizon of :math:`H = 100` steps (Finn, Abbeel and Levine, 2017, Section
5.3; the reward, the clipping and the goal square follow their reference code,
``point_env_randgoal.py`` of ``cbfinn/maml_rl``). The reference code also ends
an episode once both coordinates are within 0.01 of the goal; we keep the
fixed horizon (every rollout has 100 steps, which keeps the batch rectangular)
and report reaching the goal as ``success`` instead. An agent that stays within
that box earns at least :math:`-0.0142` per step, so the two returns differ by
less than 1.42 over a whole episode.

Everything is a tensor operation over ``[T, R]`` (tasks x rollouts) at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from metalearn.checks import check_positive_int


def sample_goals(
    tasks: int,
    generator: torch.Generator | None = None,
    *,
    low: float = -0.5,
    high: float = 0.5,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``tasks`` goals drawn uniformly from ``[low, high]^2``: ``[T, 2]``."""
    check_positive_int("tasks", tasks)
    if not low < high:
        raise ValueError(f"need low < high, got low={low}, high={high}.")
    return low + (high - low) * torch.rand(tasks, 2, generator=generator, dtype=dtype)


def navigation_step(
    position: torch.Tensor,
    action: torch.Tensor,
    goal: torch.Tensor,
    *,
    max_speed: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of every rollout of every task.

    Args:
        position: :math:`s_t`, ``[T, R, 2]``.
        action: :math:`a_t`, ``[T, R, 2]`` (any real values; clipped here).
        goal: :math:`g`, ``[T, 2]``.
        max_speed: the clipping bound (0.1).

    Returns:
        ``(s_{t+1} [T, R, 2], r_t [T, R])`` with
        :math:`r_t = -\\lVert s_{t+1} - g\\rVert`.
    """
    if position.shape != action.shape or position.shape[-1] != 2:
        raise ValueError(
            f"position {tuple(position.shape)} and action {tuple(action.shape)} "
            "must both be [T, R, 2]."
        )
    if goal.shape != (position.shape[0], 2):
        raise ValueError(
            f"goal must be [T, 2] = [{position.shape[0]}, 2], got {tuple(goal.shape)}."
        )
    if not max_speed > 0:
        raise ValueError(f"max_speed must be positive, got {max_speed}.")
    moved = position + action.clamp(-max_speed, max_speed)  # [T, R, 2]
    reward = -(moved - goal[:, None, :]).norm(dim=-1)  # [T, R]
    return moved, reward


class PointNavigation:
    """``T`` navigation tasks (one goal each), ``R`` rollouts of each at once.

    The environment interface of :func:`metalearn.rl.maml.rollout`:
    ``reset(rollouts)`` returns the first observations ``[T, R, 2]``;
    ``step(actions)`` returns ``(observations, rewards [T, R], success [T, R])``.

    Args:
        goals: ``[T, 2]`` (e.g. from :func:`sample_goals`).
        horizon: steps per episode (100 in the paper).
        max_speed: the action clipping bound (0.1).
        goal_radius: ``success`` means both coordinates within this of the goal
            (0.01, the reference code's termination test).
    """

    obs_dim = 2
    act_dim = 2

    def __init__(
        self,
        goals: torch.Tensor,
        *,
        horizon: int = 100,
        max_speed: float = 0.1,
        goal_radius: float = 0.01,
    ) -> None:
        if not isinstance(goals, torch.Tensor) or tuple(goals.shape[1:]) != (2,):
            raise ValueError(f"goals must be a [T, 2] tensor, got {goals!r}.")
        if not goals.is_floating_point() or not torch.isfinite(goals).all():
            raise ValueError("goals must be finite floating-point coordinates.")
        check_positive_int("horizon", horizon)
        self.goals, self.horizon = goals, horizon
        self.max_speed, self.goal_radius = max_speed, goal_radius
        self.tasks = goals.shape[0]
        self.position: torch.Tensor | None = None

    def reset(self, rollouts: int) -> torch.Tensor:
        """Put every rollout at the origin; return the observations ``[T, R, 2]``."""
        check_positive_int("rollouts", rollouts)
        self.position = self.goals.new_zeros(self.tasks, rollouts, 2)
        return self.position.clone()

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apply ``actions [T, R, 2]``; see :func:`navigation_step`."""
        if self.position is None:
            raise RuntimeError("call reset(rollouts) before step(actions).")
        self.position, reward = navigation_step(
            self.position, actions, self.goals, max_speed=self.max_speed
        )
        gap = (self.position - self.goals[:, None, :]).abs()
        success = (gap < self.goal_radius).all(dim=-1)  # [T, R]
        return self.position.clone(), reward, success

    def __repr__(self) -> str:
        return f"PointNavigation({self.tasks} goals, horizon={self.horizon})"


def navigation_sampler(
    tasks: int, *, horizon: int = 100, device: torch.device | str = "cpu"
) -> Callable[[torch.Generator], PointNavigation]:
    """Draw a meta-batch of ``tasks`` new goals with a (CPU) generator, for MAML-RL;
    the tasks live on ``device``."""
    check_positive_int("tasks", tasks)
    check_positive_int("horizon", horizon)

    def sample(generator: torch.Generator) -> PointNavigation:
        goals = sample_goals(tasks, generator).to(device)
        return PointNavigation(goals, horizon=horizon)

    sample.identity = {"family": "point-navigation", "tasks": tasks,
                       "horizon": horizon}
    return sample
