"""Tests of metalearn.distributed: training on 2 CPU processes (gloo) under torchrun.

The reference for "2 processes train as one" is an independent single-process
loop written here (``zero_grad``, the meta-loss over the union of both ranks'
tasks, ``backward``, ``optimiser.step``), not :func:`metalearn.training.train`:
after the same steps, the distributed run must hold the same parameters and
the same last gradient, within float32 rounding, for MAML, Reptile and ProtoNet.
The reference for "resume is exact" is an uninterrupted distributed run: a run
that crashed and was restarted (new processes) must end bitwise identical.

This file is also the worker that ``torchrun`` executes (``python -m
torch.distributed.run --standalone --nproc_per_node=2 tests/test_distributed.py
PHASE OUT``); the tests below launch it twice (two launches, ~20 s each here).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn import distributed, maml, protonet, reptile
from metalearn.checkpoint import make_checkpoint, save_checkpoint
from metalearn.episodes import EpisodeBatch, sample_episode, sample_episodes
from metalearn.models import Conv4
from metalearn.training import TrainConfig, run_identity, train

SEED = 7  # the run seed of every distributed training below
STEPS = 2  # optimiser steps of the equality runs
TASKS = 3  # B: tasks per rank and step (MAML, Reptile); ProtoNet: 1 episode
WAYS, SHOTS, QUERIES = 3, 1, 2
METHODS = ("maml", "fomaml", "reptile", "protonet")
# A metric that is a mean over tasks, so the mean over ranks is that of all 2B
# tasks. Reptile's surrogate 0.5 ||theta - mean(phi)||^2 is not (its gradient
# is): its recorded loss is the mean of the ranks' surrogates.
TRACKED = {"maml": "loss", "fomaml": "loss", "reptile": "query_loss",
           "protonet": "loss"}


# ---------------------------------------------------------------- the problems


def images() -> torch.Tensor:
    """12 classes of 6 random 16x16 uint8 images (the same on every rank)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (12, 6, 1, 16, 16), dtype=torch.uint8,
                         generator=generator)


def build(method: str) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A seeded Conv-4 (tiny) and plain SGD, so equal gradients give equal steps."""
    torch.manual_seed(0)
    model = Conv4(1, ways=WAYS, hidden=4, image_size=16, head=method != "protonet")
    return model, torch.optim.SGD(model.parameters(), lr=0.5)


def make_step(method: str, model: nn.Module):
    """The library's training step of ``method`` (what a reader would train)."""
    data = images()
    if method == "protonet":
        return protonet.make_protonet_step(
            model, data, ways=WAYS, shots=SHOTS, queries=QUERIES
        )
    common = dict(ways=WAYS, shots=SHOTS, queries=QUERIES, meta_batch_size=TASKS,
                  inner_lr=0.4, steps=1)
    if method == "reptile":
        return reptile.make_reptile_step(model, data, **common)
    return maml.make_maml_step(model, data, first_order=method == "fomaml", **common)


def reference_loss(method: str, model: nn.Module, generators: list[torch.Generator]):
    """``(loss, metrics)`` of one step of a single process over both ranks' tasks."""
    data = images()
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    if method == "protonet":
        episodes = [sample_episode(data, WAYS, SHOTS, QUERIES, g) for g in generators]
        loss = torch.stack([protonet.protonet_loss(model, e)[0] for e in episodes])
        return loss.mean(), {"loss": float(loss.detach().mean())}
    parts = [sample_episodes(data, TASKS, WAYS, SHOTS, QUERIES, g) for g in generators]
    batch = EpisodeBatch(*(torch.cat([getattr(p, f) for p in parts]) for f in (
        "support_x", "support_y", "query_x", "query_y", "classes")))  # 2B tasks
    if method == "reptile":
        return reptile.reptile_loss(model, params, buffers, batch, inner_lr=0.4,
                                    steps=1)
    loss, metrics = maml.meta_loss(model, params, buffers, batch, inner_lr=0.4,
                                   steps=1, first_order=method == "fomaml")
    return loss, {"loss": float(loss.detach()), **metrics}


def reference_run(method: str) -> dict[str, list[torch.Tensor]]:
    """``STEPS`` steps of one process on what ranks 0 and 1 draw together."""
    model, optimiser = build(method)
    generators = [torch.Generator().manual_seed(distributed.rank_seed(SEED, r))
                  for r in range(2)]
    tracked = []
    for _ in range(STEPS):
        optimiser.zero_grad()
        loss, metrics = reference_loss(method, model, generators)
        loss.backward()
        optimiser.step()
        tracked.append(metrics[TRACKED[method]])
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [p.grad.clone() for p in model.parameters()],
        "tracked": tracked,
    }


