"""Argument checks shared by the library: loud, specific errors in one place.

Every public function checks what it is given *where the data enters* and
raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, bad
value) with a message that names the argument, the bad value and the fix.
The checks are cheap: sizes and types cost nothing, and a value check over a
whole tensor (finite, in range) is one ``aminmax`` pass, done once when a data
set enters (a sampler, a training step being built), never in an inner loop
whose inputs the library has already validated.

The conventions checked here:

* **Images** of a data set are ``[classes, examples, C, H, W]``; ``uint8``
  pixel values (0..255) are the contract, floating-point images are used as
  given and must be finite. Non-negative float images above 1 are refused:
  they are pixel values converted with ``.float()`` but not scaled.
* **Labels** are ``int64`` tensors with values in ``0..ways-1``.
* **Sizes** (``ways``, ``shots``, ...) are ``int >= 1``; **rates and scales**
  are finite positive real numbers; **seeds** fit in 64 bits.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn

#: Seeds are passed to ``torch.Generator.manual_seed``, which takes 64 bits.
MAX_SEED = 2**64 - 1


def _kind(value: object) -> str:
    """A short description of ``value`` for an error message."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


# ------------------------------------------------------------------ scalars


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int >= 1``; raise otherwise.

    Sizes such as ``ways`` (N), ``shots`` (K), ``queries``, ``tasks`` and
    layer widths all go through this check, so they fail with the same message.

    Args:
        name: the argument's name, quoted in the error message.
        value: the value to check.

    Returns:
        ``value``, unchanged.

    Raises:
        TypeError: ``value`` is not an ``int`` (a ``bool`` is rejected too).
        ValueError: ``value < 1``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {_kind(value)}.")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}.")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool``; raise ``TypeError`` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_kind(value)}.")
    return value


def check_seed(name: str, value: object) -> int:
    """Return ``value`` if it is an int in ``0 .. 2**64 - 1`` (a valid seed).

    Raises:
        TypeError: not an ``int`` (``bool`` and floats are rejected).
        ValueError: negative, or too large for the 64 bits of a torch seed.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {_kind(value)}.")
    if not 0 <= value <= MAX_SEED:
        raise ValueError(
            f"{name} must be in 0..2**64-1 (a seed fits in 64 bits), got {value}."
        )
    return value


def check_real(name: str, value: object) -> float:
    """``value`` as a float if it is a finite real number (not a bool or tensor).

    Raises:
        TypeError: ``value`` is not a real number (e.g. a string, a complex
            number, a tensor or ``None``).
        ValueError: ``value`` is NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_kind(value)}.")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return number


def check_positive_float(
    name: str, value: object, *, maximum: float | None = None, hint: str = ""
) -> float:
    """``value`` as a float if it is finite, ``> 0`` (and ``<= maximum``).

    Learning rates, scales, temperatures and penalties go through this check.

    Args:
        name: the argument's name, quoted in the error message.
        value: the value to check.
        maximum: the largest sensible value, if there is one.
        hint: a sentence appended to the error message (e.g. usual values).

    Raises:
        TypeError: not a real number.
        ValueError: NaN, infinite, ``<= 0`` or above ``maximum``.
    """
    suffix = f" {hint}" if hint else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {_kind(value)}.")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(
            f"{name} must be a finite positive number, got {value!r}.{suffix}"
        )
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be at most {maximum:g}, got {value!r}.{suffix}")
    return number


def check_interval(name: str, value: object) -> tuple[float, float]:
    """A pair ``(low, high)`` of finite real numbers with ``low < high``."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(
            f"{name} must be a pair (low, high) of numbers, got {_kind(value)}."
        )
    low = check_real(f"{name}[0]", value[0])
    high = check_real(f"{name}[1]", value[1])
    if not low < high:
        raise ValueError(f"{name} must have low < high, got {(low, high)}.")
    return low, high


def check_real_sequence(name: str, values: object) -> list[float]:
    """``values`` (a sequence or tensor of real numbers) as a list of floats.

    NaN and infinity are allowed (a curve may have gaps); check them apart.

    Raises:
        TypeError: not a sequence (a string is not one), or an item that is
            not a real number.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().flatten().tolist()
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers, got {_kind(values)}.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must hold real numbers, got {_kind(value)}.")
    return [float(v) for v in values]


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; raise ``ValueError``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")
    return value


# ------------------------------------------------------------------- objects


def check_generator(
    name: str, value: object, *, optional: bool = True
) -> torch.Generator | None:
    """Return ``value`` if it is a ``torch.Generator`` (or ``None`` if optional).

    Raises:
        TypeError: anything else, e.g. an int seed; the message shows how to
            make a generator from a seed.
    """
    if value is None and optional:
        return None
    if not isinstance(value, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator, got {_kind(value)}. Make one from "
            "a seed with torch.Generator().manual_seed(seed)."
        )
    return value


