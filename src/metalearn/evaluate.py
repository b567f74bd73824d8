"""Accuracy over fixed test episodes, with a 95% confidence interval.

The few-shot literature reports the mean accuracy over ``n`` test episodes
(600 is the standard since Vinyals et al., 2016) together with the half-width
of a normal-approximation 95% confidence interval,

.. math:: \\bar a \\pm 1.96\\, s / \\sqrt{n},

where :math:`s` is the sample standard deviation (``ddof=1``) of the
per-episode accuracies.

What :func:`evaluate` checks: every item is an
:class:`~metalearn.episodes.Episode` with valid labels and finite images, and
the classifier returns, for each episode, either labels ``0..ways-1`` or
finite scores with exactly ``ways`` columns (a model with 20 outputs on a
3-way episode is refused, not scored). :func:`accuracy` refuses empty
tensors, NaN scores and floating-point "labels".
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass

import torch

from metalearn.checks import (
    check_device,
    check_labels,
    check_positive_int,
    check_scores,
    check_tensor,
)
from metalearn.episodes import Episode, EpisodeBatch, FixedEpisodes, check_episode
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


def _real_values(values: Iterable[float]) -> list[float]:
    """``values`` as a list of real numbers (a tensor is flattened).

    Raises:
        TypeError: ``values`` is not an iterable of real numbers.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(
            f"values must be an iterable of numbers, got {type(values).__name__}."
        )
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    values = list(values)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"values must be real numbers, got {type(value).__name__} {value!r}."
            )
    return values


