"""Seconds per training step of the `paper` configurations, and what they imply.

For each Omniglot training of the `paper` profile (MAML and first-order MAML
with ``vmap`` over tasks and with a loop, Reptile, Prototypical networks), this
times one step (forward + backward, as `metalearn.cost.measure_step`: the
median of 10 after one warm-up) on the default device, and multiplies by the
profile's number of steps to estimate the wall time of a full `paper` run
(optimiser steps and validation excluded). The CUDA peak is the allocator's.

Run: ``python benchmarks/paper_step_times.py [--match SUBSTRING]``, with
``METALEARN_DATA`` pointing at the Omniglot archives (real images are used).
"""

from __future__ import annotations

import argparse

import torch

from metalearn.cost import measure_step
from metalearn.data.omniglot import omniglot
from metalearn.maml import make_maml_step
from metalearn.models import Conv4
from metalearn.profiles import get_profile
from metalearn.protonet import make_protonet_step
from metalearn.reptile import make_reptile_step
from metalearn.runtime import default_device, device_description


def configurations(train: torch.Tensor):
    """(name, make_step, paper steps): the Omniglot trainings of the chapters."""
    paper = get_profile("paper")
    for shots in (1, 5):
        for queries in (1, 15):
            for first_order in (False, True):
                for vectorise in (True, False):
                    name = (
                        f"{'FOMAML' if first_order else 'MAML'} 5w{shots}s "
                        f"q{queries} mb{paper.maml_meta_batch} 1 step "
                        f"{'vmap' if vectorise else 'loop'}"
                    )

                    def make(
                        model,
                        shots=shots,
                        queries=queries,
                        first_order=first_order,
                        vectorise=vectorise,
                    ):
                        return make_maml_step(
                            model,
                            train,
                            ways=5,
                            shots=shots,
                            queries=queries,
                            meta_batch_size=paper.maml_meta_batch,
                            inner_lr=0.4,
                            steps=1,
                            first_order=first_order,
                            vectorise=vectorise,
                        )

                    yield name, Conv4(ways=5), make, paper.maml_iterations
    for shots in (1, 5):
        for vectorise in (False, True):
            name = (
                f"Reptile 5w{shots}s mb{paper.maml_meta_batch} 5 steps "
                f"{'vmap' if vectorise else 'loop'}"
            )

            def make(model, shots=shots, vectorise=vectorise):
                return make_reptile_step(
                    model,
                    train,
                    ways=5,
                    shots=shots,
                    queries=1,
                    meta_batch_size=paper.maml_meta_batch,
                    inner_lr=0.1,
                    steps=5,
                    vectorise=vectorise,
                )

            yield name, Conv4(ways=5), make, paper.reptile_iterations
    for shots in (1, 5):

        def make(model, shots=shots):
            return make_protonet_step(model, train, ways=60, shots=shots, queries=5)

        yield (
            f"ProtoNet 60w{shots}s q5",
            Conv4(head=False),
            make,
            paper.protonet_steps,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--match", default="", help="only rows whose name has this")
    args = parser.parse_args()
    device = default_device()
    print("device:", device_description(device), "torch", torch.__version__, flush=True)
    train = omniglot().split("train").to(device)
    print(
        "| configuration | per step (median of 10) | paper steps | "
        "est. paper time | CUDA peak |"
    )
    for name, model, make, steps in configurations(train):
        if args.match not in name:
            continue
        torch.manual_seed(0)
        cost = measure_step(make(model.to(device)), repeats=10, device=device)
        peak = cost.cuda_peak_bytes
        peak = f"{peak / 2**30:.2f} GiB" if peak is not None else "-"
        print(
            f"| {name} | {cost.seconds * 1000:.1f} ms | {steps} | "
            f"{cost.seconds * steps / 3600:.2f} h | {peak} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