def check_module(name: str, value: object) -> nn.Module:
    """Return ``value`` if it is an ``nn.Module``; raise ``TypeError`` otherwise."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {_kind(value)}.")
    return value


def check_device(name: str, value: object) -> torch.device | None:
    """``value`` as a ``torch.device`` (``None`` stays ``None``).

    Raises:
        TypeError: not a ``str``, ``torch.device`` or ``None``.
        ValueError: a string that is not a device name (e.g. ``"gpu"``).
    """
    if value is None:
        return None
    if not isinstance(value, str | torch.device):
        raise TypeError(
            f"{name} must be a torch.device, a string such as 'cpu' or 'cuda', or "
            f"None, got {_kind(value)}."
        )
    try:
        return torch.device(value)
    except RuntimeError as exc:
        raise ValueError(
            f"{name}={value!r} is not a device name; use e.g. 'cpu', 'cuda' or "
            "'cuda:0' (metalearn.runtime.default_device() picks one)."
        ) from exc


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a ``torch.Tensor``; raise ``TypeError``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_kind(value)}.")
    return value


# ------------------------------------------------------------------- tensors


def has_values(tensor: torch.Tensor) -> bool:
    """False for tensors without data (the ``meta`` device): skip value checks."""
    return tensor.device.type != "meta"


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if a floating-point ``tensor`` holds NaN or infinity.

    One ``aminmax`` pass (NaN propagates to both ends, infinities show there).
    """
    if tensor.is_floating_point() and tensor.numel() and has_values(tensor):
        low, high = torch.aminmax(tensor.detach())
        low, high = float(low), float(high)
        if math.isnan(low) or math.isnan(high):
            raise ValueError(f"{name} contains NaN.")
        if math.isinf(low) or math.isinf(high):
            raise ValueError(f"{name} contains infinite values (range {low}..{high}).")
    return tensor


def check_float_tensor(
    name: str,
    value: object,
    *,
    dims: int | None = None,
    min_dims: int = 1,
    layout: str = "",
    module: nn.Module | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """A non-empty floating-point tensor (inputs of a model, embeddings, scores).

    Args:
        name: the argument's name, quoted in the error message.
        value: the value to check.
        dims: the exact number of dimensions, if fixed.
        min_dims: the smallest number of dimensions.
        layout: the expected shape in words, e.g. ``"[N*K, C, H, W]"``.
        module: if given, ``value`` must have the dtype and device of its first
            floating-point parameter (the module will be applied to it).
        finite: also check for NaN and infinity (one pass over the tensor).

    Raises:
        TypeError: not a tensor, an integer/complex dtype, or a dtype or device
            that differs from ``module``'s parameters.
        ValueError: wrong number of dimensions, empty, NaN or infinity.
    """
    tensor = check_tensor(name, value)
    shape = f" {layout}" if layout else ""
    if not tensor.is_floating_point():
        fix = (
            " Scale uint8 pixels with x.float() / 255."
            if tensor.dtype == torch.uint8
            else " Convert it with x.float()."
            if not tensor.is_complex()
            else ""
        )
        raise TypeError(
            f"{name} must be a floating-point tensor{shape}, got dtype "
            f"{tensor.dtype}.{fix}"
        )
    if (dims is not None and tensor.dim() != dims) or tensor.dim() < min_dims:
        wanted = f"{dims}" if dims is not None else f"at least {min_dims}"
        raise ValueError(
            f"{name} must have {wanted} dimensions{shape}, got shape "
            f"{tuple(tensor.shape)}."
        )
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(tensor.shape)}.")
    if module is not None:
        check_matches_module(name, tensor, module)
    if finite:
        check_finite(name, tensor)
    return tensor


def check_matches_module(name: str, tensor: torch.Tensor, module: nn.Module) -> None:
    """Raise ``TypeError`` unless ``tensor`` has the dtype and device of ``module``.

    Compared with the module's first floating-point parameter; a module
    without parameters accepts anything.
    """
    reference = next((p for p in module.parameters() if p.is_floating_point()), None)
    if reference is None:
        return
    if tensor.dtype != reference.dtype:
        raise TypeError(
            f"{name} is {tensor.dtype} but the model's parameters are "
            f"{reference.dtype}; convert one of them, e.g. x.to({reference.dtype}) "
            f"or model.to({tensor.dtype})."
        )
    if tensor.device != reference.device:
        raise TypeError(
            f"{name} is on {tensor.device} but the model is on {reference.device}; "
            f"move it with x.to({str(reference.device)!r})."
        )


