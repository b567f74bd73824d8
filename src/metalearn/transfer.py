"""Transfer learning for few-shot classification: pre-train once, adapt per episode.

The transfer baseline of Chen et al. (2019) and Tian et al. (2020) has two
stages. **Pre-training** fits a backbone ``f_theta`` and a linear head
``(W, b)`` by ordinary mini-batch classification over *all* training classes
at once (eq. {eq}`transfer-pretrain`),

.. math:: \\min_{\\theta, W, b}\\; \\mathbb{E}_{(x, c) \\sim \\mathcal{D}_s}
          \\big[-\\log \\operatorname{softmax}_c(W f_\\theta(x) + b)\\big],

with no episodes. At test time the head is thrown away, and each episode gets
a new classifier fitted on its support set, on top of the frozen features
(:func:`linear_probe_logits`, :func:`nearest_centroid_logits`,
:func:`cosine_classifier_logits`, :func:`rfs_logits`) or by fine-tuning a
copy of the network itself (:func:`finetune_logits`, eq.
{eq}`transfer-finetune`).

Everything here takes a backbone as an argument (an embedding ``[B, C, H, W]
-> [B, D]``, e.g. :class:`metalearn.models.Conv4` with ``head=False``), so
the same evaluators serve the pre-trained backbone and the meta-learned
embeddings of the other chapters. The backbone's batch norm uses the
statistics of the current batch (:class:`metalearn.models.BatchNorm`), so the
frozen-feature evaluators embed an episode's support and query images in one
batch, as :func:`metalearn.protonet.protonet_logits` does; every method of
the chapter then sees the same features.

References:
    Chen, Liu, Kira, Wang and Huang (2019), *A Closer Look at Few-shot
    Classification*, ICLR (Baseline and Baseline++).
    Tian, Wang, Krishnan, Tenenbaum and Isola (2020), *Rethinking Few-Shot
    Image Classification: a Good Embedding Is All You Need?*, ECCV.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metalearn.checks import check_positive_int
from metalearn.episodes import Episode, check_episode_sizes
from metalearn.evaluate import Accuracy, accuracy, mean_confidence_interval
from metalearn.models import Conv4
from metalearn.profiles import Profile
from metalearn.protonet import check_labels, prototypes, squared_distances

Step = Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]]
#: A classifier on frozen features: ``(support_z, support_y, query_z, ways)``
#: -> query logits ``[N*Q, N]``.
Head = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
PARTS = ("last", "all")  # what fine-tuning trains besides the new head


# ------------------------------------------------------------------ budgets


@dataclass(frozen=True)
class TransferBudget:
    """What one run profile spends on the transfer chapter's evaluations.

    The pre-training's own budget is ``profile.pretrain_steps``. The 5-way
    evaluations use every fixed test episode of the profile
    (``profile.eval_episodes``); the 20-way ones, which embed four times as
    many images per episode, and the whole-network fine-tuning, which takes a
    backward pass per step, use the first episodes of the same fixed sets.
    """

    batch_size: int  # images per pre-training mini-batch
    twenty_way_episodes: int  # first fixed episodes used in 20-way settings
    finetune_all_episodes: int  # first fixed episodes for whole-network FT
    resnet_steps: int  # fine-tuning steps of the ResNet-18 recipe demo
    # Fine-tuning steps per episode in the tables, and the step counts of the
    # cross-domain curves (the last block up to the last count, the whole
    # network up to finetune_steps). The same in every profile but `smoke`.
    finetune_steps: int = 20
    curve_steps: tuple[int, ...] = (0, 1, 2, 5, 10, 20, 50)


TRANSFER_BUDGETS: dict[str, TransferBudget] = {
    "smoke": TransferBudget(
        batch_size=64,
        twenty_way_episodes=5,
        finetune_all_episodes=3,
        resnet_steps=1,
        finetune_steps=2,
        curve_steps=(0, 1, 2, 3),
    ),
    "short": TransferBudget(
        batch_size=128,
        twenty_way_episodes=100,
        finetune_all_episodes=100,
        resnet_steps=3,
    ),
    "gpu": TransferBudget(
        batch_size=256,
        twenty_way_episodes=600,
        finetune_all_episodes=600,
        resnet_steps=10,
    ),
    "paper": TransferBudget(
        batch_size=256,
        twenty_way_episodes=600,
        finetune_all_episodes=600,
        resnet_steps=10,
    ),
}


def transfer_budget(profile: Profile) -> TransferBudget:
    """The :class:`TransferBudget` of ``profile``, within its episode counts.

    Episode counts never exceed ``profile.eval_episodes`` (which
    ``METALEARN_MAX_STEPS`` may have capped).
    """
    if not isinstance(profile, Profile):
        raise TypeError(f"profile must be a Profile, got {profile!r}.")
    if profile.name not in TRANSFER_BUDGETS:
        valid = ", ".join(repr(k) for k in TRANSFER_BUDGETS)
        raise ValueError(
            f"No transfer budget for profile {profile.name!r}; valid: {valid}."
        )
    budget = TRANSFER_BUDGETS[profile.name]
    return dataclasses.replace(
        budget,
        twenty_way_episodes=min(budget.twenty_way_episodes, profile.eval_episodes),
        finetune_all_episodes=min(budget.finetune_all_episodes, profile.eval_episodes),
    )


# ------------------------------------------------------------- pre-training


def make_classification_step(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device | str | None = None,
) -> Step:
    """A training step for :func:`metalearn.training.train`: plain classification.

    Each call draws ``batch_size`` images uniformly from all ``classes x
    examples`` images of ``images`` (with the given generator, without
    repeats within a batch) and returns the cross-entropy of ``model`` on
    their class indices: one stochastic estimate of eq.
    {eq}`transfer-pretrain`. No episodes, no support or query sets.

    Args:
        model: maps ``[B, C, H, W]`` to ``[B, classes]`` logits, e.g.
            ``Conv4(ways=classes)``.
        images: ``[classes, examples, C, H, W]``; ``uint8`` is scaled to
            ``[0, 1]``; the class of an image is its row.
        batch_size: images per step (at most ``classes * examples``).
        device: where to compute; ``None``: the model's device.

    Returns:
        ``step(generator) -> (loss, {"loss", "acc"})``.
    """
    check_episode_sizes(images, 1, 1, 1)
    check_positive_int("batch_size", batch_size)
    classes, examples = images.shape[:2]
    if batch_size > classes * examples:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {classes * examples} images."
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")

    def step(generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        flat = torch.randperm(classes * examples, generator=generator)[:batch_size]
        labels = flat // examples  # [B], the row of each image
        x = images[labels.to(images.device), (flat % examples).to(images.device)]
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        target = device if device is not None else next(model.parameters()).device
        logits = model(x.to(target))  # [B, classes]
        if logits.shape != (batch_size, classes):
            raise ValueError(
                f"model returned {tuple(logits.shape)}; expected [{batch_size}, "
                f"{classes}] (one logit per training class)."
            )
        labels = labels.to(logits.device)
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(1) == labels).float().mean()
        return loss, {"loss": float(loss.detach()), "acc": float(acc)}

    step.identity = {  # what shapes the loss (see metalearn.training)
        "method": "pretrain-classification",
        "classes": int(classes),
        "examples": int(examples),
        "image_shape": [int(d) for d in images.shape[2:]],
        "batch_size": batch_size,
    }
    return step


def backbone_of(model: Conv4) -> Conv4:
    """The pre-trained network without its head: a new ``Conv4(head=False)``.

    The convolutional blocks are copied (``model`` is not modified and shares
    no tensor with the result), so the backbone maps images to the
    ``embedding_dim`` features that every evaluator of this module takes.
    """
    if not isinstance(model, Conv4):
        raise TypeError(f"model must be a Conv4, got {type(model).__name__}.")
    backbone = Conv4(
        model.in_channels,
        hidden=model.hidden,
        head=False,
        image_size=model.image_size,
    )
    backbone.features.load_state_dict(model.features.state_dict())
    # The second convolution's filters tell the layout: the first one has a
    # single input channel, and a [64, 1, 3, 3] tensor is contiguous both ways.
    weight = model.features[1][0].weight
    layout = (
        torch.channels_last
        if weight.is_contiguous(memory_format=torch.channels_last)
        and not weight.is_contiguous()
        else torch.contiguous_format
    )  # keep the filters' memory layout (channels-last is faster on a CPU)
    return backbone.to(weight.device, memory_format=layout)


@dataclass(frozen=True)
class PretrainRecipe:
    """The pre-training of the transfer chapter: the zoo model ``pretrain-conv4``.

    A ``Conv4(ways=classes)`` trained by :func:`make_classification_step` on
    every training character and its three rotations (4,112 classes on the
    ``train`` split), with Adam and a cosine schedule from ``lr`` to 0; the
    validation callback reports nearest-centroid accuracy of the features on
    5-way 1-shot episodes of the ``val`` characters.
    """

    name: str  # the model's (and checkpoint folder's) name
    steps: int  # mini-batches
    batch_size: int = 128  # images per mini-batch
    hidden: int = 64  # Conv-4 filters (64-dimensional features on 28x28)
    rotate: bool = True  # 90/180/270-degree rotations as new classes
    lr: float = 3e-3  # Adam's initial learning rate (cosine-annealed to 0)
    train_split: str = "train"  # Omniglot characters trained on
    seed: int = 0  # initial weights

    def build(self, device: torch.device, profile: Profile):  # -> zoo.Build
        """Model, step, optimiser, schedule and validation, as the zoo needs them."""
        from metalearn.data import omniglot, rotate_classes
        from metalearn.evaluate import evaluate
        from metalearn.zoo import Build, validation_episodes

        data = omniglot()
        images = data.split(self.train_split).to(device)
        classes = rotate_classes(images) if self.rotate else images
        torch.manual_seed(self.seed)
        model = Conv4(ways=len(classes), hidden=self.hidden)
        if device.type == "cpu":  # faster CPU convolutions, same arithmetic
            model = model.to(device, memory_format=torch.channels_last)
        else:
            model = model.to(device)
        step = make_classification_step(model, classes, batch_size=self.batch_size)
        optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, self.steps)
        val = validation_episodes(data.split("val").to(device), profile, shots=1)

        def validate() -> dict[str, float]:
            classify = self.classifier(model)
            return {"acc_1shot": evaluate(classify, val, progress=False).mean}

        return Build(model, step, optimiser, scheduler, validate)

    def classifier(
        self, model: nn.Module, head: Head | None = None
    ) -> Callable[[Episode], torch.Tensor]:
        """``head`` (default: nearest centroid) on the features of ``model``."""
        return frozen_classifier(backbone_of(model), head or nearest_centroid_logits)


def pretrain_recipe(profile: Profile) -> PretrainRecipe:
    """The zoo's factory of ``pretrain-conv4``: ``profile.pretrain_steps`` batches."""
    return PretrainRecipe(
        name="pretrain-conv4",
        steps=profile.pretrain_steps,
        batch_size=transfer_budget(profile).batch_size,
    )


