"""Tests of metalearn.training: exact resume, SIGTERM, divergence, reproducibility.

The reference for "resume is exact" is an uninterrupted run of the same command:
the resumed run must end with bitwise identical parameters (``torch.equal``) and
an identical history. The tiny problem below draws from every random number
generator a run can use (the loop's generator for data, torch's global RNG via
dropout, NumPy's and Python's global RNGs for noise, and torch's RNG again in
``evaluate``), and uses Adam and a StepLR scheduler, so forgetting to save or
restore any of these states makes the comparison fail.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from metalearn.checkpoint import checkpoint_path, load_checkpoint
from metalearn.training import (
    History,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    train,
)

STEPS = 10


class TinyNet(nn.Module):
    """A small MLP with dropout (so the global torch RNG matters)."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(3, hidden), nn.Tanh(), nn.Dropout(0.2), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the test exercises the global RNG
    torch.manual_seed(seed)


def make_run(hidden: int = 16, lr: float = 0.05):
    """A freshly seeded model, Adam and StepLR (what a notebook would build)."""
    seed_globals(0)
    model = TinyNet(hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=3, gamma=0.5)
    return model, optimiser, scheduler


class Step:
    """A regression step; raises ``kill`` at call number ``kill_at``."""

    def __init__(self, model, kill_at=None, kill=RuntimeError, sleep=0.0, log=False):
        self.model, self.kill_at, self.kill = model, kill_at, kill
        self.sleep, self.log, self.calls = sleep, log, 0

    def __call__(self, generator: torch.Generator):
        self.calls += 1
        x = torch.randn(8, 3, generator=generator)  # (batch, features)
        noise = 0.01 * float(np.random.normal()) + 0.01 * random.random()  # noqa: NPY002
        y = torch.sin(x.sum(dim=1, keepdim=True)) + noise  # (batch, 1)
        error = self.model(x) - y
        if self.calls == self.kill_at:  # after drawing from every RNG
            raise self.kill(f"injected at call {self.calls}")
        if self.sleep:
            time.sleep(self.sleep)
        if self.log:
            print(f"call {self.calls}", flush=True)
        return error.pow(2).mean(), {"mae": error.abs().mean()}  # tensor: loop detaches


class Evaluate:
    """Validation loss on fixed data, plus a draw from torch's global RNG."""

    def __init__(self, model, kill_at=None):
        self.model, self.kill_at, self.calls = model, kill_at, 0
        self.x = torch.linspace(-1, 1, 30).reshape(10, 3)

    def __call__(self):
        self.calls += 1
        probe = float(torch.rand(()))
        if self.calls == self.kill_at:  # after drawing from the RNG
            raise KeyboardInterrupt
        self.model.eval()
        with torch.no_grad():
            mse = (self.model(self.x) - torch.sin(self.x.sum(1, keepdim=True))).pow(2)
        return {"mse": float(mse.mean()), "probe": probe}


def run(directory=None, steps=STEPS, kill_at=None, kill=RuntimeError, eval_kill=None):
    """Train the tiny problem; returns (model, history, step, evaluate)."""
    model, optimiser, scheduler = make_run()
    step = Step(model, kill_at=kill_at, kill=kill)
    evaluate = Evaluate(model, kill_at=eval_kill)
    config = TrainConfig(
        steps=steps,
        eval_every=3,
        checkpoint_every=3,
        checkpoint_dir=None if directory is None else str(directory),
        seed=7,
        log_every=2,
    )
    history = train(
        model,
        optimiser,
        step,
        config,
        evaluate=evaluate,
        scheduler=scheduler,
        experiment={"task": "sine", "hidden": 16},
        progress=False,
    )
    return model, history, step, evaluate