class NoisyStep:
    """A regression step drawing from the loop's generator and every global RNG.

    Each rank seeds its global RNGs differently, so a resume that restored any
    rank's generators from another rank's states would train on other data.
    """

    def __init__(self, model: nn.Module, crash_at: int | None = None) -> None:
        self.model, self.crash_at, self.calls = model, crash_at, 0

    def __call__(self, generator: torch.Generator):
        self.calls += 1
        if self.calls == self.crash_at:
            raise RuntimeError("simulated crash")
        x = torch.randn(8, 3, generator=generator)  # (batch, features)
        noise = torch.randn(8, 1) * 0.01 + 0.01 * float(np.random.normal())  # noqa: NPY002
        y = torch.sin(x.sum(dim=1, keepdim=True)) + noise + 0.01 * random.random()
        return F.mse_loss(self.model(x), y), {}


def noisy_run(name: str, crash_at: int | None = None):
    """``experiments.fit`` of a small MLP for 6 steps, checkpoints every 2."""
    from metalearn.experiments import fit
    from metalearn.profiles import get_profile

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    seed_globals(100 + distributed.world().rank)  # each rank's noise differs

    def evaluate():
        return {"weight_norm": float(model[0].weight.detach().norm())}

    return model, fit(name, model, optimiser, NoisyStep(model, crash_at), 6,
                      evaluate=evaluate, eval_every=2, seed=SEED,
                      profile=get_profile("smoke"))


# -------------------------------------------------------------- the worker


def seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the test exercises the global RNG
    torch.manual_seed(seed)


def worker(phase: str, out: Path) -> None:
    """What each rank does under torchrun; results go to ``out/<phase>-<rank>``."""
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    sys.stdout = open(out / f"{phase}-stdout-{rank}.txt", "w")  # noqa: SIM115
    import metalearn.training as training

    writes = []
    save = training.save_checkpoint
    training.save_checkpoint = lambda *a, **k: (writes.append(a[0]), save(*a, **k))
    result: dict = {}
    if phase == "first":
        for method in METHODS:
            model, optimiser = build(method)
            history = train(model, optimiser, make_step(method, model),
                            TrainConfig(steps=STEPS, seed=SEED), progress=False)
            result[method] = {
                "params": [p.detach().clone() for p in model.parameters()],
                "grads": [p.grad.clone() for p in model.parameters()],
                "tracked": history.train[TRACKED[method]],
            }
        model, fitted = noisy_run("uninterrupted")
        result["uninterrupted"] = [p.detach().clone() for p in model.parameters()]
        result["uninterrupted_history"] = fitted.history.to_dict()
        try:
            noisy_run("interrupted", crash_at=5)
        except RuntimeError as exc:
            result["crash"] = str(exc)
    else:
        model, fitted = noisy_run("interrupted")
        result["resumed"] = [p.detach().clone() for p in model.parameters()]
        result["resumed_history"] = fitted.history.to_dict()
        result["resumed_from"] = fitted.resumed_from
    result["writes"] = len(writes)
    result["world"] = [distributed.world().rank, distributed.world().size]
    torch.save(result, out / f"{phase}-{rank}.pt")
    sys.stdout.close()


