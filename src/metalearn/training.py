"""One training loop for every algorithm: progress, evaluation, exact resume.

Every method of the course (MAML, FOMAML, Reptile, ProtoNet, Siamese, Matching
networks, pre-training) is trained by :func:`train`. An algorithm does not
write its own loop; it builds a ``step`` function (a closure) that samples one
meta-batch with the generator it is given and returns ``(loss, metrics)``, where
``loss`` is the scalar whose gradient the optimiser follows. One call of
:func:`train` then does, for ``s = 1 .. steps``::

    optimiser.zero_grad(set_to_none=True)
    loss, metrics = step(generator)        # generator seeded with config.seed
    loss.backward()                        # then: loss and gradients finite?
    optimiser.step(); scheduler.step()
    every eval_every steps and at the end: evaluate()
    every checkpoint_every steps and at the end: write <checkpoint_dir>/last.pt

**Resume is exact.** The checkpoint (:mod:`metalearn.checkpoint`) holds the
model, optimiser, scheduler, learning curves and every random number generator,
so calling :func:`train` again with the same ``checkpoint_dir`` continues from
the last checkpoint, and on the CPU finishes with parameters bitwise identical
to a run that was never interrupted. A finished run called again loads its
final state and returns its history without training.

**Interruptions save the work.** Stopping a notebook cell (``KeyboardInterrupt``,
i.e. SIGINT) or terminating the process (SIGTERM) during :func:`train` writes a
checkpoint of the last completed step before the exception propagates, so no
step is lost. SIGTERM is turned into :class:`TrainingInterrupted` (a
``KeyboardInterrupt``) while :func:`train` runs in the main thread; the previous
signal handlers are restored when it returns. An interruption during an
evaluation saves the step with the evaluation marked as pending, and the
resumed run evaluates first. Other exceptions write nothing (the last periodic
checkpoint is kept), and so does a death without warning (SIGKILL, a Colab VM
that disappears): choose ``checkpoint_every`` for what you can afford to lose.

**A changed run is never resumed silently.** The checkpoint records what
shapes the run: the model's parameter shapes, the optimiser's and the
scheduler's hyperparameters, the seed, the ``experiment`` config and the step
function's own ``identity`` (the training-step makers of the library attach one
naming their hyperparameters, e.g. ``inner_lr``); resuming with any of them
changed raises ``ValueError`` naming what changed.

**Several processes train as one.** Under ``torchrun --nproc_per_node=N``
the same call trains on N processes (:mod:`metalearn.distributed`): each rank
samples its own tasks with a generator seeded from ``config.seed`` and its rank,
the loss, the metrics and the gradients are averaged over the ranks after the
backward pass (NCCL on GPUs, gloo on CPUs), and every rank applies the same
update. Only rank 0 writes checkpoints (holding every rank's random number
generators) and shows progress; a resumed run restores every rank. An
interruption of a distributed run writes nothing (the ranks cannot agree on
the step it reached): the last periodic checkpoint is kept.

**Divergence stops the run.** A NaN or infinite loss or gradient raises
:class:`TrainingDiverged` naming the step, the loss and the likely cause, before
the optimiser applies the bad update; no checkpoint of the bad state is written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metalearn import distributed
from metalearn.checkpoint import (
    capture_rng_state,
    check_compatible,
    checkpoint_path,
    experiment_to_dict,
    load_checkpoint,
    make_checkpoint,
    restore_training_state,
    save_checkpoint,
)
from metalearn.history import History
from metalearn.interrupts import Interrupts, TrainingInterrupted
from metalearn.runtime import progress_bar

__all__ = [
    "EvaluateFn",
    "History",
    "StepFn",
    "TrainConfig",
    "TrainingDiverged",
    "TrainingInterrupted",
    "run_identity",
    "train",
]

StepFn = Callable[[torch.Generator], tuple[torch.Tensor, Mapping[str, float]]]
EvaluateFn = Callable[[], Mapping[str, float]]


@dataclass(frozen=True)
class TrainConfig:
    """How long to train, how often to evaluate and save, and the loop's seed."""

    steps: int  # optimiser steps (meta-iterations) of the whole run
    eval_every: int = 100  # call evaluate() every this many steps, and at the end
    checkpoint_every: int = 100  # write a checkpoint this often, and at the end
    checkpoint_dir: str | None = None  # folder of last.pt; None: never save/resume
    seed: int = 0  # seed of the torch.Generator passed to every step() call
    log_every: int = 10  # steps averaged in the progress bar's running metrics

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f"TrainConfig.{name} must be an int, got {value!r} "
                    f"({type(value).__name__})."
                )
            if value < 1:
                raise ValueError(
                    f"TrainConfig.{name} must be a positive int (>= 1), got {value}."
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"TrainConfig.seed must be an int, got {self.seed!r}.")
        if self.seed < 0:
            raise ValueError(
                f"TrainConfig.seed must be a non-negative int, got {self.seed}."
            )
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, str | os.PathLike):
                raise TypeError(
                    "TrainConfig.checkpoint_dir must be a str, a path or None, got "
                    f"{self.checkpoint_dir!r}."
                )
            directory = os.fspath(self.checkpoint_dir)
            if not directory:
                raise ValueError(
                    "TrainConfig.checkpoint_dir must be a folder name or None (no "
                    "checkpoints), got ''."
                )
            object.__setattr__(self, "checkpoint_dir", directory)


