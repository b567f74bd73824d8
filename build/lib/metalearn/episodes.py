"""N-way K-shot episodes: the unit of data in meta-learning.

An *episode* (or *task*) draws ``ways`` classes at random from a pool of
classes, ``shots`` labelled *support* examples and ``queries`` *query* examples
from each. The classes get the labels ``0 .. ways-1`` in a random order, so a
label means nothing across episodes: a learner must read the support set.

All samplers take any image tensor indexed as ``[classes, examples, C, H, W]``
(e.g. :meth:`metalearn.data.OmniglotData.split`) and an explicit
``torch.Generator``; the same seed gives the same episodes. An episode is first
drawn as *indices* (:class:`EpisodeIndex`) and then materialised, so a fixed
test set of 600 episodes costs a few kilobytes, not gigabytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from metalearn.checks import check_positive_int


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task.

    Shapes (``N = ways``, ``K = shots``, ``Q = queries``)::

        support_x  [N*K, C, H, W]   float32 in [0, 1]
        support_y  [N*K]            int64 in 0..N-1, class-major (0,..,0,1,..)
        query_x    [N*Q, C, H, W]
        query_y    [N*Q]
        classes    [N]              row of the image tensor behind each label
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: torch.Tensor

    @property
    def ways(self) -> int:
        return int(self.classes.numel())

    def to(self, device: torch.device | str) -> Episode:
        """The same episode on another device."""
        return Episode(
            *(t.to(device) for t in (self.support_x, self.support_y, self.query_x)),
            self.query_y.to(device),
            self.classes,
        )


@dataclass(frozen=True)
class EpisodeBatch:
    """A meta-batch of episodes stacked along a leading ``tasks`` dimension.

    Shapes: ``support_x [T, N*K, C, H, W]``, ``support_y [T, N*K]``,
    ``query_x [T, N*Q, C, H, W]``, ``query_y [T, N*Q]``, ``classes [T, N]``.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: torch.Tensor

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    def __getitem__(self, task: int) -> Episode:
        return Episode(
            self.support_x[task],
            self.support_y[task],
            self.query_x[task],
            self.query_y[task],
            self.classes[task],
        )

    def to(self, device: torch.device | str) -> EpisodeBatch:
        return EpisodeBatch(
            self.support_x.to(device),
            self.support_y.to(device),
            self.query_x.to(device),
            self.query_y.to(device),
            self.classes,
        )


@dataclass(frozen=True)
class EpisodeIndex:
    """Which images make up ``T`` episodes, without the images.

    Shapes: ``classes [T, N]``, ``support [T, N, K]``, ``query [T, N, Q]``
    (example indices within each chosen class).
    """

    classes: torch.Tensor
    support: torch.Tensor
    query: torch.Tensor

    def __len__(self) -> int:
        return int(self.classes.shape[0])


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}.")
    if images.dim() != 5:
        raise ValueError(
            "images must have shape [classes, examples, C, H, W], "
            f"got {tuple(images.shape)}."
        )


def check_episode_sizes(
    images: torch.Tensor, ways: int, shots: int, queries: int
) -> None:
    """Raise a clear error if ``images`` cannot supply such episodes."""
    _check_images(images)
    check_positive_int("ways", ways)
    check_positive_int("shots", shots)
    check_positive_int("queries", queries)
    classes, examples = images.shape[:2]
    if ways > classes:
        raise ValueError(f"ways={ways} but images hold only {classes} classes.")
    if shots + queries > examples:
        raise ValueError(
            f"shots + queries = {shots} + {queries} = {shots + queries}, but each "
            f"class has only {examples} examples."
        )


def sample_indices(
    images: torch.Tensor,
    tasks: int,
    ways: int,
    shots: int,
    queries: int,
    generator: torch.Generator | None = None,
) -> EpisodeIndex:
    """Draw the indices of ``tasks`` episodes (classes and examples, no repeats)."""
    check_episode_sizes(images, ways, shots, queries)
    check_positive_int("tasks", tasks)
    classes, examples = images.shape[:2]
    class_idx = torch.rand(tasks, classes, generator=generator).argsort(dim=1)[:, :ways]
    example_idx = torch.rand(tasks, ways, examples, generator=generator).argsort(dim=2)
    return EpisodeIndex(
        classes=class_idx,
        support=example_idx[..., :shots],
        query=example_idx[..., shots : shots + queries],
    )


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _gather(images: torch.Tensor, classes: torch.Tensor, examples: torch.Tensor):
    # classes [T, N], examples [T, N, M] -> x [T, N*M, C, H, W], y [T, N*M]
    tasks, ways, per_class = examples.shape
    x = images[classes[..., None], examples]  # [T, N, M, C, H, W]
    x = _to_float(x.reshape(tasks, ways * per_class, *images.shape[2:]))
    y = torch.arange(ways, device=x.device)  # labels live with the images
    y = y.repeat_interleave(per_class).expand(tasks, -1).clone()
    return x, y


