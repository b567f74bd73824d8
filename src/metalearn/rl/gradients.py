"""Policy-gradient estimators: returns, a baseline, and two surrogate objectives.

A *surrogate* is a scalar whose gradient, computed by autograd on sampled
trajectories, is an estimate of the gradient of the expected return
:math:`J(\\theta) = \\mathbb{E}_{\\tau \\sim \\pi_\\theta}[R(\\tau)]`. Two are here.

:func:`reinforce_surrogate`, :math:`\\frac{1}{RH} \\sum_{r,t} \\log\\pi_\\theta(a_t
\\mid s_t) A_t` with the advantages :math:`A_t` held constant, is the REINFORCE
estimator (Williams, 1992) with a baseline: its first derivative is an
unbiased estimate of :math:`\\nabla J` (up to the usual discounting and
baseline conventions). Its *second* derivative is not an estimate of
:math:`\\nabla^2 J`: differentiating :math:`\\nabla J = \\mathbb{E}[\\nabla\\log
\\pi\\, A]` once more also differentiates the sampling distribution, which
gives the term :math:`\\mathbb{E}[\\nabla\\log\\pi\\,\\nabla\\log\\pi^\\top A]`
that this surrogate misses. MAML differentiates through an inner
policy-gradient step, i.e. it needs that second derivative.

:func:`loaded_dice_surrogate` gets every order right. With the *magic box*
:math:`⊡(x) = \\exp(x - \\bot(x))` (:math:`\\bot` = stop-gradient), which
evaluates to 1 but has :math:`\\nabla ⊡(x) = ⊡(x) \\nabla x`, and the cumulative
log-probabilities :math:`W_t = \\sum_{t' \\le t} \\log\\pi_\\theta(a_{t'} \\mid
s_{t'})`, it is

.. math:: \\mathcal{L}(\\theta) = \\frac{1}{RH} \\sum_{r,t}
          \\big(⊡(W_t) - ⊡(W_{t-1})\\big)\\, A_t, \\qquad ⊡(W_{-1}) = 1.

With :math:`A_t = \\sum_{t' \\ge t} r_{t'}` (no baseline, no discount) this is
DiCE's objective :math:`\\sum_t ⊡(W_t) r_t` up to a constant (Foerster et al.,
2018), whose derivatives of every order are unbiased estimates of those of
:math:`J`. Subtracting a baseline :math:`b(s_t)` from :math:`A_t` adds
:math:`-\\sum_t ⊡(W_{t-1})(⊡(\\log\\pi_t) - 1)\\, b_t`, whose derivatives of
every order have expectation zero, and lowers the variance; this form with
advantages is the "loaded" DiCE of Farquhar et al. (2019) with
:math:`\\lambda = 1`. Its first derivative is exactly that of
:func:`reinforce_surrogate`; the two differ from the second derivative on.
"""

from __future__ import annotations

import torch


def _check_time_series(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor [..., H], got {x!r}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinity.")


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """Rewards-to-go :math:`G_t = \\sum_{k \\ge t} \\gamma^{k-t} r_k`.

    Computed as one product with the upper-triangular matrix
    :math:`M_{kt} = \\gamma^{k-t}` (:math:`k \\ge t`), so there is no Python loop.

    Args:
        rewards: ``[..., H]``, the last dimension is time.
        gamma: the discount factor, in ``[0, 1]``.

    Returns:
        ``[..., H]``.
    """
    _check_time_series("rewards", rewards)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}.")
    horizon = rewards.shape[-1]
    steps = torch.arange(horizon, device=rewards.device)
    lag = (steps[:, None] - steps[None, :]).to(rewards.dtype)  # k - t
    powers = torch.where(
        lag >= 0,
        torch.tensor(gamma, dtype=rewards.dtype, device=rewards.device).pow(lag),
        torch.zeros((), dtype=rewards.dtype, device=rewards.device),
    )  # [H (k), H (t)]
    return rewards @ powers


def baseline_features(observations: torch.Tensor) -> torch.Tensor:
    """Features of the linear baseline: ``[s, s^2, u, u^2, u^3, 1]``, ``u = t / 100``.

    The time-varying linear baseline of Duan et al. (2016), used by the MAML
    reference code; observations are clipped to ``[-10, 10]`` first.

    Shapes: ``[T, R, H, D] -> [T, R, H, 2 D + 4]``.
    """
    if observations.dim() != 4:
        raise ValueError(
            f"observations must be [T, R, H, D], got {tuple(observations.shape)}."
        )
    tasks, rollouts, horizon, _ = observations.shape
    s = observations.clamp(-10.0, 10.0)
    u = torch.arange(horizon, dtype=s.dtype, device=s.device) / 100.0  # [H]
    u = u.view(1, 1, horizon, 1).expand(tasks, rollouts, horizon, 1)
    return torch.cat([s, s * s, u, u * u, u * u * u, torch.ones_like(u)], dim=-1)