class TrainingDiverged(FloatingPointError):
    """The loss or a gradient became NaN or infinite; the bad update was not applied.

    Attributes:
        step: the step (1-based) at which it happened.
        loss: the loss value at that step (may be finite if a gradient was not).
    """

    def __init__(self, message: str, *, step: int, loss: float) -> None:
        super().__init__(message)
        self.step = step
        self.loss = loss


def _check_arguments(
    model: object,
    optimiser: object,
    step: object,
    config: object,
    evaluate: object,
    scheduler: object,
) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(optimiser, torch.optim.Optimizer):
        raise TypeError(
            "optimiser must be a torch.optim.Optimizer, got "
            f"{type(optimiser).__name__}."
        )
    if not callable(step):
        raise TypeError(f"step must be callable as step(generator), got {step!r}.")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be callable or None, got {evaluate!r}.")
    if scheduler is not None and not isinstance(
        scheduler, torch.optim.lr_scheduler.LRScheduler
    ):
        raise TypeError(
            "scheduler must be a torch.optim.lr_scheduler.LRScheduler or None, got "
            f"{type(scheduler).__name__}."
        )


def _float_metrics(metrics: object, source: str, step: int) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"{source} must return a dict of metric name -> float, got "
            f"{type(metrics).__name__} at step {step}."
        )
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"{source} returned a metric name {name!r}; use strings.")
        if isinstance(value, torch.Tensor):
            value = value.detach()
        try:
            out[name] = float(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"{source} returned metric {name!r} = {value!r} at step {step}, "
                "which is not a number (a float or a one-element tensor)."
            ) from exc
    return out


def _check_step_output(output: object, step: int) -> tuple[torch.Tensor, dict]:
    if not isinstance(output, tuple) or len(output) != 2:
        raise TypeError(
            f"step(generator) must return a tuple (loss, metrics), got {output!r} "
            f"at step {step}."
        )
    loss, metrics = output
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss)
        raise ValueError(
            f"The loss returned by step must be a one-element tensor, got {shape} "
            f"at step {step}."
        )
    if not loss.requires_grad:
        raise ValueError(
            f"The loss returned by step at step {step} has no autograd graph "
            "(requires_grad=False): compute it from the model's parameters "
            "without torch.no_grad() or .detach()."
        )
    return loss, _float_metrics(metrics, "step", step)


def run_identity(experiment: Any, step: StepFn) -> dict[str, Any] | None:
    """What a checkpoint must match to be resumed: ``experiment`` and ``step.identity``.

    ``experiment`` is the caller's config (a dataclass, a dict or ``None``);
    ``step.identity``, if the step function carries one, is the plain dict of
    hyperparameters its maker recorded (e.g. ``make_maml_step`` records
    ``inner_lr``, ``steps``, ``first_order``, ...). Both are stored in the
    checkpoint and compared on resume. A function that wraps a step should
    keep it: ``functools.wraps(step)`` copies ``identity`` with the rest.
    """
    identity = experiment_to_dict(experiment)
    step_identity = getattr(step, "identity", None)
    if step_identity is None:
        return identity
    if not isinstance(step_identity, Mapping):
        raise TypeError(
            f"step.identity must be a dict of hyperparameters, got {step_identity!r}."
        )
    return {"experiment": identity, "step": experiment_to_dict(dict(step_identity))}


