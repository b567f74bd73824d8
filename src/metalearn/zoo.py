"""The book's trained models: one recipe per model, trained once, reused everywhere.

Several chapters use the same models: the metric chapter trains a ProtoNet
that the comparison, transfer and applications chapters evaluate again; the
Omniglot MAML chapter's models are compared with it. Each such model has a
*recipe* here, a frozen dataclass with every hyperparameter of its training
(budgets from the run profile), registered under the model's name::

    trained = zoo.load_or_train("protonet-60w1s")
    trained.model, trained.fitted.report()

:func:`load_or_train` trains the model with :func:`metalearn.experiments.fit`
(checkpoints in ``$METALEARN_CACHE/checkpoints/<profile>/<name>``, exact resume),
or loads its finished checkpoint when an earlier chapter already trained it
under the same recipe; a checkpoint written under another recipe is refused
with a message naming what differs. The chapters show each method's algorithm
on the page; the recipes here are the plumbing they share.

Register another model with :func:`register` (a name and a function of the
profile that returns a recipe object with ``name``, ``steps``, ``build`` and
``classifier``, see :class:`Recipe`); ``build(device, profile)`` returns the
model, step, optimiser, scheduler and validation callback (:class:`Build`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from metalearn.data.omniglot import OmniglotData, omniglot, rotate_classes
from metalearn.episodes import Episode, FixedEpisodes
from metalearn.evaluate import evaluate
from metalearn.experiments import Fitted, fit
from metalearn.profiles import Profile, get_profile
from metalearn.runtime import default_device

Classify = Callable[[Episode], torch.Tensor]
Scheduler = torch.optim.lr_scheduler.LRScheduler
VAL_SEED = 1  # seed of the fixed validation episodes of every recipe


@dataclass(frozen=True)
class Build:
    """What :func:`metalearn.experiments.fit` needs to train one recipe."""

    model: nn.Module
    step: Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]]
    optimiser: torch.optim.Optimizer
    scheduler: Scheduler | None
    validate: Callable[[], dict[str, float]] | None


class Recipe(Protocol):
    """The interface of a registered recipe (a frozen dataclass)."""

    name: str
    steps: int

    def build(self, device: torch.device, profile: Profile) -> Build: ...

    def classifier(self, model: nn.Module, **options: Any) -> Classify: ...


@dataclass(frozen=True)
class Trained:
    """A trained model of the zoo, with its recipe and its training record."""

    name: str
    recipe: Any  # the frozen dataclass it was trained by
    model: nn.Module
    fitted: Fitted

    @property
    def loaded(self) -> bool:
        """True if it came from a finished checkpoint (nothing trained here)."""
        return self.fitted.loaded

    def classifier(self, **options: Any) -> Classify:
        """``classify(episode) -> scores`` for :func:`metalearn.evaluate.evaluate`."""
        return self.recipe.classifier(self.model, **options)

    @property
    def signature(self) -> str:
        """Which training these weights come from: name, steps and training time.

        The training time is recorded in the checkpoint's history to the
        microsecond, so two trainings of the same recipe get different
        signatures; a chapter that records results of this model can store it,
        and a later chapter re-uses those results only for the same weights.
        """
        return f"{self.name}:{self.fitted.steps}:{self.fitted.train_seconds:.6f}"

    def summary(self) -> str:
        """Two lines for a chapter: what was trained, how long, how well."""
        fitted = self.fitted
        accuracies = ", ".join(
            f"{metric.removeprefix('acc_')} {100 * values[-1]:.1f} %"
            for metric, values in fitted.history.eval.items()
            if metric.startswith("acc")
        )
        origin = (
            "loaded from the checkpoint an earlier run finished"
            if fitted.loaded
            else "trained in this run"
            if not fitted.resumed_from
            else f"resumed at step {fitted.resumed_from} and finished in this run"
        )
        validation = f"; final validation accuracy: {accuracies}" if accuracies else ""
        return (
            f"{self.name}: {fitted.steps} steps, {fitted.train_seconds / 60:.1f} min "
            f"of training ({origin}){validation}"
        )


# ----------------------------------------------------------------- the data


def _omniglot() -> OmniglotData:
    return omniglot()  # decoded once into $METALEARN_CACHE, then < 1 s to load


def validation_episodes(
    images: torch.Tensor, profile: Profile, shots: int, ways: int = 5
) -> FixedEpisodes:
    """The fixed validation episodes of the learning curves (``val`` characters)."""
    return FixedEpisodes(
        images,
        count=profile.val_episodes,
        ways=ways,
        shots=shots,
        queries=profile.eval_queries,
        seed=VAL_SEED,
    )


def _validator(
    classify: Callable[[], Classify], episodes: dict[int, FixedEpisodes]
) -> Callable[[], dict[str, float]]:
    def validate() -> dict[str, float]:
        return {
            f"acc_{shots}shot": evaluate(classify(), eps, progress=False).mean
            for shots, eps in episodes.items()
        }

    return validate


def _adam(
    model: nn.Module, steps: int, schedule: str, lr: float, halve_every: int
) -> tuple[torch.optim.Optimizer, Scheduler]:
    """Adam with Snell et al.'s halving (``"halving"``) or a cosine to 0."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    if schedule == "halving":
        return optimiser, torch.optim.lr_scheduler.StepLR(optimiser, halve_every, 0.5)
    if schedule == "cosine":
        return optimiser, torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    raise ValueError(f"schedule must be 'halving' or 'cosine', got {schedule!r}.")


