"""Does ``torch.compile`` speed up MAML's query pass on a CPU?

In the 15-query rows of ``benchmarks/maml_step.py`` the query pass (75 images
per task through the Conv-4 at the adapted weights, then its backward) is most
of a meta-iteration. ``torch.compile`` cannot compile the twice-differentiated
support pass of second-order MAML (no double backward through compiled
graphs), but it can compile the query pass, which is differentiated once.
This script runs the meta-iteration of our loop (``metalearn.maml.adapt`` per
task, then the query loss) with the query pass eager and compiled
(``torch.compile``, inductor, static shapes), checks that the meta-gradients
agree with each other and with learn2learn's, and prints the median time of
``--repeats`` meta-iterations of each, and of learn2learn's clone/adapt loop,
after one warm-up (the compiled version's first call, which compiles, is
timed separately).

Run: ``python benchmarks/maml_compile_query.py [--queries 15] [--repeats 6]``.
The images are random: the time of a meta-iteration does not depend on them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from metalearn import maml
from metalearn.episodes import sample_episodes
from metalearn.models import Conv4
from metalearn.runtime import device_description

with contextlib.redirect_stderr(io.StringIO()):  # gym's notice on import
    import learn2learn as l2l

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks is no package
from maml_step import learn2learn_loss, random_images, relative  # noqa: E402

INNER_LR = 0.4


def median_seconds(compute: Callable[[], torch.Tensor], repeats: int) -> float:
    compute()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compute()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    images = random_images(generator)
    batch = sample_episodes(images, args.tasks, 5, 1, args.queries, generator)
    torch.manual_seed(0)
    model = Conv4(1, ways=5, hidden=args.hidden)
    params = dict(model.named_parameters())

    def query_logits(weights, x):
        return functional_call(model, weights, (x,))

    compiled = torch.compile(query_logits, dynamic=False)
    hardware = device_description(torch.device("cpu"))
    print(f"hardware: {hardware}, torch {torch.__version__}")
    print(f"config: Conv4({args.hidden}), 5-way 1-shot, queries per class: "
          f"{args.queries}, meta-batch {args.tasks}, 1 inner step, median of "
          f"{args.repeats} after 1 warm-up")
    results: dict = {}

    def ours(query_pass, first_order: bool) -> torch.Tensor:
        model.zero_grad()
        losses = []
        for i in range(args.tasks):
            adapted = maml.adapt(model, params, {}, batch.support_x[i],
                                 batch.support_y[i], inner_lr=INNER_LR, steps=1,
                                 first_order=first_order)
            logits = query_pass(adapted, batch.query_x[i])
            losses.append(F.cross_entropy(logits, batch.query_y[i]))
        torch.stack(losses).mean().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    def theirs(wrapped) -> torch.Tensor:
        model.zero_grad()
        learn2learn_loss(wrapped, batch, F.cross_entropy).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    for first_order in (False, True):
        eager_step = partial(ours, query_logits, first_order)
        compiled_step = partial(ours, compiled, first_order)
        learn2learn_step = partial(
            theirs, l2l.algorithms.MAML(model, lr=INNER_LR, first_order=first_order))
        start = time.perf_counter()
        with_compile = compiled_step()
        first_call = time.perf_counter() - start
        eager, reference = eager_step(), learn2learn_step()
        row = {
            "compiled_vs_eager": relative(with_compile, eager),
            "eager_vs_learn2learn": relative(eager, reference),
            "first_compiled_call_s": first_call,
            "eager_s": median_seconds(eager_step, args.repeats),
            "compiled_s": median_seconds(compiled_step, args.repeats),
            "learn2learn_s": median_seconds(learn2learn_step, args.repeats),
        }
        order = "first-order" if first_order else "second-order"
        results[order] = row
        print(f"{order}: eager query pass {row['eager_s']:.3f} s, compiled "
              f"{row['compiled_s']:.3f} s (first call {first_call:.1f} s), "
              f"learn2learn {row['learn2learn_s']:.3f} s; gradient rel. diff "
              f"compiled/eager {row['compiled_vs_eager']:.1e}, eager/learn2learn "
              f"{row['eager_vs_learn2learn']:.1e}", flush=True)
    return results


if __name__ == "__main__":
    main()