# ---------------------------------------------------- heads on frozen features


def check_features(
    support_z: torch.Tensor,
    support_y: torch.Tensor,
    query_z: torch.Tensor,
    ways: int,
) -> None:
    """Raise a clear error unless the features and labels fit one ``ways``-way task."""
    for name, z in (("support_z", support_z), ("query_z", query_z)):
        if not isinstance(z, torch.Tensor) or z.dim() != 2:
            raise ValueError(f"{name} must be a 2-D tensor [examples, D], got {z!r}.")
        if not z.is_floating_point() or not bool(torch.isfinite(z).all()):
            raise ValueError(f"{name} must hold finite floats (check the backbone).")
    if support_z.shape[1] != query_z.shape[1]:
        raise ValueError(
            f"support_z {tuple(support_z.shape)} and query_z {tuple(query_z.shape)} "
            "differ in the feature dimension."
        )
    check_labels(support_y, ways, name="support_y", every_class=True)
    if support_y.shape[0] != support_z.shape[0]:
        raise ValueError(
            f"support_z has {support_z.shape[0]} rows but support_y "
            f"{support_y.shape[0]} labels."
        )


def nearest_centroid_logits(
    support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor, ways: int
) -> torch.Tensor:
    """Minus the squared distance to each class mean (ProtoNet's rule, untrained).

    On the pre-trained features this is the nearest-centroid baseline; on a
    ProtoNet embedding it *is* the ProtoNet classifier, eq.
    {eq}`protonet-softmax`.
    """
    check_features(support_z, support_y, query_z, ways)
    return -squared_distances(query_z, prototypes(support_z, support_y, ways))


