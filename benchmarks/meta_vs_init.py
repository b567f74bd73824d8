"""Did meta-training help? The Omniglot MAML chapter's models against their own start.

Each model of ``chapters/maml_omniglot.ipynb`` starts from the same Conv-4
initialisation (``torch.manual_seed(0)``, then ``Conv4(ways=5)``) and is tested
by adapting to each episode's support set with its own inner loop (MAML and
FOMAML: 3 SGD steps of 0.4; Reptile: 10 steps of 0.1). This script applies the
same test-time procedure to the meta-trained weights (read from the chapter's
checkpoints) and to that untrained initialisation, on the chapter's validation
episodes (5-way, 15 queries per class, seed 1), so the difference is what
meta-training added. Run the chapter first, in the same profile.

Run: ``METALEARN_PROFILE=short python benchmarks/meta_vs_init.py``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from metalearn.checkpoint import load_checkpoint
from metalearn.data.omniglot import omniglot
from metalearn.episodes import FixedEpisodes
from metalearn.evaluate import evaluate
from metalearn.experiments import CHECKPOINT_FILE, checkpoint_dir
from metalearn.maml import maml_classifier
from metalearn.models import Conv4
from metalearn.profiles import get_profile
from metalearn.runtime import device_description

# checkpoint name in the chapter -> (K of its test episodes, test-time inner_lr,
# test-time steps). Reptile meta-trains on 10 images per class whatever K is, so
# the chapter tests one Reptile model in both settings.
MODELS = {
    "maml-5w1s": ((1,), 0.4, 3),
    "fomaml-5w1s": ((1,), 0.4, 3),
    "maml-5w5s": ((5,), 0.4, 3),
    "fomaml-5w5s": ((5,), 0.4, 3),
    "reptile-5w-train10s": ((1, 5), 0.1, 10),
}


def main(argv: list[str] | None = None) -> dict[str, dict[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="default: METALEARN_PROFILE")
    parser.add_argument("--models", nargs="*", default=list(MODELS),
                        choices=list(MODELS))
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    device = torch.device("cpu")
    print(f"profile {profile.name}; {device_description(device)}")

    missing = [n for n in args.models
               if not (checkpoint_dir(n, profile) / CHECKPOINT_FILE).is_file()]
    if missing:
        folder = checkpoint_dir(missing[0], profile).parent
        sys.exit(f"No checkpoint for {', '.join(missing)} in {folder}: execute "
                 f"chapters/maml_omniglot.ipynb with METALEARN_PROFILE={profile.name} "
                 "first.")

    val_images = omniglot().split("val")
    count = max(profile.eval_episodes // 6, 5)  # as the chapter's validation set
    results = {}
    for name in args.models:
        all_shots, inner_lr, steps = MODELS[name]
        torch.manual_seed(0)
        initial = Conv4(ways=5)
        trained = Conv4(ways=5)
        state = load_checkpoint(checkpoint_dir(name, profile) / CHECKPOINT_FILE)
        trained.load_state_dict(state["model"])
        for shots in all_shots:
            episodes = FixedEpisodes(val_images, count=count, ways=5, shots=shots,
                                     queries=15, seed=1)
            row = {}
            for label, model in (("initialisation", initial),
                                 ("meta-trained", trained)):
                classify = maml_classifier(model, inner_lr=inner_lr, steps=steps)
                row[label] = str(evaluate(classify, episodes, progress=False))
            results[f"{name} 5w{shots}s"] = row
            print(f"{name}, 5-way {shots}-shot (step {state['step']}; {steps} x SGD "
                  f"{inner_lr} on the support set, {count} val episodes): "
                  f"initialisation {row['initialisation']}, "
                  f"meta-trained {row['meta-trained']}", flush=True)
    return results


if __name__ == "__main__":
    main()
