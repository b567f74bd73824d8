"""MAML for reinforcement learning: a policy-gradient step inside the meta-objective.

For a task :math:`\\mathcal{T}_i` (here: a goal), the inner step of Finn,
Abbeel and Levine (2017, Algorithm 3) is one step of *ascent* on the task's
expected return, estimated from :math:`K` trajectories of the current policy,

.. math:: \\theta'_i = \\theta + \\alpha\\, \\nabla_\\theta
          \\mathcal{L}_{\\mathcal{T}_i}(\\theta;\\, \\mathcal{D}_i),
          \\qquad \\mathcal{D}_i \\sim \\pi_\\theta,

and the meta-objective is the expected return *after* that step, estimated
from new trajectories of the adapted policy,

.. math:: \\max_\\theta\\; \\sum_i
          \\mathcal{L}_{\\mathcal{T}_i}(\\theta'_i;\\, \\mathcal{D}'_i),
          \\qquad \\mathcal{D}'_i \\sim \\pi_{\\theta'_i}.

:math:`\\mathcal{L}` is a surrogate of :mod:`metalearn.rl.gradients`: the
loaded DiCE objective by default, so that the meta-gradient, which
differentiates the inner policy gradient once more, gets the right second
derivative; ``estimator="reinforce"`` gives the original implementation's
surrogate, whose Hessian term is biased. Trajectories are data (sampled
without gradients); the dependence of :math:`\\mathcal{D}_i` on :math:`\\theta`
enters only through the log-probabilities in the surrogate, i.e. this is the
meta-gradient of :math:`J(\\theta + \\alpha\\nabla J(\\theta))`, not the
"E-MAML" variant that also credits the pre-update sampling (Stadie et al.,
2018; Rothfuss et al., 2019 compare the two).

Every function works on all tasks at once: parameters carry a task dimension
(:meth:`~metalearn.rl.policy.GaussianMLPPolicy.task_params`), rollouts step
``[T, R]`` environments together, and the per-task inner gradients come from
one ``autograd.grad`` of the sum of the per-task surrogates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import torch

from metalearn.checks import check_positive_int
from metalearn.rl.gradients import (
    SURROGATES,
    discounted_returns,
    linear_feature_baseline,
)
from metalearn.rl.policy import GaussianMLPPolicy, Params

Step = Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]]


class BatchedEnv(Protocol):
    """``T`` tasks x ``R`` rollouts of an environment, stepped together."""

    tasks: int  # T
    horizon: int  # H, steps per episode
    obs_dim: int
    act_dim: int

    def reset(self, rollouts: int) -> torch.Tensor:
        """Start ``R`` episodes per task; return observations ``[T, R, obs_dim]``."""
        ...

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``actions [T, R, act_dim]`` -> ``(obs, reward [T, R], success [T, R])``."""
        ...


@dataclass(frozen=True)
class Trajectories:
    """``R`` rollouts of ``H`` steps for each of ``T`` tasks (no gradients).

    Shapes: ``observations [T, R, H, obs_dim]`` (:math:`s_t`, before the
    action), ``actions [T, R, H, act_dim]`` (as sampled, before any clipping),
    ``rewards [T, R, H]``, ``success [T, R, H]`` (bool).
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    success: torch.Tensor

    def returns(self) -> torch.Tensor:
        """Undiscounted return of every rollout, :math:`\\sum_t r_t`: ``[T, R]``."""
        return self.rewards.sum(dim=-1)

    def success_rate(self) -> torch.Tensor:
        """Fraction of each task's rollouts that succeeded at some step: ``[T]``."""
        return self.success.any(dim=-1).float().mean(dim=-1)


def rollout(
    policy: GaussianMLPPolicy,
    params: Params,
    env: BatchedEnv,
    rollouts: int,
    generator: torch.Generator,
) -> Trajectories:
    """Sample ``rollouts`` episodes of every task with per-task weights ``params``.

    One batched policy evaluation per time step for all ``T x R`` episodes; the
    only Python loop is over the ``H`` steps.

    Args:
        policy: the policy.
        params: ``{name: [T, *shape]}``; detached here.
        env: ``T`` tasks (e.g. :class:`~metalearn.rl.navigation.PointNavigation`).
        rollouts: R, episodes per task.
        generator: the source of the action noise.
    """
    check_positive_int("rollouts", rollouts)
    weights = {name: p.detach() for name, p in params.items()}
    obs = env.reset(rollouts)  # [T, R, obs_dim]
    seen, taken, paid, reached = [], [], [], []
    for _ in range(env.horizon):
        action = policy.sample(weights, obs, generator)  # [T, R, act_dim]
        next_obs, reward, success = env.step(action)
        seen.append(obs)
        taken.append(action)
        paid.append(reward)
        reached.append(success)
        obs = next_obs
    return Trajectories(
        observations=torch.stack(seen, dim=2),
        actions=torch.stack(taken, dim=2),
        rewards=torch.stack(paid, dim=2),
        success=torch.stack(reached, dim=2),
    )