def _on(model: nn.Module, device: torch.device) -> nn.Module:
    # Channels-last filters run the CPU convolutions of the metric models about
    # 1.3x faster (the same arithmetic up to rounding); a GPU keeps its layout.
    if device.type == "cpu":
        return model.to(device, memory_format=torch.channels_last)
    return model.to(device)


# ------------------------------------------------------- metric-based recipes


@dataclass(frozen=True)
class EpisodicEmbedding:
    """A Conv-4 embedding trained on N-way K-shot episodes: ProtoNet or Matching."""

    name: str
    method: str  # "protonet" or "matching"
    steps: int  # training episodes
    ways: int = 60  # N of the training episodes (Snell et al.: 60)
    shots: int = 1  # K of the training episodes
    queries: int = 2  # queries per class (Snell et al.: 5; `paper` uses 5)
    distance: str = "euclidean"  # ProtoNet: "euclidean" (squared) or "cosine"
    similarity: str = "cosine"  # Matching: attention similarity
    scale: float = 10.0  # Matching: inverse temperature of the cosine attention
    hidden: int = 64  # Conv-4 filters (64-dimensional embedding on 28x28)
    output_dim: int | None = None  # a linear layer to this many dimensions (2: a
    # plane to draw), or None: the Conv-4 features themselves
    rotate: bool = True  # 90/180/270-degree rotations as new training classes
    schedule: str = "cosine"  # "cosine" from `lr` to 0, or Snell's "halving"
    lr: float = 3e-3  # Adam's initial learning rate
    halve_every: int = 2000  # with "halving": episodes between halvings
    train_split: str = "train"  # Omniglot characters trained on
    val_shots: tuple[int, ...] = (1,)  # shots of the 5-way validation episodes
    seed: int = 0  # initial weights

    def build(self, device: torch.device, profile: Profile) -> Build:
        from metalearn.matching import make_matching_step
        from metalearn.models import Conv4
        from metalearn.protonet import make_protonet_step

        data = _omniglot()
        images = data.split(self.train_split).to(device)
        classes = rotate_classes(images) if self.rotate else images
        torch.manual_seed(self.seed)
        if self.output_dim is None:
            net = Conv4(hidden=self.hidden, head=False)
        else:
            net = Conv4(hidden=self.hidden, ways=self.output_dim, head=True)
        model = _on(net, device)
        episode = dict(ways=self.ways, shots=self.shots, queries=self.queries)
        if self.method == "protonet":
            step = make_protonet_step(model, classes, distance=self.distance, **episode)
        elif self.method == "matching":
            step = make_matching_step(
                model, classes, similarity=self.similarity, scale=self.scale, **episode
            )
        else:
            raise ValueError(f"method must be protonet or matching: {self.method!r}")
        optimiser, scheduler = _adam(
            model, self.steps, self.schedule, self.lr, self.halve_every
        )
        val = data.split("val").to(device)
        episodes = {k: validation_episodes(val, profile, k) for k in self.val_shots}
        validate = _validator(lambda: self.classifier(model), episodes)
        return Build(model, step, optimiser, scheduler, validate)

    def classifier(self, model: nn.Module, **options: Any) -> Classify:
        if self.method == "protonet":
            from metalearn.protonet import protonet_classifier

            return protonet_classifier(model, distance=self.distance, **options)
        from metalearn.matching import matching_classifier

        return matching_classifier(
            model, similarity=self.similarity, scale=self.scale, **options
        )


