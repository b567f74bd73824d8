"""Run one named training of a chapter: resumable, timed, and reported honestly.

The chapters train several models each. :func:`fit` wraps
:func:`metalearn.training.train` with what every one of those trainings needs:
a checkpoint folder named after the model and the profile (so an interrupted
notebook, e.g. a Colab session that timed out, resumes where it stopped when
the cell runs again), the wall time of the training in this process, the peak
memory, and a one-line report that says whether the model was trained here or
resumed from a checkpoint.
"""

from __future__ import annotations

import functools
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metalearn.checkpoint import load_checkpoint
from metalearn.data.paths import cache_root
from metalearn.history import History
from metalearn.profiles import Profile, get_profile
from metalearn.training import TrainConfig, train

CHECKPOINT_FILE = "last.pt"


def checkpoint_dir(name: str, profile: Profile | None = None) -> Path:
    """``$METALEARN_CACHE/checkpoints/<profile>/<name>``: where ``name`` resumes.

    A profile capped by ``METALEARN_MAX_STEPS=n`` uses ``<profile>-max<n>``, so
    a dry run never resumes, or spoils, the checkpoints of a full one.

    Args:
        name: the model's name, e.g. ``"maml-5w1s"`` (letters, digits, ``-_.``).
        profile: defaults to :func:`metalearn.profiles.get_profile`.
    """
    if (
        not isinstance(name, str)
        or not name
        or name.strip(".") == ""
        or not all(c.isalnum() or c in "-_." for c in name)
    ):
        raise ValueError(
            f"name must be non-empty and use only letters, digits, '-', '_' and "
            f"'.' (and not only dots), got {name!r}."
        )
    profile = profile or get_profile()
    folder = profile.name
    if profile.max_steps is not None:  # a capped run never meets a real one
        folder += f"-max{profile.max_steps}"
    return cache_root() / "checkpoints" / folder / name


