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

Images enter as ``uint8`` pixel values (scaled to [0, 1] in the episodes) or
as finite floating-point values, used as given; they are checked once, when
they enter (:func:`metalearn.checks.check_images`): another dtype (e.g.
``int64``), NaN, infinity, 0..255 floats that were not scaled, a zero-sized
dimension or a wrong number of dimensions raise an error that names the fix.
A sampler built once (:func:`episode_sampler`, :class:`FixedEpisodes`)
checks the images once, not at every draw. :func:`check_episode` checks an
episode built by hand (labels ``0..ways-1`` with every class in the support
set, float images, matching sizes).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch

from metalearn.checks import (
    check_float_tensor,
    check_generator,
    check_images,
    check_labels,
    check_module,
    check_positive_int,
    check_seed,
    check_tensor,
)


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task.

    Shapes (``N = ways``, ``K = shots``, ``Q = queries``)::

        support_x  [N*K, C, H, W]   float32 (uint8 images scaled to [0, 1])
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


def check_episode_sizes(
    images: torch.Tensor,
    ways: int,
    shots: int,
    queries: int,
    *,
    values: bool = True,
) -> None:
    """Raise a clear error if ``images`` cannot supply such episodes.

    Checks the images (:func:`metalearn.checks.check_images`; ``values=False``
    skips the one pass over float values, for images already checked) and
    that ``ways <= classes`` and ``shots + queries <= examples``.
    """
    check_images(images, values=values)
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


def check_episode(episode: object, *, name: str = "episode") -> Episode:
    """Check one episode (e.g. built by hand); return it unchanged.

    Cheap: shapes and dtypes, the labels (``int64`` in ``0..ways-1``, every
    class in the support set) and one pass over the images for NaN/infinity.

    Raises:
        TypeError: not an :class:`Episode` (an :class:`EpisodeBatch` is named
            as such), images that are not floating point (sample episodes with
            :func:`sample_episode`, which scales ``uint8``) or labels that are
            not ``int64``.
        ValueError: sizes that disagree, labels out of range, a class without
            a support example, NaN or infinite pixels.
    """
    if isinstance(episode, EpisodeBatch):
        raise TypeError(
            f"{name} must be one Episode, got an EpisodeBatch of {len(episode)} "
            f"tasks; pass one of them ({name}[i]) or iterate over the batch."
        )
    if not isinstance(episode, Episode):
        raise TypeError(
            f"{name} must be a metalearn.episodes.Episode, got "
            f"{type(episode).__name__}."
        )
    check_tensor(f"{name}.classes", episode.classes)
    if episode.classes.dim() != 1 or episode.classes.numel() == 0:
        raise ValueError(
            f"{name}.classes must be a non-empty 1-D tensor (one entry per way), "
            f"got shape {tuple(episode.classes.shape)}."
        )
    ways = episode.ways
    support_x = check_float_tensor(
        f"{name}.support_x", episode.support_x, min_dims=2, layout="[N*K, C, H, W]"
    )
    query_x = check_float_tensor(
        f"{name}.query_x", episode.query_x, min_dims=2, layout="[N*Q, C, H, W]"
    )
    if support_x.shape[1:] != query_x.shape[1:]:
        raise ValueError(
            f"{name}.support_x {tuple(support_x.shape)} and {name}.query_x "
            f"{tuple(query_x.shape)} have different example shapes."
        )
    check_labels(episode.support_y, ways, name=f"{name}.support_y", every_class=True)
    check_labels(episode.query_y, ways, name=f"{name}.query_y", every_class=False)
    for kind, x, y in (
        ("support", support_x, episode.support_y),
        ("query", query_x, episode.query_y),
    ):
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{name}.{kind}_x has {x.shape[0]} examples but {name}.{kind}_y "
                f"has {y.shape[0]} labels."
            )
    return episode


def check_episode_batch(batch: object, *, name: str = "batch") -> EpisodeBatch:
    """Check a meta-batch of episodes (e.g. built by hand); return it unchanged.

    Raises:
        TypeError: not an :class:`EpisodeBatch` (a single :class:`Episode` is
            named as such), images that are not floating point, labels that are
            not ``int64``.
        ValueError: sizes that disagree between tasks, support and query, or
            labels outside ``0..ways-1``.
    """
    if isinstance(batch, Episode):
        raise TypeError(
            f"{name} must be an EpisodeBatch (a meta-batch of tasks), got a single "
            "Episode; draw a batch with sample_episodes(images, tasks, ...)."
        )
    if not isinstance(batch, EpisodeBatch):
        raise TypeError(
            f"{name} must be a metalearn.episodes.EpisodeBatch, got "
            f"{type(batch).__name__}."
        )
    check_tensor(f"{name}.classes", batch.classes)
    if batch.classes.dim() != 2 or batch.classes.numel() == 0:
        raise ValueError(
            f"{name}.classes must be [tasks, ways], got shape "
            f"{tuple(batch.classes.shape)}."
        )
    tasks, ways = batch.classes.shape
    for kind in ("support", "query"):
        x = check_float_tensor(
            f"{name}.{kind}_x",
            getattr(batch, f"{kind}_x"),
            min_dims=3,
            layout="[tasks, examples, C, H, W]",
        )
        y = getattr(batch, f"{kind}_y")
        check_tensor(f"{name}.{kind}_y", y)
        if y.dim() != 2 or tuple(y.shape) != tuple(x.shape[:2]) or x.shape[0] != tasks:
            raise ValueError(
                f"{name}.{kind}_x {tuple(x.shape)} and {name}.{kind}_y "
                f"{tuple(y.shape)} must be [tasks={tasks}, examples, ...] and "
                f"[tasks={tasks}, examples]."
            )
        check_labels(y.flatten(), ways, name=f"{name}.{kind}_y", every_class=False)
    if batch.support_x.shape[2:] != batch.query_x.shape[2:]:
        raise ValueError(
            f"{name}.support_x {tuple(batch.support_x.shape)} and {name}.query_x "
            f"{tuple(batch.query_x.shape)} have different example shapes."
        )
    return batch