def assert_same_parameters(a: nn.Module, b: nn.Module) -> None:
    for (name, p), (_, q) in zip(
        a.state_dict().items(), b.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), name


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted run (no checkpoints at all)."""
    model, history, _, _ = run()
    return model, history


# ------------------------------------------------------------------ exact resume


@pytest.mark.parametrize(
    ("kill_at", "kill", "eval_kill", "saved_step"),
    [
        (8, RuntimeError, None, 6),  # a crash: resume from the periodic checkpoint
        (8, KeyboardInterrupt, None, 7),  # Ctrl-C in step 8: step 7 is saved
        (None, None, 2, 6),  # Ctrl-C during the evaluation after step 6
    ],
    ids=["exception", "keyboard-interrupt", "interrupt-in-evaluate"],
)
def test_resume_is_bitwise_exact(
    tmp_path, reference, capsys, kill_at, kill, eval_kill, saved_step
):
    expected = RuntimeError if kill is RuntimeError else KeyboardInterrupt
    with pytest.raises(expected):
        run(tmp_path, kill_at=kill_at, kill=kill, eval_kill=eval_kill)
    checkpoint = load_checkpoint(checkpoint_path(tmp_path))
    assert checkpoint["step"] == saved_step
    assert checkpoint["eval_pending"] == (eval_kill is not None)
    capsys.readouterr()

    seed_globals(12345)  # a new session seeds differently; the checkpoint rules
    model, history, step, evaluate = run(tmp_path)
    assert f"Resuming from step {saved_step} of {STEPS}" in capsys.readouterr().out
    assert step.calls == STEPS - saved_step
    reference_model, reference_history = reference
    assert_same_parameters(model, reference_model)
    assert history == reference_history
    assert history.eval_steps == [3, 6, 9, 10]
    assert history.train_steps == list(range(1, STEPS + 1))


def test_reproducible_and_checkpointing_does_not_change_the_run(tmp_path, reference):
    model_a, history_a, _, _ = run()
    model_b, history_b, _, _ = run(tmp_path)  # same run, writing checkpoints
    assert_same_parameters(model_a, model_b)
    assert_same_parameters(model_a, reference[0])
    losses_a = torch.tensor(history_a.train["loss"], dtype=torch.float64)
    losses_b = torch.tensor(history_b.train["loss"], dtype=torch.float64)
    assert torch.equal(losses_a, losses_b)
    assert history_a == history_b == reference[1]
    # And the run learned something, so equality is not between two no-ops.
    assert history_a.train["loss"][-1] != history_a.train["loss"][0]


def test_finished_run_returns_its_history_without_training(tmp_path, capsys):
    trained, history, _, _ = run(tmp_path)
    capsys.readouterr()
    model, history_again, step, evaluate = run(tmp_path)
    assert step.calls == 0 and evaluate.calls == 0
    assert "already finished" in capsys.readouterr().out
    assert history_again == history
    assert_same_parameters(model, trained)  # the final state was loaded


def test_longer_run_continues_a_finished_one(tmp_path, reference):
    run(tmp_path, steps=6)
    model, history, step, _ = run(tmp_path, steps=STEPS)
    assert step.calls == STEPS - 6
    assert_same_parameters(model, reference[0])


# -------------------------------------------------------------------- SIGTERM

SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads({threads})
from test_training import Evaluate, Step, make_run
from metalearn.training import TrainConfig, train
model, optimiser, scheduler = make_run()
config = TrainConfig(steps={steps}, eval_every=3, checkpoint_every=10**6,
                     checkpoint_dir={directory!r}, seed=7, log_every=2)
train(model, optimiser, Step(model, sleep=0.05, log=True), config,
      evaluate=Evaluate(model), scheduler=scheduler,
      experiment={{"task": "sine", "hidden": 16}}, progress=False)
"""


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_resume_is_exact(tmp_path):
    steps = 40
    script = SCRIPT.format(
        tests=str(Path(__file__).parent),
        threads=torch.get_num_threads(),
        steps=steps,
        directory=str(tmp_path),
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for line in process.stdout:  # wait until the run is mid-way
            if line.strip() == "call 5":
                break
        sent = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        for line in process.stdout:  # the handler's checkpoint is on disk now
            if line.startswith("Interrupted: saved step"):
                saved_seconds = time.perf_counter() - sent
                break
        _, stderr = process.communicate(timeout=60)
        exit_seconds = time.perf_counter() - sent
    finally:
        process.kill()
    assert process.returncode != 0
    assert "TrainingInterrupted" in stderr, stderr
    # checkpoint_every is huge, so this checkpoint was written by the handler.
    saved = load_checkpoint(checkpoint_path(tmp_path))["step"]
    assert 4 <= saved < steps

    seed_globals(999)
    model, optimiser, scheduler = make_run()
    config = TrainConfig(
        steps=steps, eval_every=3, checkpoint_every=10**6, seed=7, log_every=2
    )
    kwargs = {"experiment": {"task": "sine", "hidden": 16}, "progress": False}
    resumed = TrainConfig(**{**config.__dict__, "checkpoint_dir": str(tmp_path)})
    step = Step(model)
    started = time.perf_counter()
    history = train(
        model,
        optimiser,
        step,
        resumed,
        evaluate=Evaluate(model),
        scheduler=scheduler,
        **kwargs,
    )
    resume_seconds = time.perf_counter() - started
    assert step.calls == steps - saved
    # The cost of resuming alone: load, check and restore a finished run.
    started = time.perf_counter()
    train(model, optimiser, step, resumed, scheduler=scheduler, **kwargs)
    overhead_seconds = time.perf_counter() - started
    assert step.calls == steps - saved

    seed_globals(0)
    reference_model, optimiser, scheduler = make_run()
    reference_history = train(
        reference_model,
        optimiser,
        Step(reference_model),
        config,
        evaluate=Evaluate(reference_model),
        scheduler=scheduler,
        **kwargs,
    )
    assert_same_parameters(model, reference_model)
    assert history == reference_history
    print(
        f"\nSIGTERM during call 5: checkpoint of step {saved} written "
        f"{saved_seconds * 1e3:.0f} ms after the signal (process gone after "
        f"{exit_seconds:.2f} s); resuming (load + check + restore) takes "
        f"{overhead_seconds * 1e3:.1f} ms; the resumed run of {steps - saved} "
        f"steps took {resume_seconds:.3f} s"
    )


def test_sigterm_in_process_saves_last_completed_step(tmp_path):
    class TerminatingStep(Step):
        def __call__(self, generator):
            output = super().__call__(generator)
            if self.calls == 5:
                os.kill(os.getpid(), signal.SIGTERM)  # handled before returning
                time.sleep(0.5)
            return output

    model, optimiser, scheduler = make_run()
    config = TrainConfig(
        steps=STEPS, eval_every=3, checkpoint_every=100, checkpoint_dir=str(tmp_path)
    )
    with pytest.raises(TrainingInterrupted, match="SIGTERM"):
        train(model, optimiser, TerminatingStep(model), config, progress=False)
    assert load_checkpoint(checkpoint_path(tmp_path))["step"] == 4


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler for the test, whatever the runner installed.

    A shell starts background jobs with SIGINT ignored, and ``_Interrupts``
    rightly leaves an ignored signal alone, so without this the test would
    depend on how pytest was launched.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_signal_during_the_update_is_held_until_it_is_applied(python_sigint_handler):
    from metalearn.interrupts import Interrupts as _Interrupts

    applied = []
    with _Interrupts() as interrupts, pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, and must not raise yet
            applied.append(True)
    assert applied == [True]


def test_signal_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    run(tmp_path, steps=2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", kill_at=2, kill=KeyboardInterrupt)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert issubclass(TrainingInterrupted, KeyboardInterrupt)


# ------------------------------------------------------------- divergence guard


def nan_at(step_fn: Step, k: int):
    def step(generator):
        loss, metrics = step_fn(generator)
        if step_fn.calls == k:
            loss = loss * math.nan
        return loss, metrics

    return step


def test_nan_loss_stops_at_its_step_and_keeps_last_good_checkpoint(tmp_path):
    model, optimiser, scheduler = make_run()
    config = TrainConfig(steps=STEPS, checkpoint_every=3, checkpoint_dir=str(tmp_path))
    with pytest.raises(TrainingDiverged) as error:
        train(
            model,
            optimiser,
            nan_at(Step(model), 8),
            config,
            scheduler=scheduler,
            progress=False,
        )
    message = str(error.value)
    assert "step 8" in message and "nan" in message
    assert "learning rate" in message and "meta_lr" in message
    assert "step 6" in message  # the checkpoint that is kept
    assert error.value.step == 8 and math.isnan(error.value.loss)
    assert isinstance(error.value, FloatingPointError)
    assert load_checkpoint(checkpoint_path(tmp_path))["step"] == 6

    # The bad update was not applied: the model is the one after 7 good steps.
    reference, optimiser, scheduler = make_run()
    train(
        reference,
        optimiser,
        Step(reference),
        TrainConfig(steps=7),
        scheduler=scheduler,
        progress=False,
    )
    assert_same_parameters(model, reference)


def test_infinite_gradient_with_finite_loss_is_caught():
    model, optimiser, _ = make_run()

    def step(generator):
        weight = model.layers[0].weight
        # sqrt'(0) = inf: the loss is 0 but its gradient is infinite.
        return torch.sqrt(weight.sum() - weight.sum().detach()), {}

    with pytest.raises(TrainingDiverged, match=r"step 1: the gradient of "):
        train(model, optimiser, step, TrainConfig(steps=3), progress=False)


# --------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"steps": 0}, ValueError, r"TrainConfig\.steps .* got 0"),
        ({"steps": -5}, ValueError, r"TrainConfig\.steps .* got -5"),
        ({"steps": 10.0}, TypeError, r"TrainConfig\.steps .* 10\.0"),
        ({"steps": True}, TypeError, r"TrainConfig\.steps"),
        ({"steps": 5, "eval_every": 0}, ValueError, r"eval_every .* got 0"),
        ({"steps": 5, "checkpoint_every": -1}, ValueError, r"checkpoint_every"),
        ({"steps": 5, "log_every": 0}, ValueError, r"log_every .* got 0"),
        ({"steps": 5, "seed": -1}, ValueError, r"seed .* got -1"),
        ({"steps": 5, "seed": 1.5}, TypeError, r"seed .* 1\.5"),
        ({"steps": 5, "checkpoint_dir": ""}, ValueError, r"checkpoint_dir"),
        ({"steps": 5, "checkpoint_dir": 3}, TypeError, r"checkpoint_dir .* 3"),
    ],
)
def test_train_config_validation(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        TrainConfig(**kwargs)


def test_train_config_accepts_paths(tmp_path):
    assert TrainConfig(steps=1, checkpoint_dir=tmp_path).checkpoint_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("output", "error", "pattern"),
    [
        (lambda m: m(torch.ones(2, 3)).sum(), TypeError, r"tuple \(loss, metrics\)"),
        (lambda m: (m(torch.ones(2, 3)), {}), ValueError, r"one-element .* \(2, 1\)"),
        (lambda m: (torch.tensor(1.0), {}), ValueError, r"no autograd graph"),
        (lambda m: (m(torch.ones(1, 3)).sum(), [1]), TypeError, r"dict of metric"),
        (lambda m: (m(torch.ones(1, 3)).sum(), {"a": "x"}), TypeError, r"'a'"),
    ],
)
def test_malformed_step_output_is_rejected(output, error, pattern):
    model, optimiser, _ = make_run()
    with pytest.raises(error, match=pattern):
        train(
            model,
            optimiser,
            lambda g: output(model),
            TrainConfig(steps=2),
            progress=False,
        )