def fit_logistic_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    ways: int,
    *,
    l2: float,
    max_iter: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, eq. {eq}`support-logreg` on features.

    Minimises ``mean_i CE(W z_i + b, y_i) + l2/2 * ||W||_F^2`` (``b`` is not
    penalised), a strictly convex problem in ``W``, from zero weights with
    SciPy's L-BFGS-B on the exact gradient,
    ``dW = Z^T (P - Y) / n + l2 * W`` and ``db = mean_i (p_i - y_i)``, in
    float64. SciPy's solver is used rather than ``torch.optim.LBFGS`` because a
    support set is tiny: the work is in the solver's overhead, which is about
    a hundred times smaller there.

    Returns:
        ``(W [D, ways], b [ways])`` in float64, on the device of ``features``.
    """
    import numpy as np
    import scipy.optimize

    if not (isinstance(l2, (int, float)) and l2 > 0):
        raise ValueError(f"l2 must be a positive number, got {l2!r}.")
    check_positive_int("max_iter", max_iter)
    x = features.detach().double().cpu().numpy()  # [n, D]
    n, dim = x.shape
    onehot = np.eye(ways)[labels.cpu().numpy()]  # [n, ways]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        weight, bias = flat[: dim * ways].reshape(dim, ways), flat[dim * ways :]
        scores = x @ weight + bias
        scores -= scores.max(axis=1, keepdims=True)
        log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
        loss = -(onehot * log_p).sum() / n + 0.5 * l2 * (weight**2).sum()
        residual = (np.exp(log_p) - onehot) / n  # [n, ways]
        grad_w = x.T @ residual + l2 * weight
        return loss, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    found = scipy.optimize.minimize(
        objective,
        np.zeros(dim * ways + ways),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-6, "ftol": 1e-12},
    )
    solution = torch.from_numpy(found.x).to(features.device)
    return solution[: dim * ways].view(dim, ways), solution[dim * ways :]


def linear_probe_logits(
    support_z: torch.Tensor,
    support_y: torch.Tensor,
    query_z: torch.Tensor,
    ways: int,
    *,
    l2: float = 1e-2,
) -> torch.Tensor:
    """Logistic regression on the frozen features of the support set (Baseline).

    Chen et al.'s Baseline trains a new linear classifier on the frozen
    features; its convex objective is solved exactly here
    (:func:`fit_logistic_regression`) instead of by 100 epochs of SGD.
    """
    check_features(support_z, support_y, query_z, ways)
    weight, bias = fit_logistic_regression(support_z, support_y, ways, l2=l2)
    return (query_z.double() @ weight + bias).to(query_z.dtype)  # [N*Q, N]


def rfs_logits(
    support_z: torch.Tensor,
    support_y: torch.Tensor,
    query_z: torch.Tensor,
    ways: int,
    *,
    C: float = 1.0,  # noqa: N803 - scikit-learn's name, which Tian et al. use
) -> torch.Tensor:
    """Tian et al.'s RFS evaluation: L2-normalised features, logistic regression.

    Tian et al. fit scikit-learn's ``LogisticRegression`` (multinomial, L2
    penalty, ``C = 1``) on unit-length features. Its objective
    ``||W||^2 / 2 + C * sum_i CE_i`` is ours divided by ``C * n``, i.e.
    :func:`fit_logistic_regression` with ``l2 = 1 / (C * n)`` for ``n``
    support examples.
    """
    check_features(support_z, support_y, query_z, ways)
    if not (isinstance(C, (int, float)) and C > 0):
        raise ValueError(f"C must be a positive number, got {C!r}.")
    support_u, query_u = F.normalize(support_z, dim=1), F.normalize(query_z, dim=1)
    l2 = 1.0 / (C * support_z.shape[0])
    weight, bias = fit_logistic_regression(support_u, support_y, ways, l2=l2)
    return (query_u.double() @ weight + bias).to(query_z.dtype)


def cosine_classifier_logits(
    support_z: torch.Tensor,
    support_y: torch.Tensor,
    query_z: torch.Tensor,
    ways: int,
    *,
    steps: int = 100,
    lr: float = 0.01,
    init_scale: float = 10.0,
) -> torch.Tensor:
    """Baseline++: a cosine classifier with a learned scale, on frozen features.

    Logits ``s * cos(z, w_k)`` (eq. {eq}`transfer-cosine`), with class vectors
    ``w_k`` initialised to the normalised class means and the scale
    ``s = exp(log_s)`` starting at ``init_scale``; both are trained for
    ``steps`` full-batch Adam steps on the support cross-entropy. Chen et al.
    train their cosine head with SGD for 100 epochs of batches of 4, from a
    random start, with a fixed scale times a learned norm per class (weight
    normalisation); the full batch and the class-mean start make ours
    deterministic.
    """
    check_features(support_z, support_y, query_z, ways)
    check_positive_int("steps", steps)
    z = F.normalize(support_z.detach(), dim=1)
    weight = F.normalize(prototypes(z, support_y, ways), dim=1).clone()
    weight.requires_grad_(True)
    log_scale = torch.tensor(math.log(init_scale), dtype=z.dtype, device=z.device)
    log_scale.requires_grad_(True)
    optimiser = torch.optim.Adam([weight, log_scale], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimiser.zero_grad()
            logits = log_scale.exp() * z @ F.normalize(weight, dim=1).T
            F.cross_entropy(logits, support_y).backward()
            optimiser.step()
    with torch.no_grad():
        unit = F.normalize(weight, dim=1)
        return log_scale.exp() * F.normalize(query_z, dim=1) @ unit.T  # [N*Q, N]


# -------------------------------------------------- evaluators of an episode


def embed_episode(
    backbone: nn.Module, episode: Episode
) -> tuple[torch.Tensor, torch.Tensor]:
    """Support and query features from one forward pass over the whole episode."""
    if episode.support_x.shape[1:] != episode.query_x.shape[1:]:
        raise ValueError("support_x and query_x have different image shapes.")
    z = backbone(torch.cat([episode.support_x, episode.query_x]))
    if z.dim() != 2:
        raise ValueError(
            f"backbone returned {tuple(z.shape)}; it must return [B, D] features "
            "(e.g. Conv4(head=False), or backbone_of(pretrained))."
        )
    return z[: len(episode.support_y)], z[len(episode.support_y) :]


def frozen_classifier(
    backbone: nn.Module, head: Head
) -> Callable[[Episode], torch.Tensor]:
    """``classify(episode) -> logits``: ``head`` on the frozen features."""

    def classify(episode: Episode) -> torch.Tensor:
        with torch.no_grad():
            support_z, query_z = embed_episode(backbone, episode)
        return head(support_z, episode.support_y, query_z, episode.ways)

    return classify


def _check_finetune(part: str, steps: Iterable[int], lrs: tuple[float, ...]) -> None:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}.")
    for s in steps:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"steps must be non-negative ints, got {s!r}.")
    for rate in lrs:
        if not (isinstance(rate, (int, float)) and rate > 0):
            raise ValueError(f"learning rates must be positive, got {rate!r}.")


def finetune_curve_logits(
    backbone: Conv4,
    episode: Episode,
    *,
    checkpoints: Iterable[int],
    part: str = "last",
    head_lr: float = 1e-2,
    backbone_lr: float = 1e-3,
) -> dict[int, torch.Tensor]:
    """Query logits after each number of fine-tuning steps in ``checkpoints``.

    Fine-tuning (eq. {eq}`transfer-finetune`) trains a new linear head
    ``(W, b)``, initialised to zero, together with the last convolutional
    block (``part="last"``) or the whole network (``part="all"``), by
    full-batch Adam on the support cross-entropy, with its own learning rate
    for the head (``head_lr``) and for the backbone (``backbone_lr``). It works
    on copies of the weights (:func:`torch.func.functional_call` on a
    parameter dictionary), so ``backbone`` is left bitwise unchanged. A step
    feeds the support set alone; the predictions embed support and query
    together, as the frozen evaluators do. With ``part="last"`` the frozen
    first three blocks are evaluated once, not at every step.

    Args:
        backbone: a ``Conv4(head=False)``, e.g. :func:`backbone_of`.
        episode: the task.
        checkpoints: step counts at which to record the query logits
            (0: the zero head, i.e. chance).

    Returns:
        ``{steps: logits [N*Q, N]}`` for every requested count.
    """
    checkpoints = sorted(set(checkpoints))
    _check_finetune(part, checkpoints, (head_lr, backbone_lr))
    if not isinstance(backbone, Conv4) or backbone.head is not None:
        raise TypeError("backbone must be a Conv4 with head=False (see backbone_of).")
    ways = episode.ways
    check_labels(episode.support_y, ways, name="support_y", every_class=True)
    blocks = backbone.features
    trained = blocks if part == "all" else blocks[3]
    params = {
        n: p.detach().clone().requires_grad_(True)
        for n, p in trained.named_parameters()
    }
    like = {"device": episode.support_x.device, "dtype": episode.support_x.dtype}
    weight = torch.zeros(ways, backbone.embedding_dim, **like).requires_grad_(True)
    bias = torch.zeros(ways, **like).requires_grad_(True)
    optimiser = torch.optim.Adam(
        [
            {"params": list(params.values()), "lr": backbone_lr},
            {"params": [weight, bias], "lr": head_lr},
        ]
    )
    everything = torch.cat([episode.support_x, episode.query_x])
    support_in, all_in = episode.support_x, everything
    if part == "last":
        with torch.no_grad():  # the frozen blocks, evaluated once
            support_in, all_in = blocks[:3](support_in), blocks[:3](all_in)

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        z = functional_call(trained, params, (x,)).flatten(1)  # [B, D]
        return z @ weight.T + bias

    curve, done = {}, 0
    for target in checkpoints:
        with torch.enable_grad():
            for _ in range(target - done):
                optimiser.zero_grad()
                loss = F.cross_entropy(logits_of(support_in), episode.support_y)
                loss.backward()
                optimiser.step()
        done = target
        with torch.no_grad():
            curve[target] = logits_of(all_in)[len(episode.support_y) :]
    return curve


def finetune_classifier(
    backbone: Conv4, *, steps: int, **options: object
) -> Callable[[Episode], torch.Tensor]:
    """``classify(episode)``: the query logits after ``steps`` fine-tuning steps."""
    check_positive_int("steps", steps)

    def classify(episode: Episode) -> torch.Tensor:
        return finetune_curve_logits(
            backbone, episode, checkpoints=[steps], **options
        )[steps]

    return classify


# ------------------------------------------------------ timed evaluation


@dataclass(frozen=True)
class Measured:
    """An accuracy and what it cost at test time."""

    accuracy: Accuracy
    seconds_per_episode: float  # wall time per episode (embedding included)


def _episodes_on(
    episodes: Iterable[Episode], device: torch.device | str | None
) -> Iterable[Episode]:
    for episode in episodes:
        yield episode if device is None else episode.to(device)


def evaluate_heads(
    backbone: nn.Module,
    episodes: Iterable[Episode],
    heads: Mapping[str, Head],
    *,
    device: torch.device | str | None = None,
) -> dict[str, Measured]:
    """Every head on the frozen features of every episode, embedding each once.

    Equivalent to :func:`metalearn.evaluate.evaluate` of
    ``frozen_classifier(backbone, head)`` for each head, but the backbone's
    forward pass (the expensive part) is shared. The cost of a head is its
    own time plus the embedding time, both per episode.
    """
    if not heads:
        raise ValueError("heads is empty: pass e.g. {'linear probe': ...}.")
    scores: dict[str, list[float]] = {name: [] for name in heads}
    seconds = dict.fromkeys(heads, 0.0)
    embedding_seconds = 0.0
    for episode in _episodes_on(episodes, device):
        started = time.perf_counter()
        with torch.no_grad():
            support_z, query_z = embed_episode(backbone, episode)
        embedding_seconds += time.perf_counter() - started
        for name, head in heads.items():
            started = time.perf_counter()
            logits = head(support_z, episode.support_y, query_z, episode.ways)
            scores[name].append(accuracy(logits, episode.query_y))
            seconds[name] += time.perf_counter() - started
    count = len(next(iter(scores.values())))
    if count == 0:
        raise ValueError("episodes is empty.")
    return {
        name: Measured(
            _accuracy(values), (embedding_seconds + seconds[name]) / count
        )
        for name, values in scores.items()
    }


def evaluate_timed(
    classify: Callable[[Episode], torch.Tensor],
    episodes: Iterable[Episode],
    *,
    device: torch.device | str | None = None,
) -> Measured:
    """:func:`metalearn.evaluate.evaluate` without a progress bar, timed."""
    scores, started = [], time.perf_counter()
    for episode in _episodes_on(episodes, device):
        with torch.no_grad():
            scores.append(accuracy(classify(episode), episode.query_y))
    if not scores:
        raise ValueError("episodes is empty.")
    return Measured(_accuracy(scores), (time.perf_counter() - started) / len(scores))


def evaluate_finetune_curve(
    backbone: Conv4,
    episodes: Iterable[Episode],
    *,
    checkpoints: Iterable[int],
    device: torch.device | str | None = None,
    **options: object,
) -> dict[int, Accuracy]:
    """Accuracy after each number of fine-tuning steps, on the same episodes.

    Each episode is fine-tuned once, up to the largest count, and scored at
    every count on the way (:func:`finetune_curve_logits`).
    """
    checkpoints = sorted(set(checkpoints))
    scores: dict[int, list[float]] = {s: [] for s in checkpoints}
    for episode in _episodes_on(episodes, device):
        curve = finetune_curve_logits(
            backbone, episode, checkpoints=checkpoints, **options
        )
        for steps, logits in curve.items():
            scores[steps].append(accuracy(logits, episode.query_y))
    return {steps: _accuracy(values) for steps, values in scores.items()}


def _accuracy(values: list[float]) -> Accuracy:
    mean, ci95 = mean_confidence_interval(values)
    return Accuracy(
        mean=mean, ci95=ci95, episodes=len(values), per_episode=tuple(values)
    )


class EpisodePrefix(Sequence):
    """The first ``count`` episodes of a fixed test set, materialised on access."""

    def __init__(self, episodes: Sequence, count: int) -> None:
        check_positive_int("count", count)
        self.episodes, self.count = episodes, min(count, len(episodes))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Episode:
        if not isinstance(i, int) or not -self.count <= i < self.count:
            raise IndexError(f"episode {i!r} out of range for {self.count} episodes.")
        return self.episodes[i % self.count]

    def __repr__(self) -> str:
        return f"first {self.count} of {self.episodes!r}"


def first_episodes(episodes: Sequence, count: int) -> EpisodePrefix:
    """The first ``count`` episodes of a fixed test set (all if it has fewer)."""
    return EpisodePrefix(episodes, count)


def markdown_table(
    rows: Mapping[str, Mapping[str, Measured | None]],
    settings: Sequence[str],
    *,
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """A Markdown table: one row per method, mean ± 95% CI per setting.

    Args:
        rows: method -> setting -> result (``None`` or missing: "–").
        settings: the accuracy columns, in order.
        extra: more columns, column name -> method -> text.
    """
    extra = extra or {}
    header = ["method", *settings, *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, results in rows.items():
        cells = [str(results[s].accuracy) if results.get(s) else "–" for s in settings]
        cells += [column.get(method, "–") for column in extra.values()]
        lines.append("| " + " | ".join([method, *cells]) + " |")
    return "\n".join(lines)


# -------------------------------------------------- ImageNet-style inputs


def imagenet_inputs(
    images: torch.Tensor, weights: object | None = None
) -> torch.Tensor:
    """Grey few-shot images as an ImageNet network expects them.

    The three steps that the seed's ResNet-18 script leaves out: three
    channels (the grey channel repeated), the weights' own resizing (shorter
    side to 256, centre crop of 224 for ``ResNet18_Weights.DEFAULT``) and
    normalisation by the ImageNet channel means and standard deviations, all
    taken from ``weights.transforms()``; building those transforms needs no
    download.

    Args:
        images: ``[B, 1, H, W]`` or ``[B, 3, H, W]``, float in ``[0, 1]``.
        weights: a torchvision weights enum (default
            ``torchvision.models.ResNet18_Weights.DEFAULT``).

    Returns:
        ``[B, 3, 224, 224]`` float32 (for the default weights).
    """
    from torchvision.models import ResNet18_Weights

    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got {images!r}.")
    if images.shape[1] not in (1, 3) or not images.is_floating_point():
        raise ValueError(
            f"images must be float with 1 or 3 channels, got {tuple(images.shape)} "
            f"{images.dtype}; scale uint8 images to [0, 1] first."
        )
    if float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("images must lie in [0, 1] before ImageNet normalisation.")
    weights = weights if weights is not None else ResNet18_Weights.DEFAULT
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return weights.transforms()(rgb.float())


# ------------------------------------------------------------- the picture


def plot_pipelines():  # -> matplotlib.figure.Figure
    """The two pipelines side by side: pre-train then adapt, against meta-learn.

    Top row: transfer learning (one classifier over all source classes, its
    head thrown away, a new head per episode). Bottom row: meta-learning
    (episodes from the source classes, a learner trained to adapt, the same
    adaptation on each test episode). Both end on the same test episodes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(11, 4.2))
    ax.set(xlim=(0, 11), ylim=(0, 4.2))
    ax.axis("off")
    rows = {
        "transfer learning": (
            3.0,
            "tab:blue",
            [
                "source data\nall 4,112 classes\nmixed in mini-batches",
                "pre-train\n$f_\\theta$ + linear head\n(cross-entropy)",
                "drop the head,\nkeep $f_\\theta$",
                "per test episode:\nnew head on the support\n(or fine-tune a copy)",
            ],
        ),
        "meta-learning": (
            1.0,
            "tab:orange",
            [
                "source data\ncut into N-way K-shot\nepisodes",
                "meta-train\nquery loss after\nadapting on the support",
                "keep $\\theta$ and\nthe adaptation rule",
                "per test episode:\nthe same adaptation\n(prototypes, inner steps)",
            ],
        ),
    }
    for label, (y, colour, boxes) in rows.items():
        ax.text(0.05, y + 0.85, label, fontsize=11, weight="bold", color=colour)
        for i, text in enumerate(boxes):
            x = 0.2 + 2.75 * i
            ax.add_patch(
                FancyBboxPatch(
                    (x, y - 0.55), 2.2, 1.1, boxstyle="round,pad=0.05",
                    facecolor=colour, alpha=0.15, edgecolor=colour,
                )
            )
            ax.text(x + 1.1, y, text, ha="center", va="center", fontsize=8.5)
            if i < len(boxes) - 1:
                ax.add_patch(
                    FancyArrowPatch(
                        (x + 2.25, y), (x + 2.7, y), arrowstyle="-|>",
                        mutation_scale=14, color=colour,
                    )
                )
    ax.text(
        0.2 + 2.75 * 3 + 1.1, 2.0, "both scored on the same fixed test episodes",
        ha="center", va="center", fontsize=8.5, style="italic",
    )
    ax.set_title(
        "Two ways to use the source classes: pre-train then adapt, or meta-learn"
    )
    fig.tight_layout()
    return fig
