"""The networks of the MAML paper: the Omniglot Conv-4 and the sinusoid MLP.

Both are ordinary :class:`torch.nn.Module` s, and both can be called
functionally with :func:`torch.func.functional_call` on a dictionary of
parameters, which is how :mod:`metalearn.maml` evaluates adapted weights
without ever writing into the module.

Reference: Finn, Abbeel and Levine (2017), *Model-Agnostic Meta-Learning for
Fast Adaptation of Deep Networks*, ICML, Section 5 (architectures) and
Vinyals et al. (2016) for the Conv-4 embedding.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from metalearn.checks import check_positive_int

_OP_BY_OP: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "metalearn_batch_norm_op_by_op", default=False
)


@contextlib.contextmanager
def op_by_op_batch_norm() -> Iterator[None]:
    """Inside this block, :class:`BatchNorm` uses its op-by-op form.

    One place needs it: every :func:`torch.func.vmap` over a network with
    :class:`BatchNorm` (``metalearn.maml``, ``metalearn.reptile`` and
    ``metalearn.pretrain`` enter it there), because ``vmap`` over the fused
    batch-norm backward gives a wrong second-order meta-gradient (PyTorch
    functorch issue #534). Everywhere else, the second-order pass of MAML's
    loop included, the fused kernel gives the same gradients to rounding
    (tested against finite differences and learn2learn in float64) and is
    about twice as fast, so it is the default.
    """
    token = _OP_BY_OP.set(True)
    try:
        yield
    finally:
        _OP_BY_OP.reset(token)


class BatchNorm(nn.Module):
    """Batch normalisation with per-batch statistics (twice differentiable).

    Normalises each channel with the mean and (biased) variance of the *current*
    batch over ``(N, H, W)``, then applies a learnable affine map::

        y = weight * (x - mean) / sqrt(var + eps) + bias

    There are no running statistics: the module behaves the same in ``train()``
    and ``eval()`` mode, exactly like ``nn.BatchNorm2d`` in training mode. This
    is the *transductive* batch norm of MAML (Finn et al. 2017 evaluate with
    the statistics of the test batch), so a prediction depends on the other
    examples in its batch.

    Two implementations of the same function. By default the fused kernel
    (``F.batch_norm`` in training mode, no running statistics). Inside
    :func:`op_by_op_batch_norm` it is written from basic ops (``var_mean``,
    ``rsqrt``, ``addcmul``), because ``torch.func.vmap`` over the fused
    backward gives a wrong second-order meta-gradient (relative error ~1e-3,
    in float64 too; PyTorch functorch issue #534). Both agree to rounding
    error, and both are tested against finite differences and learn2learn.

    Args:
        channels: C, the number of channels.
        eps: added to the variance for numerical stability.

    Shapes:
        input ``[N, C, H, W]`` (or ``[N, C]``) -> output of the same shape.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}.")
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))  # [C], gamma
        self.bias = nn.Parameter(torch.zeros(channels))  # [C], beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 4) or x.shape[1] != self.channels:
            raise ValueError(
                f"BatchNorm({self.channels}) expects [N, {self.channels}, H, W] "
                f"or [N, {self.channels}], got {tuple(x.shape)}."
            )
        if not _OP_BY_OP.get():
            # The fused kernel: the same function, about 2x faster on CPU.
            return F.batch_norm(
                x, None, None, self.weight, self.bias, training=True, eps=self.eps
            )
        dims = [0] if x.dim() == 2 else [0, 2, 3]
        shape = [1, -1] + [1] * (x.dim() - 2)  # broadcast over N (and H, W)
        mean = x.mean(dim=dims, keepdim=True)  # [1, C, 1, 1]
        var = (x - mean).pow(2).mean(dim=dims, keepdim=True)  # biased; two passes
        scale = self.weight.view(shape) * torch.rsqrt(var + self.eps)  # [1, C, 1, 1]
        shift = self.bias.view(shape) - mean * scale  # [1, C, 1, 1]
        return torch.addcmul(shift, x, scale)  # weight * x_hat + bias

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, per-batch statistics"


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv 3x3 (padding 1) -> batch norm -> ReLU -> 2x2 max-pool (halves H, W)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        BatchNorm(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """The Conv-4 network of MAML's Omniglot experiments.

    Four blocks of [conv 3x3 with ``hidden`` filters, batch norm, ReLU, 2x2
    max-pool], then flatten and (if ``head``) a linear layer to ``ways``
    logits (Finn et al. 2017, Section 5.2; Vinyals et al. 2016). With
    ``head=False`` it is an embedding network returning features, e.g. for
    Prototypical Networks.

    Batch norm uses the statistics of the current batch, always (no running
    statistics, in ``train()`` and ``eval()`` mode alike), as in MAML's
    transductive setting: the support set is normalised with its own statistics
    during adaptation and the query set with its own when predicting, so
    accuracy depends on the query batch size. See :class:`BatchNorm`.

    Args:
        in_channels: C of the input images (1 for Omniglot).
        ways: N, the number of output logits (ignored if ``head=False``).
        hidden: filters per convolution (64 in the paper).
        head: add the linear classifier; ``False`` returns features.
        image_size: height = width of the inputs (28 for Omniglot, 84 for
            miniImageNet); at least 16, since four poolings halve it.

    Shapes:
        input ``[B, C, image_size, image_size]`` -> ``[B, ways]`` logits, or
        ``[B, embedding_dim]`` features with ``head=False``, where
        ``embedding_dim = hidden * (image_size // 16) ** 2`` (64 for 28x28).
    """

    def __init__(
        self,
        in_channels: int = 1,
        ways: int = 5,
        hidden: int = 64,
        *,
        head: bool = True,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("ways", ways)
        check_positive_int("hidden", hidden)
        check_positive_int("image_size", image_size)
        if image_size < 16:
            raise ValueError(
                f"image_size must be >= 16 (four 2x2 poolings), got {image_size}."
            )
        self.in_channels, self.ways, self.hidden = in_channels, ways, hidden
        self.image_size = image_size
        side = image_size
        for _ in range(4):
            side //= 2  # max-pool floors: 28 -> 14 -> 7 -> 3 -> 1
        self.embedding_dim = hidden * side * side
        self.features = nn.Sequential(
            conv_block(in_channels, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
        )
        self.head = nn.Linear(self.embedding_dim, ways) if head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"Conv4 expects images [B, {', '.join(map(str, expected))}], "
                f"got {tuple(x.shape)}."
            )
        check_input_dtype("Conv4", x, self.features[0][0].weight)
        z = self.features(x)  # [B, hidden, side, side]
        z = z.flatten(1)  # [B, embedding_dim]
        return z if self.head is None else self.head(z)  # [B, ways] logits


class MLP(nn.Module):
    """A fully connected ReLU network, 1-40-40-1 by default.

    The regressor of MAML's sinusoid experiment (Finn et al. 2017, Section
    5.1): two hidden layers of 40 units with ReLU.

    Args:
        in_features: input dimension.
        hidden: the widths of the hidden layers.
        out_features: output dimension.

    Shapes:
        input ``[B, in_features]`` -> output ``[B, out_features]``.
    """

    def __init__(
        self,
        in_features: int = 1,
        hidden: tuple[int, ...] = (40, 40),
        out_features: int = 1,
    ) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        for width in hidden:
            check_positive_int("hidden width", width)
        self.in_features, self.out_features = in_features, out_features
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"MLP expects inputs [B, {self.in_features}], got {tuple(x.shape)}."
            )
        check_input_dtype("MLP", x, self.layers[0].weight)
        return self.layers(x)  # [B, out_features]


def check_input_dtype(model: str, x: torch.Tensor, weight: torch.Tensor) -> None:
    """Raise a clear error when ``x`` cannot meet ``weight`` (dtype or device).

    Only metadata is read (no pass over the data), so it is cheap in the inner
    loop; under ``torch.func`` transforms the dtypes are those of the wrapped
    tensors, the same check.
    """
    if not x.is_floating_point():
        fix = " (scale uint8 images with x.float() / 255)" if (
            x.dtype == torch.uint8
        ) else ""
        raise TypeError(f"{model} expects floating-point inputs, got {x.dtype}{fix}.")
    if x.dtype != weight.dtype:
        raise TypeError(
            f"{model} has {weight.dtype} weights but the inputs are {x.dtype}: "
            f"convert one, e.g. x.to({weight.dtype}) or model.to({x.dtype})."
        )
    if x.device != weight.device:
        raise ValueError(
            f"{model}'s weights are on {weight.device} but the inputs on {x.device}: "
            f"move them, e.g. x.to('{weight.device}')."
        )


def count_parameters(model: nn.Module) -> int:
    """The number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["BatchNorm", "Conv4", "MLP", "conv_block", "count_parameters"]
