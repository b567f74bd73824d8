"""Run profiles: one variable, ``METALEARN_PROFILE``, sets every budget in the book.

Three profiles exist:

``smoke``
    Seconds per notebook. Used by CI (``nbval``) to prove that every notebook
    runs; its numbers are not meant to be read.
``short``
    Minutes on a laptop CPU, and still shows real learning. The outputs stored
    in the committed notebooks come from this profile (or from ``paper``).
``paper``
    The published protocol (600 test episodes, full training), for a GPU.

The default is ``paper`` when CUDA is available and ``short`` otherwise.
Chapters read their budgets from the :class:`Profile` returned by
:func:`get_profile`; no chapter hard-codes a budget.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

ENV_VAR = "METALEARN_PROFILE"


@dataclass(frozen=True)
class Profile:
    """The budgets of one run profile."""

    name: str  # "smoke", "short" or "paper"
    description: str  # one line for the run header
    eval_episodes: int  # fixed test episodes per setting (600 is the standard)
    eval_queries: int  # query examples per class in a test episode
    eval_seed: int  # seed of the fixed test episodes shared by all chapters
    # Sinusoid regression (MAML chapter): meta-iterations of MAML, and optimiser
    # steps of the jointly pre-trained baseline (70,000 in Finn et al. 2017).
    sinusoid_meta_iterations: int = 70_000
    # Sinusoid regression: new test tasks for the MSE-vs-steps curves (600).
    sinusoid_test_tasks: int = 600
    # Omniglot MAML and first-order MAML: meta-iterations per model (60,000 in
    # Finn et al. 2017) and tasks per meta-batch (32 for 5-way in the paper).
    maml_iterations: int = 60_000
    maml_meta_batch: int = 32
    # The same for 5-shot tasks; fewer outside ``paper`` because a 5-shot
    # meta-iteration costs about five 1-shot ones on a CPU.
    maml_5shot_iterations: int = 60_000
    # Omniglot Reptile: meta-iterations per model (100,000 in Nichol et al. 2018).
    reptile_iterations: int = 100_000
    # Metric-based methods: training episodes per ProtoNet/Matching model, per
    # ablation model, and verification batches of the Siamese network.
    protonet_steps: int = 20_000
    ablation_steps: int = 5_000
    siamese_steps: int = 20_000


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="seconds per notebook; proves the code runs (CI)",
        eval_episodes=20,
        eval_queries=5,
        eval_seed=2024,
        sinusoid_meta_iterations=20,  # MAML and pre-training steps
        sinusoid_test_tasks=20,  # new sinusoid tasks for the evaluation
        maml_iterations=100,  # meta-iterations per MAML/FOMAML model
        maml_meta_batch=4,  # tasks per meta-update
        maml_5shot_iterations=25,  # the same for 5-shot tasks
        reptile_iterations=12,  # meta-iterations per Reptile model
        protonet_steps=30,  # episodes per ProtoNet/Matching model
        ablation_steps=4,  # episodes per ablation model
        siamese_steps=20,  # verification batches (Siamese)
    ),
    "short": Profile(
        name="short",
        description="minutes on a laptop CPU; shows real learning",
        eval_episodes=600,
        eval_queries=15,
        eval_seed=2024,
        sinusoid_meta_iterations=50_000,  # MAML and pre-training steps (11 min)
        sinusoid_test_tasks=600,  # new sinusoid tasks for the evaluation
        maml_iterations=2_200,  # meta-iterations per MAML/FOMAML model
        maml_meta_batch=16,  # tasks per meta-update
        maml_5shot_iterations=250,  # the same for 5-shot tasks
        reptile_iterations=600,  # meta-iterations per Reptile model
        protonet_steps=3_400,  # episodes per ProtoNet/Matching model
        ablation_steps=600,  # episodes per ablation model
        siamese_steps=2_400,  # verification batches (Siamese)
    ),
    "paper": Profile(
        name="paper",
        description="the published protocol; meant for a GPU",
        eval_episodes=600,
        eval_queries=15,
        eval_seed=2024,
        sinusoid_meta_iterations=70_000,  # MAML and pre-training steps
        sinusoid_test_tasks=600,  # new sinusoid tasks for the evaluation
        maml_iterations=60_000,  # meta-iterations per MAML/FOMAML model
        maml_meta_batch=32,  # tasks per meta-update
        maml_5shot_iterations=60_000,  # the same for 5-shot tasks
        reptile_iterations=100_000,  # meta-iterations per Reptile model
        protonet_steps=20_000,  # episodes per ProtoNet/Matching model
        ablation_steps=5_000,  # episodes per ablation model
        siamese_steps=20_000,  # verification batches (Siamese)
    ),
}


def default_profile_name() -> str:
    """``"paper"`` when CUDA is available, else ``"short"``."""
    return "paper" if torch.cuda.is_available() else "short"


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``.

    Args:
        name: ``"smoke"``, ``"short"`` or ``"paper"``. ``None`` reads
            ``METALEARN_PROFILE`` and falls back to :func:`default_profile_name`.

    Raises:
        ValueError: if the name is not one of the profiles.
    """
    source = "argument 'name'"
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or None
        source = f"environment variable {ENV_VAR}"
    if name is None:
        return PROFILES[default_profile_name()]
    key = name.strip().lower()
    if key not in PROFILES:
        valid = ", ".join(repr(k) for k in PROFILES)
        raise ValueError(f"Unknown profile {name!r} (from {source}); valid: {valid}.")
    return PROFILES[key]
