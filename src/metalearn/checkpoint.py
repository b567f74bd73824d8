"""Checkpoints that are written atomically and load without running pickled code.

A checkpoint is one file, ``<checkpoint_dir>/last.pt``, that holds everything
needed to continue a run exactly where it stopped: the model, optimiser and
scheduler states, the step, the learning curves so far, every random number
generator the run draws from (Python's ``random``, NumPy's global generator,
torch's CPU and CUDA generators, and the loop's own ``torch.Generator``), the
experiment config and a description of the model and optimiser.

Four rules keep checkpoints safe:

* **Atomic and durable.** The file is written under a temporary name beside
  its final name, flushed to disk (``fsync``) and renamed only when complete
  (:func:`metalearn.data.download.atomic_write`), so a run killed while saving
  (or a machine that loses power) leaves the previous checkpoint intact.
* **Verified.** A SHA-256 hash of the whole content is stored in the file and
  checked by :func:`load_checkpoint`; a flipped byte in the weights is refused
  with the path and the fix, never loaded.
* **Identified.** The checkpoint records what shapes the run: the model's
  parameter names and shapes, the optimiser's class and *every* hyperparameter
  of every parameter group (learning rate, momentum, betas, weight decay, ...),
  the scheduler's class and hyperparameters (step size, gamma, T_max, ...; not
  its progress), the experiment config (including the training step's
  ``identity``, e.g. ways, shots and a fingerprint of the images) and the seed.
  :func:`check_compatible` refuses to resume a run in which any of these
  changed, naming what changed and how to start afresh.
* **Plain data only.** Everything is stored as tensors, dicts, lists, ints,
  floats, strings, booleans and ``None``, so :func:`load_checkpoint` can use
  ``torch.load(..., weights_only=True)``: a checkpoint someone hands you cannot
  execute code when loaded.

The training loop (:func:`metalearn.training.train`) is the main user; the
functions here are public so a notebook can inspect a checkpoint.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import os
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalearn.data.download import atomic_write

CHECKPOINT_NAME = "last.pt"  # file name inside a run's checkpoint_dir
FORMAT_VERSION = 2  # bumped when the layout of a checkpoint changes
#: What a checkpoint must hold (besides ``format`` and ``sha256``).
ENTRIES = (
    "step",
    "eval_pending",
    "model",
    "optimiser",
    "scheduler",
    "history",
    "rng",
    "experiment",
    "seed",
    "model_description",
    "optimiser_description",
    "scheduler_description",
    "torch_version",
)

Plain = None | bool | int | float | str | list | dict


def checkpoint_path(checkpoint_dir: str | os.PathLike[str]) -> Path:
    """The file a run with this ``checkpoint_dir`` writes: ``<dir>/last.pt``."""
    return Path(checkpoint_dir) / CHECKPOINT_NAME


# --------------------------------------------------------------------------- RNG


def capture_rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Snapshot every random number generator a training run draws from.

    Args:
        generator: the training loop's own generator (passed to ``step``).

    Returns:
        A dict of tensors and plain values (safe for ``weights_only`` loading)
        with the states of Python's ``random``, NumPy's global generator,
        torch's CPU generator, torch's CUDA generators (only if CUDA has been
        initialised; otherwise CUDA has drawn nothing) and ``generator``.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": None,
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any], generator: torch.Generator) -> None:
    """Put every generator back in the state captured by :func:`capture_rng_state`.

    CUDA states are restored only when the checkpoint has them and this machine
    has the same number of GPUs; a run moved between a GPU and a CPU machine
    continues, but cannot be bitwise identical to the uninterrupted run anyway.
    """
    python = state["python"]
    random.setstate(
        (
            python["version"],
            tuple(int(x) for x in python["internal"].tolist()),
            python["gauss_next"],
        )
    )
    numpy_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - restores the legacy global generator
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    generator.set_state(state["generator"])


# ------------------------------------------------------------------ descriptions


def describe_model(model: torch.nn.Module) -> dict[str, Any]:
    """The class name and the name and shape of every parameter of ``model``.

    Two models with the same description can load each other's state dicts.
    """
    return {
        "class": type(model).__name__,
        "parameters": {
            name: list(parameter.shape) for name, parameter in model.named_parameters()
        },
    }


#: Optimiser group keys that a scheduler with these keys drives during training
#: (their values are progress, not configuration; the driving keys are kept).
_DRIVEN_BY = {
    "initial_lr": ("lr",),  # set by every LRScheduler: lr is initial_lr * factor
    "max_momentum": ("momentum", "betas"),  # OneCycleLR / CyclicLR momentum cycling
    "base_momentum": ("momentum", "betas"),
}


def _hyperparameter(value: Any) -> Plain:
    """A group or scheduler setting as plain data (tensors become numbers)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, list | tuple):
        return [_hyperparameter(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _hyperparameter(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return "nan"  # so that two NaN settings compare equal
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return f"<{type(value).__name__}>"


def describe_optimiser(
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, Any]:
    """The optimiser's class and every hyperparameter of every parameter group.

    Each group is described by its number of parameters and all its settings
    (``lr``, ``momentum``, ``betas``, ``weight_decay``, ``nesterov``, ...).
    Settings that a scheduler changes as training goes are replaced by their
    starting values: ``lr`` by ``initial_lr`` (set by every scheduler), and
    ``momentum``/``betas`` are left out when a scheduler cycles them (it keeps
    ``base_momentum`` and ``max_momentum``, which are described instead). With
    a ``ReduceLROnPlateau`` scheduler, which records no starting rate, ``lr`` is
    left out.

    Loading an old optimiser state silently brings all the old settings back,
    so a change in any of them must be noticed: :func:`check_compatible`
    compares these descriptions.
    """
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    groups = []
    for group in optimiser.param_groups:
        described: dict[str, Plain] = {"params": len(group["params"])}
        driven = {k for key, keys in _DRIVEN_BY.items() if key in group for k in keys}
        if plateau:
            driven.add("lr")
        for key in sorted(group):
            if key == "params" or key in driven:
                continue
            value = group["initial_lr"] if key == "initial_lr" else group[key]
            described["lr" if key == "initial_lr" else key] = _hyperparameter(value)
        groups.append(described)
    return {"class": type(optimiser).__name__, "param_groups": groups}


#: Scheduler state entries that are progress, not configuration.
_SCHEDULER_PROGRESS = {
    "last_epoch",
    "T_cur",
    "T_i",
    "best",
    "num_bad_epochs",
    "cooldown_counter",
    "verbose",
}
#: Private scheduler entries that are configuration (kept in the description).
_SCHEDULER_SETTINGS = {"_anneal_func_type", "_milestones", "_schedulers"}


def describe_scheduler(
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
) -> dict[str, Any] | None:
    """The scheduler's class and hyperparameters, without its progress.

    From its ``state_dict()``: e.g. ``step_size`` and ``gamma`` of ``StepLR``,
    ``T_max`` and ``eta_min`` of ``CosineAnnealingLR``, the milestones and
    child schedulers of ``SequentialLR``; not ``last_epoch``, ``_last_lr`` or
    other counters. The functions of a ``LambdaLR`` cannot be described (only
    callable objects have a state); change its name or the experiment config
    when you change them. ``None`` for no scheduler.
    """
    if scheduler is None:
        return None

    def settings(state: Mapping[str, Any]) -> dict[str, Plain]:
        out: dict[str, Plain] = {}
        for key in sorted(state):
            if key in _SCHEDULER_PROGRESS:
                continue
            if key.startswith("_") and key not in _SCHEDULER_SETTINGS:
                continue
            value = state[key]
            if key == "_schedulers":
                value = [settings(child) for child in value]
            out[key.lstrip("_")] = _hyperparameter(value)
        return out

    return {"class": type(scheduler).__name__, **settings(scheduler.state_dict())}


def step_identity(step: Any) -> dict[str, Plain] | None:
    """The plain-data ``step.identity`` of a training step, or ``None``.

    The step makers (:func:`metalearn.protonet.make_protonet_step`, ...) set
    ``step.identity`` to a dict of everything that shapes the step (method,
    sizes, options, a fingerprint of the images); the training loop merges it
    into the experiment stored in the checkpoint.

    Raises:
        TypeError: ``step.identity`` exists but is not a dict of plain data.
    """
    identity = getattr(step, "identity", None)
    if identity is None:
        return None
    if not isinstance(identity, Mapping):
        raise TypeError(f"step.identity must be a dict, got {type(identity).__name__}.")
    return _plain(identity, "step.identity")


# ------------------------------------------------------------------- hashing


def _update(digest: Any, value: Any) -> None:
    """Feed ``value`` into ``digest`` in a canonical, type-tagged form."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _update(digest, key)
            _update(digest, value[key])
    elif isinstance(value, list | tuple):
        digest.update(f"L{len(value)}:".encode())
        for item in value:
            _update(digest, item)
    elif isinstance(value, str):
        data = value.encode()
        digest.update(f"S{len(data)}:".encode() + data)
    else:  # None, bool, int, float (repr is exact), torch.dtype, ...
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def content_hash(value: Any) -> str:
    """SHA-256 of nested dicts, lists, tensors and plain values (hex digest).

    Tensors contribute their dtype, shape and bytes; equal content gives an
    equal hash whatever the device, and one changed byte changes it.
    """
    digest = hashlib.sha256()
    _update(digest, value)
    return digest.hexdigest()


def describe_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    """A fingerprint of a data tensor: shape, dtype and SHA-256 of the bytes.

    Used in a training step's ``identity``, so a checkpoint trained on other
    images (another split, size or augmentation) is not resumed. One pass over
    the tensor (about 20 ms for the 28 px Omniglot training split on a CPU).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(tensor).__name__}.")
    if tensor.device.type == "meta":
        digest = "meta"
    else:
        digest = content_hash(tensor)
    return {
        "shape": list(tensor.shape),
        "dtype": str(tensor.dtype),
        "sha256": digest,
    }


def _plain(value: Any, where: str) -> Plain:
    """``value`` as nested dicts/lists of str, int, float, bool and None."""
    if isinstance(value, enum.Enum):
        return _plain(value.value, where)
    if isinstance(value, np.generic):  # NumPy scalars, e.g. np.float64(0.1)
        return _plain(value.item(), where)
    if value is None:
        return None
    for kind in (bool, int, float, str):  # subclasses (e.g. TorchVersion) to base
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, os.PathLike | torch.device | torch.dtype):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"experiment config keys must be strings, got {key!r} in {where}."
                )
            out[key] = _plain(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{where} = {value!r} has type {type(value).__name__}; an experiment "
        "config may hold only numbers, strings, booleans, None, paths, devices, "
        "dtypes, enums, lists, tuples, dicts and dataclasses of these."
    )


