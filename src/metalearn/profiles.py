"""Run profiles: one variable, ``METALEARN_PROFILE``, sets every budget in the book.

Four profiles exist:

``smoke``
    Seconds per notebook. Used by CI (``nbval``) to prove that every notebook
    runs; its numbers are not meant to be read.
``short``
    A 2-core CPU: each chapter in at most about 30 minutes, and still real
    learning. The outputs stored in the committed notebooks come from it.
``gpu``
    One GPU of the class Colab lends (a T4): each chapter's training in about
    20 minutes, as close to the published numbers as that allows. The default
    when CUDA is available.
``paper``
    The published protocol (full training budgets, 600 test episodes). Hours
    per chapter even on a large GPU; choose it explicitly.

``METALEARN_MAX_STEPS=n`` caps every training at ``n`` steps and every
evaluation at ``n`` episodes while keeping the rest of the chosen profile
(meta-batch sizes, shots, queries, widths): CI uses it to run the code paths of
``paper`` and ``gpu`` on a CPU in seconds. The run header prints the cap.

Chapters read their budgets from the :class:`Profile` returned by
:func:`get_profile`; no chapter hard-codes a budget.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

ENV_VAR = "METALEARN_PROFILE"
MAX_STEPS_ENV_VAR = "METALEARN_MAX_STEPS"


@dataclass(frozen=True)
class Profile:
    """The budgets of one run profile (steps are optimiser steps of one model)."""

    name: str  # "smoke", "short", "gpu" or "paper"
    description: str  # one line for the run header
    eval_episodes: int  # fixed test episodes per setting (600 is the standard)
    eval_queries: int  # query examples per class in a test episode
    eval_seed: int  # seed of the fixed test episodes shared by all chapters
    val_episodes: int  # fixed validation episodes of the learning curves
    validations: int  # points on each learning curve (validations per training)
    # Sinusoid regression (MAML chapter): meta-iterations of MAML, and optimiser
    # steps of the jointly pre-trained baseline (70,000 in Finn et al. 2017),
    # and new test tasks for the MSE-vs-steps curves (600).
    sinusoid_meta_iterations: int
    sinusoid_test_tasks: int
    # Omniglot MAML, first-order MAML and Reptile (5-way): meta-iterations per
    # model (60,000, 60,000 and 100,000 in the papers) and MAML's tasks per
    # meta-batch (32 in Finn et al.; Reptile uses Nichol et al.'s 5).
    maml_iterations: int
    fomaml_iterations: int
    reptile_iterations: int
    maml_meta_batch: int
    # Separate 5-shot MAML/FOMAML models (as in the papers); without them the
    # 1-shot models are also tested in 5-shot, and the book says so.
    maml_5shot_models: bool
    # Metric-based methods: training episodes of the 1-shot ProtoNet and the
    # Matching network (20,000 in Snell et al.), per arm of the ProtoNet
    # ablation (at the 60-way arm's cost), and verification batches of the
    # Siamese network; a separate 5-shot ProtoNet as Snell et al. train one.
    protonet_steps: int
    matching_steps: int
    ablation_steps: int
    siamese_steps: int
    protonet_5shot_model: bool
    # Transfer learning: mini-batches of ordinary classification pre-training.
    pretrain_steps: int
    # Task efficiency (challenges chapter): ProtoNet and pre-training + nearest
    # centroid trained on the first `c` characters of one fixed random order of
    # the 1,028 `train` characters, for each `c` in efficiency_characters and
    # each choice in efficiency_rotations (True: also the 90/180/270-degree
    # rotations, 4c classes); every point gets efficiency_steps optimiser steps
    # of the same number of images (metalearn.efficiency). `short`: sized from
    # CPU probes for the chapter's 30 minutes; `gpu`: not timed on a GPU, an
    # estimate like the other untimed gpu budgets.
    efficiency_characters: tuple[int, ...]
    efficiency_rotations: tuple[bool, ...]
    efficiency_steps: int
    max_steps: int | None = None  # METALEARN_MAX_STEPS, if it capped this profile

    def budgets(self) -> str:
        """The training budgets in one line, for the run header."""
        cap = f"; capped at {self.max_steps} (METALEARN_MAX_STEPS)" if (
            self.max_steps is not None
        ) else ""
        return (
            f"MAML/FOMAML/Reptile {self.maml_iterations}/{self.fomaml_iterations}/"
            f"{self.reptile_iterations} meta-iterations, ProtoNet/Matching "
            f"{self.protonet_steps}/{self.matching_steps} episodes, Siamese "
            f"{self.siamese_steps} batches, pre-training {self.pretrain_steps} "
            f"batches, {self.eval_episodes} test episodes{cap}"
        )


# The integer fields that METALEARN_MAX_STEPS caps: every count of training steps
# and of evaluation episodes or tasks (the shape of each step is kept).
CAPPED_FIELDS = (
    "eval_episodes",
    "val_episodes",
    "sinusoid_meta_iterations",
    "sinusoid_test_tasks",
    "maml_iterations",
    "fomaml_iterations",
    "reptile_iterations",
    "protonet_steps",
    "matching_steps",
    "ablation_steps",
    "siamese_steps",
    "pretrain_steps",
    "efficiency_steps",
)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        validations=2,
        description="seconds per notebook; proves the code runs (CI)",
        eval_episodes=20,
        eval_queries=5,
        eval_seed=2024,
        val_episodes=5,
        sinusoid_meta_iterations=20,
        sinusoid_test_tasks=20,
        maml_iterations=10,
        fomaml_iterations=10,
        reptile_iterations=4,
        maml_meta_batch=4,
        maml_5shot_models=False,
        protonet_steps=20,
        matching_steps=20,
        ablation_steps=4,
        siamese_steps=10,
        protonet_5shot_model=False,
        pretrain_steps=20,
        efficiency_characters=(25, 1028),
        efficiency_rotations=(False, True),
        efficiency_steps=4,
    ),
    "short": Profile(
        name="short",
        validations=5,
        description="a 2-core CPU, <= 30 min per chapter; shows real learning",
        eval_episodes=600,
        eval_queries=15,
        eval_seed=2024,
        val_episodes=50,
        sinusoid_meta_iterations=40_000,
        sinusoid_test_tasks=600,
        maml_iterations=400,
        fomaml_iterations=760,
        reptile_iterations=125,
        maml_meta_batch=16,
        maml_5shot_models=False,
        protonet_steps=1_000,
        matching_steps=600,
        ablation_steps=150,
        siamese_steps=500,
        protonet_5shot_model=False,
        pretrain_steps=1_500,
        efficiency_characters=(25, 100, 400, 1028),
        efficiency_rotations=(False, True),
        efficiency_steps=800,
    ),
    # `gpu` is sized from per-step times measured on one H100
    # (benchmarks/results/paper_step_times_h100.txt) times a T4/H100 factor of
    # 8: NVIDIA's datasheets give 8.1 TFLOP/s FP32 for the T4 and 67 for the
    # H100 SXM (8.3x). MAML 36.1 ms -> 0.29 s per meta-iteration on a T4, 7
    # min; FOMAML 28.1 ms -> 0.22 s, 5 min; ProtoNet 7.3 ms -> 0.06 s per
    # episode, 6 min. Reptile (5 tasks x 10 images), Matching, Siamese and
    # pre-training were not timed on a GPU: their budgets assume ProtoNet-like
    # steps (Reptile: 0.8 s) and are estimates until measured.
    "gpu": Profile(
        name="gpu",
        validations=10,
        description="one Colab-class GPU (T4), ~20 min of training per chapter",
        eval_episodes=600,
        eval_queries=15,
        eval_seed=2024,
        val_episodes=100,
        sinusoid_meta_iterations=70_000,
        sinusoid_test_tasks=600,
        maml_iterations=1_500,
        fomaml_iterations=1_300,
        reptile_iterations=500,
        maml_meta_batch=32,
        maml_5shot_models=False,
        protonet_steps=6_000,
        matching_steps=4_000,
        ablation_steps=1_500,
        siamese_steps=4_000,
        protonet_5shot_model=False,
        pretrain_steps=8_000,
        efficiency_characters=(25, 100, 400, 1028),
        efficiency_rotations=(False, True),
        efficiency_steps=3_000,
    ),
    "paper": Profile(
        name="paper",
        validations=10,
        description="the published protocol; hours per chapter on a GPU",
        eval_episodes=600,
        eval_queries=15,
        eval_seed=2024,
        val_episodes=100,
        sinusoid_meta_iterations=70_000,
        sinusoid_test_tasks=600,
        maml_iterations=60_000,
        fomaml_iterations=60_000,
        reptile_iterations=100_000,
        maml_meta_batch=32,
        maml_5shot_models=True,
        protonet_steps=20_000,
        matching_steps=20_000,
        ablation_steps=5_000,
        siamese_steps=20_000,
        protonet_5shot_model=True,
        pretrain_steps=20_000,
        efficiency_characters=(25, 100, 400, 1028),
        efficiency_rotations=(False, True),
        efficiency_steps=20_000,
    ),
}


def default_profile_name() -> str:
    """``"gpu"`` when CUDA is available, else ``"short"``."""
    return "gpu" if torch.cuda.is_available() else "short"


def max_steps_from_env() -> int | None:
    """``METALEARN_MAX_STEPS`` as a positive int, or ``None`` when unset.

    Raises:
        ValueError: the variable is set to anything but a positive integer.
    """
    value = os.environ.get(MAX_STEPS_ENV_VAR, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"{MAX_STEPS_ENV_VAR}={value!r}: use a positive integer (e.g. 2), or "
            "unset it to run the profile's full budgets."
        )
    return int(value)


def capped(profile: Profile, max_steps: int) -> Profile:
    """``profile`` with every step and episode count at most ``max_steps``.

    Counts below the cap are kept; counts of at least 1 stay at least 1 (a cap
    of 2 leaves 2 test episodes, which still gives a confidence interval).
    """
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}.")
    limits = {name: min(getattr(profile, name), max_steps) for name in CAPPED_FIELDS}
    return dataclasses.replace(profile, **limits, max_steps=max_steps)


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``, capped by ``METALEARN_MAX_STEPS`` if set.

    Args:
        name: ``"smoke"``, ``"short"``, ``"gpu"`` or ``"paper"``. ``None`` reads
            ``METALEARN_PROFILE`` and falls back to :func:`default_profile_name`.

    Raises:
        ValueError: the name is not one of the profiles, or
            ``METALEARN_MAX_STEPS`` is not a positive integer.
        TypeError: ``name`` is not a string (pass a name, not a Profile).
    """
    source = "argument 'name'"
    if name is not None and not isinstance(name, str):
        raise TypeError(
            f"name must be a profile name (a str) or None, got {name!r}; "
            "a Profile needs no lookup."
        )
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or None
        source = f"environment variable {ENV_VAR}"
    key = default_profile_name() if name is None else name.strip().lower()
    if key not in PROFILES:
        valid = ", ".join(repr(k) for k in PROFILES)
        raise ValueError(f"Unknown profile {name!r} (from {source}); valid: {valid}.")
    profile = PROFILES[key]
    cap = max_steps_from_env()
    return profile if cap is None else capped(profile, cap)
