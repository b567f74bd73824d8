"""Tests for metalearn.rl: the navigation tasks, the policy, the policy-gradient
estimators (against closed forms), and MAML-RL (against an explicit unrolled
computation with Python loops over tasks, rollouts and steps)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from metalearn.profiles import PROFILES
from metalearn.rl import (
    BUDGETS,
    GaussianMLPPolicy,
    MetaRLConfig,
    PointNavigation,
    Trajectories,
    adapt,
    adaptation_returns,
    budget_for,
    discounted_returns,
    linear_feature_baseline,
    loaded_dice_surrogate,
    magic_box,
    make_maml_rl_step,
    make_pretrain_step,
    maml_rl_objective,
    navigation_step,
    num_threads,
    reinforce_surrogate,
    rollout,
    sample_goals,
)
from metalearn.rl.maml import surrogate

# --- the navigation task family ------------------------------------------------------


def test_navigation_step_clips_the_velocity_and_pays_minus_the_distance():
    position = torch.tensor([[[0.0, 0.0], [0.2, 0.1]]])  # [T=1, R=2, 2]
    action = torch.tensor([[[0.3, -0.05], [-1.0, 0.0]]])
    goal = torch.tensor([[0.1, 0.2]])
    moved, reward = navigation_step(position, action, goal)
    # (0.3, -0.05) is clipped to (0.1, -0.05); (-1, 0) to (-0.1, 0).
    torch.testing.assert_close(moved, torch.tensor([[[0.1, -0.05], [0.1, 0.1]]]))
    expected = [-math.hypot(0.0, -0.25), -math.hypot(0.0, -0.1)]
    torch.testing.assert_close(reward, torch.tensor([expected]))


def test_environment_rollout_by_hand():
    env = PointNavigation(torch.tensor([[0.25, 0.0], [0.0, -0.05]]), horizon=3)
    obs = env.reset(rollouts=1)
    assert obs.shape == (2, 1, 2) and not obs.any()
    rewards, successes = [], []
    for _ in range(3):  # always (0.1, 0) after clipping
        obs, reward, success = env.step(torch.full((2, 1, 2), 5.0) * torch.tensor(
            [1.0, 0.0]))
        rewards.append(reward)
        successes.append(success)
    torch.testing.assert_close(obs[0, 0], torch.tensor([0.3, 0.0]))
    got = torch.stack(rewards)[:, 0, 0]
    torch.testing.assert_close(got, torch.tensor([-0.15, -0.05, -0.05]))
    # Task 0 is never within 0.01 per coordinate; task 1 never either.
    assert not torch.stack(successes).any()
    env = PointNavigation(torch.tensor([[0.1, 0.0]]), horizon=1)
    env.reset(1)
    _, _, success = env.step(torch.tensor([[[0.105, 0.005]]]))
    assert bool(success.all())  # (0.1, 0.005) is within 0.01 of (0.1, 0)


def test_goals_are_uniform_on_the_square_and_seeded():
    goals = sample_goals(4000, torch.Generator().manual_seed(0))
    assert goals.shape == (4000, 2)
    assert float(goals.min()) >= -0.5 and float(goals.max()) <= 0.5
    assert abs(float(goals.mean())) < 0.02  # std err 0.0046
    assert torch.equal(goals, sample_goals(4000, torch.Generator().manual_seed(0)))


def test_navigation_bad_inputs():
    with pytest.raises(ValueError, match=r"goals must be a \[T, 2\]"):
        PointNavigation(torch.zeros(3))
    with pytest.raises(RuntimeError, match="call reset"):
        PointNavigation(torch.zeros(1, 2)).step(torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match=r"goal must be \[T, 2\]"):
        navigation_step(torch.zeros(2, 1, 2), torch.zeros(2, 1, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="low < high"):
        sample_goals(2, low=1.0, high=0.0)


# --- returns and baseline ------------------------------------------------------------


def test_discounted_returns_by_hand():
    rewards = torch.tensor([1.0, 2.0, 3.0])
    # G_2 = 3, G_1 = 2 + 0.5 * 3 = 3.5, G_0 = 1 + 0.5 * 3.5 = 2.75
    torch.testing.assert_close(
        discounted_returns(rewards, 0.5), torch.tensor([2.75, 3.5, 3.0])
    )
    torch.testing.assert_close(
        discounted_returns(rewards, 1.0), torch.tensor([6.0, 5.0, 3.0])
    )
    torch.testing.assert_close(discounted_returns(rewards, 0.0), rewards)


def test_discounted_returns_match_the_backward_recursion():
    rewards = torch.randn(3, 4, 50, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64)
    expected = torch.zeros_like(rewards)
    running = torch.zeros(3, 4, dtype=torch.float64)
    for t in reversed(range(50)):  # G_t = r_t + gamma * G_{t+1}
        running = rewards[..., t] + 0.99 * running
        expected[..., t] = running
    torch.testing.assert_close(discounted_returns(rewards, 0.99), expected)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        discounted_returns(rewards, 1.5)


def features_by_hand(obs: np.ndarray) -> np.ndarray:
    """[s, s^2, t/100, (t/100)^2, (t/100)^3, 1] for each step of one rollout."""
    rows = []
    for t, s in enumerate(obs):
        u = t / 100
        rows.append([*s, *(s**2), u, u**2, u**3, 1.0])
    return np.array(rows)


def test_linear_baseline_is_the_per_task_ridge_regression():
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(2, 3, 7, 2, generator=g, dtype=torch.float64)
    returns = torch.randn(2, 3, 7, generator=g, dtype=torch.float64)
    got = linear_feature_baseline(obs, returns, reg=1e-5)
    for task in range(2):
        phi = np.concatenate([features_by_hand(o) for o in obs[task].numpy()])
        target = returns[task].numpy().reshape(-1)
        w = np.linalg.solve(phi.T @ phi + 1e-5 * np.eye(phi.shape[1]), phi.T @ target)
        np.testing.assert_allclose(got[task].numpy().reshape(-1), phi @ w, atol=1e-9)
    # A return that is exactly linear in the features is reproduced (to the
    # conditioning of the features: (t/100)^3 is tiny for a 7-step horizon).
    phi = torch.from_numpy(np.stack(
        [np.stack([features_by_hand(o) for o in t]) for t in obs.numpy()]))
    exact = phi @ torch.arange(8, dtype=torch.float64)
    torch.testing.assert_close(linear_feature_baseline(obs, exact, reg=1e-10), exact,
                               atol=1e-4, rtol=0)


# --- the policy ----------------------------------------------------------------------


def make_policy(hidden=(5,), seed=0, obs_dim=2, act_dim=2, dtype=torch.float64):
    policy = GaussianMLPPolicy(obs_dim, act_dim, hidden,
                               generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        policy.log_std.fill_(-0.5)
    return policy.to(dtype)


def test_policy_mean_and_log_prob_against_a_per_task_loop():
    policy = make_policy(hidden=(4, 3))
    g = torch.Generator().manual_seed(0)
    params = {n: p + 0.1 * torch.randn(2, *p.shape, generator=g, dtype=p.dtype)
              for n, p in policy.named_parameters()}  # different weights per task
    obs = torch.randn(2, 5, 6, 2, generator=g, dtype=torch.float64)
    actions = torch.randn(2, 5, 6, 2, generator=g, dtype=torch.float64)
    mean = policy.mean(params, obs)
    log_prob = policy.log_prob(params, obs, actions)
    for task in range(2):
        x = obs[task]
        for i in range(3):
            x = x @ params[f"weight{i}"][task] + params[f"bias{i}"][task]
            x = torch.relu(x) if i < 2 else x
        torch.testing.assert_close(mean[task], x)
        normal = torch.distributions.Normal(x, params["log_std"][task].exp())
        expected = normal.log_prob(actions[task]).sum(-1)
        torch.testing.assert_close(log_prob[task], expected)


def test_task_params_give_per_task_gradients():
    policy = make_policy()
    params = policy.task_params(3)
    obs = torch.randn(3, 4, 2, dtype=torch.float64)
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    loss = (policy.mean(params, obs).sum(dim=(1, 2)) * scale).sum()
    grads = torch.autograd.grad(loss, params["bias1"])[0]  # [3, 2]
    for task in range(3):  # d loss / d bias1 of task i = scale_i * (#obs)
        torch.testing.assert_close(grads[task], torch.full((2,), 4.0 * (task + 1),
                                                           dtype=torch.float64))


def test_sampling_matches_the_distribution_and_is_seeded():
    policy = make_policy(hidden=())
    params = policy.task_params(1)
    obs = torch.zeros(1, 20_000, 2, dtype=torch.float64)
    actions = policy.sample(params, obs, torch.Generator().manual_seed(0))
    mu = policy.mean(params, obs)[0, 0]
    std = math.exp(-0.5)
    torch.testing.assert_close(actions[0].mean(0), mu, atol=4 * std / 141, rtol=0)
    torch.testing.assert_close(actions[0].std(0), torch.full((2,), std,
                               dtype=torch.float64), atol=0.02, rtol=0)
    again = policy.sample(params, obs, torch.Generator().manual_seed(0))
    assert torch.equal(actions, again)


def test_policy_bad_inputs():
    policy = make_policy()
    with pytest.raises(ValueError, match="leading task dimension"):
        policy.mean(dict(policy.named_parameters()), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"observations must be \[T, \.\.\., 2\]"):
        policy.mean(policy.task_params(1), torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="activation must be one of"):
        GaussianMLPPolicy(2, 2, activation="gelu")


# --- the policy-gradient estimators on a bandit with a known gradient ---------------
#
# One step, a 1-D Gaussian action a ~ N(mu, sigma^2) (a policy with no hidden layer
# and observation 0, so mu is the output bias), reward r(a) = -(a - c)^2. Then
# J = E[r] = -((mu - c)^2 + sigma^2) in closed form, and autograd on that closed
# form is the exact reference for every derivative.

C = 0.3


class Bandit:
    """A one-step environment of T identical bandits (the protocol of rollout)."""

    obs_dim, act_dim, horizon = 1, 1, 1

    def __init__(self, tasks: int) -> None:
        self.tasks = tasks

    def reset(self, rollouts: int) -> torch.Tensor:
        return torch.zeros(self.tasks, rollouts, 1, dtype=torch.float64)

    def step(self, actions):
        reward = -(actions[..., 0] - C) ** 2
        return torch.zeros_like(actions), reward, torch.zeros_like(reward).bool()


def bandit_policy() -> GaussianMLPPolicy:
    policy = GaussianMLPPolicy(1, 1, (), generator=torch.Generator().manual_seed(0))
    policy = policy.double()
    with torch.no_grad():
        policy.bias0.fill_(-0.2)
        policy.log_std.fill_(math.log(0.5))
    return policy


def exact_return(bias: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    return -((bias - C) ** 2 + torch.exp(2 * log_std)).sum()


def bandit_batch(policy, samples: int, seed: int):
    params = policy.task_params(1)
    generator = torch.Generator().manual_seed(seed)
    traj = rollout(policy, params, Bandit(1), samples, generator)
    log_probs = policy.log_prob(params, traj.observations, traj.actions)  # [1, N, 1]
    return params, log_probs, traj.rewards


def flat_grad(output, inputs, create_graph=False):
    grads = torch.autograd.grad(output, inputs, create_graph=create_graph,
                                retain_graph=True)
    return torch.cat([g.reshape(-1) for g in grads])


def test_policy_gradient_is_unbiased_on_the_bandit():
    policy = bandit_policy()
    inputs = [policy.bias0, policy.log_std]
    exact = flat_grad(exact_return(*inputs), inputs)  # [dJ/dmu, dJ/dlog sigma]
    estimates = []
    for seed in range(40):
        _, log_probs, rewards = bandit_batch(policy, 5_000, seed)
        estimates.append(flat_grad(loaded_dice_surrogate(log_probs, rewards).sum(),
                                   inputs))
    estimates = torch.stack(estimates)  # 40 independent estimates
    standard_error = estimates.std(0) / math.sqrt(len(estimates))
    error = (estimates.mean(0) - exact).abs()
    assert (error < 4 * standard_error).all(), (error, standard_error)
    assert (error < 0.01).all()  # exact gradient: (1.0, -0.5)
    # The REINFORCE surrogate has the same first derivative, sample by sample.
    _, log_probs, rewards = bandit_batch(policy, 100, 0)
    torch.testing.assert_close(
        flat_grad(reinforce_surrogate(log_probs, rewards).sum(), inputs),
        flat_grad(loaded_dice_surrogate(log_probs, rewards).sum(), inputs))


def hessian_estimate(policy, surrogate_fn, samples, seed, baseline=0.0):
    inputs = [policy.bias0, policy.log_std]
    _, log_probs, rewards = bandit_batch(policy, samples, seed)
    g = flat_grad(surrogate_fn(log_probs, rewards - baseline).sum(), inputs, True)
    return torch.stack([flat_grad(g_k, inputs, create_graph=False) for g_k in g])


@pytest.mark.parametrize("baseline", [0.0, -0.4])
def test_loaded_dice_hessian_is_unbiased_and_reinforce_hessian_is_not(baseline):
    policy = bandit_policy()
    inputs = [policy.bias0, policy.log_std]
    g = flat_grad(exact_return(*inputs), inputs, create_graph=True)
    exact = torch.stack([flat_grad(g_k, inputs) for g_k in g])  # diag(-2, -4 s^2)
    dice = torch.stack([hessian_estimate(policy, loaded_dice_surrogate, 5_000, seed,
                                         baseline) for seed in range(40)])
    standard_error = dice.std(0) / math.sqrt(len(dice))
    error = (dice.mean(0) - exact).abs()
    assert (error < 4 * standard_error + 1e-12).all(), (error, standard_error)
    assert (error < 0.05).all()
    # REINFORCE's second derivative is E[d^2 log pi * r]: for mu it is
    # E[-r] / sigma^2 = ((mu - c)^2 + sigma^2) / sigma^2 = 2 (here) instead of -2.
    naive = torch.stack([hessian_estimate(policy, reinforce_surrogate, 5_000, seed)
                         for seed in range(10)]).mean(0)
    sigma2 = 0.25
    expected = ((-0.2 - C) ** 2 + sigma2) / sigma2
    assert float(naive[0, 0]) == pytest.approx(expected, abs=0.1)
    assert float((naive - exact).abs().max()) > 3.0


def test_loaded_dice_with_reward_to_go_is_dice():
    """With A_t = sum_{t' >= t} r_t' (gamma = 1, no baseline), loaded DiCE and
    DiCE's sum_t box(W_t) r_t have the same gradient and Hessian."""
    policy = make_policy(hidden=(3,))
    env = PointNavigation(torch.tensor([[0.2, -0.1]], dtype=torch.float64), horizon=4)
    params = policy.task_params(1)
    traj = rollout(policy, params, env, 3, torch.Generator().manual_seed(0))
    inputs = list(policy.parameters())

    def derivatives(objective):
        g = flat_grad(objective, inputs, create_graph=True)
        return g, torch.stack([flat_grad(g_k, inputs, create_graph=True)
                               for g_k in g[:6]])

    log_probs = policy.log_prob(params, traj.observations, traj.actions)
    to_go = discounted_returns(traj.rewards, 1.0)
    loaded = loaded_dice_surrogate(log_probs, to_go).sum()
    dice = (magic_box(log_probs.cumsum(-1)) * traj.rewards).mean(dim=(1, 2)).sum()
    for a, b in zip(derivatives(loaded), derivatives(dice), strict=True):
        torch.testing.assert_close(a, b)


# --- MAML-RL against an explicit unrolled computation --------------------------------


def explicit_log_prob(params, s, a, layers):
    x = s
    for i in range(layers):
        x = x @ params[f"weight{i}"] + params[f"bias{i}"]
        x = torch.relu(x) if i < layers - 1 else x
    log_std = params["log_std"]
    z = (a - x) / torch.exp(log_std)
    return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum()


def explicit_advantages(traj: Trajectories, task: int, gamma: float) -> np.ndarray:
    rewards = traj.rewards[task].numpy()  # [R, H]
    returns = np.zeros_like(rewards)
    for r in range(rewards.shape[0]):
        running = 0.0
        for t in reversed(range(rewards.shape[1])):
            running = rewards[r, t] + gamma * running
            returns[r, t] = running
    phi = np.concatenate([features_by_hand(o) for o in traj.observations[task].numpy()])
    w = np.linalg.solve(phi.T @ phi + 1e-5 * np.eye(phi.shape[1]),
                        phi.T @ returns.reshape(-1))
    advantages = returns.reshape(-1) - phi @ w
    advantages = (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-8)
    return advantages.reshape(returns.shape)


def explicit_surrogate(params, traj, task, advantages, layers, estimator):
    total = torch.zeros((), dtype=torch.float64)
    rollouts, horizon = traj.rewards.shape[1:]
    for r in range(rollouts):
        before = torch.zeros((), dtype=torch.float64)  # W_{-1} = 0
        for t in range(horizon):
            log_pi = explicit_log_prob(params, traj.observations[task, r, t],
                                       traj.actions[task, r, t], layers)
            if estimator == "reinforce":
                total = total + log_pi * float(advantages[r, t])
                continue
            now = before + log_pi  # W_t
            weight = magic_box(now) - magic_box(before)
            total = total + weight * float(advantages[r, t])
            before = now
    return total / (rollouts * horizon)


def explicit_meta_gradient(policy, result, config):
    theta = dict(policy.named_parameters())
    pre, post = result.trajectories
    outer, adapted = [], []
    for task in range(pre.rewards.shape[0]):
        inner = explicit_surrogate(theta, pre, task,
                                   explicit_advantages(pre, task, config.gamma),
                                   policy.layers, config.estimator)
        grads = torch.autograd.grad(inner, list(theta.values()),
                                    create_graph=not config.first_order)
        theta_i = {n: theta[n] + config.inner_lr * g
                   for n, g in zip(theta, grads, strict=True)}
        adapted.append(theta_i)
        outer.append(explicit_surrogate(theta_i, post, task,
                                        explicit_advantages(post, task, config.gamma),
                                        policy.layers, config.estimator))
    meta = torch.stack(outer).mean()
    return torch.autograd.grad(meta, list(theta.values())), adapted


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("estimator", ["loaded-dice", "reinforce"])
def test_meta_gradient_equals_the_explicit_unrolled_computation(estimator, first_order):
    policy = make_policy(hidden=(5,))
    config = MetaRLConfig(inner_lr=0.3, rollouts=3, estimator=estimator,
                          first_order=first_order)
    env = PointNavigation(torch.tensor([[0.3, -0.2], [-0.4, 0.1]],
                                       dtype=torch.float64), horizon=4)
    result = maml_rl_objective(policy, env, config, torch.Generator().manual_seed(0))
    policy.zero_grad()
    result.objective.backward()
    ours = [p.grad.clone() for p in policy.parameters()]
    reference, adapted = explicit_meta_gradient(policy, result, config)
    for task in range(2):
        for name, value in adapted[task].items():
            torch.testing.assert_close(result.adapted[name][task], value)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert max(float(g.abs().max()) for g in ours) > 1e-3  # not trivially zero


def test_second_order_term_matters_on_the_tiny_case():
    policy = make_policy(hidden=(5,))
    env = PointNavigation(torch.tensor([[0.3, -0.2]], dtype=torch.float64), horizon=4)
    grads = {}
    for first_order in (False, True):
        config = MetaRLConfig(inner_lr=0.3, rollouts=3, first_order=first_order)
        generator = torch.Generator().manual_seed(0)
        result = maml_rl_objective(policy, env, config, generator)
        grads[first_order] = flat_grad(result.objective, list(policy.parameters()))
    relative = (grads[False] - grads[True]).norm() / grads[False].norm()
    assert relative > 1e-3


def formulation_two(bias, log_std, inner_lr):
    """The exact J(theta + alpha * grad J(theta)) of the bandit, differentiable."""
    g_bias, g_log_std = torch.autograd.grad(exact_return(bias, log_std),
                                            [bias, log_std], create_graph=True)
    return exact_return(bias + inner_lr * g_bias, log_std + inner_lr * g_log_std)


@pytest.mark.slow
def test_maml_meta_gradient_is_unbiased_only_with_loaded_dice():
    """E[meta-gradient] against the exact gradient of J(theta + alpha grad J)."""
    inner_lr = 0.1
    policy = bandit_policy()
    inputs = [policy.bias0, policy.log_std]
    exact = flat_grad(formulation_two(*inputs, inner_lr), inputs)
    means = {}
    for estimator in ("loaded-dice", "reinforce"):
        config = MetaRLConfig(inner_lr=inner_lr, rollouts=4_000, baseline="none",
                              normalise_advantages=False, estimator=estimator)
        estimates = []
        for seed in range(30):
            result = maml_rl_objective(policy, Bandit(5), config,
                                       torch.Generator().manual_seed(seed))
            estimates.append(flat_grad(result.objective, inputs))
        estimates = torch.stack(estimates)
        means[estimator] = estimates.mean(0)
        standard_error = estimates.std(0) / math.sqrt(len(estimates))
        if estimator == "loaded-dice":
            error = (means[estimator] - exact).abs()
            assert (error < 4 * standard_error).all(), (error, standard_error)
    assert float((means["reinforce"] - exact).abs().max()) > 0.2


# --- the training steps, evaluation, seeds -------------------------------------------


def test_steps_are_reproducible_and_report_returns():
    def run_step(make_step):
        policy = make_policy(hidden=(8,), dtype=torch.float32)
        step = make_step(policy, lambda g: PointNavigation(sample_goals(3, g),
                                                           horizon=10),
                         MetaRLConfig(rollouts=4))
        loss, metrics = step(torch.Generator().manual_seed(5))
        loss.backward()
        return [p.grad for p in policy.parameters()], metrics

    for make_step in (make_maml_rl_step, make_pretrain_step):
        first, metrics = run_step(make_step)
        second, again = run_step(make_step)
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
        assert metrics == again and all(v < 0 for v in metrics.values())


def test_pretraining_learns_to_approach_a_fixed_goal():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (16,), generator=torch.Generator().manual_seed(0))
    goal = torch.tensor([[0.4, 0.4]])
    step = make_pretrain_step(policy, lambda g: PointNavigation(goal.expand(4, 2),
                                                               horizon=20),
                              MetaRLConfig(rollouts=10))
    optimiser = torch.optim.Adam(policy.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    returns = []
    for _ in range(60):
        loss, metrics = step(generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        returns.append(metrics["return"])
    # The start is about -11 (a random walk around the origin, 0.57 from the goal).
    assert np.mean(returns[-10:]) > np.mean(returns[:10]) + 2.0


def test_adaptation_curve_shapes_and_leaves_the_policy_alone():
    policy = make_policy(hidden=(6,), dtype=torch.float32)
    before = {n: p.clone() for n, p in policy.named_parameters()}
    env = PointNavigation(sample_goals(5, torch.Generator().manual_seed(0)), horizon=8)
    curve = adaptation_returns(policy, env, MetaRLConfig(rollouts=3), 3,
                               torch.Generator().manual_seed(1))
    assert curve.returns.shape == curve.success.shape == (4, 5)
    assert len(curve.trajectories) == 4
    assert curve.trajectories[0].observations.shape == (5, 3, 8, 2)
    torch.testing.assert_close(curve.returns[2],
                               curve.trajectories[2].rewards.sum(-1).mean(-1))
    assert all(torch.equal(p, before[n]) for n, p in policy.named_parameters())
    # The adapted policies differ from the initial one: later rollouts differ.
    assert not torch.equal(curve.trajectories[0].actions,
                           curve.trajectories[1].actions)


def test_adapt_detached_inputs_give_detached_outputs():
    policy = make_policy()
    env = PointNavigation(torch.zeros(2, 2, dtype=torch.float64), horizon=3)
    params = {n: p.detach() for n, p in policy.task_params(2).items()}
    traj = rollout(policy, params, env, 2, torch.Generator().manual_seed(0))
    adapted = adapt(policy, params, traj, MetaRLConfig(), first_order=True)
    assert not any(p.requires_grad for p in adapted.values())
    expected = surrogate(policy, {n: p.requires_grad_() for n, p in
                                  {k: v.clone() for k, v in params.items()}.items()},
                         traj, MetaRLConfig())
    assert expected.shape == (2,)


def test_num_threads_restores_the_setting():
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with num_threads(0):
            pass


def test_budgets_exist_for_every_profile_and_obey_the_cap():
    assert set(BUDGETS) == set(PROFILES)
    assert BUDGETS["smoke"].iterations < BUDGETS["short"].iterations
    assert BUDGETS["short"].iterations <= BUDGETS["paper"].iterations
    assert budget_for(PROFILES["short"]) == BUDGETS["short"]
    capped = budget_for(dataclasses.replace(PROFILES["paper"], max_steps=2))
    assert capped.iterations == capped.metaworld_iterations == 2
    assert capped.test_goals == capped.metaworld_test_tasks == 2
    assert capped.meta_batch == BUDGETS["paper"].meta_batch  # shapes are kept
    with pytest.raises(ValueError, match="No meta-RL budget"):
        budget_for(dataclasses.replace(PROFILES["short"], name="laptop"))


def test_config_bad_values():
    with pytest.raises(ValueError, match="inner_lr must be positive"):
        MetaRLConfig(inner_lr=0.0)
    with pytest.raises(ValueError, match="estimator must be one of"):
        MetaRLConfig(estimator="dice")
    with pytest.raises(ValueError, match="baseline must be one of"):
        MetaRLConfig(baseline="value")
    with pytest.raises(ValueError, match=r"log_probs .* must both be \[T, R, H\]"):
        loaded_dice_surrogate(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))


# --- the chapter's figures -----------------------------------------------------------


def test_figures_have_labelled_axes_titles_and_legends():
    import matplotlib

    matplotlib.use("Agg")
    from metalearn.rl import plots

    goals = sample_goals(6, torch.Generator().manual_seed(0))
    policy = make_policy(hidden=(4,), dtype=torch.float32)
    env = PointNavigation(goals, horizon=5)
    curve = adaptation_returns(policy, env, MetaRLConfig(rollouts=2), 2,
                               torch.Generator().manual_seed(0))
    figures = [
        plots.plot_navigation_tasks(goals, curve.trajectories[0]),
        plots.plot_trajectories({"before": curve.trajectories[0],
                                 "after 2 steps": curve.trajectories[2]}, goals[0]),
        plots.plot_adaptation_curves({"policy": curve.returns}),
    ]
    for fig in figures:
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        assert ax.get_legend() is not None
    labels = [t.get_text() for t in figures[1].axes[0].get_legend().get_texts()]
    assert labels == ["before", "after 2 steps", "goal"]
    line = figures[2].axes[0].lines[0]  # the means after 0, 1, 2 steps
    means = [float(y) for y in line.get_ydata()]
    np.testing.assert_allclose(means, curve.returns.mean(1).tolist(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"goals must be \[T, 2\]"):
        plots.plot_navigation_tasks(torch.zeros(3))


# --- Meta-World (the optional extra metalearn[metaworld]; CI installs it) ------------


def test_missing_metaworld_says_how_to_install(monkeypatch):
    import sys

    from metalearn.rl.metaworld import MetaWorldML1

    monkeypatch.setitem(sys.modules, "metaworld", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"metalearn\[metaworld\]"):
        MetaWorldML1("reach-v3")


@pytest.fixture(scope="module")
def ml1():
    pytest.importorskip("metaworld", reason="the optional extra metalearn[metaworld]")
    from metalearn.rl.metaworld import MetaWorldML1

    return MetaWorldML1("reach-v3", seed=0)


def test_metaworld_tasks_step_all_simulators_together(ml1):
    tasks = ml1.tasks("train", [0, 3], rollouts=2, horizon=3)
    assert (tasks.tasks, tasks.rollouts, tasks.obs_dim, tasks.act_dim) == (2, 2, 39, 4)
    obs = tasks.reset(2)
    assert obs.shape == (2, 2, 39) and obs.dtype == torch.float32
    assert not obs[..., 36:].any()  # the goal is hidden
    torch.testing.assert_close(obs[0, 0], obs[0, 1])  # same task, same start
    next_obs, reward, success = tasks.step(torch.zeros(2, 2, 4))
    assert next_obs.shape == (2, 2, 39) and reward.shape == success.shape == (2, 2)
    assert success.dtype == torch.bool and bool((reward >= 0).all())
    # Tasks 0 and 3 have different targets: the same action pays differently.
    assert not torch.allclose(reward[0], reward[1])
    policy = GaussianMLPPolicy(39, 4, (8,), generator=torch.Generator().manual_seed(0))
    traj = rollout(policy, policy.task_params(2), tasks, 2,
                   torch.Generator().manual_seed(0))
    assert traj.observations.shape == (2, 2, 3, 39) and traj.rewards.shape == (2, 2, 3)


def test_metaworld_sampler_and_bad_requests(ml1):
    sample = ml1.sampler(3, rollouts=1, horizon=2)
    first = sample(torch.Generator().manual_seed(0))
    assert first.tasks == 3 and sample.identity["env"] == "reach-v3"
    with pytest.raises(ValueError, match="task indices must lie in 0..49"):
        ml1.tasks("test", [50], rollouts=1, horizon=2)
    with pytest.raises(ValueError, match="exceeds the episode limit 500"):
        ml1.tasks("train", [0], rollouts=1, horizon=501)
    with pytest.raises(ValueError, match="ask for rollouts=1"):
        ml1.tasks("train", [0], rollouts=1, horizon=2).reset(3)
    with pytest.raises(ValueError, match="split must be one of"):
        ml1.task_list("validation")


@pytest.mark.slow
def test_metaworld_benchmark_script_runs(ml1, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "metaworld_reach.py"
    spec = importlib.util.spec_from_file_location("metaworld_reach", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--quick"])
    out = capsys.readouterr().out
    assert "hardware:" in out and out.count("test return before") == 3
    assert set(results) >= {"MAML", "pre-trained", "fresh init", "steps_per_s_single"}