@dataclass(frozen=True)
class SiameseVerification:
    """A Siamese network trained on same/different pairs (Koch et al. 2015)."""

    name: str
    steps: int  # verification batches
    pairs: int = 128  # pairs per batch, half of them same-class
    hidden: int = 64  # Conv-4 filters of the twin
    train_split: str = "background"  # Koch et al.: background alphabets only
    schedule: str = "cosine"
    lr: float = 3e-3
    halve_every: int = 2000
    seed: int = 0

    def build(self, device: torch.device, profile: Profile) -> Build:
        from metalearn.models import Conv4
        from metalearn.siamese import SiameseNetwork, make_siamese_step

        data = _omniglot()
        images = data.split(self.train_split).to(device)
        torch.manual_seed(self.seed)
        twin = Conv4(hidden=self.hidden, head=False)
        model = _on(SiameseNetwork(twin, features=twin.embedding_dim), device)
        step = make_siamese_step(model, images, pairs=self.pairs)
        optimiser, scheduler = _adam(
            model, self.steps, self.schedule, self.lr, self.halve_every
        )
        val = data.split("val").to(device)
        episodes = {1: validation_episodes(val, profile, 1)}
        validate = _validator(lambda: self.classifier(model), episodes)
        return Build(model, step, optimiser, scheduler, validate)

    def classifier(self, model: nn.Module, **options: Any) -> Classify:
        from metalearn.siamese import siamese_classifier

        return siamese_classifier(model, **options)


# ------------------------------------------------- optimisation-based recipes


def prefers_vmap(device: torch.device, method: str, shots: int, queries: int) -> bool:
    """vmap over the tasks of a meta-batch, or a loop? The measured rule.

    On a GPU ``vmap`` removes the per-task kernel launches (one H100: MAML 36 ms
    against 615 ms per meta-iteration, Reptile 68 ms against 835 ms). On a
    2-core CPU with 2 threads it wins only where every task is small: 1-shot
    MAML/FOMAML with 1 query per class (meta-batch 32: 1.34 s against 1.83 s
    second-order, 0.63 s against 0.84 s first-order); with 15 queries (9.4 s
    against 4.8 s), 5 shots or Reptile's 10 images per class (1.33 s against
    5.12 s for 5 tasks) the loop is faster, because ``vmap`` turns the per-task
    convolutions into grouped ones over strided tensors. With one thread vmap
    does not win even for small tasks (1.53 s against 1.56 s second-order, 0.81
    s against 0.78 s first-order). Measured with ``benchmarks/maml_step.py``
    (``benchmarks/results/maml_step_auto_cpu.txt``, ``maml_step_cpu_1thread.txt``).
    """
    if device.type != "cpu":
        return True
    small = method in ("maml", "fomaml") and shots == 1 and queries == 1
    return small and torch.get_num_threads() > 1


