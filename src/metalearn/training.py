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

**Divergence stops the run.** A NaN or infinite loss or gradient raises
:class:`TrainingDiverged` naming the step, the loss and the likely cause, before
the optimiser applies the bad update; no checkpoint of the bad state is written.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

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
from metalearn.runtime import progress_bar

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


@dataclass
class History:
    """The learning curves of a run: one training row per step, one per evaluation.

    ``train[name][i]`` is the metric ``name`` at step ``train_steps[i]``; the
    metric ``"loss"`` is the value minimised unless ``step`` reports its own
    ``"loss"`` (e.g. Reptile reports the query loss, not its surrogate).
    ``eval[name][j]`` is what ``evaluate()`` returned at step ``eval_steps[j]``.
    Plot with ``plt.plot(history.train_steps, history.train["loss"])``.
    """

    train_steps: list[int] = field(default_factory=list)  # step of each train row
    train: dict[str, list[float]] = field(default_factory=dict)  # metric -> values
    eval_steps: list[int] = field(default_factory=list)  # step of each evaluation
    eval: dict[str, list[float]] = field(default_factory=dict)  # metric -> values

    def record_train(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append the training metrics of ``step``."""
        _append(self.train_steps, self.train, step, metrics, "step")

    def record_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append the evaluation metrics computed after ``step``."""
        _append(self.eval_steps, self.eval, step, metrics, "evaluate")

    def to_dict(self) -> dict[str, Any]:
        """The history as plain lists and dicts (JSON- and checkpoint-safe)."""
        return {
            "train_steps": list(self.train_steps),
            "train": {name: list(values) for name, values in self.train.items()},
            "eval_steps": list(self.eval_steps),
            "eval": {name: list(values) for name, values in self.eval.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: a key is missing or a metric's length differs from the
                number of steps it belongs to.
        """
        missing = {"train_steps", "train", "eval_steps", "eval"} - set(data)
        if missing:
            raise ValueError(f"A history dict needs the keys {sorted(missing)}.")
        history = cls(
            train_steps=[int(s) for s in data["train_steps"]],
            train={k: [float(v) for v in vs] for k, vs in data["train"].items()},
            eval_steps=[int(s) for s in data["eval_steps"]],
            eval={k: [float(v) for v in vs] for k, vs in data["eval"].items()},
        )
        for steps, metrics in (
            (history.train_steps, history.train),
            (history.eval_steps, history.eval),
        ):
            for name, values in metrics.items():
                if len(values) != len(steps):
                    raise ValueError(
                        f"History metric {name!r} has {len(values)} values for "
                        f"{len(steps)} steps."
                    )
        return history


def _append(
    steps: list[int],
    table: dict[str, list[float]],
    step: int,
    metrics: Mapping[str, float],
    source: str,
) -> None:
    if steps and set(metrics) != set(table):
        raise ValueError(
            f"{source} returned the metrics {sorted(metrics)} at step {step} but "
            f"{sorted(table)} before; it must return the same names every time."
        )
    steps.append(step)
    for name, value in metrics.items():
        table.setdefault(name, []).append(value)


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


class TrainingInterrupted(KeyboardInterrupt):
    """Raised in :func:`train` when the process receives SIGTERM."""


class _Interrupts:
    """Turn SIGINT and SIGTERM into exceptions, except inside :meth:`deferred`.

    Installed only in the main thread (the only place Python runs handlers),
    and only over handlers that Python installed and that do not ignore the
    signal; the previous handlers are restored on exit.
    """

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.deferring = False
        self.pending: BaseException | None = None

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is None or handler == signal.SIG_IGN:
                continue
            self.previous[signum] = handler
            signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT:
            exc: BaseException = KeyboardInterrupt()
        else:
            exc = TrainingInterrupted(f"received {signal.Signals(signum).name}")
        if self.deferring:
            self.pending = exc
            return
        raise exc

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a signal that arrives in this block until the block has finished."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending is not None:
            exc, self.pending = self.pending, None
            raise exc


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


class _Loop:
    """The state of one :func:`train` call (what a checkpoint would hold)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimiser: torch.optim.Optimizer,
        step_fn: StepFn,
        config: TrainConfig,
        evaluate: EvaluateFn | None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        experiment: dict | None,
    ) -> None:
        self.model, self.optimiser, self.step_fn = model, optimiser, step_fn
        self.config, self.evaluate_fn, self.scheduler = config, evaluate, scheduler
        self.experiment = experiment
        self.generator = torch.Generator().manual_seed(config.seed)
        self.path = (
            None
            if config.checkpoint_dir is None
            else checkpoint_path(config.checkpoint_dir)
        )
        self.history = History()
        # What the live objects represent: `completed` optimiser steps, plus the
        # evaluation of that step if not `eval_pending`; `rng` is the RNG state
        # at that point (captured after each phase, so an interruption in the
        # middle of the next step can still save an exact checkpoint).
        self.completed = 0
        self.eval_pending = False
        self.rng = capture_rng_state(self.generator)
        self.saved_step: int | None = None  # step of the checkpoint on disk
        names = {id(p): name for name, p in model.named_parameters()}
        self.parameters = [
            (names.get(id(p), f"optimiser parameter #{i}"), p)
            for i, p in enumerate(
                p for group in optimiser.param_groups for p in group["params"]
            )
        ]

    # ---------------------------------------------------------------- resume
    def resume(self) -> None:
        """Load the checkpoint in ``checkpoint_dir`` if there is one."""
        if self.path is None or not self.path.exists():
            return
        checkpoint = load_checkpoint(self.path)
        check_compatible(
            checkpoint,
            model=self.model,
            optimiser=self.optimiser,
            scheduler=self.scheduler,
            experiment=self.experiment,
            seed=self.config.seed,
            path=self.path,
        )
        if checkpoint["step"] > self.config.steps:
            raise ValueError(
                f"The checkpoint {self.path} is at step {checkpoint['step']} but "
                f"this run has steps={self.config.steps}. Raise steps, use another "
                f"checkpoint_dir, or delete {self.path} to start afresh."
            )
        restore_training_state(
            checkpoint,
            model=self.model,
            optimiser=self.optimiser,
            scheduler=self.scheduler,
            generator=self.generator,
        )
        self.history = History.from_dict(checkpoint["history"])
        self.completed = self.saved_step = checkpoint["step"]
        self.eval_pending = checkpoint["eval_pending"] and self.evaluate_fn is not None
        self.rng = checkpoint["rng"]

    @property
    def finished(self) -> bool:
        return self.completed == self.config.steps and not self.eval_pending

    # ------------------------------------------------------------- one step
    def forward_backward(self, step: int) -> dict[str, float]:
        """Phase A: loss and gradients; leaves parameters and optimiser untouched."""
        self.optimiser.zero_grad(set_to_none=True)
        loss, metrics = _check_step_output(self.step_fn(self.generator), step)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            self.diverged(step, loss_value, f"the loss is {loss_value}")
        loss.reshape(()).backward()
        grads = [(n, p.grad) for n, p in self.parameters if p.grad is not None]
        if not grads:
            raise ValueError(
                f"The loss at step {step} does not depend on any parameter of the "
                "optimiser: after loss.backward() every .grad is None."
            )
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for _, grad in grads:
            by_device.setdefault(grad.device, []).append(torch.isfinite(grad).all())
        if not all(bool(torch.stack(flags).all()) for flags in by_device.values()):
            bad = next(n for n, g in grads if not bool(torch.isfinite(g).all()))
            self.diverged(step, loss_value, f"the gradient of {bad!r} is not finite")
        return {"loss": loss_value, **metrics}

    def diverged(self, step: int, loss: float, what: str) -> None:
        rates = [group["lr"] for group in self.optimiser.param_groups]
        if self.path is None:
            kept = "No checkpoint was written (checkpoint_dir is None)."
        elif self.saved_step is None:
            kept = f"No checkpoint had been written to {self.path} yet."
        else:
            kept = (
                f"The last good checkpoint (step {self.saved_step}) is kept in "
                f"{self.path}; resuming it unchanged would diverge again, so delete "
                "it (or use another checkpoint_dir) after changing the rate."
            )
        raise TrainingDiverged(
            f"Training diverged at step {step}: {what} (loss = {loss}). The likely "
            "cause is a learning rate that is too large, e.g. inner_lr or meta_lr "
            f"(the optimiser's learning rate is {rates}); lower it and train "
            f"again. The update of step {step} was not applied. {kept}",
            step=step,
            loss=loss,
        )

    def commit(self, step: int, row: dict[str, float]) -> None:
        """Phase B: record and apply the update (signals held until done)."""
        self.history.record_train(step, row)  # first: it may reject the metrics
        self.optimiser.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.completed = step
        self.eval_pending = self.evaluate_fn is not None and (
            step % self.config.eval_every == 0 or step == self.config.steps
        )
        self.rng = capture_rng_state(self.generator)

    def run_evaluation(self) -> dict[str, float]:
        """Phase C: evaluate the model after step ``completed``."""
        assert self.evaluate_fn is not None
        was_training = self.model.training
        try:
            metrics = self.evaluate_fn()
        finally:
            self.model.train(was_training)
        metrics = _float_metrics(metrics, "evaluate", self.completed)
        self.history.record_eval(self.completed, metrics)
        self.eval_pending = False
        self.rng = capture_rng_state(self.generator)
        return metrics

    def save(self) -> None:
        """Write a checkpoint of the state described by ``completed``/``rng``."""
        assert self.path is not None
        save_checkpoint(
            self.path,
            make_checkpoint(
                step=self.completed,
                eval_pending=self.eval_pending,
                model=self.model,
                optimiser=self.optimiser,
                scheduler=self.scheduler,
                history=self.history.to_dict(),
                rng=self.rng,
                experiment=self.experiment,
                seed=self.config.seed,
            ),
        )
        self.saved_step = self.completed

    # ------------------------------------------------------------------ run
    def run(self, progress: bool) -> History:
        config = self.config
        bar = progress_bar(
            total=config.steps,
            initial=self.completed,
            desc="train",
            disable=not progress,
        )
        window: list[dict[str, float]] = []
        last_eval: dict[str, float] = {}
        try:
            with _Interrupts() as interrupts:
                try:
                    if self.eval_pending:
                        last_eval = self.run_evaluation()
                        if self.completed == config.steps:
                            self.save()
                    for step in range(self.completed + 1, config.steps + 1):
                        row = self.forward_backward(step)
                        with interrupts.deferred():
                            self.commit(step, row)
                        if self.eval_pending:
                            last_eval = self.run_evaluation()
                        due = step % config.checkpoint_every == 0
                        if self.path is not None and (due or step == config.steps):
                            self.save()
                        window.append(row)
                        if len(window) == config.log_every or step == config.steps:
                            bar.set_postfix(_postfix(window, last_eval), refresh=False)
                            window.clear()
                        bar.update(1)
                except KeyboardInterrupt:
                    bar.close()
                    if self.path is not None:
                        self.save()
                        pending = " (evaluation pending)" if self.eval_pending else ""
                        print(
                            f"Interrupted: saved step {self.completed}{pending} to "
                            f"{self.path}; run the same command again to resume."
                        )
                    raise
        finally:
            bar.close()
        return self.history


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
            checkpoint; resuming with a different one raises ``ValueError``.
        progress: show a tqdm bar with the running metrics.

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
    loop = _Loop(
        model,
        optimiser,
        step,
        config,
        evaluate,
        scheduler,
        experiment_to_dict(experiment),
    )
    loop.resume()
    if loop.finished and loop.saved_step is not None:
        print(
            f"Run already finished: loaded step {loop.completed} of {config.steps} "
            f"from {loop.path}; nothing to train."
        )
        return loop.history
    if loop.saved_step is not None:
        print(f"Resuming from step {loop.completed} of {config.steps} ({loop.path}).")
    return loop.run(progress)