def launch(phase: str, out: Path) -> list[dict]:
    """Run this file on 2 processes with torchrun; each rank's results."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "METALEARN_CACHE": str(out / "cache"),
           "METALEARN_PROGRESS": "0"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", __file__, phase, str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout}\n{done.stderr}"
    return [torch.load(out / f"{phase}-{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both launches: ``first`` (equality runs, a crash at step 5), ``second``."""
    out = tmp_path_factory.mktemp("distributed")
    first = launch("first", out)
    second = launch("second", out)
    stdout = {f"{p}-{r}": (out / f"{p}-stdout-{r}.txt").read_text()
              for p in ("first", "second") for r in (0, 1)}
    return {"first": first, "second": second, "stdout": stdout}


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).detach().abs().max()) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------- the tests


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_two_processes_equal_one_process_over_both_task_sets(runs, method):
    ours = runs["first"][0][method]
    reference = reference_run(method)
    for name in ("params", "grads"):
        for a, b in zip(ours[name], reference[name], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # The recorded metrics are means over both ranks, i.e. over all 2B tasks.
    assert ours["tracked"] == pytest.approx(reference["tracked"], rel=1e-5)
    # and the ranks hold the same weights, bit for bit
    other = runs["first"][1][method]["params"]
    assert all(torch.equal(a, b) for a, b in zip(ours["params"], other, strict=True))


@pytest.mark.slow
def test_the_ranks_draw_different_tasks(runs):
    # If both ranks drew the same tasks, the mean would be one rank's gradient
    # and a single process over B tasks would reproduce it.
    model, optimiser = build("maml")
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(STEPS):
        optimiser.zero_grad()
        reference_loss("maml", model, [generator])[0].backward()
        optimiser.step()
    ours = runs["first"][0]["maml"]["params"]
    assert max_difference(ours, list(model.parameters())) > 1e-4


@pytest.mark.slow
def test_a_crashed_distributed_run_resumes_exactly(runs):
    first, second = runs["first"], runs["second"]
    assert first[0]["crash"] == "simulated crash"
    for rank in (0, 1):
        assert second[rank]["resumed_from"] == 4  # the last periodic checkpoint
        resumed, full = second[rank]["resumed"], first[0]["uninterrupted"]
        assert all(torch.equal(a, b) for a, b in zip(resumed, full, strict=True))
    resumed, full = second[0]["resumed_history"], first[0]["uninterrupted_history"]
    assert resumed["train"]["loss"] == full["train"]["loss"]
    assert resumed["eval"]["weight_norm"] == full["eval"]["weight_norm"]
    assert "Resuming from step 4 of 6" in runs["stdout"]["second-0"]


@pytest.mark.slow
def test_only_rank_zero_writes_and_prints(runs):
    for phase in ("first", "second"):
        main, other = runs[phase]
        assert main["world"] == [0, 2] and other["world"] == [1, 2]
        assert main["writes"] > 0 and other["writes"] == 0
        assert runs["stdout"][f"{phase}-1"] == ""


# ------------------------------------------------ single-process unit tests


def test_rank_seed_keeps_rank_zero_and_separates_the_others():
    assert distributed.rank_seed(5, 0) == 5
    seeds = {distributed.rank_seed(s, r) for s in range(50) for r in range(1, 9)}
    seeds |= set(range(50))
    # distinct in the 32 bits torch's CPU generator keeps
    assert len({s % 2**32 for s in seeds}) == 50 * 9
    with pytest.raises(ValueError, match="rank must be a non-negative int"):
        distributed.rank_seed(0, -1)


def test_helpers_do_nothing_in_a_single_process():
    world = distributed.world()
    assert world == distributed.World(rank=0, size=1) and world.main
    assert distributed.join("cpu") == world
    parameter = nn.Parameter(torch.ones(3))
    parameter.grad = torch.full((3,), 2.0)
    distributed.average_gradients([parameter], world)
    assert torch.equal(parameter.grad, torch.full((3,), 2.0))
    assert distributed.mean_over_ranks([1.5, 2], world) == [1.5, 2.0]
    assert distributed.gather_objects("x", world) == ["x"]
    assert distributed.broadcast_object("y", world) == "y"
    assert distributed.on_main(lambda: 3, world) == 3


def test_each_process_of_torchrun_gets_its_own_gpu(monkeypatch):
    from metalearn.runtime import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert default_device() == torch.device("cuda", 2)
    monkeypatch.delenv("LOCAL_RANK")
    assert default_device() == torch.device("cuda")


def test_bad_world_size_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        distributed.join("cpu")


def test_a_checkpoint_of_two_processes_is_not_resumed_by_one(tmp_path):
    model, optimiser = build("maml")
    step = make_step("maml", model)
    rng = {"unused": 0}
    checkpoint = make_checkpoint(
        step=1, eval_pending=False, model=model, optimiser=optimiser,
        scheduler=None, history={"train_steps": [], "train": {}, "eval_steps": [],
                                 "eval": {}},
        rng=rng, experiment=run_identity(None, step), seed=SEED,
        rng_ranks=[rng, rng])
    assert checkpoint["world_size"] == 2
    folder = tmp_path / "run"
    folder.mkdir()
    save_checkpoint(folder / "last.pt", checkpoint)
    with pytest.raises(ValueError, match="run of 2 process"):
        train(model, optimiser, step, TrainConfig(steps=2, seed=SEED,
                                                  checkpoint_dir=str(folder)),
              progress=False)


if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]))
    if distributed.world().distributed:
        torch.distributed.destroy_process_group()
