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

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metalearn.data.paths import cache_root
from metalearn.profiles import Profile, get_profile
from metalearn.training import History, TrainConfig, train

CHECKPOINT_FILE = "last.pt"


def checkpoint_dir(name: str, profile: Profile | None = None) -> Path:
    """``$METALEARN_CACHE/checkpoints/<profile>/<name>``: where ``name`` resumes.

    Args:
        name: the model's name, e.g. ``"maml-5w1s"`` (letters, digits, ``-_.``).
        profile: defaults to :func:`metalearn.profiles.get_profile`.
    """
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(
            f"name must be non-empty and use only letters, digits, '-', '_' and "
            f"'.', got {name!r}."
        )
    profile = profile or get_profile()
    return cache_root() / "checkpoints" / profile.name / name


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
    """The outcome of :func:`fit`."""

    name: str  # the model's name (and its checkpoint folder)
    history: History  # learning curves of the whole run, resumed steps included
    steps: int  # optimiser steps of the whole run
    seconds: float  # wall time of the training in this process
    resumed_from: int  # step the run resumed from (0: trained from scratch here)
    peak_memory: int  # bytes, see peak_memory_bytes

    def report(self) -> str:
        """One line: name, steps, wall time, and where the weights came from."""
        origin = (
            f"resumed from a checkpoint at step {self.resumed_from}"
            if self.resumed_from
            else "trained from scratch"
        )
        return (
            f"{self.name}: {self.steps} steps, {self.seconds:.1f} s in this run "
            f"({origin}), peak memory {self.peak_memory / 2**20:.0f} MiB"
        )


def _checkpoint_step(folder: Path) -> int:
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state.get("step", 0))


def fit(
    name: str,
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
    resumed_from = _checkpoint_step(folder) if folder is not None else 0
    every = eval_every or max(steps // 10, 1)
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
        step,
        config,
        evaluate=evaluate,
        scheduler=scheduler,
        experiment=experiment,
    )
    return Fitted(
        name=name,
        history=history,
        steps=steps,
        seconds=time.perf_counter() - started,
        resumed_from=resumed_from,
        peak_memory=peak_memory_bytes(device),
    )