def experiment_to_dict(experiment: Any) -> dict[str, Plain] | None:
    """An experiment config (a dataclass, a dict or ``None``) as a plain dict.

    Tuples become lists, paths/devices/dtypes strings, enums and NumPy scalars
    their values and nested dataclasses dicts, so the result can be stored in a
    checkpoint and compared with the config of a later run.

    Raises:
        TypeError: ``experiment`` is not a dataclass instance, a mapping or
            ``None``, or it holds a value of another type.
    """
    if experiment is None:
        return None
    is_instance = dataclasses.is_dataclass(experiment) and not isinstance(
        experiment, type
    )
    if not (is_instance or isinstance(experiment, Mapping)):
        raise TypeError(
            "experiment must be a dataclass instance, a dict or None, got "
            f"{type(experiment).__name__}: {experiment!r}."
        )
    return _plain(experiment, "experiment")


# ------------------------------------------------------------------- save / load


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` and its content hash to ``path``, atomically.

    A copy of ``checkpoint`` with an added ``"sha256"`` entry (the
    :func:`content_hash` of everything else) is written to a temporary file,
    flushed to disk and renamed. If writing fails (disk full, interrupted),
    ``path`` keeps its previous content and no temporary file is left behind.
    """
    content = {k: v for k, v in checkpoint.items() if k != "sha256"}
    content["sha256"] = content_hash(content)
    return atomic_write(Path(path), lambda tmp: torch.save(content, tmp))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(..., weights_only=True)`` onto the CPU.

    The stored content hash is verified: a file damaged after it was written
    (a flipped bit, a partial copy) is refused, never loaded.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        ValueError: the file is damaged (unreadable, or its content does not
            match its hash), holds objects other than tensors and plain data,
            was written by another format version or lacks entries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    fix = f"Delete {path} (or use another checkpoint_dir) to start afresh."
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ValueError(
            f"Could not load the checkpoint {path} with weights_only=True ({exc}). "
            f"The file is damaged or holds more than tensors and plain data. {fix}"
        ) from exc
    if not isinstance(checkpoint, dict) or "format" not in checkpoint:
        raise ValueError(f"{path} is not a metalearn training checkpoint. {fix}")
    if checkpoint["format"] != FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format {checkpoint['format']!r}, this version "
            f"of metalearn reads format {FORMAT_VERSION}. {fix}"
        )
    missing = [k for k in ("sha256", *ENTRIES) if k not in checkpoint]
    if missing:
        raise ValueError(f"The checkpoint {path} lacks the entries {missing}. {fix}")
    stored = checkpoint.pop("sha256")
    if content_hash(checkpoint) != stored:
        raise ValueError(
            f"The checkpoint {path} is corrupted: its content does not match the "
            "SHA-256 hash stored when it was written (the file changed on disk). "
            f"Restore it from a backup, or {fix[0].lower()}{fix[1:]}"
        )
    return checkpoint


def _dict_difference(
    stored: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entries of two dicts that differ (missing keys show as ``<absent>``)."""
    keys = sorted(set(stored) | set(current))
    differ = [k for k in keys if stored.get(k, ...) != current.get(k, ...)]
    return (
        {k: stored.get(k, "<absent>") for k in differ},
        {k: current.get(k, "<absent>") for k in differ},
    )


def _describe_change(old: Any, new: Any, where: str = "") -> str:
    """The first differences between two descriptions, as ``a.b: old -> new``."""
    changes: list[str] = []

    def walk(a: Any, b: Any, at: str) -> None:
        if len(changes) >= 4 or a == b:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{at}{key}.")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{at}{i}.")
        else:
            changes.append(f"{at.rstrip('.') or 'value'}: {a!r} -> {b!r}")

    walk(old, new, where)
    text = "; ".join(changes[:3])
    return text + ("; ..." if len(changes) > 3 else "")


def make_checkpoint(
    *,
    step: int,
    eval_pending: bool,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    history: dict[str, Any],
    rng: dict[str, Any],
    experiment: dict[str, Plain] | None,
    seed: int,
    rng_ranks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble the content of a checkpoint (the layout :func:`load_checkpoint` reads).

    Args:
        step: the number of completed optimiser steps.
        eval_pending: True if the evaluation due at ``step`` has not run yet (the
            run was interrupted during it); a resumed run runs it first.
        model, optimiser, scheduler: the objects being trained.
        history: the learning curves so far, as plain data.
        rng: :func:`capture_rng_state` taken at the state being saved.
        experiment: :func:`experiment_to_dict` of the experiment config.
        seed: the training loop's seed.
        rng_ranks: in a run of several processes (:mod:`metalearn.distributed`),
            :func:`capture_rng_state` of every rank, in rank order (``rng`` is
            then rank 0's); ``None`` for a single process.
    """
    return {
        "format": FORMAT_VERSION,
        "step": int(step),
        "eval_pending": bool(eval_pending),
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "history": history,
        "rng": rng,
        "world_size": 1 if rng_ranks is None else len(rng_ranks),
        "rng_ranks": rng_ranks,
        "experiment": experiment,
        "seed": int(seed),
        "model_description": describe_model(model),
        "optimiser_description": describe_optimiser(optimiser, scheduler),
        "scheduler_description": describe_scheduler(scheduler),
        "torch_version": str(torch.__version__),
    }


def restore_training_state(
    checkpoint: Mapping[str, Any],
    *,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    generator: torch.Generator,
) -> None:
    """Load model, optimiser, scheduler and every RNG state from ``checkpoint``.

    Call :func:`check_compatible` first. Tensors are copied onto the devices of
    the model's parameters (the optimiser state follows its parameters).
    """
    model.load_state_dict(checkpoint["model"])
    optimiser.load_state_dict(checkpoint["optimiser"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng_state(checkpoint["rng"], generator)


def check_compatible(
    checkpoint: Mapping[str, Any],
    *,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    experiment: dict[str, Plain] | None,
    seed: int,
    path: str | os.PathLike[str],
    world_size: int = 1,
) -> None:
    """Raise if ``checkpoint`` was written by a different run than this one.

    Compares the model description (class, parameter names and shapes), the
    optimiser (class and every hyperparameter of every parameter group, see
    :func:`describe_optimiser`), the scheduler (class and hyperparameters,
    :func:`describe_scheduler`), the experiment config (with the training
    step's identity, if the training loop merged it in), the seed and the
    number of processes (``world_size``: each process draws its own tasks, so
    a run continues exactly only with as many as it had; checkpoints written
    before this was recorded count as one process). Nothing is loaded, so a
    failed check leaves the model untouched.

    Raises:
        ValueError: naming what differs and how to start afresh.
    """
    fix = f"Use another checkpoint_dir for this run, or delete {path} to start afresh."
    stored_model = checkpoint["model_description"]
    current_model = describe_model(model)
    if stored_model["class"] != current_model["class"]:
        raise ValueError(
            f"The checkpoint {path} was written for a model of class "
            f"{stored_model['class']} but this run trains a "
            f"{current_model['class']}. {fix}"
        )
    old, new = _dict_difference(stored_model["parameters"], current_model["parameters"])
    if old:
        raise ValueError(
            f"The checkpoint {path} was written for a different model: its "
            f"parameter shapes {old} are {new} in this model. {fix}"
        )
    stored_optimiser = checkpoint["optimiser_description"]
    current_optimiser = describe_optimiser(optimiser, scheduler)
    if stored_optimiser != current_optimiser:
        raise ValueError(
            f"The checkpoint {path} was written with a different optimiser: "
            f"{_describe_change(stored_optimiser, current_optimiser)}. Resuming "
            f"would silently bring the old settings back. {fix}"
        )
    if (checkpoint["scheduler"] is None) != (scheduler is None):
        had = "no" if checkpoint["scheduler"] is None else "a"
        has = "no" if scheduler is None else "a"
        raise ValueError(
            f"The checkpoint {path} was written by a run with {had} learning-rate "
            f"scheduler but this run has {has} scheduler. {fix}"
        )
    stored_scheduler = checkpoint["scheduler_description"]
    current_scheduler = describe_scheduler(scheduler)
    if stored_scheduler != current_scheduler:
        raise ValueError(
            f"The checkpoint {path} was written with a different learning-rate "
            f"scheduler: {_describe_change(stored_scheduler, current_scheduler)}. "
            f"Resuming would silently bring the old schedule back. {fix}"
        )
    stored_experiment = checkpoint["experiment"]
    if stored_experiment != experiment:
        if stored_experiment is None or experiment is None:
            old, new = stored_experiment, experiment
        else:
            old, new = _dict_difference(stored_experiment, experiment)
        raise ValueError(
            f"The checkpoint {path} was written for experiment {old} but this run "
            f"has {new} (changed: {_describe_change(stored_experiment, experiment)})."
            f" {fix}"
        )
    stored_size = checkpoint.get("world_size", 1)
    if stored_size != world_size:
        raise ValueError(
            f"The checkpoint {path} was written by a run of {stored_size} "
            f"process(es) but this run has {world_size}; each process draws its "
            "own tasks, so resume with the same number (torchrun "
            f"--nproc_per_node x --nnodes = {stored_size}). {fix}"
        )
    if checkpoint["seed"] != seed:
        raise ValueError(
            f"The checkpoint {path} was written by a run with seed "
            f"{checkpoint['seed']} but this run has seed {seed}. {fix}"
        )