def linear_feature_baseline(
    observations: torch.Tensor, returns: torch.Tensor, *, reg: float = 1e-5
) -> torch.Tensor:
    """Per-task ridge regression of the returns on :func:`baseline_features`.

    For each task, :math:`w = (\\Phi^\\top\\Phi + \\lambda I)^{-1} \\Phi^\\top G`
    over all its rollouts and steps, and :math:`b = \\Phi w`. As in the
    reference code the baseline is fitted to the same trajectories it is used
    on; with 20 rollouts of 100 steps and 8 features the bias this introduces
    is negligible. Solved in float64; the result has the returns' dtype and no
    gradient.

    Args:
        observations: ``[T, R, H, D]``.
        returns: ``[T, R, H]`` (from :func:`discounted_returns`).
        reg: :math:`\\lambda > 0`.

    Returns:
        ``[T, R, H]`` baseline values.
    """
    if returns.shape != observations.shape[:3]:
        raise ValueError(
            f"returns {tuple(returns.shape)} must be [T, R, H] of observations "
            f"{tuple(observations.shape)}."
        )
    if not reg > 0:
        raise ValueError(f"reg must be positive, got {reg}.")
    phi = baseline_features(observations.detach()).double()  # [T, R, H, F]
    phi = phi.flatten(1, 2)  # [T, R*H, F]
    target = returns.detach().double().flatten(1)  # [T, R*H]
    gram = phi.transpose(1, 2) @ phi  # [T, F, F]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    weights = torch.linalg.solve(
        gram + reg * eye, (phi.transpose(1, 2) @ target[..., None])
    )  # [T, F, 1]
    return (phi @ weights).squeeze(-1).reshape(returns.shape).to(returns.dtype)


def magic_box(x: torch.Tensor) -> torch.Tensor:
    """DiCE's :math:`⊡(x) = \\exp(x - \\bot(x))`: equals 1, gradient ``⊡(x) grad x``."""
    return torch.exp(x - x.detach())


def _check_pair(log_probs: torch.Tensor, advantages: torch.Tensor) -> None:
    _check_time_series("log_probs", log_probs)
    _check_time_series("advantages", advantages)
    if log_probs.shape != advantages.shape or log_probs.dim() != 3:
        raise ValueError(
            f"log_probs {tuple(log_probs.shape)} and advantages "
            f"{tuple(advantages.shape)} must both be [T, R, H]."
        )


def loaded_dice_surrogate(
    log_probs: torch.Tensor, advantages: torch.Tensor
) -> torch.Tensor:
    """:math:`\\frac{1}{RH}\\sum_{r,t} (⊡(W_t) - ⊡(W_{t-1})) A_t`, one per task.

    Implements the loaded DiCE objective of the module docstring (Farquhar et
    al., 2019, with :math:`\\lambda = 1`). Its value is 0; its gradient is the
    policy gradient :math:`\\frac{1}{RH}\\sum \\nabla\\log\\pi_t A_t`, and its
    higher derivatives are unbiased as well (for advantages that do not depend
    on :math:`\\theta`; they are detached here).

    Args:
        log_probs: :math:`\\log\\pi_\\theta(a_t \\mid s_t)`, ``[T, R, H]``, with
            a graph to :math:`\\theta`.
        advantages: :math:`A_t`, ``[T, R, H]``.

    Returns:
        ``[T]``, the surrogate of each task.
    """
    _check_pair(log_probs, advantages)
    cumulative = log_probs.cumsum(dim=-1)  # W_t, [T, R, H]
    before = torch.cat(  # W_{t-1}, with W_{-1} = 0 (so that ⊡(W_{-1}) = 1)
        [torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], dim=-1
    )
    weights = magic_box(cumulative) - magic_box(before)  # [T, R, H], value 0
    return (weights * advantages.detach()).mean(dim=(1, 2))


def reinforce_surrogate(
    log_probs: torch.Tensor, advantages: torch.Tensor
) -> torch.Tensor:
    """:math:`\\frac{1}{RH}\\sum_{r,t} \\log\\pi_\\theta(a_t \\mid s_t) A_t`, per task.

    The surrogate of the original MAML implementation and of most
    policy-gradient code: the right first derivative, a biased second one
    (see the module docstring).

    Shapes: ``[T, R, H]`` and ``[T, R, H]`` -> ``[T]``.
    """
    _check_pair(log_probs, advantages)
    return (log_probs * advantages.detach()).mean(dim=(1, 2))


SURROGATES = {"loaded-dice": loaded_dice_surrogate, "reinforce": reinforce_surrogate}