@dataclass(frozen=True)
class InitialisationMetaLearning:
    """A Conv-4 initialisation meta-trained by MAML, FOMAML or Reptile (5-way)."""

    name: str
    method: str  # "maml", "fomaml" or "reptile"
    steps: int  # meta-iterations
    meta_batch: int  # tasks per meta-update
    shots: int = 1  # K of the tasks meta-trained on
    queries: int = 1  # query images per class in meta-training
    inner_lr: float = 0.4  # alpha, in training and at test time
    train_steps: int = 1  # inner steps in meta-training
    test_steps: int = 3  # inner steps at test time
    meta_lr: float = 1e-3  # beta (Adam) for MAML/FOMAML; epsilon at start (Reptile)
    ways: int = 5
    hidden: int = 64
    train_split: str = "train"
    val_shots: tuple[int, ...] = (1,)
    seed: int = 0

    def build(self, device: torch.device, profile: Profile) -> Build:
        from metalearn.maml import make_maml_step
        from metalearn.models import Conv4
        from metalearn.reptile import make_reptile_step

        data = _omniglot()
        images = data.split(self.train_split).to(device)
        torch.manual_seed(self.seed)  # the same initial weights for every method
        model = Conv4(ways=self.ways, hidden=self.hidden).to(device)
        common = dict(
            ways=self.ways,
            shots=self.shots,
            queries=self.queries,
            meta_batch_size=self.meta_batch,
            inner_lr=self.inner_lr,
            steps=self.train_steps,
            vectorise=prefers_vmap(device, self.method, self.shots, self.queries),
        )
        if self.method == "reptile":
            step = make_reptile_step(model, images, **common)
            optimiser = torch.optim.SGD(model.parameters(), lr=self.meta_lr)
            scheduler = torch.optim.lr_scheduler.LambdaLR(  # epsilon: 1 -> 0
                optimiser, _LinearDecay(self.steps)
            )
        elif self.method in ("maml", "fomaml"):
            step = make_maml_step(
                model, images, first_order=self.method == "fomaml", **common
            )
            optimiser = torch.optim.Adam(model.parameters(), lr=self.meta_lr)
            scheduler = None
        else:
            raise ValueError(f"method must be maml, fomaml or reptile: {self.method!r}")
        val = data.split("val").to(device)
        episodes = {k: validation_episodes(val, profile, k) for k in self.val_shots}
        validate = _validator(lambda: self.classifier(model), episodes)
        return Build(model, step, optimiser, scheduler, validate)

    def classifier(self, model: nn.Module, **options: Any) -> Classify:
        from metalearn.maml import maml_classifier

        steps = options.pop("steps", self.test_steps)
        return maml_classifier(model, inner_lr=self.inner_lr, steps=steps, **options)


class _LinearDecay:
    """``i -> 1 - i / steps``: Reptile's linearly annealed epsilon (picklable)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, i: int) -> float:
        return 1 - i / self.steps


@dataclass(frozen=True)
class SinusoidRegressor:
    """The 1-40-40-1 MLP of the sinusoid experiment: MAML, or joint pre-training."""

    name: str
    method: str  # "maml" or "pretrain"
    steps: int  # meta-iterations (MAML) or optimiser steps (pre-training)
    meta_batch: int = 25  # tasks per step
    shots: int = 10  # K support points per task in training
    queries: int = 10  # query points per task in training
    inner_lr: float = 0.01  # alpha (MAML), also the fine-tuning step at test time
    inner_steps: int = 1
    meta_lr: float = 1e-3  # Adam
    seed: int = 0

    def build(self, device: torch.device, profile: Profile) -> Build:
        from metalearn.maml import maml_step_from_sampler
        from metalearn.models import MLP
        from metalearn.pretrain import make_pretrain_step

        torch.manual_seed(self.seed)
        model = MLP().to(device)
        sample = _SinusoidSampler(self.meta_batch, self.shots, self.queries)
        if self.method == "maml":
            step = maml_step_from_sampler(
                model,
                sample,
                inner_lr=self.inner_lr,
                steps=self.inner_steps,
                first_order=False,
                loss_fn=F.mse_loss,
            )
        elif self.method == "pretrain":
            step = make_pretrain_step(model, sample)
        else:
            raise ValueError(f"method must be maml or pretrain: {self.method!r}")
        optimiser = torch.optim.Adam(model.parameters(), lr=self.meta_lr)
        return Build(model, step, optimiser, None, None)

    def classifier(self, model: nn.Module, **options: Any) -> Classify:
        raise TypeError(f"{self.name} is a regressor; it has no classifier.")


class _SinusoidSampler:
    """``generator -> SinusoidTasks`` with its sizes as the step's identity."""

    def __init__(self, tasks: int, shots: int, queries: int) -> None:
        self.tasks, self.shots, self.queries = tasks, shots, queries
        self.identity = {"family": "sinusoid", "tasks": tasks, "shots": shots,
                         "queries": queries}

    def __call__(self, generator: torch.Generator):
        from metalearn.sinusoid import sample_sinusoid_tasks

        return sample_sinusoid_tasks(self.tasks, self.shots, self.queries, generator)