def mean_confidence_interval(values: Iterable[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width ``1.96 * s / sqrt(n)`` (``s`` with ``ddof=1``).

    With one value the half-width is NaN (no spread can be estimated).

    Raises:
        TypeError: ``values`` is not an iterable of real numbers.
        ValueError: fewer than one value, or a value that is not finite.
    """
    values = _real_values(values)
    data = torch.as_tensor(values, dtype=torch.float64)
    if data.numel() == 0:
        raise ValueError("Need at least one value to compute a mean.")
    if not torch.isfinite(data).all():
        raise ValueError("values contain NaN or infinity.")
    if data.numel() == 1:
        return float(data[0]), math.nan
    return float(data.mean()), float(
        Z_95 * data.std(unbiased=True) / math.sqrt(data.numel())
    )


def median_confidence_interval(
    values: Iterable[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Median and a distribution-free confidence interval for it.

    For a sample of ``n`` values sorted as :math:`x_{(1)} \\le \\dots \\le
    x_{(n)}`, the interval :math:`[x_{(j)}, x_{(n+1-j)}]` covers the population
    median with probability :math:`1 - 2\\,P(B \\le j - 1)`,
    :math:`B \\sim \\mathrm{Binomial}(n, \\tfrac12)`, whatever the distribution
    (the number of values below the median is such a :math:`B`). The largest
    ``j`` whose coverage is at least ``level`` is used. This is the statistic
    for heavy-tailed losses, e.g. fine-tuning runs of which a few diverge:
    ``+inf`` is accepted and counts as a very large value.

    Returns:
        ``(median, low, high)``; ``low`` and ``high`` are NaN when ``n`` is too
        small for any interval of that coverage (``n < 6`` at 95%).

    Raises:
        TypeError: ``values`` is not an iterable of real numbers.
        ValueError: no values, a NaN or ``-inf``, or ``level`` outside (0, 1).
    """
    values = _real_values(values)
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not (
        0.0 < level < 1.0
    ):
        raise ValueError(f"level must be a probability in (0, 1), got {level!r}.")
    if not values:
        raise ValueError("Need at least one value to compute a median.")
    if any(math.isnan(v) or v == -math.inf for v in values):
        raise ValueError(
            "values contain NaN or -inf; a diverged loss should be +inf "
            "(e.g. torch.nan_to_num(losses, nan=math.inf))."
        )
    data = sorted(float(v) for v in values)
    n, median = len(data), statistics.median(data)
    # P(B <= k) for B ~ Binomial(n, 1/2), in exact integer arithmetic.
    tail, j, total = 0, 0, 2**n
    while j < n // 2:
        tail += math.comb(n, j)  # now P(B <= j) * 2**n
        if 1 - 2 * tail / total < level:
            break
        j += 1
    if j == 0:
        return median, math.nan, math.nan
    return median, data[j - 1], data[n - j]


def accuracy(
    predictions: torch.Tensor, targets: torch.Tensor, *, ways: int | None = None
) -> float:
    """Fraction correct; ``predictions`` are labels ``[n]`` or scores ``[n, ways]``.

    Args:
        predictions: predicted labels (``int64 [n]``) or scores (float
            ``[n, ways]``, e.g. logits; their argmax is the prediction).
        targets: the true labels, ``int64 [n]``.
        ways: the number of classes, if known: scores must have exactly
            ``ways`` columns and labels must lie in ``0..ways-1``. Without it,
            the width of the scores is used for the targets' range.

    Raises:
        TypeError: a non-tensor, floating-point targets (e.g. probabilities
            where labels are expected) or 1-D floating-point predictions.
        ValueError: empty tensors, shapes that disagree, NaN scores, labels out
            of range.
    """
    check_tensor("predictions", predictions)
    check_tensor("targets", targets)
    if ways is not None:
        check_positive_int("ways", ways)
    if targets.is_floating_point() or targets.is_complex():
        check_labels(targets, 1, name="targets", every_class=False)  # names the fix
    if targets.dim() != 1 or targets.numel() == 0:
        raise ValueError(
            f"targets must be a non-empty 1-D tensor of labels, got shape "
            f"{tuple(targets.shape)}."
        )
    if predictions.dim() == 2:
        width = predictions.shape[1] if ways is None else ways
        check_scores("predictions", predictions, rows=targets.shape[0], ways=width)
        check_labels(targets, width, name="targets", every_class=False)
        predictions = predictions.argmax(dim=1)
    elif predictions.dim() == 1:
        if predictions.is_floating_point():
            raise TypeError(
                "predictions is a 1-D floating-point tensor; pass predicted "
                "labels (int64 [n]) or scores [n, ways]."
            )
        if predictions.shape != targets.shape:
            raise ValueError(
                f"predictions {tuple(predictions.shape)} and targets "
                f"{tuple(targets.shape)} differ in shape."
            )
        bound = ways
        if bound is None:  # no range to check against: only that labels are >= 0
            bound = max(int(predictions.max()), int(targets.max()), 0) + 1
        check_labels(predictions, bound, name="predictions", every_class=False)
        check_labels(targets, bound, name="targets", every_class=False)
    else:
        raise ValueError(
            "predictions must be labels [n] or scores [n, ways], got shape "
            f"{tuple(predictions.shape)}."
        )
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets "
            f"{tuple(targets.shape)} differ in shape."
        )
    return float((predictions == targets.to(predictions.device)).float().mean())


def _episodes_to_list(episodes: object) -> Iterable[Episode]:
    if isinstance(episodes, Episode):
        raise TypeError(
            "episodes must be an iterable of Episode objects, got a single "
            "Episode; wrap it in a list: evaluate(classify, [episode])."
        )
    if isinstance(episodes, EpisodeBatch):
        raise TypeError(
            "episodes must be an iterable of Episode objects, got an EpisodeBatch; "
            "pass [batch[i] for i in range(len(batch))]."
        )
    if isinstance(episodes, str | bytes) or not isinstance(episodes, Iterable):
        raise TypeError(
            "episodes must be an iterable of Episode objects (e.g. FixedEpisodes), "
            f"got {type(episodes).__name__}."
        )
    return episodes


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

    Raises:
        TypeError: ``classify`` is not callable, ``episodes`` is not an
            iterable of episodes (e.g. a single :class:`Episode`), or
            ``classify`` returns something other than labels or scores.
        ValueError: no episodes; an episode with bad labels or non-finite
            images; scores whose width is not the episode's ``ways`` (e.g. a
            model built for another number of classes), NaN scores, or labels
            outside ``0..ways-1``.
    """
    if not callable(classify):
        raise TypeError(
            f"classify must be a function Episode -> labels or scores, got "
            f"{type(classify).__name__}."
        )
    episodes = _episodes_to_list(episodes)
    device = check_device("device", device)
    if not isinstance(progress, bool | str):
        raise TypeError(f"progress must be a bool or a label, got {progress!r}.")
    total = len(episodes) if isinstance(episodes, Sized) else None
    label = progress if isinstance(progress, str) else "episodes"
    checked = isinstance(episodes, FixedEpisodes)  # drawn from checked images
    scores = []
    with torch.no_grad():
        for i, episode in enumerate(
            progress_bar(episodes, total=total, desc=label, disable=not progress)
        ):
            if not checked:
                check_episode(episode, name=f"episodes[{i}]")
            if device is not None:
                episode = episode.to(device)
            output = classify(episode)
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    "classify must return a tensor of labels [N*Q] or scores "
                    f"[N*Q, N], got {type(output).__name__} for episode {i}."
                )
            try:
                scores.append(accuracy(output, episode.query_y, ways=episode.ways))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"episode {i}: classify's output: {exc}") from exc
    if not scores:
        raise ValueError("episodes is empty: there is nothing to evaluate.")
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

    Raises:
        TypeError: ``profile`` is not a :class:`~metalearn.profiles.Profile`
            (e.g. a profile name: pass ``get_profile(name)``).
    """
    if profile is not None and not isinstance(profile, Profile):
        raise TypeError(
            f"profile must be a Profile or None, got {type(profile).__name__} "
            f"{profile!r}; for a profile name use get_profile({profile!r})."
        )
    profile = profile or get_profile()
    return FixedEpisodes(
        images,
        count=profile.eval_episodes,
        ways=ways,
        shots=shots,
        queries=profile.eval_queries,
        seed=profile.eval_seed,
    )