def sample_indices(
    images: torch.Tensor,
    tasks: int,
    ways: int,
    shots: int,
    queries: int,
    generator: torch.Generator | None = None,
) -> EpisodeIndex:
    """Draw the indices of ``tasks`` episodes (classes and examples, no repeats).

    Raises:
        TypeError, ValueError: bad images or sizes (:func:`check_episode_sizes`),
            or ``generator`` is not a ``torch.Generator``.
    """
    check_episode_sizes(images, ways, shots, queries)
    check_positive_int("tasks", tasks)
    check_generator("generator", generator)
    return _draw_indices(images, tasks, ways, shots, queries, generator)


def _draw_indices(
    images: torch.Tensor,
    tasks: int,
    ways: int,
    shots: int,
    queries: int,
    generator: torch.Generator | None,
) -> EpisodeIndex:
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
    """Turn an :class:`EpisodeIndex` into images and labels.

    Raises:
        TypeError, ValueError: bad images, or an index that does not fit them
            (e.g. drawn from a data set with more classes).
    """
    check_images(images)
    if not isinstance(index, EpisodeIndex):
        raise TypeError(
            f"index must be an EpisodeIndex (from sample_indices), got "
            f"{type(index).__name__}."
        )
    classes, examples = images.shape[:2]
    for label, tensor, bound in (
        ("classes", index.classes, classes),
        ("support", index.support, examples),
        ("query", index.query, examples),
    ):
        if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= bound):
            raise ValueError(
                f"index.{label} holds values outside 0..{bound - 1}: the index was "
                f"drawn for other images than these {tuple(images.shape)}."
            )
    return _materialise(images, index)


def _materialise(images: torch.Tensor, index: EpisodeIndex) -> EpisodeBatch:
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
    """A meta-batch of ``tasks`` independent episodes (see :class:`EpisodeBatch`).

    Raises:
        TypeError, ValueError: as :func:`sample_indices`.
    """
    index = sample_indices(images, tasks, ways, shots, queries, generator)
    return _materialise(images, index)


def episode_sampler(
    images: torch.Tensor, *, tasks: int, ways: int, shots: int, queries: int
) -> Callable[[torch.Generator], EpisodeBatch]:
    """A meta-batch sampler ``sample(generator)`` for the training-loop steps.

    The images and sizes are checked now, once, so a bad value fails when the
    step is built and no draw pays for a pass over the images; ``tasks`` is
    checked at each draw (callers name it, e.g. ``meta_batch_size``, in their
    own check when they build the step).

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
        check_positive_int("tasks", tasks)  # callers name it first (meta_batch_size)
        check_generator("generator", generator, optional=False)
        index = _draw_indices(images, tasks, ways, shots, queries, generator)
        return _materialise(images, index)

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
            exceeds the examples per class, a size is not positive, or the
            images hold NaN, infinity or unscaled 0..255 floats.
        TypeError: a size is not an int, the images are not ``uint8`` or
            floating point, or ``generator`` is not a ``torch.Generator``.
    """
    return sample_episodes(images, 1, ways, shots, queries, generator)[0]


class FixedEpisodes:
    """A reproducible list of test episodes, shared by every chapter.

    The episodes are drawn once from ``seed`` and stored as indices; indexing
    or iterating materialises them. Two ``FixedEpisodes`` with the same images,
    sizes and seed hold exactly the same episodes, so methods in different
    chapters are compared on the same tasks.

    The images are checked once, here (:func:`check_episode_sizes`).

    Raises:
        TypeError, ValueError: bad images or sizes, ``count < 1`` or a seed
            that is not an int in ``0..2**64-1``.
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
        check_episode_sizes(images, ways, shots, queries)
        check_positive_int("count", count)
        check_seed("seed", seed)
        generator = torch.Generator().manual_seed(seed)
        self.images = images
        self.ways, self.shots, self.queries, self.seed = ways, shots, queries, seed
        self.index = _draw_indices(images, count, ways, shots, queries, generator)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Episode:
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(
                f"FixedEpisodes are indexed by an int, got {type(i).__name__} {i!r}."
            ) from None
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode {i} out of range for {len(self)} episodes.")
        one = EpisodeIndex(
            self.index.classes[i : i + 1 or None],
            self.index.support[i : i + 1 or None],
            self.index.query[i : i + 1 or None],
        )
        return _materialise(self.images, one)[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return (
            f"FixedEpisodes({len(self)} x {self.ways}-way {self.shots}-shot, "
            f"{self.queries} queries/class, seed={self.seed})"
        )


def check_embedded_episode(embedding, episode: object) -> None:
    """An episode for an embedding: a valid episode whose images the module can take."""
    check_module("embedding", embedding)
    check_episode(episode, name="episode")
    for name in ("support_x", "query_x"):
        check_float_tensor(
            f"episode.{name}",
            getattr(episode, name),
            min_dims=2,
            module=embedding,
            finite=False,
        )
