"""A Gaussian MLP policy whose weights can differ from task to task.

The policy of the MAML paper's reinforcement-learning experiments (Finn, Abbeel
and Levine, 2017, Section 5.3): an MLP with two hidden layers of 100 ReLU units
maps an observation :math:`s` to the mean :math:`\\mu_\\theta(s)` of a Gaussian
over actions, with a learned, state-independent standard deviation,

.. math:: \\pi_\\theta(a \\mid s) = \\mathcal{N}\\big(a;\\, \\mu_\\theta(s),\\,
          \\operatorname{diag}(\\sigma_\\theta^2)\\big),
          \\qquad \\log\\sigma_\\theta \\text{ a parameter}.

MAML adapts one copy of the weights per task, so every function here takes a
parameter dictionary whose tensors carry a leading task dimension ``T``
(:meth:`GaussianMLPPolicy.task_params` makes it from the module's own
parameters without copying). All tasks, rollouts and time steps then go
through one batched matrix product per layer (``torch.baddbmm``), with no
Python loop over tasks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from metalearn.checks import check_positive_int

Params = dict[str, torch.Tensor]
ACTIVATIONS = ("relu", "tanh")


class GaussianMLPPolicy(nn.Module):
    """The Gaussian policy :math:`\\mathcal{N}(\\mu_\\theta(s), \\sigma_\\theta^2)`.

    Parameters are ``weight{i}`` (``[fan_in, fan_out]``, used as ``x @ W``),
    ``bias{i}`` (``[fan_out]``) for each layer ``i`` and ``log_std``
    (``[act_dim]``). Weights start Glorot-uniform (Glorot and Bengio, 2010),
    biases at zero and ``log_std`` at ``init_log_std`` (0: unit variance, as in
    the reference code of Finn et al.).

    Args:
        obs_dim: size of an observation.
        act_dim: size of an action.
        hidden: widths of the hidden layers (``(100, 100)`` in the paper;
            ``()`` gives a linear policy).
        activation: ``"relu"`` (the paper) or ``"tanh"``.
        init_log_std: the initial :math:`\\log\\sigma` of every action dimension.
        generator: the source of the initial weights (default: torch's global one).

    Shapes:
        ``params`` tensors ``[T, *shape]``; observations ``[T, ..., obs_dim]``
        -> means ``[T, ..., act_dim]``, log-densities ``[T, ...]``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (100, 100),
        *,
        activation: str = "relu",
        init_log_std: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("obs_dim", obs_dim)
        check_positive_int("act_dim", act_dim)
        for width in hidden:
            check_positive_int("hidden width", width)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATIONS}, got {activation!r}."
            )
        if not math.isfinite(init_log_std):
            raise ValueError(f"init_log_std must be finite, got {init_log_std}.")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.hidden, self.activation = tuple(hidden), activation
        widths = [obs_dim, *hidden, act_dim]
        self.layers = len(widths) - 1
        pairs = zip(widths[:-1], widths[1:], strict=True)
        for i, (fan_in, fan_out) in enumerate(pairs):
            bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
            weight = (2 * torch.rand(fan_in, fan_out, generator=generator) - 1) * bound
            self.register_parameter(f"weight{i}", nn.Parameter(weight))
            self.register_parameter(f"bias{i}", nn.Parameter(torch.zeros(fan_out)))
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def task_params(self, tasks: int) -> Params:
        """The module's parameters with a task dimension: ``{name: [T, *shape]}``.

        ``expand`` makes views, not copies: the result is differentiable with
        respect to the module's parameters, and the gradient of a sum of
        per-task losses with respect to these views is the per-task gradient.
        """
        check_positive_int("tasks", tasks)
        return {n: p.expand(tasks, *p.shape) for n, p in self.named_parameters()}

    def _check(self, params: Params, obs: torch.Tensor) -> None:
        expected = {n for n, _ in self.named_parameters()}
        if set(params) != expected:
            raise ValueError(
                f"params must have the keys {sorted(expected)}, got {sorted(params)}."
            )
        if obs.dim() < 2 or obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"observations must be [T, ..., {self.obs_dim}], got "
                f"{tuple(obs.shape)}."
            )
        tasks = params["log_std"].shape[0] if params["log_std"].dim() == 2 else None
        if tasks is None or tasks != obs.shape[0]:
            raise ValueError(
                f"params need a leading task dimension equal to the observations' "
                f"({obs.shape[0]}); got log_std {tuple(params['log_std'].shape)}. "
                "Use policy.task_params(T)."
            )

    def mean(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        """:math:`\\mu_\\theta(s)` of every task: ``[T, ..., obs] -> [T, ..., act]``."""
        self._check(params, obs)
        x = obs.reshape(obs.shape[0], -1, self.obs_dim)  # [T, N, obs_dim]
        act = torch.relu if self.activation == "relu" else torch.tanh
        for i in range(self.layers):
            bias = params[f"bias{i}"].unsqueeze(1)  # [T, 1, fan_out]
            x = torch.baddbmm(bias, x, params[f"weight{i}"])  # [T, N, fan_out]
            if i < self.layers - 1:
                x = act(x)
        return x.reshape(*obs.shape[:-1], self.act_dim)

    def log_prob(
        self, params: Params, obs: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """:math:`\\log\\pi_\\theta(a \\mid s)`, summed over action dimensions.

        Shapes: ``obs [T, ..., obs_dim]``, ``actions [T, ..., act_dim]`` ->
        ``[T, ...]``.
        """
        if actions.shape[:-1] != obs.shape[:-1] or actions.shape[-1] != self.act_dim:
            raise ValueError(
                f"actions {tuple(actions.shape)} do not match observations "
                f"{tuple(obs.shape)} and act_dim={self.act_dim}."
            )
        mu = self.mean(params, obs)
        log_std = params["log_std"].reshape(
            obs.shape[0], *([1] * (obs.dim() - 2)), self.act_dim
        )
        z = (actions - mu) * torch.exp(-log_std)
        per_dim = -0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        return per_dim.sum(dim=-1)

    def sample(
        self, params: Params, obs: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Draw :math:`a \\sim \\pi_\\theta(\\cdot \\mid s)` (no gradient).

        The noise is drawn on ``generator``'s device and moved to ``obs``'s, so
        a CPU generator gives the same actions on every device.
        """
        with torch.no_grad():
            mu = self.mean(params, obs)
            log_std = params["log_std"].reshape(
                obs.shape[0], *([1] * (obs.dim() - 2)), self.act_dim
            )
            noise = torch.randn(
                mu.shape, generator=generator, device=generator.device, dtype=mu.dtype
            ).to(mu.device)
            return mu + torch.exp(log_std) * noise

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action of the module's own weights: ``[B, obs] -> [B, act]``."""
        return self.mean(self.task_params(1), obs.unsqueeze(0)).squeeze(0)

    def extra_repr(self) -> str:
        return (
            f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, hidden={self.hidden}, "
            f"activation={self.activation}"
        )