BASELINES = ("linear", "none")


@dataclass(frozen=True)
class MetaRLConfig:
    """The inner learner and the estimator of MAML-RL."""

    inner_lr: float = 0.1  # alpha, the inner policy-gradient step (Finn et al.)
    rollouts: int = 20  # K: trajectories per task for each gradient step (20)
    gamma: float = 0.99  # discount of the rewards-to-go in the advantages
    baseline: str = "linear"  # "linear" (Duan et al. 2016) or "none"
    normalise_advantages: bool = True  # standardise A per task (reference code)
    estimator: str = "loaded-dice"  # or "reinforce" (biased second derivative)
    first_order: bool = False  # drop the second-order term (FOMAML)
    inner_steps: int = 1  # inner policy-gradient steps during meta-training

    def __post_init__(self) -> None:
        if not self.inner_lr > 0:
            raise ValueError(f"inner_lr must be positive, got {self.inner_lr}.")
        check_positive_int("rollouts", self.rollouts)
        check_positive_int("inner_steps", self.inner_steps)
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}.")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got "
                             f"{self.baseline!r}.")
        if self.estimator not in SURROGATES:
            raise ValueError(f"estimator must be one of {tuple(SURROGATES)}, got "
                             f"{self.estimator!r}.")


def advantages(trajectories: Trajectories, config: MetaRLConfig) -> torch.Tensor:
    """:math:`A_t = G_t - b(s_t)`, standardised per task if configured; ``[T, R, H]``.

    Detached: the advantages are data, not functions of the policy.
    """
    returns = discounted_returns(trajectories.rewards, config.gamma)
    if config.baseline == "linear":
        returns = returns - linear_feature_baseline(trajectories.observations, returns)
    if config.normalise_advantages:
        mean = returns.mean(dim=(1, 2), keepdim=True)
        std = returns.std(dim=(1, 2), keepdim=True)
        returns = (returns - mean) / (std + 1e-8)
    return returns.detach()


def surrogate(
    policy: GaussianMLPPolicy,
    params: Params,
    trajectories: Trajectories,
    config: MetaRLConfig,
) -> torch.Tensor:
    """The surrogate :math:`\\mathcal{L}_{\\mathcal{T}_i}(\\theta_i; \\mathcal{D}_i)`
    of every task, ``[T]`` (``config.estimator`` chooses which)."""
    log_probs = policy.log_prob(
        params, trajectories.observations, trajectories.actions
    )  # [T, R, H]
    return SURROGATES[config.estimator](log_probs, advantages(trajectories, config))


def adapt(
    policy: GaussianMLPPolicy,
    params: Params,
    trajectories: Trajectories,
    config: MetaRLConfig,
    *,
    first_order: bool,
) -> Params:
    """One inner policy-gradient step of every task, eq. {eq}`maml-rl-inner`.

    :math:`\\theta'_i = \\theta_i + \\alpha \\nabla_{\\theta_i}
    \\mathcal{L}_{\\mathcal{T}_i}(\\theta_i; \\mathcal{D}_i)`, with the gradient of
    each task taken from one ``autograd.grad`` of :math:`\\sum_i \\mathcal{L}_i`
    (task :math:`i`'s surrogate depends only on its own slice of ``params``).

    Args:
        params: ``{name: [T, *shape]}``; if they carry a graph to the
            meta-parameters, so does the result.
        trajectories: :math:`\\mathcal{D}_i`, sampled from ``params``.
        first_order: detach the inner gradient (FOMAML, and test-time
            adaptation); otherwise it keeps its graph (``create_graph=True``)
            and the meta-gradient includes the second-order term.

    Returns:
        The adapted ``{name: [T, *shape]}``.
    """
    leaves = {
        name: p if p.requires_grad else p.detach().requires_grad_()
        for name, p in params.items()
    }
    with torch.enable_grad():
        objective = surrogate(policy, leaves, trajectories, config).sum()
        grads = torch.autograd.grad(
            objective, list(leaves.values()), create_graph=not first_order
        )
    return {
        name: params[name] + config.inner_lr * g
        for name, g in zip(params, grads, strict=True)
    }


@dataclass(frozen=True)
class MetaRLResult:
    """What one evaluation of the MAML-RL meta-objective produced."""

    objective: torch.Tensor  # scalar, mean post-adaptation surrogate; has a graph
    trajectories: tuple[Trajectories, ...]  # D_i before, ..., D'_i after adaptation
    adapted: Params  # theta'_i, [T, *shape], with a graph to theta