def materialise(images: torch.Tensor, index: EpisodeIndex) -> EpisodeBatch:
    """Turn an :class:`EpisodeIndex` into images and labels."""
    support_x, support_y = _gather(images, index.classes, index.support)
    query_x, query_y = _gather(images, index.classes, index.query)
    return EpisodeBatch(support_x, support_y, query_x, query_y, index.classes)


def sample_episodes(
    images: torch.Tensor,
    tasks: int,
    ways: int,
    shots: int,
    queries: int,
    generator: torch.Generator | None = None,
) -> EpisodeBatch:
    """A meta-batch of ``tasks`` independent episodes (see :class:`EpisodeBatch`)."""
    index = sample_indices(images, tasks, ways, shots, queries, generator)
    return materialise(images, index)


def episode_sampler(
    images: torch.Tensor, *, tasks: int, ways: int, shots: int, queries: int
) -> Callable[[torch.Generator], EpisodeBatch]:
    """A meta-batch sampler ``sample(generator)`` for the training-loop steps.

    The sizes are checked now, so a bad ``ways``, ``shots`` or ``queries``
    fails when the step is built; ``tasks`` is checked by
    :func:`sample_episodes` at each call (callers name it, e.g.
    ``meta_batch_size``, in their own check).

    Args:
        images: ``[classes, examples, C, H, W]``; ``uint8`` is scaled to [0, 1].
        tasks: T, episodes per meta-batch.
        ways: N. shots: K. queries: query examples per class.

    Returns:
        ``sample(generator) -> EpisodeBatch``, on the device of ``images``:
        :func:`sample_episodes` with the given generator.
    """
    check_episode_sizes(images, ways, shots, queries)

    def sample(generator: torch.Generator) -> EpisodeBatch:
        return sample_episodes(images, tasks, ways, shots, queries, generator)

    return sample


def sample_episode(
    images: torch.Tensor,
    ways: int,
    shots: int,
    queries: int,
    generator: torch.Generator | None = None,
) -> Episode:
    """One N-way K-shot episode with ``queries`` query examples per class.

    Args:
        images: ``[classes, examples, C, H, W]``; ``uint8`` is scaled to [0, 1].
        ways: N, the number of classes in the episode.
        shots: K, support examples per class.
        queries: query examples per class.
        generator: the source of randomness (same seed -> same episode).

    Returns:
        An :class:`Episode`.

    Raises:
        ValueError: ``ways`` exceeds the classes available, ``shots + queries``
            exceeds the examples per class, or a size is not positive.
    """
    return sample_episodes(images, 1, ways, shots, queries, generator)[0]


class FixedEpisodes:
    """A reproducible list of test episodes, shared by every chapter.

    The episodes are drawn once from ``seed`` and stored as indices; indexing
    or iterating materialises them. Two ``FixedEpisodes`` with the same images,
    sizes and seed hold exactly the same episodes, so methods in different
    chapters are compared on the same tasks.
    """

    def __init__(
        self,
        images: torch.Tensor,
        count: int,
        ways: int,
        shots: int,
        queries: int,
        seed: int,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = images
        self.ways, self.shots, self.queries, self.seed = ways, shots, queries, seed
        self.index = sample_indices(images, count, ways, shots, queries, generator)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Episode:
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode {i} out of range for {len(self)} episodes.")
        one = EpisodeIndex(
            self.index.classes[i : i + 1 or None],
            self.index.support[i : i + 1 or None],
            self.index.query[i : i + 1 or None],
        )
        return materialise(self.images, one)[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return (
            f"FixedEpisodes({len(self)} x {self.ways}-way {self.shots}-shot, "
            f"{self.queries} queries/class, seed={self.seed})"
        )