@dataclass
class _State:
    """The live state of one :func:`train` call: what a checkpoint would hold.

    The live objects represent ``completed`` optimiser steps, plus the
    evaluation of that step unless ``eval_pending``; ``rng`` is the state of every
    random number generator at that point (captured after each phase, so that an
    interruption in the middle of the next step still saves an exact checkpoint).
    """

    model: torch.nn.Module
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    step_fn: StepFn
    evaluate_fn: EvaluateFn | None
    config: TrainConfig
    identity: dict[str, Any] | None
    generator: torch.Generator
    path: Path | None
    history: History
    rng: dict[str, Any]
    world: distributed.World  # this process among those of the run (rank, size)
    completed: int = 0
    eval_pending: bool = False
    saved_step: int | None = None  # the step of the checkpoint on disk

    @property
    def finished(self) -> bool:
        return self.completed == self.config.steps and not self.eval_pending

    def named_parameters(self) -> list[tuple[str, torch.Tensor]]:
        """Every tensor the optimiser updates, with its name in the model."""
        names = {id(p): name for name, p in self.model.named_parameters()}
        tensors = (p for group in self.optimiser.param_groups for p in group["params"])
        return [(names.get(id(p), f"optimiser parameter #{i}"), p)
                for i, p in enumerate(tensors)]


def _start(model, optimiser, step, config, evaluate, scheduler, experiment) -> _State:
    first = next(model.parameters(), None)
    world = distributed.join(first.device if first is not None else "cpu")
    generator = torch.Generator().manual_seed(
        distributed.rank_seed(config.seed, world.rank)
    )
    state = _State(
        model=model,
        optimiser=optimiser,
        scheduler=scheduler,
        step_fn=step,
        evaluate_fn=evaluate,
        config=config,
        identity=run_identity(experiment, step),
        generator=generator,
        path=None if config.checkpoint_dir is None
        else checkpoint_path(config.checkpoint_dir),
        history=History(),
        rng=capture_rng_state(generator),
        world=world,
    )
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    tensors.update((id(p), p) for _, p in state.named_parameters())
    distributed.broadcast_tensors(tensors.values(), world)  # rank 0's start
    return state


# ------------------------------------------------------------------ resume / save


def _read_checkpoint(state: _State) -> dict[str, Any] | None:
    """The checkpoint of ``state.path`` after checking it, or ``None``."""
    if state.path is None or not state.path.exists():
        return None
    checkpoint = load_checkpoint(state.path)
    check_compatible(
        checkpoint,
        model=state.model,
        optimiser=state.optimiser,
        scheduler=state.scheduler,
        experiment=state.identity,
        seed=state.config.seed,
        path=state.path,
        world_size=state.world.size,
    )
    if checkpoint["step"] > state.config.steps:
        raise ValueError(
            f"The checkpoint {state.path} is at step {checkpoint['step']} but this "
            f"run has steps={state.config.steps}. Raise steps, use another "
            f"checkpoint_dir, or delete {state.path} to start afresh."
        )
    return checkpoint


def _resume(state: _State) -> None:
    """Load the checkpoint of ``state.path``, if there is one (read by rank 0)."""
    checkpoint = distributed.on_main(lambda: _read_checkpoint(state), state.world)
    if checkpoint is None:
        return
    if state.world.distributed:  # this rank's generators, not rank 0's
        checkpoint = {**checkpoint, "rng": checkpoint["rng_ranks"][state.world.rank]}
    restore_training_state(
        checkpoint,
        model=state.model,
        optimiser=state.optimiser,
        scheduler=state.scheduler,
        generator=state.generator,
    )
    state.history = History.from_dict(checkpoint["history"])
    state.completed = state.saved_step = checkpoint["step"]
    state.eval_pending = checkpoint["eval_pending"] and state.evaluate_fn is not None
    state.rng = checkpoint["rng"]


def _save(state: _State) -> None:
    """Write a checkpoint of the state described by ``completed`` and ``rng``.

    With several processes every rank's ``rng`` is gathered, and rank 0 writes.
    """
    assert state.path is not None
    rng_ranks = distributed.gather_objects(state.rng, state.world)
    if not state.world.main:
        state.saved_step = state.completed
        return
    save_checkpoint(
        state.path,
        make_checkpoint(
            step=state.completed,
            eval_pending=state.eval_pending,
            model=state.model,
            optimiser=state.optimiser,
            scheduler=state.scheduler,
            history=state.history.to_dict(),
            rng=state.rng,
            experiment=state.identity,
            seed=state.config.seed,
            rng_ranks=rng_ranks if state.world.distributed else None,
        ),
    )
    state.saved_step = state.completed


# ------------------------------------------------------------- the three phases


