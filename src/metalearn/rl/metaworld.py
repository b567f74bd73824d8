"""Meta-World's ML1 benchmark behind the batched-environment interface of MAML-RL.

Meta-World (Yu et al., 2019) is a benchmark of 50 robot-arm manipulation
tasks simulated with MuJoCo. Its ML1 setting fixes one task *type* (e.g.
``reach-v3``: move the gripper to a target point) and varies its parameters:
``metaworld.ML1("reach-v3")`` gives 50 training and 50 test *tasks*, each a
goal position (and object positions) the policy cannot see; the 39-number
observation holds the hand and object positions of this and the previous
step, with the goal slots set to zero. An action is 4 numbers in ``[-1, 1]``
(a hand displacement and a gripper command), episodes last up to 500 steps,
the reward is dense (at most 10 per step) and ``info["success"]`` says
whether the task is solved (for reach: the hand within 5 cm of the goal).

MuJoCo simulates one environment per object, so :class:`MetaWorldTasks` steps
its ``T x R`` simulators in a Python loop and stacks their observations into
one ``[T, R, 39]`` tensor for a single batched policy evaluation. Creating a
simulator takes a fraction of a second, so :class:`MetaWorldML1` keeps a pool
and re-targets its simulators with ``set_task``.

Meta-World is an optional dependency: ``pip install "metalearn[metaworld]"``
(``metaworld==3.1.1`` with the ``mujoco==3.3.0`` it was released against;
``gymnasium>=1.1`` and ``packaging``). Nothing here renders, so no OpenGL
back-end is needed.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch

from metalearn.checks import check_positive_int

INSTALL_HINT = (
    'pip install "metalearn[metaworld]" (or: pip install metaworld==3.1.1 '
    "mujoco==3.3.0 'gymnasium>=1.1' packaging)"
)
SPLITS = ("train", "test")


def metaworld_available() -> bool:
    """Whether ``import metaworld`` can work (without importing it)."""
    return importlib.util.find_spec("metaworld") is not None


def require_metaworld() -> ModuleType:
    """Import Meta-World, or raise an error that says how to install it."""
    try:
        return importlib.import_module("metaworld")
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"Meta-World is not installed ({exc}). Install the optional extra: "
            f"{INSTALL_HINT}."
        ) from exc


class MetaWorldTasks:
    """``T`` Meta-World tasks x ``R`` simulators, stepped together.

    The environment interface of :func:`metalearn.rl.maml.rollout`. Actions
    are clipped to ``[-1, 1]``; ``success`` is Meta-World's
    ``info["success"]``.

    Args:
        envs: ``T`` lists of ``R`` simulators; those of task ``i`` share its
            task (``set_task``).
        horizon: steps per episode (at most the benchmark's 500).
        dtype: of the observation and reward tensors.
        device: where those tensors go (the simulators run on the CPU).
    """

    def __init__(
        self,
        envs: Sequence[Sequence[Any]],
        *,
        horizon: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        check_positive_int("horizon", horizon)
        if not envs or not envs[0] or len({len(row) for row in envs}) != 1:
            raise ValueError("envs must be T >= 1 non-empty lists of equal length R.")
        limit = getattr(envs[0][0], "max_path_length", horizon)
        if horizon > limit:
            raise ValueError(f"horizon {horizon} exceeds the episode limit {limit}.")
        self.envs = [list(row) for row in envs]
        self.tasks, self.rollouts = len(envs), len(envs[0])
        self.horizon, self.dtype, self.device = horizon, dtype, torch.device(device)
        space = envs[0][0].observation_space
        self.obs_dim = int(np.prod(space.shape))
        self.act_dim = int(np.prod(envs[0][0].action_space.shape))

    def _tensor(self, rows: list[list[np.ndarray]]) -> torch.Tensor:
        return torch.as_tensor(np.asarray(rows), dtype=self.dtype, device=self.device)

    def reset(self, rollouts: int) -> torch.Tensor:
        """Reset every simulator; ``[T, R, obs_dim]``. ``rollouts`` must equal R."""
        if rollouts != self.rollouts:
            raise ValueError(
                f"these tasks hold {self.rollouts} simulators per task; ask for "
                f"rollouts={self.rollouts}, not {rollouts}."
            )
        return self._tensor([[env.reset()[0] for env in row] for row in self.envs])

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step every simulator with ``actions [T, R, act_dim]``."""
        expected = (self.tasks, self.rollouts, self.act_dim)
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions must be {expected}, got {tuple(actions.shape)}.")
        chosen = actions.detach().clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)
        obs, rewards, success = [], [], []
        for i, row in enumerate(self.envs):
            obs.append([])
            rewards.append([])
            success.append([])
            for r, env in enumerate(row):
                o, reward, _, _, info = env.step(chosen[i, r])
                obs[i].append(o)
                rewards[i].append(float(reward))
                success[i].append(bool(info.get("success", 0.0)))
        return (
            self._tensor(obs),
            torch.tensor(rewards, dtype=self.dtype, device=self.device),
            torch.tensor(success, dtype=torch.bool, device=self.device),
        )

    def __repr__(self) -> str:
        return (
            f"MetaWorldTasks({self.tasks} tasks x {self.rollouts} simulators, "
            f"horizon={self.horizon})"
        )


