"""How precise is a float32 MAML meta-gradient at full size, path by path?

The configuration of ``benchmarks/maml_step.py`` (Conv-4 with 64 filters,
random 28x28 images, 5-way 1-shot, meta-batch 32, one inner step with inner
lr 0.4, ``--queries`` per class). For second- and first-order MAML it computes
the meta-gradient with our loop, our vmap path and learn2learn's clone/adapt
loop, each in
float32 and in float64, and prints every one's relative difference from our
loop in float64. Then it multiplies the float64 weights by
``1 + 1e-7 * noise`` (about float32's rounding, 6e-8) a few times and prints
how far the float64 meta-gradient itself moves: when it moves by as much as
the float32 paths differ, the float32 differences come from the conditioning
of the function (pre-activations within rounding of ReLU's kink, near-ties of
the max-pool), not from a wrong path.

Run: ``python benchmarks/meta_gradient_precision.py [--queries 1] [--draws 4]``
(``--hidden`` and ``--tasks`` shrink the network and the meta-batch, for tests).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from metalearn.episodes import EpisodeBatch, sample_episodes
from metalearn.models import Conv4
from metalearn.runtime import device_description

with contextlib.redirect_stderr(io.StringIO()):  # gym's notice on import
    import learn2learn as l2l

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks is no package
from maml_step import learn2learn_loss, our_loss, random_images, relative  # noqa: E402

INNER_LR = 0.4
PATHS = ("loop", "vmap", "learn2learn")


def as_dtype(batch: EpisodeBatch, dtype: torch.dtype) -> EpisodeBatch:
    """The batch with its images in ``dtype`` (labels unchanged)."""
    return dataclasses.replace(batch, support_x=batch.support_x.to(dtype),
                               query_x=batch.query_x.to(dtype))


def meta_gradient(model, batch, path: str, first_order: bool) -> torch.Tensor:
    """The flat meta-gradient of the mean query loss, in float64."""
    model.zero_grad()
    if path == "learn2learn":
        wrapped = l2l.algorithms.MAML(model, lr=INNER_LR, first_order=first_order)
        loss = learn2learn_loss(wrapped, batch, F.cross_entropy)
    else:
        loss = our_loss(model, batch, F.cross_entropy, first_order=first_order,
                        vectorise=path == "vmap", inner_lr=INNER_LR)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).double()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=32)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    images = random_images(generator)
    batch = sample_episodes(images, args.tasks, 5, 1, args.queries, generator)
    batches = {torch.float32: batch, torch.float64: as_dtype(batch, torch.float64)}
    torch.manual_seed(0)
    models = {torch.float32: Conv4(1, ways=5, hidden=args.hidden)}
    models[torch.float64] = copy.deepcopy(models[torch.float32]).double()
    print(f"hardware: {device_description(torch.device('cpu'))}")
    print(f"config: Conv4({args.hidden}), 5-way 1-shot, queries per class: "
          f"{args.queries}, meta-batch {args.tasks}, 1 inner step; relative "
          "difference from our loop in float64")
    results: dict = {}
    for first_order in (False, True):
        order = "first-order" if first_order else "second-order"
        gradients = {
            (path, dtype): meta_gradient(models[dtype], batches[dtype], path,
                                         first_order)
            for path in PATHS for dtype in (torch.float64, torch.float32)
        }
        reference = gradients["loop", torch.float64]
        for dtype, name in ((torch.float64, "float64"), (torch.float32, "float32")):
            for path in PATHS:
                results[order, name, path] = relative(gradients[path, dtype], reference)
            cells = ", ".join(
                f"{path} {results[order, name, path]:.1e}" for path in PATHS)
            print(f"{order} {name}: {cells}")
    model = models[torch.float64]
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    reference = meta_gradient(model, batches[torch.float64], "loop", False)
    noise = torch.Generator().manual_seed(1)
    moves = []
    for _ in range(args.draws):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(base[name] * (1 + 1e-7 * torch.randn(
                    p.shape, generator=noise, dtype=torch.float64)))
        moves.append(relative(
            meta_gradient(model, batches[torch.float64], "loop", False), reference))
    print("second-order float64 meta-gradient moved by "
          + ", ".join(f"{m:.1e}" for m in moves)
          + " under weights * (1 + 1e-7 * noise), one draw each")
    results["moves"] = moves
    return results


if __name__ == "__main__":
    main()