def _gradients(state: _State, step: int) -> dict[str, float]:
    """Phase A: the loss and its gradients; parameters and optimiser untouched.

    With several processes, the loss, the metrics and the gradients are the
    means over the ranks (:mod:`metalearn.distributed`).
    """
    state.optimiser.zero_grad(set_to_none=True)
    loss, metrics = _check_step_output(state.step_fn(state.generator), step)
    loss_value, *values = distributed.mean_over_ranks(
        [float(loss.detach()), *metrics.values()], state.world, loss.device
    )
    metrics = dict(zip(metrics, values, strict=True))
    if not math.isfinite(loss_value):
        _diverged(state, step, loss_value, f"the loss is {loss_value}")
    loss.reshape(()).backward()
    parameters = [p for _, p in state.named_parameters()]
    distributed.average_gradients(parameters, state.world)
    grads = [(n, p.grad) for n, p in state.named_parameters() if p.grad is not None]
    if not grads:
        raise ValueError(
            f"The loss at step {step} does not depend on any parameter of the "
            "optimiser: after loss.backward() every .grad is None."
        )
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for _, g in grads:  # one synchronisation per device, not one per tensor
        by_device.setdefault(g.device, []).append(torch.isfinite(g).all())
    if not all(bool(torch.stack(flags).all()) for flags in by_device.values()):
        bad = next(n for n, g in grads if not bool(torch.isfinite(g).all()))
        _diverged(state, step, loss_value, f"the gradient of {bad!r} is not finite")
    return {"loss": loss_value, **metrics}


def _apply(state: _State, step: int, row: dict[str, float]) -> None:
    """Phase B: record and apply the update (signals are held until it is done)."""
    state.history.record_train(step, row)  # first: it may reject the metrics
    state.optimiser.step()
    if state.scheduler is not None:
        state.scheduler.step()
    state.completed = step
    every = state.config.eval_every
    state.eval_pending = state.evaluate_fn is not None and (
        step % every == 0 or step == state.config.steps
    )
    state.rng = capture_rng_state(state.generator)


def _evaluate(state: _State) -> dict[str, float]:
    """Phase C: evaluate the model after step ``completed`` (mode restored after)."""
    assert state.evaluate_fn is not None
    was_training = state.model.training
    try:
        metrics = state.evaluate_fn()
    finally:
        state.model.train(was_training)
    metrics = _float_metrics(metrics, "evaluate", state.completed)
    state.history.record_eval(state.completed, metrics)
    state.eval_pending = False
    state.rng = capture_rng_state(state.generator)
    return metrics


def _diverged(state: _State, step: int, loss: float, what: str) -> None:
    rates = [group["lr"] for group in state.optimiser.param_groups]
    if state.path is None:
        kept = "No checkpoint was written (checkpoint_dir is None)."
    elif state.saved_step is None:
        kept = f"No checkpoint had been written to {state.path} yet."
    else:
        kept = (
            f"The last good checkpoint (step {state.saved_step}) is kept in "
            f"{state.path}; resuming it unchanged would diverge again, so delete "
            "it (or use another checkpoint_dir) after changing the rate."
        )
    raise TrainingDiverged(
        f"Training diverged at step {step}: {what} (loss = {loss}). The likely "
        "cause is a learning rate that is too large, e.g. inner_lr or meta_lr "
        f"(the optimiser's learning rate is {rates}), or data that hold NaN or "
        f"infinite values; lower the rate (or check the data) and train again. "
        f"The update of step {step} was not applied. {kept}",
        step=step,
        loss=loss,
    )


# ------------------------------------------------------------------- the loop


def _run(state: _State, progress: bool) -> History:
    """Steps ``completed + 1 .. steps``: phase A, B, C, checkpoint; saved if stopped."""
    config = state.config
    bar = progress_bar(
        total=config.steps,
        initial=state.completed,
        desc="train",
        disable=not (progress and state.world.main),
    )
    window: list[dict[str, float]] = []  # rows averaged in the bar's metrics
    last_eval: dict[str, float] = {}
    try:
        with Interrupts() as interrupts:
            try:
                if state.eval_pending:  # interrupted during an evaluation
                    last_eval = _evaluate(state)
                    if state.completed == config.steps:
                        _save(state)
                for step in range(state.completed + 1, config.steps + 1):
                    row = _gradients(state, step)
                    with interrupts.deferred():
                        _apply(state, step, row)
                    if state.eval_pending:
                        last_eval = _evaluate(state)
                    due = step % config.checkpoint_every == 0 or step == config.steps
                    if state.path is not None and due:
                        _save(state)
                    window.append(row)
                    if len(window) == config.log_every or step == config.steps:
                        bar.set_postfix(_postfix(window, last_eval), refresh=False)
                        window.clear()
                    bar.update(1)
            except KeyboardInterrupt:
                bar.close()
                if state.path is not None and state.world.distributed:
                    _say(
                        state,
                        "Interrupted: a run of several processes keeps its last "
                        f"periodic checkpoint (step {state.saved_step}) in "
                        f"{state.path}; run the same command again to resume.",
                    )
                elif state.path is not None:
                    _save(state)
                    pending = " (evaluation pending)" if state.eval_pending else ""
                    print(
                        f"Interrupted: saved step {state.completed}{pending} to "
                        f"{state.path}; run the same command again to resume."
                    )
                raise
    finally:
        bar.close()
    return state.history