class MetaWorldML1:
    """The ML1 benchmark of one task type, with a pool of reusable simulators.

    Args:
        env_name: e.g. ``"reach-v3"`` (Meta-World 3 names).
        seed: the benchmark's seed (which 50 + 50 task parameters it draws).
    """

    def __init__(self, env_name: str = "reach-v3", *, seed: int = 0) -> None:
        metaworld = require_metaworld()
        self.env_name = env_name
        self.benchmark = metaworld.ML1(env_name, seed=seed)
        self._classes = {
            "train": self.benchmark.train_classes[env_name],
            "test": self.benchmark.test_classes[env_name],
        }
        self._pool: dict[str, list[Any]] = {"train": [], "test": []}

    def task_list(self, split: str) -> list[Any]:
        """The benchmark's tasks of ``split`` (``"train"`` or ``"test"``)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        if split == "train":
            return list(self.benchmark.train_tasks)
        return list(self.benchmark.test_tasks)

    def make_env(self, split: str = "train") -> Any:
        """A new simulator of ``split`` (not yet given a task)."""
        self.task_list(split)
        return self._classes[split]()

    def tasks(
        self,
        split: str,
        indices: Sequence[int],
        *,
        rollouts: int,
        horizon: int,
        device: torch.device | str = "cpu",
    ) -> MetaWorldTasks:
        """The tasks ``indices`` of ``split``, each with ``rollouts`` simulators."""
        check_positive_int("rollouts", rollouts)
        available = self.task_list(split)
        indices = [int(i) for i in indices]
        if not indices or min(indices) < 0 or max(indices) >= len(available):
            raise ValueError(
                f"task indices must lie in 0..{len(available) - 1}, got {indices}."
            )
        pool = self._pool[split]
        while len(pool) < len(indices) * rollouts:
            pool.append(self.make_env(split))
        envs = []
        for i, index in enumerate(indices):
            row = pool[i * rollouts : (i + 1) * rollouts]
            for env in row:
                env.set_task(available[index])
            envs.append(row)
        return MetaWorldTasks(envs, horizon=horizon, device=device)

    def sampler(
        self,
        tasks: int,
        *,
        rollouts: int,
        horizon: int,
        device: torch.device | str = "cpu",
    ) -> Callable[[torch.Generator], MetaWorldTasks]:
        """Draw ``tasks`` distinct training tasks with a generator, for MAML-RL."""
        total = len(self.task_list("train"))
        check_positive_int("tasks", tasks)
        if tasks > total:
            raise ValueError(f"at most {total} training tasks, got tasks={tasks}.")

        def sample(generator: torch.Generator) -> MetaWorldTasks:
            indices = torch.randperm(total, generator=generator)[:tasks].tolist()
            return self.tasks("train", indices, rollouts=rollouts, horizon=horizon,
                              device=device)

        sample.identity = {"benchmark": "ML1", "env": self.env_name, "tasks": tasks,
                           "rollouts": rollouts, "horizon": horizon}
        return sample

    def __repr__(self) -> str:
        return (
            f"MetaWorldML1({self.env_name!r}: {len(self.benchmark.train_tasks)} train "
            f"and {len(self.benchmark.test_tasks)} test tasks)"
        )