def test_bad_arguments_are_rejected():
    model, optimiser, _ = make_run()
    step = Step(model)
    config = TrainConfig(steps=1)
    with pytest.raises(TypeError, match="model"):
        train("model", optimiser, step, config)
    with pytest.raises(TypeError, match="optimiser"):
        train(model, [optimiser], step, config)
    with pytest.raises(TypeError, match="step"):
        train(model, optimiser, 3, config)
    with pytest.raises(TypeError, match="config"):
        train(model, optimiser, step, {"steps": 1})
    with pytest.raises(TypeError, match="scheduler"):
        train(model, optimiser, step, config, scheduler="cosine")
    with pytest.raises(TypeError, match="experiment"):
        train(model, optimiser, step, config, experiment=[1, 2])


# ----------------------------------------------------------------- bookkeeping


def test_history_round_trip_and_consistency():
    history = History()
    history.record_train(1, {"loss": 1.0, "acc": 0.5})
    history.record_train(2, {"loss": 0.5, "acc": 0.75})
    history.record_eval(2, {"acc": 0.6})
    assert History.from_dict(history.to_dict()) == history
    with pytest.raises(ValueError, match="same names"):
        history.record_train(3, {"loss": 0.1})
    with pytest.raises(ValueError, match="'acc' has 1 values for 2 steps"):
        History.from_dict({**history.to_dict(), "train": {"acc": [0.1]}})