# --------------------------------------------------------------- the registry


def _metric(method: str, shots: int = 1) -> Callable[[Profile], EpisodicEmbedding]:
    def recipe(profile: Profile) -> EpisodicEmbedding:
        paper = profile.name == "paper"
        steps = profile.protonet_steps if method == "protonet" else (
            profile.matching_steps
        )
        return EpisodicEmbedding(
            name=f"{method}-60w{shots}s",
            method=method,
            steps=steps,
            shots=shots,
            queries=5 if paper else 2,
            schedule="halving" if paper else "cosine",
            lr=1e-3 if paper else 3e-3,
            val_shots=(shots,),
        )

    return recipe


def _protonet_2d(profile: Profile) -> EpisodicEmbedding:
    # A ProtoNet whose embedding is a plane, only to draw its decision regions:
    # 20-way 1-shot episodes, twice the ablation budget.
    return EpisodicEmbedding(
        name="protonet-2d",
        method="protonet",
        steps=2 * profile.ablation_steps,
        ways=20,
        output_dim=2,
        val_shots=(5,),
    )


def _siamese(profile: Profile) -> SiameseVerification:
    paper = profile.name == "paper"
    return SiameseVerification(
        name="siamese",
        steps=profile.siamese_steps,
        schedule="halving" if paper else "cosine",
        lr=1e-3 if paper else 3e-3,
    )


def _initialisation(method: str, shots: int = 1) -> Callable[[Profile], Any]:
    def recipe(profile: Profile) -> InitialisationMetaLearning:
        if method == "reptile":
            # Nichol et al.: 5 tasks per meta-batch, 10 training images per class
            # whatever K is at test time (one model serves 1- and 5-shot), 5
            # inner steps in training and 10 at test time; SGD inner steps of 0.1.
            return InitialisationMetaLearning(
                name="reptile-5w",
                method="reptile",
                steps=profile.reptile_iterations,
                meta_batch=5,
                shots=10,
                inner_lr=0.1,
                train_steps=5,
                test_steps=10,
                meta_lr=1.0,
                # Reptile's 10 test steps on 5-shot episodes make validation
                # costly on a CPU: the shorter profiles validate 1-shot only.
                val_shots=(1, 5) if profile.name in ("gpu", "paper") else (1,),
            )
        steps = profile.maml_iterations if method == "maml" else (
            profile.fomaml_iterations
        )
        return InitialisationMetaLearning(  # Finn et al.'s Omniglot 5-way setting
            name=f"{method}-5w{shots}s",
            method=method,
            steps=steps,
            meta_batch=profile.maml_meta_batch,
            shots=shots,
            val_shots=(shots,),
        )

    return recipe


def _sinusoid(method: str) -> Callable[[Profile], SinusoidRegressor]:
    def recipe(profile: Profile) -> SinusoidRegressor:
        return SinusoidRegressor(
            name=f"{method}-sinusoid",
            method=method,
            steps=profile.sinusoid_meta_iterations,
        )

    return recipe


