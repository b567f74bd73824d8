"""How much the applications chapter runs in each profile, and on how many threads.

The budgets live here, next to the code they size, until they move into
:class:`metalearn.profiles.Profile`; :func:`budget_for` reads the budget of a
profile by name and applies its ``METALEARN_MAX_STEPS`` cap.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from metalearn.checks import check_positive_int
from metalearn.profiles import Profile


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, then restore.

    The meta-RL workload is many small matrix products (a 2x100x100x2 policy),
    for which a second thread costs more in synchronisation than it saves.
    """
    check_positive_int("threads", threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class MetaRLBudget:
    """The budgets of the applications chapter for one run profile."""

    iterations: int  # meta-iterations of MAML = optimiser steps of pre-training
    meta_batch: int  # tasks (goals) per meta-iteration (20 in Finn et al.)
    rollouts: int  # trajectories per task and gradient step (20 in the paper)
    test_goals: int  # new goals of the adaptation curves (returns with 95% CIs)
    test_steps: int  # test-time adaptation steps (3, as in the paper's Fig. 5)
    metaworld_iterations: int  # first-order MAML iterations on Meta-World ML1
    metaworld_meta_batch: int  # Meta-World training tasks per iteration
    metaworld_rollouts: int  # Meta-World trajectories per task and step
    metaworld_horizon: int  # steps per Meta-World episode (500 in the benchmark)
    metaworld_test_tasks: int  # held-out Meta-World tasks for evaluation


# Sized from timings on the shared 2-core development machine (noisy; other jobs
# running): a second-order navigation meta-iteration of 20 goals x 20 rollouts x 100
# steps took 0.47 s on 1 thread and 0.28 s on 2 when the machine was quiet, and
# 1.25-1.3 s on 1 thread but 5-6 s on 2 at a load of 5-7; pre-training 0.14 s
# (quiet) to 0.3 s. In probes the post-adaptation return stopped improving after
# about 300 meta-iterations (Adam, 1e-3). A first-order Meta-World iteration of 10
# tasks x 5 rollouts x 100 steps took about 10 s on 1 thread at a load of 2-3
# (benchmarks/results/metaworld_reach_cpu.txt). `gpu` doubles the navigation
# iterations (the policy runs on the GPU) but adds only a third to the Meta-World
# iterations: the simulators run on the CPU (two cores on Colab). Not yet timed on
# a GPU.
BUDGETS: dict[str, MetaRLBudget] = {
    "smoke": MetaRLBudget(
        iterations=3,
        meta_batch=4,
        rollouts=4,
        test_goals=4,
        test_steps=3,
        metaworld_iterations=1,
        metaworld_meta_batch=2,
        metaworld_rollouts=2,
        metaworld_horizon=10,
        metaworld_test_tasks=2,
    ),
    "short": MetaRLBudget(
        iterations=300,
        meta_batch=20,
        rollouts=20,
        test_goals=40,
        test_steps=3,
        metaworld_iterations=30,
        metaworld_meta_batch=10,
        metaworld_rollouts=5,
        metaworld_horizon=100,
        metaworld_test_tasks=10,
    ),
    "gpu": MetaRLBudget(
        iterations=600,
        meta_batch=20,
        rollouts=20,
        test_goals=100,
        test_steps=3,
        metaworld_iterations=40,
        metaworld_meta_batch=10,
        metaworld_rollouts=5,
        metaworld_horizon=100,
        metaworld_test_tasks=20,
    ),
    "paper": MetaRLBudget(
        iterations=1_000,
        meta_batch=20,
        rollouts=20,
        test_goals=100,
        test_steps=3,
        metaworld_iterations=300,
        metaworld_meta_batch=20,
        metaworld_rollouts=10,
        metaworld_horizon=500,
        metaworld_test_tasks=50,
    ),
}

# Counts that METALEARN_MAX_STEPS caps (as metalearn.profiles caps its own).
CAPPED = ("iterations", "test_goals", "metaworld_iterations", "metaworld_test_tasks")


def budget_for(profile: Profile) -> MetaRLBudget:
    """The budget of ``profile`` (by name), capped by its ``max_steps`` if set.

    Raises:
        ValueError: no budget for the profile's name.
    """
    if profile.name not in BUDGETS:
        raise ValueError(
            f"No meta-RL budget for profile {profile.name!r}; known: {sorted(BUDGETS)}."
        )
    budget = BUDGETS[profile.name]
    if profile.max_steps is None:
        return budget
    limits = {name: min(getattr(budget, name), profile.max_steps) for name in CAPPED}
    # The one exception to "a capped run keeps the profile's shapes": Meta-World's
    # batch of simulated episodes. Under `paper` it is 20 tasks x 10 rollouts x
    # 500 steps per iteration (hundreds of simulators, minutes per step on a
    # CPU), so a capped dry run takes the `smoke` sizes for it; the code path is
    # the same.
    smoke = BUDGETS["smoke"]
    for name in ("metaworld_meta_batch", "metaworld_rollouts", "metaworld_horizon",
                 "metaworld_test_tasks"):
        limits[name] = min(getattr(budget, name), getattr(smoke, name))
    return dataclasses.replace(budget, **limits)
