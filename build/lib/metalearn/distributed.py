"""Meta-training on several processes: one task stream per rank, averaged gradients.

:func:`metalearn.training.train` runs unchanged under ``torchrun``::

    torchrun --nproc_per_node=2 train_maml.py            # one machine, 2 processes
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29400 train_maml.py         # 2 machines, 4 GPUs each

Each of the ``R`` processes (ranks) draws its own ``B`` tasks per step from a
generator seeded by :func:`rank_seed` (rank 0 draws what a single process
would), computes its meta-loss and its gradient ``g_r``, and the gradients are
averaged over the ranks with an all-reduce before the optimiser step:

.. math:: g = \\frac{1}{R} \\sum_{r=1}^{R} g_r .

Every meta-objective of the course is a mean over tasks (MAML's
eq. {eq}`maml-outer`, ProtoNet's mean query loss, Reptile's surrogate whose
gradient is ``theta - mean_i(phi_i)``), so with ``B`` tasks per rank ``g`` is
the gradient of the same objective over all ``R * B`` tasks: one step of ``R``
processes equals one step of a single process on the union of their tasks, up
to floating-point rounding. Every rank then applies the same update to the same
weights, so the weights stay identical without being sent again.

The recorded loss and metrics are their means over the ranks: for a mean over
tasks (MAML's and ProtoNet's losses, query accuracies) that is its value over
all ``R * B`` tasks; Reptile's surrogate ``0.5 ||theta - mean(phi)||^2`` and
its ``update_norm`` are not means over tasks, so what is recorded for them is
the mean of the ranks' values (the gradient, which is linear in ``phi``, is exact).

The backend is NCCL for models on CUDA GPUs and gloo on CPUs. Only rank 0
writes checkpoints, prints and shows a progress bar; checkpoints hold the
random number generator states of every rank, gathered to rank 0, so a resumed
run restores each rank's task stream exactly (with the same number of ranks).
Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) everything here
is a no-op and training is a single process, exactly as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")

__all__ = [
    "World",
    "average_gradients",
    "broadcast_object",
    "broadcast_tensors",
    "gather_objects",
    "join",
    "mean_over_ranks",
    "on_main",
    "rank_seed",
    "world",
]


@dataclass(frozen=True)
class World:
    """Where this process stands among the processes of one training run."""

    rank: int = 0  # this process, 0 .. size - 1 (torchrun's RANK)
    size: int = 1  # processes in the run (torchrun's WORLD_SIZE)

    @property
    def main(self) -> bool:
        """True on rank 0, the process that writes checkpoints and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True if more than one process trains."""
        return self.size > 1


def world() -> World:
    """The current :class:`World`: the process group's, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(rank=dist.get_rank(), size=dist.get_world_size())
    return World()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ValueError(
            f"The environment variable {name}={value!r} is not a non-negative "
            "integer; it is set by torchrun, do not set it by hand."
        )
    return int(value)