def _say(state: _State, message: str) -> None:
    """Print ``message`` on rank 0 only (every process runs the same code)."""
    if state.world.main:
        print(message)


def _postfix(window: list[dict[str, float]], last_eval: dict[str, float]) -> dict:
    """Mean of each training metric over ``window``, then the last evaluation."""
    postfix = {
        name: sum(row[name] for row in window) / len(window) for name in window[0]
    }
    postfix.update({f"val_{name}": value for name, value in last_eval.items()})
    return postfix


def train(
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    step: StepFn,
    config: TrainConfig,
    *,
    evaluate: EvaluateFn | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    experiment: Any = None,
    progress: bool = True,
    announce_finished: bool = True,
) -> History:
    """Train ``model`` for ``config.steps`` steps, resuming from a checkpoint.

    Args:
        model: the module whose parameters ``optimiser`` updates; its state is
            saved in checkpoints and its description checked on resume.
        optimiser: e.g. ``torch.optim.Adam(model.parameters(), lr=meta_lr)``
            (the meta-optimiser, learning rate beta).
        step: ``step(generator) -> (loss, metrics)``: sample one (meta-)batch
            with ``generator`` (a CPU generator: sample indices on the CPU, then
            move the batch to the model's device) and return the scalar loss
            with an autograd graph to the parameters, and a dict of floats to
            log (e.g. ``{"acc": ...}``).
        config: steps, evaluation/checkpoint periods, checkpoint folder, seed.
        evaluate: ``evaluate() -> dict[str, float]``, e.g. accuracy on fixed
            validation episodes; called every ``config.eval_every`` steps and
            after the last step. The model's train/eval mode is restored after.
        scheduler: a learning-rate scheduler stepped after every optimiser step.
        experiment: the experiment config (a dataclass or dict), stored in the
            checkpoint with ``step.identity`` (see :func:`run_identity`);
            resuming with a different one raises ``ValueError``.
        progress: show a tqdm bar with the running metrics, where someone is
            watching (:func:`metalearn.runtime.progress_enabled`).
        announce_finished: print a line when the checkpoint holds a finished
            run, so nothing is trained (callers that report it themselves, as
            :func:`metalearn.experiments.fit` does, pass ``False``).

    Returns:
        The :class:`History` of the whole run (including steps before a resume).

    Raises:
        TrainingDiverged: the loss or a gradient is NaN or infinite.
        ValueError: the checkpoint in ``config.checkpoint_dir`` comes from a
            different model, optimiser, experiment or seed; ``step`` returned a
            malformed loss.
        TypeError: an argument has the wrong type.
        KeyboardInterrupt: after writing a checkpoint of the last completed step
            if ``config.checkpoint_dir`` is set (SIGTERM arrives as
            :class:`TrainingInterrupted`, a subclass).

    Example:
        >>> model = torch.nn.Linear(1, 1)
        >>> def step(generator):
        ...     x = torch.randn(8, 1, generator=generator)
        ...     loss = (model(x) - 2 * x).pow(2).mean()
        ...     return loss, {}
        >>> optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> history = train(model, optimiser, step, TrainConfig(steps=50),
        ...                 progress=False)
        >>> history.train["loss"][-1] < history.train["loss"][0]
        True
    """
    _check_arguments(model, optimiser, step, config, evaluate, scheduler)
    state = _start(model, optimiser, step, config, evaluate, scheduler, experiment)
    _resume(state)
    if state.finished and state.saved_step is not None:
        if announce_finished:
            _say(
                state,
                f"Run already finished: loaded step {state.completed} of "
                f"{config.steps} from {state.path}; nothing to train.",
            )
        return state.history
    if state.saved_step is not None:
        _say(
            state,
            f"Resuming from step {state.completed} of {config.steps} ({state.path}).",
        )
    return _run(state, progress)