def peak_memory_bytes(device: torch.device | str | None = None) -> int:
    """Peak memory so far: CUDA's allocator peak on a GPU, else the process's RSS.

    On the CPU this is the maximum resident set size of the whole process
    (``getrusage``), which only grows: it bounds what any one training needed.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # kB on Linux


@dataclass(frozen=True)
class Fitted:
    """The outcome of :func:`fit`.

    The history holds, besides the step's own metrics, ``train_seconds``: the
    wall time spent training (validation excluded) up to that step or
    evaluation, summed over every session of the run, so curves of accuracy
    against training time can be drawn also for a model loaded from a
    checkpoint.
    """

    name: str  # the model's name (and its checkpoint folder)
    history: History  # learning curves of the whole run, resumed steps included
    steps: int  # optimiser steps of the whole run
    seconds: float  # wall time of fit() in this process (validation included)
    resumed_from: int  # step the run resumed from (0: trained from scratch here)
    peak_memory: int  # bytes, see peak_memory_bytes

    @property
    def loaded(self) -> bool:
        """True if the run was already finished: nothing was trained here."""
        return self.resumed_from == self.steps

    @property
    def train_seconds(self) -> float:
        """Training wall time of the whole run, every session, validation excluded."""
        values = self.history.train.get("train_seconds", [])
        return float(values[-1]) if values else 0.0

    @property
    def eval_seconds(self) -> float:
        """Wall time spent in validation over the whole run."""
        return float(sum(self.history.eval.get("eval_seconds", [])))

    def final(self, metric: str) -> float:
        """The last value of an evaluation metric (e.g. ``"acc_1shot"``)."""
        if metric not in self.history.eval:
            raise KeyError(
                f"{self.name} has no evaluation metric {metric!r}; it has "
                f"{sorted(self.history.eval)}."
            )
        return self.history.eval[metric][-1]

    def report(self) -> str:
        """One line: name, steps, training time, and where the weights came from."""
        if self.loaded:
            origin = "loaded from its finished checkpoint, nothing trained here"
        elif self.resumed_from:
            origin = f"resumed from a checkpoint at step {self.resumed_from}"
        else:
            origin = "trained from scratch here"
        return (
            f"{self.name}: {self.steps} steps, {self.train_seconds:.0f} s of "
            f"training (+{self.eval_seconds:.0f} s validating), {origin}; peak "
            f"memory {self.peak_memory / 2**20:.0f} MiB"
        )


def _checkpoint_state(folder: Path) -> tuple[int, float]:
    """(step, training seconds so far) of the checkpoint in ``folder``, or (0, 0)."""
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        return 0, 0.0
    checkpoint = load_checkpoint(path)
    seconds = checkpoint["history"]["train"].get("train_seconds", [0.0])
    return int(checkpoint["step"]), float(seconds[-1]) if seconds else 0.0


class _Clock:
    """Training time of a run: wall time minus the time spent evaluating."""

    def __init__(self, offset: float) -> None:
        self.offset, self.started, self.evaluating = offset, time.perf_counter(), 0.0

    def training_seconds(self) -> float:
        return self.offset + time.perf_counter() - self.started - self.evaluating

    def timed_step(self, step: Callable) -> Callable:
        @functools.wraps(step)  # keeps step.identity
        def timed(generator: torch.Generator):
            loss, metrics = step(generator)
            return loss, {**metrics, "train_seconds": self.training_seconds()}

        return timed

    def timed_evaluate(self, evaluate: Callable | None) -> Callable | None:
        if evaluate is None:
            return None

        def timed() -> dict[str, float]:
            at, started = self.training_seconds(), time.perf_counter()
            metrics = dict(evaluate())
            spent = time.perf_counter() - started
            self.evaluating += spent
            return {**metrics, "train_seconds": at, "eval_seconds": spent}

        return timed


def fit(    name: str,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    step: Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]],
    steps: int,
    *,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    experiment: Any = None,
    seed: int = 0,
    profile: Profile | None = None,
    resume: bool = True,
) -> Fitted:
    """Train ``model`` for ``steps`` steps under ``name``, resuming if possible.

    Args:
        name: the model's name; see :func:`checkpoint_dir`.
        model, optimiser, step, evaluate, scheduler, experiment: as in
            :func:`metalearn.training.train`.
        steps: optimiser steps of the whole run.
        eval_every: steps between evaluations (default: 10 per run).
        seed: seed of the step generator.
        profile: decides the checkpoint folder; default: the current profile.
        resume: ``False`` trains without reading or writing checkpoints.

    Returns:
        A :class:`Fitted`; print ``fitted.report()`` next to the results.
    """
    folder = checkpoint_dir(name, profile) if resume else None
    resumed_from, offset = _checkpoint_state(folder) if folder else (0, 0.0)
    if eval_every is not None and (
        isinstance(eval_every, bool)
        or not isinstance(eval_every, int)
        or eval_every < 1
    ):
        raise ValueError(
            f"eval_every must be a positive int or None (10 evaluations), got "
            f"{eval_every!r}."
        )
    every = eval_every or max(steps // 10, 1)
    clock = _Clock(offset)
    config = TrainConfig(
        steps=steps,
        eval_every=every,
        checkpoint_every=max(min(every, 200), 1),
        checkpoint_dir=str(folder) if folder is not None else None,
        seed=seed,
        log_every=max(min(steps // 20, 50), 1),
    )
    device = next(model.parameters()).device
    started = time.perf_counter()
    history = train(
        model,
        optimiser,
        clock.timed_step(step),
        config,
        evaluate=clock.timed_evaluate(evaluate),
        scheduler=scheduler,
        experiment=experiment,
        announce_finished=False,  # Fitted.report() says it was loaded
    )
    return Fitted(
        name=name,
        history=history,
        steps=steps,
        seconds=time.perf_counter() - started,
        resumed_from=resumed_from,
        peak_memory=peak_memory_bytes(device),
    )