def check_images(
    images: object,
    *,
    name: str = "images",
    dims: int = 5,
    layout: str = "[classes, examples, C, H, W]",
    values: bool = True,
) -> torch.Tensor:
    """Check a data set of images; return it unchanged.

    Accepted: ``uint8`` pixel values (the contract of the data loaders), or
    floating-point images that are finite; non-negative float images must not
    exceed 1 (above 1 they are 0..255 pixel values that were not scaled).

    Args:
        images: the tensor to check.
        name: the argument's name, quoted in the error message.
        dims: the number of dimensions of ``layout``.
        layout: the expected shape, quoted in the error message.
        values: also check the values of float images (one ``aminmax`` pass;
            a ``uint8`` tensor needs no pass).

    Raises:
        TypeError: not a tensor, or a dtype other than ``uint8`` or floating
            point (e.g. ``int64``, ``bool``, complex).
        ValueError: wrong number of dimensions, a zero-sized dimension (e.g.
            0x0 images), NaN or infinity, or unscaled 0..255 float values.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {layout}, got {_kind(images)}.")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(
            f"{name} have dtype {images.dtype}; pass uint8 pixel values 0..255 "
            f"({name}.to(torch.uint8)) or floating-point intensities in [0, 1] "
            f"({name}.float() / 255)."
        )
    if images.dim() != dims:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(images.shape)}.")
    if 0 in images.shape:
        raise ValueError(
            f"{name} is empty: shape {tuple(images.shape)} {layout} has a "
            "zero-sized dimension."
        )
    if values and images.is_floating_point() and has_values(images):
        low, high = (float(v) for v in torch.aminmax(images.detach()))
        if math.isnan(low) or math.isnan(high):
            raise ValueError(f"{name} contain NaN; fix or drop those images.")
        if math.isinf(low) or math.isinf(high):
            raise ValueError(f"{name} contain infinite values ({low}..{high}).")
        if low >= 0 and high > 1:
            raise ValueError(
                f"{name} are {images.dtype} with values in [{low:g}, {high:g}]: "
                "pixel values 0..255 that were not scaled. Pass the uint8 tensor "
                f"({name}.to(torch.uint8)) or scale it ({name} / 255)."
            )
    return images


def check_labels(
    labels: object, ways: int, *, name: str = "support_y", every_class: bool
) -> torch.Tensor:
    """Raise a clear error unless ``labels`` are ``int64`` in ``0..ways-1``.

    Args:
        labels: ``[n]`` integer class labels.
        ways: N, the number of classes.
        name: the argument name to quote in the error.
        every_class: also require at least one example of every class (a
            class without support examples has no prototype).

    Returns:
        The number of examples of each class, ``[ways]`` (int64).

    Raises:
        TypeError: ``labels`` is not an ``int64`` tensor (floating-point
            values, e.g. probabilities, are named as such) or ``ways`` not an
            int.
        ValueError: wrong shape, a label outside ``0..ways-1``, or (with
            ``every_class``) a class with no example.
    """
    check_positive_int("ways", ways)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be an integer tensor, got {_kind(labels)}.")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(
            f"{name} must be an integer tensor of class labels 0..{ways - 1}, got "
            f"dtype {labels.dtype}. If these are scores or probabilities, take the "
            "labels with .argmax(dim=1)."
        )
    if labels.dtype != torch.int64:
        raise TypeError(
            f"{name} must be int64 (torch.long), got {labels.dtype}; convert it "
            f"with {name}.long()."
        )
    if labels.dim() != 1 or labels.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}."
        )
    if not has_values(labels):
        return torch.ones(ways, dtype=torch.int64)
    low, high = (int(v) for v in torch.aminmax(labels))
    if low < 0 or high >= ways:
        bad = labels[(labels < 0) | (labels >= ways)].unique().tolist()
        raise ValueError(
            f"{name} holds labels {bad} outside 0..{ways - 1} (ways={ways})."
        )
    counts = torch.bincount(labels, minlength=ways)  # [ways]
    if every_class and bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"class(es) {missing} have no example in {name} (ways={ways}); every "
            "class needs at least one support example."
        )
    return counts


def check_scores(name: str, scores: object, *, rows: int, ways: int) -> torch.Tensor:
    """Check a classifier's output: finite float scores ``[rows, ways]``.

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: another shape (the model's output width must equal the
            episode's ``ways``), NaN or infinity.
    """
    tensor = check_float_tensor(
        name, scores, dims=2, layout=f"[{rows}, {ways}]", finite=False
    )
    if tensor.shape[1] != ways:
        raise ValueError(
            f"{name} has {tensor.shape[1]} columns but the episode is {ways}-way; "
            f"the model must output one score per class (e.g. Conv4(ways={ways}))."
        )
    if tensor.shape[0] != rows:
        raise ValueError(
            f"{name} has {tensor.shape[0]} rows but there are {rows} queries."
        )
    if has_values(tensor):
        low, high = (float(v) for v in torch.aminmax(tensor.detach()))
        if math.isnan(low) or math.isnan(high):
            raise ValueError(
                f"{name} contain NaN: the model's weights or inputs are not finite."
            )
    return tensor


def check_support_and_query(
    embedding, support_x, support_y, query_x, ways: int
) -> None:
    """The inputs of an embedding-based few-shot classifier (ProtoNet, Matching).

    The embedding is a module, ``ways`` a positive int, the images float tensors
    of at least 2 dims on the embedding's dtype/device, ``support_y`` int64
    labels covering ``0..ways-1``, one label per support image.
    """
    check_module("embedding", embedding)
    check_positive_int("ways", ways)
    for name, x in (("support_x", support_x), ("query_x", query_x)):
        check_float_tensor(
            name, x, min_dims=2, layout="[examples, C, H, W]", module=embedding
        )
    check_labels(support_y, ways, name="support_y", every_class=True)
    if support_x.shape[0] != support_y.shape[0]:
        raise ValueError(
            f"support_x has {support_x.shape[0]} examples but support_y has "
            f"{support_y.shape[0]} labels."
        )
