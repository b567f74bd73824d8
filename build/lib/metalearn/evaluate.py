"""Accuracy over fixed test episodes, with a 95% confidence interval.

The few-shot literature reports the mean accuracy over ``n`` test episodes
(600 is the standard since Vinyals et al., 2016) together with the half-width
of a normal-approximation 95% confidence interval,

.. math:: \\bar a \\pm 1.96\\, s / \\sqrt{n},

where :math:`s` is the sample standard deviation (``ddof=1``) of the
per-episode accuracies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass

import torch

from metalearn.episodes import Episode, FixedEpisodes
from metalearn.profiles import Profile, get_profile
from metalearn.runtime import progress_bar

Z_95 = 1.96


@dataclass(frozen=True)
class Accuracy:
    """Mean accuracy over episodes and the half-width of its 95% CI (fractions)."""

    mean: float
    ci95: float
    episodes: int
    per_episode: tuple[float, ...]

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.ci95:.2f} %"


def mean_confidence_interval(values: Iterable[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width ``1.96 * s / sqrt(n)`` (``s`` with ``ddof=1``).

    Raises:
        ValueError: fewer than one value, or a value that is not finite.
    """
    data = torch.as_tensor(list(values), dtype=torch.float64)
    if data.numel() == 0:
        raise ValueError("Need at least one value to compute a mean.")
    if not torch.isfinite(data).all():
        raise ValueError("values contain NaN or infinity.")
    if data.numel() == 1:
        return float(data[0]), math.nan
    return float(data.mean()), float(
        Z_95 * data.std(unbiased=True) / math.sqrt(data.numel())
    )


def accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction correct; ``predictions`` are labels ``[n]`` or scores ``[n, ways]``."""
    if predictions.dim() == 2:
        predictions = predictions.argmax(dim=1)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets "
            f"{tuple(targets.shape)} differ in shape."
        )
    return float((predictions == targets).float().mean())


def evaluate(
    classify: Callable[[Episode], torch.Tensor],
    episodes: Iterable[Episode],
    *,
    device: torch.device | str | None = None,
    progress: bool | str = True,
) -> Accuracy:
    """Accuracy of ``classify`` on every episode, with its 95% CI.

    Args:
        classify: maps an :class:`~metalearn.episodes.Episode` to predicted query
            labels ``[N*Q]`` or query scores ``[N*Q, N]``.
        episodes: e.g. a :class:`~metalearn.episodes.FixedEpisodes`.
        device: move each episode there before classifying it.
        progress: show a progress bar (a string is used as its label).
    """
    total = len(episodes) if isinstance(episodes, Sized) else None
    label = progress if isinstance(progress, str) else "episodes"
    scores = []
    with torch.no_grad():
        for episode in progress_bar(
            episodes, total=total, desc=label, disable=not progress
        ):
            if device is not None:
                episode = episode.to(device)
            scores.append(accuracy(classify(episode), episode.query_y))
    mean, ci95 = mean_confidence_interval(scores)
    return Accuracy(
        mean=mean, ci95=ci95, episodes=len(scores), per_episode=tuple(scores)
    )


def fixed_test_episodes(
    images: torch.Tensor, ways: int, shots: int, profile: Profile | None = None
) -> FixedEpisodes:
    """The book's fixed test episodes for one N-way K-shot setting.

    Every chapter evaluates on these, so methods are compared on the same tasks:
    ``profile.eval_episodes`` episodes (600 in ``short`` and ``paper``) with
    ``profile.eval_queries`` queries per class, drawn from ``profile.eval_seed``.

    Args:
        images: the meta-test classes, ``[classes, examples, C, H, W]``.
        ways: N.
        shots: K.
        profile: defaults to :func:`metalearn.profiles.get_profile`.
    """
    profile = profile or get_profile()
    return FixedEpisodes(
        images,
        count=profile.eval_episodes,
        ways=ways,
        shots=shots,
        queries=profile.eval_queries,
        seed=profile.eval_seed,
    )
