"""Which learning rate, training classes and episode size suit the `short` budget?

Trains one Conv-4 ProtoNet embedding (channels-last filters, seed 0) for a fixed
number of episodes with Adam and cosine annealing from ``--lr`` to 0, through
:func:`metalearn.experiments.fit` (no checkpoints), then measures its accuracy on
fixed *validation* episodes (the `val` characters, seed 1, 15 queries per class:
300 5-way 1-shot, 200 20-way 1-shot and 200 5-way 5-shot episodes). The test
episodes are not touched, so a choice made from these numbers does not peek at
the test set. The metric chapter took its `short` settings from the runs in
`benchmarks/results/protonet_short_budget_cpu.txt`.

Run: ``python benchmarks/protonet_short_budget.py --name c_rot_lr3e-3 --ways 60
--shots 1 --queries 5 --lr 3e-3 --steps 1300 --rotate`` (``--rotate`` adds the
90/180/270-degree rotations of the `train` characters as new classes; ``--quick``
runs 3 episodes and 4 validation episodes per setting, to check the script). It
prints a JSON line with the training time and the validation accuracies (mean and
95% CI half-width, in %) and, with ``--out DIR``, writes ``DIR/NAME.json`` and the
embedding's weights ``DIR/NAME.pt``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from metalearn.data import omniglot, rotate_classes
from metalearn.episodes import FixedEpisodes
from metalearn.evaluate import evaluate
from metalearn.experiments import fit
from metalearn.models import Conv4
from metalearn.protonet import make_protonet_step, protonet_classifier

VALIDATION = [(5, 1, 300), (20, 1, 200), (5, 5, 200)]  # ways, shots, episodes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--ways", type=int, default=60)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, default=1300)
    parser.add_argument("--rotate", action="store_true")
    parser.add_argument("--out", type=Path, help="folder for NAME.json and NAME.pt")
    parser.add_argument("--quick", action="store_true", help="check the script")
    args = parser.parse_args(argv)
    steps = 3 if args.quick else args.steps

    data = omniglot()
    train, val = data.split("train"), data.split("val")
    if args.rotate:
        train = rotate_classes(train)
    print(f"training classes: {len(train)}", flush=True)
    torch.manual_seed(0)
    embedding = Conv4(hidden=64, head=False).to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(embedding.parameters(), args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    step = make_protonet_step(embedding, train, ways=args.ways, shots=args.shots,
                              queries=args.queries)
    fitted = fit(args.name, embedding, optimiser, step, steps, scheduler=scheduler,
                 seed=0, resume=False)
    result = {"name": args.name, "config": {**vars(args), "out": str(args.out)},
              "train_s": round(fitted.seconds, 1), "threads": torch.get_num_threads()}
    for ways, shots, count in VALIDATION:
        episodes = FixedEpisodes(val, 4 if args.quick else count, ways=ways,
                                 shots=shots, queries=15, seed=1)
        accuracy = evaluate(protonet_classifier(embedding), episodes, progress=False)
        result[f"{ways}w{shots}s"] = [round(100 * accuracy.mean, 2),
                                      round(100 * accuracy.ci95, 2)]
    print(json.dumps(result), flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.json").write_text(json.dumps(result))
        torch.save(embedding.state_dict(), args.out / f"{args.name}.pt")
    return result


if __name__ == "__main__":
    main()