def test_evaluation_schedule_mode_and_progress_bar(capsys, monkeypatch):
    monkeypatch.setenv("METALEARN_PROGRESS", "1")  # a person is watching
    model, optimiser, _ = make_run()
    seen_modes = []

    def evaluate():
        seen_modes.append(model.training)
        model.eval()
        return {"acc": 0.5}

    history = train(
        model,
        optimiser,
        Step(model),
        TrainConfig(steps=7, eval_every=3, log_every=2),
        evaluate=evaluate,
        progress=True,
    )
    assert history.eval_steps == [3, 6, 7]
    assert seen_modes == [True, True, True]
    assert model.training  # evaluate's model.eval() was undone
    assert set(history.train) == {"loss", "mae"}
    assert "train" in capsys.readouterr().err  # the bar was shown


def test_a_changed_step_hyperparameter_is_refused_on_resume(tmp_path):
    """The step's identity (e.g. MAML's inner_lr) is part of the checkpoint."""
    from metalearn.maml import make_maml_step
    from metalearn.models import Conv4

    images = torch.randint(0, 256, (6, 4, 1, 16, 16), dtype=torch.uint8)

    def run_with(inner_lr: float) -> None:
        torch.manual_seed(0)
        model = Conv4(1, 3, hidden=4, image_size=16)
        step = make_maml_step(model, images, ways=3, shots=1, queries=1,
                              meta_batch_size=2, inner_lr=inner_lr, steps=1,
                              first_order=True)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        config = TrainConfig(steps=2, checkpoint_dir=str(tmp_path), eval_every=2)
        train(model, optimiser, step, config, progress=False)

    run_with(0.4)
    run_with(0.4)  # the same run: loads the finished checkpoint
    with pytest.raises(ValueError, match=r"'inner_lr': 0\.4.*'inner_lr': 0\.1"):
        run_with(0.1)
