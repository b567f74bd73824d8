"""The Conv-4 on a batch of tasks, each with its own weights, as batched GEMMs.

MAML evaluates the network of every task of a meta-batch with that task's
adapted weights ``theta'_i``. :func:`torch.func.vmap` turns those per-task
convolutions into grouped convolutions, which are slow on a CPU when the
batches are large (see ``metalearn.maml.meta_loss``); a loop over tasks runs
32 small networks one after another. Here every convolution of all ``T``
tasks is written as one batched matrix product (``torch.baddbmm``) of an
im2col matrix with the tasks' filters::

    y_i = cols(x_i) W_i^T + b_i,        i = 1..T,

with ``cols(x_i) [N*H*W, C*9]`` (the 3x3 neighbourhood of every pixel, in
channels-last order) and ``W_i [O, C*9]`` (the filters of task ``i``). The
batch norm normalises each task with its own statistics over ``(N, H, W)``
(written from basic ops, so it is twice differentiable, as in
:class:`metalearn.models.BatchNorm`), and ReLU and the 2x2 max-pool act on
all tasks at once. The function is exactly :class:`metalearn.models.Conv4`
applied task by task; ``tests/test_conv4_batched.py`` checks it against the
module, and ``tests/test_maml.py`` the meta-gradients built on it against
learn2learn's and finite differences.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from metalearn.models import Conv4


def supports(model: torch.nn.Module, buffers: Mapping[str, torch.Tensor]) -> bool:
    """Whether :func:`logits` can evaluate ``model``: a :class:`Conv4` with its
    linear head, the library's :class:`~metalearn.models.BatchNorm` and no
    buffers."""
    return isinstance(model, Conv4) and model.head is not None and not buffers


def _block(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """conv 3x3 (padding 1) -> batch norm -> ReLU -> 2x2 max-pool, per task.

    Shapes: ``x [T, N, H, W, C]`` (channels last), ``weight [T, O, C, 3, 3]``,
    ``bias``, ``gamma``, ``beta [T, O]`` -> ``[T, N, H // 2, W // 2, O]``.
    """
    tasks, n, height, width, channels = x.shape
    out = weight.shape[1]
    padded = F.pad(x.reshape(tasks * n, height, width, channels), (0, 0, 1, 1, 1, 1))
    cols = torch.stack(  # the 9 shifted copies, [T*N, H, W, C, 9]
        [
            padded[:, dy : dy + height, dx : dx + width, :]
            for dy in range(3)
            for dx in range(3)
        ],
        dim=-1,
    ).view(tasks, n * height * width, channels * 9)  # [T, M, C*9]; c*9 + 3*dy + dx
    filters = weight.reshape(tasks, out, channels * 9).transpose(1, 2)  # [T, C*9, O]
    y = torch.baddbmm(bias.unsqueeze(1), cols, filters)  # [T, M, O]
    var, mean = torch.var_mean(y, dim=1, keepdim=True, correction=0)  # [T, 1, O]
    scale = gamma.unsqueeze(1) * torch.rsqrt(var + eps)
    shift = beta.unsqueeze(1) - mean * scale
    y = torch.relu(torch.addcmul(shift, y, scale))  # gamma * x_hat + beta, ReLU
    # An NCHW view of channels-last memory: max_pool2d keeps the layout.
    y = F.max_pool2d(y.view(tasks * n, height, width, out).permute(0, 3, 1, 2), 2)
    side_h, side_w = y.shape[-2:]
    return y.permute(0, 2, 3, 1).reshape(tasks, n, side_h, side_w, out)


def logits(
    model: Conv4, params: Mapping[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """``model`` applied to every task's images with that task's weights.

    Args:
        model: the :class:`Conv4` (read for its names and ``eps``; its own
            weights are not used).
        params: name -> ``[T, *shape]``, the weights of every task (the keys
            of ``model.named_parameters()``).
        x: images ``[T, N, C, H, W]``.

    Returns:
        ``[T, N, ways]``: ``out[i] == functional_call(model, params_i, x[i])``
        up to rounding, with ``params_i = {name: p[i]}``.
    """
    if not supports(model, {}):
        raise TypeError(
            f"conv4_batched.logits needs a Conv4 with a head, got {model!r}."
        )
    expected = (model.in_channels, model.image_size, model.image_size)
    if x.dim() != 5 or tuple(x.shape[2:]) != expected:
        raise ValueError(
            f"Conv4 expects images [T, N, {', '.join(map(str, expected))}] for all "
            f"tasks at once, got {tuple(x.shape)}."
        )
    tasks, n = x.shape[:2]
    h = x.permute(0, 1, 3, 4, 2)  # [T, N, H, W, C]
    for i, block in enumerate(model.features):
        h = _block(
            h,
            params[f"features.{i}.0.weight"],
            params[f"features.{i}.0.bias"],
            params[f"features.{i}.1.weight"],
            params[f"features.{i}.1.bias"],
            block[1].eps,
        )
    # Flatten in the NCHW order of Conv4.forward: [T, N, O, h, w] -> [T, N, O*h*w].
    features = h.permute(0, 1, 4, 2, 3).reshape(tasks, n, -1)
    head_w, head_b = (
        params["head.weight"],
        params["head.bias"],
    )  # [T, ways, D], [T, ways]
    return torch.baddbmm(head_b.unsqueeze(1), features, head_w.transpose(1, 2))


__all__ = ["logits", "supports"]
