"""Seeds, devices and the run header every notebook prints.

Every number in the book must say where it came from, so each notebook starts
with :func:`start_run` (profile, device, library versions, seed) and ends with
:meth:`Run.finish` (wall time).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

import numpy as np
import torch

from metalearn import __version__
from metalearn.checks import check_seed
from metalearn.profiles import Profile, get_profile

T = TypeVar("T")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch, and return a seeded generator.

    Args:
        seed: an int in ``0 .. 2**64 - 1``.

    Raises:
        TypeError, ValueError: ``seed`` is not such an int.

    Returns:
        A CPU ``torch.Generator`` seeded with ``seed``, for samplers that take
        an explicit generator.
    """
    check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds legacy global users too
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    """The fastest device available: CUDA, then Apple's MPS, then the CPU.

    Under ``torchrun`` on a machine with several GPUs, each process gets its
    own: ``cuda:LOCAL_RANK`` (see :mod:`metalearn.distributed`).
    """
    if torch.cuda.is_available():
        local_rank = os.environ.get("LOCAL_RANK", "").strip()
        if local_rank.isdigit() and int(local_rank) < torch.cuda.device_count():
            return torch.device("cuda", int(local_rank))
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The processor's model name (Linux's ``/proc/cpuinfo``), else its architecture.

    Timings on a CPU depend on the model far more than on the architecture: the
    same `short` training ran about twice as fast on one x86_64 machine as on
    another, so the run header names the model where the system tells it.
    """
    try:
        with open(cpuinfo, encoding="utf-8") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return f"{value.strip()}, {platform.machine()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> str:
    """A human-readable name of ``device`` (GPU model, or CPU model and threads)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"
    return device.type


@dataclass
class Run:
    """What a notebook run needs: its profile, device, seed and a start time."""

    profile: Profile
    device: torch.device
    seed: int
    generator: torch.Generator
    started: float = field(default_factory=time.perf_counter)

    def header(self) -> str:
        """The lines printed at the top of every notebook."""
        return "\n".join(
            [
                f"profile : {self.profile.name} ({self.profile.description})",
                f"device  : {device_description(self.device)}",
                f"versions: torch {torch.__version__}, "
                f"learn2learn {_version('learn2learn')}, "
                f"metalearn {__version__}, "
                f"python {platform.python_version()}",
                f"seed    : {self.seed}",
                f"budgets : {self.profile.budgets()}",
            ]
        )

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def finish(self) -> float:
        """Print and return the wall time of the whole notebook."""
        seconds = self.elapsed()
        print(
            f"wall time: {seconds:.1f} s "
            f"(profile {self.profile.name}, {device_description(self.device)})"
        )
        return seconds


def start_run(seed: int = 0, profile: str | None = None) -> Run:
    """Seed everything, choose profile and device, and print the run header.

    Args:
        seed: the seed of everything random in the notebook.
        profile: a profile name; ``None`` reads ``METALEARN_PROFILE``.

    Returns:
        A :class:`Run`; call :meth:`Run.finish` in the last cell.
    """
    chosen = get_profile(profile)
    generator = seed_everything(seed)
    run = Run(profile=chosen, device=default_device(), seed=seed, generator=generator)
    print(run.header())
    return run


PROGRESS_ENV_VAR = "METALEARN_PROGRESS"


def progress_enabled() -> bool:
    """Whether progress bars show: ``METALEARN_PROGRESS``, else whether anyone watches.

    ``METALEARN_PROGRESS=1`` forces bars on and ``0`` forces them off (``make
    notebooks`` sets 0: a stored notebook keeps summaries, not bars). Unset, a
    bar is shown where someone can watch it: a terminal, or a notebook front
    end with widgets (Jupyter, Colab); a notebook executed without a front end
    (``nbconvert``, ``nbval``) or output sent to a file shows none.
    """
    value = os.environ.get(PROGRESS_ENV_VAR, "").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    if value:
        raise ValueError(
            f"{PROGRESS_ENV_VAR}={value!r}: use 1 (show progress bars), 0 (hide "
            "them) or leave it unset (show them only where someone is watching)."
        )
    if sys.stderr.isatty():
        return True
    return _in_interactive_notebook()


def _in_interactive_notebook() -> bool:
    # A Jupyter kernel talking to a front end that renders widgets; nbconvert's
    # and nbval's kernels are Jupyter kernels too, so require ipywidgets (which
    # the course does not install) and an interactive shell.
    if importlib.util.find_spec("ipywidgets") is None:
        return False
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_bar(iterable: Iterable[T] | None = None, **kwargs: Any) -> Iterator[T]:
    """A tqdm progress bar where someone watches it, and nothing elsewhere.

    Bars are for people watching a live run; a stored notebook should keep a few
    summary lines instead (see :func:`progress_enabled`). Where a bar is shown
    it is a widget in a notebook with ipywidgets (Colab), else text, and it is
    removed when it finishes (``leave=False``), so what stays is the summary
    the caller prints. ``disable=True`` always hides it.
    """
    if not progress_enabled():
        kwargs["disable"] = True
    kwargs.setdefault("leave", False)
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(iterable, **kwargs)