def join(device: torch.device | str) -> World:
    """Join the run's process group (under ``torchrun``), or stay a single process.

    If the process group is already initialised (the caller did it), it is
    used as it is. Otherwise, if ``WORLD_SIZE`` > 1 (set by ``torchrun``), it is
    initialised from the environment (``RANK``, ``MASTER_ADDR``, ...) with the
    NCCL backend for a CUDA ``device`` and gloo otherwise.

    Args:
        device: the device of the model's parameters.

    Raises:
        ValueError: under ``torchrun`` with several GPUs, the model is not on
            the GPU of this process (``cuda:LOCAL_RANK``).
        RuntimeError: ``torch.distributed`` is not available in this build.
    """
    device = torch.device(device)
    if dist.is_available() and dist.is_initialized():
        return world()
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    if not dist.is_available():
        raise RuntimeError(
            f"WORLD_SIZE={size} asks for distributed training, but this build of "
            "torch has no torch.distributed."
        )
    backend = "gloo"
    if device.type == "cuda":
        local_rank = _env_int("LOCAL_RANK", 0)
        index = torch.cuda.current_device() if device.index is None else device.index
        if torch.cuda.device_count() > local_rank and index != local_rank:
            raise ValueError(
                f"Process LOCAL_RANK={local_rank} trains on cuda:{index}; each "
                f"process needs its own GPU: put the model on cuda:{local_rank} "
                "(metalearn.runtime.default_device() does so under torchrun)."
            )
        torch.cuda.set_device(index)
        backend = "nccl" if dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend)
    return world()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s task generator in a run seeded with ``seed``.

    Rank 0 uses ``seed`` itself, so it draws the tasks a single process would;
    rank ``r > 0`` uses 32 bits of NumPy's ``SeedSequence([seed, r])``, which
    differ from one ``(seed, rank)`` to the next (torch's CPU generator keeps only
    the low 32 bits of a seed, so ``seed + r * 2**32`` would repeat rank 0's tasks).
    """
    for name, value in (("seed", seed), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _first_device(tensors: Sequence[torch.Tensor]) -> torch.device:
    return tensors[0].device if tensors else torch.device("cpu")


def average_gradients(parameters: Sequence[torch.Tensor], world: World) -> None:
    """Replace every ``.grad`` by its mean over the ranks: ``g = sum_r g_r / R``.

    A parameter that has a gradient on some ranks but not on others gets a zero
    gradient where it had none (its mean is then what a single process over all
    tasks would get); one with no gradient on any rank keeps ``.grad = None``.
    The gradients are flattened into one buffer per device and dtype, so a
    step costs one all-reduce per buffer (plus one for the presence flags).

    Args:
        parameters: the tensors the optimiser updates, in the same order on
            every rank.
        world: :func:`world` of this process; with one process nothing happens.
    """
    if not world.distributed or not parameters:
        return
    device = _first_device(parameters)
    present = torch.tensor(
        [p.grad is not None for p in parameters], dtype=torch.int32, device=device
    )
    dist.all_reduce(present)  # [P]: on how many ranks each parameter has a gradient
    for p, count in zip(parameters, present.tolist(), strict=True):
        if count and p.grad is None:
            p.grad = torch.zeros_like(p)
    buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for p in parameters:
        if p.grad is not None:
            if p.grad.is_sparse:
                raise TypeError("average_gradients handles dense gradients only.")
            buckets.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    for grads in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in grads])  # [sum of numels]
        dist.all_reduce(flat)
        flat /= world.size
        for g, chunk in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(chunk.view_as(g))


def mean_over_ranks(
    values: Sequence[float], world: World, device: torch.device | str = "cpu"
) -> list[float]:
    """The mean of each float over the ranks (one all-reduce, in float64).

    Every rank must pass as many values, in the same order. A NaN on one rank
    makes that mean NaN on every rank, so all ranks stop together when the
    loss diverges.
    """
    if not world.distributed:
        return [float(v) for v in values]
    tensor = torch.tensor(
        [float(v) for v in values], dtype=torch.float64, device=device
    )
    dist.all_reduce(tensor)
    tensor /= world.size
    return tensor.tolist()


def broadcast_tensors(tensors: Iterable[torch.Tensor], world: World) -> None:
    """Overwrite every tensor with rank 0's values (in place, without autograd)."""
    if not world.distributed:
        return
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def broadcast_object(value: T, world: World) -> T:
    """Rank 0's ``value`` (any picklable object), returned on every rank."""
    if not world.distributed:
        return value
    box = [value if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any, world: World) -> list[Any] | None:
    """Every rank's ``value`` in rank order on rank 0; ``None`` on the others."""
    if not world.distributed:
        return [value]
    out: list[Any] | None = [None] * world.size if world.main else None
    dist.gather_object(value, out, dst=0)
    return out


def on_main(compute: Callable[[], T], world: World) -> T:
    """``compute()`` on rank 0 only, its result broadcast to every rank.

    If ``compute`` raises on rank 0, every rank raises the same exception, so
    no rank is left waiting for the others (e.g. a checkpoint of another run
    found by rank 0).
    """
    if not world.distributed:
        return compute()
    result: T | None = None
    error: Exception | None = None
    if world.main:
        try:
            result = compute()
        except Exception as exc:  # re-raised below, on every rank
            error = exc
    result, error = broadcast_object((result, error), world)
    if error is not None:
        raise error
    return result  # type: ignore[return-value]
