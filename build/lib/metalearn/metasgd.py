"""Meta-SGD: MAML that meta-learns one inner learning rate per weight.

Meta-SGD (Li, Zhou, Chen and Li, 2017) replaces MAML's scalar step size
``alpha`` by a tensor of the shape of ``theta``. The inner step (their
Section 3) multiplies it elementwise with the support gradient,

.. math:: \\theta'_i = \\theta - \\alpha \\circ \\nabla_\\theta
          \\mathcal{L}^{\\text{support}}_{T_i}(\\theta),

and the meta-objective is MAML's (eq. {eq}`maml-outer`), minimised over both
the initialisation and the rates:

.. math:: \\min_{\\theta, \\alpha} \\frac{1}{T} \\sum_i
          \\mathcal{L}^{\\text{query}}_{T_i}(\\theta'_i).

Nothing of MAML is re-implemented here: :func:`metalearn.maml.adapt` and
:func:`metalearn.maml.meta_loss` accept the rates as ``inner_lr`` (a mapping
parameter name -> tensor). This module only owns the rates, as parameters of
a :class:`MetaSGD` module next to the model's, so that one optimiser over
``metasgd.parameters()`` updates ``theta`` and ``alpha`` with the same
meta-gradient step, as in Algorithm 1 of Li et al.

Example::

    metasgd = MetaSGD(Conv4(ways=5), init_lr=0.4)
    step = make_metasgd_step(metasgd, images, ways=5, shots=1, queries=15,
                             meta_batch_size=32, steps=1, first_order=False)
    optimiser = torch.optim.Adam(metasgd.parameters(), lr=1e-3)
    loss, metrics = step(generator)
    loss.backward()  # fills .grad of the weights and of the rates
    optimiser.step()

For other task samplers (e.g. sinusoids), pass ``inner_lr=metasgd.inner_lr``
to :func:`metalearn.maml.maml_step_from_sampler` with ``metasgd.model``.

Reference: Li, Zhou, Chen and Li (2017), *Meta-SGD: Learning to Learn Quickly
for Few-Shot Learning*, arXiv:1707.09835.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from metalearn.episodes import Episode
from metalearn.maml import LossFn, Step, make_maml_step, maml_classifier


def rate_key(name: str) -> str:
    """The :class:`~torch.nn.ParameterDict` key of the rate of parameter ``name``.

    Keys of a ``ParameterDict`` cannot contain ``"."``, so ``"head.weight"``
    becomes ``"head-weight"`` (``"-"`` cannot occur in a Python attribute name).
    """
    return name.replace(".", "-")


class MetaSGD(nn.Module):
    """A model together with its meta-learned per-parameter inner rates ``alpha``.

    Every parameter of ``model`` gets a rate tensor of its own shape in
    :attr:`inner_lrs`, initialised to the constant ``init_lr``. That follows
    learn2learn's ``MetaSGD(model, lr)``, so the two can be compared exactly;
    Li et al. (2017) instead draw the initial rates at random from a range.
    The rates are not kept positive: Li et al. learn the update direction
    along with the step size, so meta-training may turn some rates negative.

    Calling the module calls ``model``. Train with :func:`make_metasgd_step`
    and an optimiser over ``self.parameters()`` (weights and rates); evaluate
    with :func:`metasgd_classifier`.

    Args:
        model: the network whose parameters are ``theta``, e.g.
            :class:`~metalearn.models.Conv4`.
        init_lr: the initial value of every rate (finite, > 0).

    Attributes:
        model: the wrapped network.
        inner_lrs: the rates, keyed by :func:`rate_key` of the parameter names;
            use :attr:`inner_lr` for the mapping in the model's own names.
    """

    def __init__(self, model: nn.Module, init_lr: float) -> None:
        super().__init__()
        if isinstance(init_lr, bool) or not isinstance(init_lr, (int, float)):
            raise TypeError(f"init_lr must be a float, got {init_lr!r}.")
        if not 0 < init_lr < math.inf:  # also rejects NaN
            raise ValueError(f"init_lr must be finite and > 0, got {init_lr}.")
        named = dict(model.named_parameters())
        if not named:
            raise ValueError("model has no parameters to meta-learn.")
        keys = [rate_key(name) for name in named]
        if len(set(keys)) != len(keys):
            raise ValueError(f"parameter names collide as rate keys: {keys}.")
        self.model = model
        self.init_lr = float(init_lr)
        # Pairs, not a dict: ParameterDict would sort a dict's keys, and the
        # rates are easier to read in the model's order. Each rate has the
        # shape, dtype and device of its parameter.
        self.inner_lrs = nn.ParameterDict(
            [
                (rate_key(name), nn.Parameter(torch.full_like(p.detach(), init_lr)))
                for name, p in named.items()
            ]
        )

    @property
    def inner_lr(self) -> dict[str, nn.Parameter]:
        """``alpha`` as ``inner_lr`` for :mod:`metalearn.maml`: name -> rate.

        The keys are ``model``'s parameter names (``"head.weight"``), in the
        order of ``model.named_parameters()``; the values are the rate
        parameters themselves (not copies), so gradients reach them.
        """
        return {
            name: self.inner_lrs[rate_key(name)]
            for name, _ in self.model.named_parameters()
        }

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.model(*args, **kwargs)  # the rates only act in adapt()

    def extra_repr(self) -> str:
        return f"init_lr={self.init_lr}"


def make_metasgd_step(
    metasgd: MetaSGD,
    images: torch.Tensor,
    *,
    ways: int,
    shots: int,
    queries: int,
    meta_batch_size: int,
    steps: int,
    first_order: bool,
    device: torch.device | str | None = None,
    vectorise: bool = True,
    chunk_size: int | None = None,
) -> Step:
    """A training-loop ``step`` for N-way K-shot Meta-SGD on an image tensor.

    :func:`metalearn.maml.make_maml_step` on ``metasgd.model`` with the rates
    ``metasgd.inner_lr`` as ``inner_lr``: each call samples ``meta_batch_size``
    episodes and returns the meta-loss of eq. {eq}`maml-outer` after the
    Meta-SGD inner steps ``theta' = theta - alpha o grad L_support(theta)``
    (Li et al. 2017, Section 3). ``loss.backward()`` fills ``.grad`` of the
    weights and of the rates, so ``torch.optim.Adam(metasgd.parameters(),
    lr=meta_lr)`` trains both. With ``first_order=True`` the rates still get
    their (exact) gradient; only ``theta``'s loses the second-order term.

    The step holds the rate parameters themselves: updates in place (an
    optimiser, ``load_state_dict``, ``.to(device)``) are seen by later calls;
    replacing an entry of ``metasgd.inner_lrs`` is not.

    Args:
        metasgd: the model and its rates.
        images: ``[classes, examples, C, H, W]`` (e.g. Omniglot's train split).
        ways: N. shots: K. queries: query examples per class.
        meta_batch_size: T, tasks per meta-update.
        steps: inner gradient steps (1 in Li et al.).
        first_order: drop the second-order term of the meta-gradient.
        device: where to compute; ``None``: the model's device.
        vectorise: ``vmap`` over tasks, or a loop.
        chunk_size: with ``vectorise``, tasks per ``vmap`` chunk.

    Returns:
        ``step(generator) -> (loss, {"query_loss", "query_acc"})``.
    """
    if not isinstance(metasgd, MetaSGD):
        raise TypeError(f"metasgd must be a MetaSGD, got {type(metasgd).__name__}.")
    return make_maml_step(
        metasgd.model,
        images,
        ways=ways,
        shots=shots,
        queries=queries,
        meta_batch_size=meta_batch_size,
        inner_lr=metasgd.inner_lr,
        steps=steps,
        first_order=first_order,
        device=device,
        vectorise=vectorise,
        chunk_size=chunk_size,
    )


def metasgd_classifier(
    metasgd: MetaSGD,
    *,
    steps: int,
    loss_fn: LossFn = F.cross_entropy,
) -> Callable[[Episode], torch.Tensor]:
    """Meta-test-time Meta-SGD: adapt with the learned rates, score the queries.

    :func:`metalearn.maml.maml_classifier` with ``inner_lr=metasgd.inner_lr``
    (weights and rates detached, read afresh at every call), for
    :func:`metalearn.evaluate.evaluate`. The rates were learned for the
    number of inner steps used in training, so test with the same ``steps``
    (one in Li et al. 2017) unless you measure otherwise.

    Args:
        metasgd: the meta-trained model and rates.
        steps: inner steps at test time.
        loss_fn: the support loss.

    Returns:
        ``classify(episode) -> logits [N*Q, N]``.
    """
    if not isinstance(metasgd, MetaSGD):
        raise TypeError(f"metasgd must be a MetaSGD, got {type(metasgd).__name__}.")
    return maml_classifier(
        metasgd.model, inner_lr=metasgd.inner_lr, steps=steps, loss_fn=loss_fn
    )


__all__ = ["MetaSGD", "make_metasgd_step", "metasgd_classifier", "rate_key"]
