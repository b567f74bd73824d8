"""Time one MAML meta-iteration: ours (torch.func: vmap or loop) vs learn2learn.

The configuration is the Omniglot one of the MAML chapter: Conv-4 (64
channels), 28x28 images, 5-way 1-shot, meta-batch 32, one inner step with
``inner_lr = 0.4``, second- and first-order, with 1 and with 15 query examples
per class. A meta-iteration is ``zero_grad``, the meta-loss over the meta-batch,
``backward`` and ``Adam.step``. Each row reports the median of ``--repeats``
timed iterations after ``--warmup`` untimed ones, all in this one process, and
a ``ratio:`` line (learn2learn time / our time: > 1 means ours is faster).
Before timing, the meta-gradients of both implementations are compared on the
same weights and batch. A last row compares sinusoid meta-iterations per
second (MLP 1-40-40-1, meta-batch 25, K = 10, one inner step).

Run: ``python benchmarks/maml_step.py [--out results.json] [--quick]``.
The images are random: the time of a meta-iteration does not depend on them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from metalearn import maml
from metalearn.episodes import sample_episodes
from metalearn.models import MLP, Conv4
from metalearn.runtime import device_description
from metalearn.sinusoid import sample_sinusoid_tasks

with contextlib.redirect_stderr(io.StringIO()):  # gym's notice on import
    import learn2learn as l2l


def learn2learn_loss(wrapped, batch, loss_fn) -> torch.Tensor:
    """Mean query loss after one ``adapt`` per task (learn2learn's loop)."""
    losses = []
    for i in range(batch.support_x.shape[0]):
        learner = wrapped.clone()
        learner.adapt(loss_fn(learner(batch.support_x[i]), batch.support_y[i]))
        losses.append(loss_fn(learner(batch.query_x[i]), batch.query_y[i]))
    return torch.stack(losses).mean()


def our_loss(model, batch, loss_fn, *, first_order, vectorise, inner_lr):
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    loss, _ = maml.meta_loss(
        model,
        params,
        buffers,
        batch,
        inner_lr=inner_lr,
        steps=1,
        first_order=first_order,
        loss_fn=loss_fn,
        vectorise=vectorise,
    )
    return loss


def random_images(generator: torch.Generator) -> torch.Tensor:
    """200 classes of 20 random 28x28 uint8 images (timings do not depend on them)."""
    return torch.randint(
        0, 256, (200, 20, 1, 28, 28), dtype=torch.uint8, generator=generator
    )


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """The relative difference ``|a - b| / |b|`` (Euclidean norms)."""
    return float((a - b).norm() / b.norm())


def gradient(model, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    model.zero_grad()
    compute().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def median_seconds(model, compute, warmup: int, repeats: int) -> float:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        optimiser.zero_grad()
        compute().backward()
        optimiser.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def omniglot_rows(args) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    images = random_images(generator)
    rows = []
    for queries in (1, 15):
        batch = sample_episodes(images, args.meta_batch, 5, 1, queries, generator)
        for first_order in (False, True):
            torch.manual_seed(0)
            model = Conv4(1, ways=5, hidden=args.hidden)
            wrapped = l2l.algorithms.MAML(
                model, lr=args.inner_lr, first_order=first_order
            )
            theirs = partial(learn2learn_loss, wrapped, batch, F.cross_entropy)
            row = {"queries": queries, "first_order": first_order}
            ours = {
                name: partial(
                    our_loss,
                    model,
                    batch,
                    F.cross_entropy,
                    first_order=first_order,
                    vectorise=name == "vmap",
                    inner_lr=args.inner_lr,
                )
                for name in ("vmap", "loop")
            }
            # Gradients first, all at the same weights (timing updates them).
            reference = gradient(model, theirs)
            for name, compute in ours.items():
                diff = (gradient(model, compute) - reference).abs().max()
                row[f"{name}_grad_rel_diff"] = float(diff / reference.abs().max())
            for name, compute in ours.items():
                row[f"{name}_s"] = median_seconds(
                    model, compute, args.warmup, args.repeats
                )
            row["learn2learn_s"] = median_seconds(
                model, theirs, args.warmup, args.repeats
            )
            rows.append(row)
    return rows


def sinusoid_row(args) -> dict:
    generator = torch.Generator().manual_seed(0)
    batch = sample_sinusoid_tasks(25, 10, 10, generator)
    torch.manual_seed(0)
    model = MLP()
    wrapped = l2l.algorithms.MAML(model, lr=0.01)

    def ours():
        return our_loss(
            model, batch, F.mse_loss, first_order=False, vectorise=True, inner_lr=0.01
        )

    def theirs():
        return learn2learn_loss(wrapped, batch, F.mse_loss)

    repeats = args.repeats * 10
    return {
        "ours_it_per_s": 1 / median_seconds(model, ours, args.warmup, repeats),
        "learn2learn_it_per_s": 1 / median_seconds(model, theirs, args.warmup, repeats),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, to check that the script runs"
    )
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.meta_batch, args.hidden, args.warmup, args.repeats = 2, 4, 1, 1
    hardware = (
        f"{device_description(torch.device('cpu'))}, torch "
        f"{torch.__version__}, python {platform.python_version()}"
    )
    print(f"hardware: {hardware}")
    print(
        f"config: Conv4({args.hidden}), 5-way 1-shot, meta-batch "
        f"{args.meta_batch}, 1 inner step, median of {args.repeats} after "
        f"{args.warmup} warm-up"
    )
    results = {
        "hardware": hardware,
        "omniglot": omniglot_rows(args),
        "sinusoid": sinusoid_row(args),
    }
    for row in results["omniglot"]:
        order = "first" if row["first_order"] else "second"
        print(
            f"queries={row['queries']:2d} {order:>6}-order: "
            f"vmap {row['vmap_s']:.3f} s, loop {row['loop_s']:.3f} s, "
            f"learn2learn {row['learn2learn_s']:.3f} s; "
            f"gradient rel. diff {row['vmap_grad_rel_diff']:.1e} / "
            f"{row['loop_grad_rel_diff']:.1e}"
        )
        best = min(row["vmap_s"], row["loop_s"])
        print(f"ratio: {row['learn2learn_s'] / best:.2f} (learn2learn / best of ours)")
    sinusoid = results["sinusoid"]
    print(
        f"sinusoid: ours {sinusoid['ours_it_per_s']:.0f} it/s, learn2learn "
        f"{sinusoid['learn2learn_it_per_s']:.0f} it/s"
    )
    print(
        f"ratio: {sinusoid['ours_it_per_s'] / sinusoid['learn2learn_it_per_s']:.2f}"
        " (sinusoid)"
    )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
