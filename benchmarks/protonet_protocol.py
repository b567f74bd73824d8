"""ProtoNet trained on the published training set (Snell et al.) vs ours.

The metric chapter trains its Prototypical networks on the 1,028 characters of
our ``train`` split, unrotated. :cite:`snell2017prototypical` (following
Vinyals et al.) train on 1,200 characters and add each one rotated by 90, 180
and 270 degrees as new classes: 4,800 classes. This script trains the chapter's
model (Conv-4 embedding, 60-way episodes with 5 queries per class, Adam 1e-3
halved every 2,000 episodes) on a chosen training set and tests it on the
chapter's fixed test episodes (600 per setting, 15 queries per class), so its
numbers can be put next to the chapter's ``paper``-profile ones.

Run: ``python benchmarks/protonet_protocol.py --shots 1 --classes train+val --rotate``
(``--steps`` defaults to the ``paper`` profile's 20,000 episodes; ``--quick``
runs a few steps to check the script). With ``train+val`` there are no held-out
validation characters, so no validation curve is computed, as in the paper's
final runs.
"""

from __future__ import annotations

import argparse
import time

import torch

from metalearn.data.omniglot import omniglot, rotate_classes
from metalearn.episodes import FixedEpisodes
from metalearn.evaluate import evaluate, fixed_test_episodes
from metalearn.experiments import fit
from metalearn.models import Conv4
from metalearn.profiles import get_profile
from metalearn.protonet import make_protonet_step, protonet_classifier
from metalearn.runtime import start_run

TRAIN_WAYS, TRAIN_QUERIES, META_LR, HALVE_EVERY = 60, 5, 1e-3, 2000


def training_classes(data, classes: str, rotate: bool) -> torch.Tensor:
    """``[C, 20, 1, 28, 28]``: the chosen splits, optionally with rotated copies."""
    parts = {"train": ["train"], "train+val": ["train", "val"]}[classes]
    images = torch.cat([data.split(name) for name in parts])
    return rotate_classes(images) if rotate else images


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, choices=(1, 5), required=True)
    parser.add_argument("--classes", choices=("train", "train+val"),
                        default="train+val")
    parser.add_argument("--rotate", action="store_true")
    parser.add_argument("--steps", type=int,
                        default=get_profile("paper").protonet_steps)
    parser.add_argument("--quick", action="store_true",
                        help="a few steps on smoke-profile episodes")
    args = parser.parse_args(argv)

    run = start_run(seed=0, profile="smoke" if args.quick else "paper")
    steps = 3 if args.quick else args.steps
    device, profile = run.device, run.profile
    data = omniglot()
    train_images = training_classes(data, args.classes, args.rotate).to(device)
    test_images = data.split("test").to(device)
    print(f"training classes: {train_images.shape[0]} ({args.classes}"
          f"{', with 90/180/270-degree rotations' if args.rotate else ', unrotated'})")

    torch.manual_seed(run.seed)  # the chapter's initial weights
    embedding = Conv4(hidden=64, head=False).to(device)
    optimiser = torch.optim.Adam(embedding.parameters(), lr=META_LR)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, HALVE_EVERY, 0.5)
    step = make_protonet_step(embedding, train_images, shots=args.shots,
                              queries=TRAIN_QUERIES, ways=TRAIN_WAYS)
    validate = None
    if args.classes == "train":  # the val characters are held out: watch them
        val = FixedEpisodes(data.split("val").to(device), 100, ways=5, shots=args.shots,
                            queries=profile.eval_queries, seed=1)

        def validate() -> dict[str, float]:
            return {"acc": evaluate(protonet_classifier(embedding), val,
                                    progress=False).mean}

    name = (f"protonet-60w{args.shots}s-{args.classes.replace('+', '-')}"
            f"{'-rot' if args.rotate else ''}")
    started = time.perf_counter()
    fitted = fit(name, embedding, optimiser, step, steps, evaluate=validate,
                 eval_every=max(steps // 5, 1), scheduler=scheduler, seed=run.seed,
                 profile=profile, experiment=vars(args),
                 resume=not args.quick)  # --quick writes no checkpoints
    print(fitted.report())

    results = {}
    for ways in (5, 20):
        episodes = fixed_test_episodes(test_images, ways, args.shots, profile)
        accuracy = evaluate(protonet_classifier(embedding), episodes, progress=False)
        results[f"{ways}-way {args.shots}-shot"] = str(accuracy)
        print(f"{ways}-way {args.shots}-shot: {accuracy}  ({episodes})")
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return results


if __name__ == "__main__":
    main()