def _pretrain_conv4(profile: Profile) -> Any:
    from metalearn.transfer import pretrain_recipe  # the transfer chapter's model

    return pretrain_recipe(profile)


REGISTRY: dict[str, Callable[[Profile], Any]] = {
    "protonet-60w1s": _metric("protonet"),
    "protonet-60w5s": _metric("protonet", shots=5),
    "protonet-2d": _protonet_2d,
    "matching-60w1s": _metric("matching"),
    "siamese": _siamese,
    "maml-5w1s": _initialisation("maml"),
    "fomaml-5w1s": _initialisation("fomaml"),
    "maml-5w5s": _initialisation("maml", shots=5),
    "fomaml-5w5s": _initialisation("fomaml", shots=5),
    "reptile-5w": _initialisation("reptile"),
    "maml-sinusoid": _sinusoid("maml"),
    "pretrain-sinusoid": _sinusoid("pretrain"),
    "pretrain-conv4": _pretrain_conv4,
}


def names() -> list[str]:
    """The registered model names."""
    return sorted(REGISTRY)


def register(name: str, factory: Callable[[Profile], Any]) -> None:
    """Add a model: ``factory(profile)`` returns its recipe (see :class:`Recipe`).

    Raises:
        ValueError: the name is taken (by another factory) or not a valid
            checkpoint name.
    """
    if name in REGISTRY and REGISTRY[name] is not factory:
        raise ValueError(f"A model called {name!r} is already registered.")
    if not callable(factory):
        raise TypeError(f"factory must be callable as factory(profile): {factory!r}")
    REGISTRY[name] = factory


def recipe(name: str, profile: Profile | None = None) -> Any:
    """The recipe of the model ``name`` under ``profile`` (default: the current)."""
    if name not in REGISTRY:
        raise ValueError(f"No model called {name!r} in the zoo; known: {names()}.")
    made = REGISTRY[name](profile or get_profile())
    if getattr(made, "name", None) != name:
        raise ValueError(
            f"The recipe registered as {name!r} calls itself {made.name!r}."
        )
    return made


def load_or_train(
    name: str,
    *,
    profile: Profile | None = None,
    device: torch.device | str | None = None,
) -> Trained:
    """The model ``name``: loaded from its finished checkpoint, or trained now.

    Args:
        name: one of :func:`names`.
        profile: the run profile (its budgets and its checkpoint folder);
            default :func:`metalearn.profiles.get_profile`.
        device: where to train or load; default
            :func:`metalearn.runtime.default_device`.

    Returns:
        A :class:`Trained` with the model in training mode on ``device``.

    Raises:
        ValueError: unknown name, or a checkpoint of that name written under
            another recipe (the message names what differs and how to start
            afresh).
    """
    profile = profile or get_profile()
    return fit_recipe(recipe(name, profile), profile=profile, device=device)


def fit_recipe(
    made: Any,
    *,
    profile: Profile | None = None,
    device: torch.device | str | None = None,
) -> Trained:
    """Train (or load) any recipe object, registered or not, under its ``name``.

    For variations that a chapter trains once, e.g. the arms of an ablation:
    ``fit_recipe(dataclasses.replace(zoo.recipe("protonet-60w1s"), name=..., ways=5))``.
    The checkpoint is ``$METALEARN_CACHE/checkpoints/<profile>/<made.name>``.
    """
    profile = profile or get_profile()
    device = torch.device(device) if device is not None else default_device()
    build = made.build(device, profile)
    fitted = fit(
        made.name,
        build.model,
        build.optimiser,
        build.step,
        made.steps,
        evaluate=build.validate,
        eval_every=max(math.ceil(made.steps / profile.validations), 1),
        scheduler=build.scheduler,
        experiment=dataclasses.asdict(made),
        seed=getattr(made, "seed", 0),
        profile=profile,
    )
    return Trained(name=made.name, recipe=made, model=build.model, fitted=fitted)