def maml_rl_objective(
    policy: GaussianMLPPolicy,
    env: BatchedEnv,
    config: MetaRLConfig,
    generator: torch.Generator,
) -> MetaRLResult:
    """The meta-objective of eq. {eq}`maml-rl-outer` on the tasks of ``env``.

    Sample :math:`\\mathcal{D}_i \\sim \\pi_\\theta`, adapt
    (:func:`adapt`, ``config.inner_steps`` times, new trajectories for each
    step), sample :math:`\\mathcal{D}'_i \\sim \\pi_{\\theta'_i}`, and average
    the post-adaptation surrogates over tasks. ``objective.backward()`` fills
    ``policy``'s gradients with the meta-gradient (ascent direction).
    """
    params = policy.task_params(env.tasks)
    trajectories = [rollout(policy, params, env, config.rollouts, generator)]
    for _ in range(config.inner_steps):
        params = adapt(
            policy, params, trajectories[-1], config, first_order=config.first_order
        )
        trajectories.append(rollout(policy, params, env, config.rollouts, generator))
    objective = surrogate(policy, params, trajectories[-1], config).mean()
    return MetaRLResult(objective, tuple(trajectories), params)


def make_maml_rl_step(
    policy: GaussianMLPPolicy,
    sample_env: Callable[[torch.Generator], BatchedEnv],
    config: MetaRLConfig,
) -> Step:
    """A meta-training step for :func:`metalearn.experiments.fit`.

    Args:
        policy: the meta-parameters :math:`\\theta`.
        sample_env: draws a meta-batch of tasks with the generator, e.g.
            ``lambda g: PointNavigation(sample_goals(20, g))``.
        config: the inner learner.

    Returns:
        ``step(generator) -> (loss, metrics)``: ``loss`` is minus the
        meta-objective (the optimiser minimises); metrics are the mean returns
        before (``return_pre``) and after (``return_post``) adaptation.
    """

    def step(generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        result = maml_rl_objective(policy, sample_env(generator), config, generator)
        first, last = result.trajectories[0], result.trajectories[-1]
        return -result.objective, {
            "return_pre": float(first.returns().mean()),
            "return_post": float(last.returns().mean()),
        }

    step.identity = {  # what shapes the update (see metalearn.training)
        "method": "maml-rl",
        **asdict(config),
        "tasks": getattr(sample_env, "identity", None),
    }
    return step


def make_pretrain_step(
    policy: GaussianMLPPolicy,
    sample_env: Callable[[torch.Generator], BatchedEnv],
    config: MetaRLConfig,
) -> Step:
    """A step of joint pre-training: the policy gradient of the return averaged
    over a batch of tasks, with no adaptation (the "pretrained" baseline of
    Finn et al. 2017, Fig. 5). Same sampler, surrogate and batch as MAML."""

    def step(generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        env = sample_env(generator)
        params = policy.task_params(env.tasks)
        trajectories = rollout(policy, params, env, config.rollouts, generator)
        objective = surrogate(policy, params, trajectories, config).mean()
        return -objective, {"return": float(trajectories.returns().mean())}

    step.identity = {
        "method": "pretrain-rl",
        **asdict(config),
        "tasks": getattr(sample_env, "identity", None),
    }
    return step


@dataclass(frozen=True)
class AdaptationCurve:
    """Returns of new tasks after 0, 1, ..., S test-time adaptation steps."""

    returns: torch.Tensor  # [S + 1, T]: mean return over the R rollouts
    success: torch.Tensor  # [S + 1, T]: fraction of rollouts that succeeded
    trajectories: tuple[Trajectories, ...]  # S + 1 batches of rollouts


def adaptation_returns(
    policy: GaussianMLPPolicy,
    env: BatchedEnv,
    config: MetaRLConfig,
    steps: int,
    generator: torch.Generator,
) -> AdaptationCurve:
    """Adapt to every task of ``env`` with ``steps`` policy-gradient steps.

    At each step :math:`k = 0..S` it samples ``config.rollouts`` trajectories
    of the current policy :math:`\\theta^{(k)}_i`; their mean return is the
    return after :math:`k` steps, and they are the data of step :math:`k+1`
    (:func:`adapt`, first order, step size ``config.inner_lr``). Nothing is
    written into ``policy``.
    """
    check_positive_int("steps", steps)
    params = {n: p.detach() for n, p in policy.task_params(env.tasks).items()}
    batches = []
    for k in range(steps + 1):
        batches.append(rollout(policy, params, env, config.rollouts, generator))
        if k < steps:
            adapted = adapt(policy, params, batches[-1], config, first_order=True)
            params = {n: p.detach() for n, p in adapted.items()}
    return AdaptationCurve(
        returns=torch.stack([b.returns().mean(dim=1) for b in batches]),
        success=torch.stack([b.success_rate() for b in batches]),
        trajectories=tuple(batches),
    )
