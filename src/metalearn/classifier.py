"""A few-shot classifier for your own images, built from a meta-trained model.

:class:`FewShotClassifier` wraps a trained network behind two calls::

    classifier = FewShotClassifier(embedding)           # a ProtoNet embedding
    classifier.fit(support_images, ["alpha", "beta", "alpha", "beta"])
    classifier.predict(["query1.png", query_array])     # -> ["beta", "alpha"]

``fit`` only stores the support set; nothing is trained. Images may be file
paths, PIL images, NumPy arrays or torch tensors, of any size and colour; they
are converted to what the book's Omniglot models expect (:class:`ImageFormat`:
one grey channel, 28 x 28, values in [0, 1] with bright ink on a dark
background), i.e. made grey (ITU-R 601 luma, transparent pixels over white),
inverted if their background is light, padded to a square with the
background, and resized with a Lanczos filter, as :mod:`metalearn.data.omniglot`
does with the original 105 x 105 drawings. Labels may be any hashable values.

Two base learners:

``"protonet"`` (default)
    Prototypical Networks (Snell et al., 2017): the class of a query is the
    nearest class mean of the embedded support set, eq. {eq}`protonet-softmax`.
``"maml"``
    A MAML-trained classifier with an ``N``-way head (Finn et al., 2017):
    ``fit`` runs ``steps`` gradient steps on the support set (eq.
    {eq}`maml-inner`); it needs exactly ``N`` classes.

The Conv-4 networks of this book normalise each batch with its own
statistics (transductive batch norm, :class:`metalearn.models.BatchNorm`), so
a prediction would depend on which other images are in the batch. With
``batch_norm="support"`` (the default) every batch-norm layer normalises with
the statistics of the *support set* only (:func:`support_statistics`): the
support embeddings are those of the support set alone, and the prediction for
an image does not depend on what else you ask about in the same call.
``batch_norm="episode"`` embeds the support set and all queries in one batch,
the protocol of the book's evaluations (:func:`metalearn.protonet.protonet_logits`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError
from torch import nn
from torch.func import functional_call

from metalearn import maml
from metalearn.models import BatchNorm
from metalearn.protonet import prototypes, squared_distances

METHODS = ("protonet", "maml")
BATCH_NORMS = ("support", "episode")
_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R 601, as PIL "L"


@dataclass(frozen=True)
class ImageFormat:
    """What the model takes: ``[B, 1, size, size]`` floats, ``(x - mean) / std``."""

    size: int = 28  # side of the square input (the book's Omniglot models: 28)
    bright_ink: bool = True  # ink is 1 and background 0 (Omniglot as loaded here)
    mean: float = 0.0  # subtracted after scaling to [0, 1] (none for Omniglot)
    std: float = 1.0  # divided by after subtracting the mean

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise TypeError(f"size must be an int, got {self.size!r}.")
        if self.size < 4:
            raise ValueError(f"size must be >= 4 pixels, got {self.size}.")
        if not self.std > 0:
            raise ValueError(f"std must be positive, got {self.std}.")


OMNIGLOT_FORMAT = ImageFormat()


def _describe(image: object) -> str:
    if isinstance(image, np.ndarray | torch.Tensor):
        return f"{type(image).__name__} of shape {tuple(image.shape)}"
    return type(image).__name__


def _read_file(path: str | os.PathLike[str]) -> Image.Image:
    location = Path(path)
    if not location.is_file():
        raise FileNotFoundError(f"image file {str(location)!r} does not exist.")
    try:
        with Image.open(location) as opened:
            opened.load()
            return opened.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(
            f"could not read image file {str(location)!r} ({exc}); use a PNG, JPEG "
            "or another format that Pillow can open."
        ) from exc


def _pil_to_grey(image: Image.Image) -> np.ndarray:
    """A PIL image as float64 grey ``[H, W]`` in [0, 1]; transparency over white."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode in ("I", "I;16", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I") else 1.0
        return np.clip(values / top, 0.0, 1.0)
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def _array_to_grey(array: np.ndarray, channels_last: bool, source: str) -> np.ndarray:
    """One image array (2-D, or 3-D with 1/3/4 channels) as grey ``[H, W]``."""
    if array.dtype == np.bool_:
        values = array.astype(np.float64)
    elif np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"integer pixel values must lie in 0..255, got {low}..{high} in "
                f"{source}; scale the image to 0..255 (uint8) or to floats in [0, 1]."
            )
        values = array.astype(np.float64) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{source} contains NaN or infinite pixel values.")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"float pixel values must lie in [0, 1], got [{low:.3g}, {high:.3g}] "
                f"in {source}; divide 0..255 images by 255."
            )
    else:
        raise TypeError(f"unsupported pixel dtype {array.dtype} in {source}.")
    if values.ndim == 2:
        return values
    if not channels_last:
        values = np.moveaxis(values, 0, -1)  # [C, H, W] -> [H, W, C]
    channels = values.shape[-1]
    if channels == 1:
        return values[..., 0]
    grey = values[..., :3] @ _LUMA
    if channels == 4:  # alpha over a white background
        alpha = values[..., 3]
        grey = alpha * grey + (1.0 - alpha)
    return grey


def _is_single(array: np.ndarray | torch.Tensor, channels_last: bool) -> bool:
    """True for 2-D, or 3-D with a channel axis of 1, 3 or 4 (last/first)."""
    if array.ndim == 2:
        return True
    if array.ndim == 3:
        return array.shape[-1 if channels_last else 0] in _CHANNELS
    return False


def to_grey(image: Any) -> np.ndarray:
    """One image of any supported kind as float64 grey ``[H, W]`` in [0, 1].

    Accepts a file path, a PIL image, a NumPy array (``[H, W]`` or ``[H, W,
    C]``, channels last) or a torch tensor (``[H, W]`` or ``[C, H, W]``,
    channels first), with ``C`` in 1, 3, 4; uint8 (0..255), bool or float
    ([0, 1]) pixels.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an unreadable file, a wrong rank, out-of-range pixels,
            NaN, or an empty image.
        TypeError: anything else.
    """
    if isinstance(image, str | os.PathLike):
        image = _read_file(image)
    if isinstance(image, Image.Image):
        grey = _pil_to_grey(image)
    elif isinstance(image, np.ndarray | torch.Tensor):
        channels_last = isinstance(image, np.ndarray)
        array = image if channels_last else image.detach().cpu().numpy()
        if not _is_single(array, channels_last):
            layout = "[H, W, C]" if channels_last else "[C, H, W]"
            raise ValueError(
                f"an image must be 2-D [H, W] or 3-D {layout} with 1, 3 or 4 "
                f"channels; got rank {array.ndim} ({_describe(image)})."
            )
        grey = _array_to_grey(array, channels_last, _describe(image))
    else:
        raise TypeError(
            f"cannot read an image from {_describe(image)}; pass a file path, a PIL "
            "image, a NumPy array or a torch tensor."
        )
    if grey.size == 0 or min(grey.shape) < 1:
        raise ValueError(f"the image is empty (shape {grey.shape}).")
    return grey


def _crop_to_ink(ink: np.ndarray, margin: float = 0.1) -> np.ndarray:
    rows = np.flatnonzero(ink.max(axis=1) > 0.5)
    cols = np.flatnonzero(ink.max(axis=0) > 0.5)
    if rows.size == 0:
        return ink
    pad = int(round(margin * max(rows[-1] - rows[0], cols[-1] - cols[0], 1)))
    top, left = max(rows[0] - pad, 0), max(cols[0] - pad, 0)
    return ink[top : rows[-1] + pad + 1, left : cols[-1] + pad + 1]


def prepare_image(
    image: Any,
    image_format: ImageFormat = OMNIGLOT_FORMAT,
    *,
    invert: bool | str = "auto",
    crop_to_ink: bool = False,
) -> torch.Tensor:
    """One image as the model's input ``[1, size, size]`` (float32).

    Grey -> ink made bright (``invert="auto"`` inverts when the median of the
    border pixels is above 0.5, i.e. the background is light) -> optionally
    cropped to the ink's bounding box -> padded to a square with the
    background -> Lanczos-resized -> normalised with ``image_format``.
    """
    if invert not in ("auto", True, False):
        raise ValueError(f"invert must be 'auto', True or False, got {invert!r}.")
    grey = to_grey(image)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    flip = bool(np.median(border) > 0.5) if invert == "auto" else bool(invert)
    ink = 1.0 - grey if flip else grey  # bright ink on a dark background
    if crop_to_ink:
        ink = _crop_to_ink(ink)
    height, width = ink.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    # 8-bit, as the Omniglot loader resizes the training images: Pillow's
    # 8-bit Lanczos clips between its two passes, and the model saw that.
    square[top : top + height, left : left + width] = np.rint(ink * 255)
    size = image_format.size
    resized = Image.fromarray(square, mode="L").resize((size, size), Image.LANCZOS)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    if not image_format.bright_ink:
        pixels = 1.0 - pixels
    pixels = (pixels - image_format.mean) / image_format.std
    return torch.from_numpy(pixels.copy())[None]  # [1, size, size]


def as_image_list(images: Any) -> list[Any]:
    """Split ``images`` into single images: a list/tuple, a 4-D batch, or one image.

    A 4-D NumPy array is ``[N, H, W, C]``, a 4-D tensor ``[N, C, H, W]``. A
    3-D array without a channel axis of 1, 3 or 4 is ambiguous and rejected.
    """
    if isinstance(images, str | os.PathLike | Image.Image):
        return [images]
    if isinstance(images, np.ndarray | torch.Tensor):
        channels_last = isinstance(images, np.ndarray)
        if images.ndim == 4:
            return list(images)
        if _is_single(images, channels_last):
            return [images]
        if images.ndim == 3:
            layout = "[N, H, W, C]" if channels_last else "[N, C, H, W]"
            raise ValueError(
                f"cannot tell whether the 3-D {_describe(images)} is one image or a "
                f"batch; pass a list of 2-D images or a 4-D {layout} batch."
            )
        raise ValueError(
            f"images of rank {images.ndim} ({_describe(images)}) are not supported; "
            "an image has rank 2 or 3, a batch rank 4 (or pass a list)."
        )
    if isinstance(images, Sequence):
        return list(images)
    raise TypeError(
        f"images must be a list of images or a 4-D array/tensor, got "
        f"{_describe(images)}."
    )


def _check_labels(labels: Any, count: int) -> list[Hashable]:
    if isinstance(labels, torch.Tensor | np.ndarray):
        labels = labels.tolist()  # tensors hash by identity; their values do not
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise TypeError(
            f"support_labels must be a list with one label per image, got "
            f"{_describe(labels)}."
        )
    labels = list(labels)
    if len(labels) != count:
        raise ValueError(
            f"got {count} support images but {len(labels)} labels; give exactly one "
            "label per image."
        )
    for label in labels:
        try:
            hash(label)
        except TypeError as exc:
            raise TypeError(
                f"label {label!r} is not hashable; use strings, numbers or tuples."
            ) from exc
    return labels


@contextlib.contextmanager
def support_statistics(model: nn.Module, support_size: int) -> Iterator[None]:
    """Inside this block, every :class:`~metalearn.models.BatchNorm` of ``model``
    normalises its whole batch with the mean and (biased) variance of the
    batch's first ``support_size`` rows, the support set:

    .. math:: y = \\gamma\\, (x - \\mu_S) / \\sqrt{\\sigma_S^2 + \\epsilon} + \\beta.

    Support rows are then normalised exactly as in a batch of the support set
    alone, and each query row independently of the other queries. Implemented
    with forward hooks (removed on exit), so it also works under
    :func:`torch.func.functional_call` with adapted weights.
    """
    if isinstance(support_size, bool) or not isinstance(support_size, int):
        raise TypeError(f"support_size must be an int, got {support_size!r}.")
    if support_size < 1:
        raise ValueError(f"support_size must be >= 1, got {support_size}.")

    def normalise(module: BatchNorm, inputs: tuple[torch.Tensor], _: torch.Tensor):
        x = inputs[0]
        dims = [0] if x.dim() == 2 else [0, 2, 3]
        shape = [1, -1] + [1] * (x.dim() - 2)
        support = x[:support_size]
        mean = support.mean(dim=dims, keepdim=True)
        var = (support - mean).pow(2).mean(dim=dims, keepdim=True)
        scale = module.weight.view(shape) * torch.rsqrt(var + module.eps)
        return (x - mean) * scale + module.bias.view(shape)

    handles = [m.register_forward_hook(normalise) for m in model.modules()
               if isinstance(m, BatchNorm)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class FewShotClassifier:
    """Classify images into classes given by a few labelled examples each.

    Args:
        model: a ProtoNet-style embedding ``[B, 1, S, S] -> [B, D]`` (e.g. the
            zoo's ``protonet-60w1s``), or, with ``method="maml"``, a
            MAML-trained network with an ``N``-way head.
        method: ``"protonet"`` or ``"maml"``.
        image_format: what the model takes (default: the book's Omniglot).
        invert: ``"auto"``, ``True`` or ``False`` (see :func:`prepare_image`).
        crop_to_ink: crop each image to its ink before resizing (for symbols
            drawn small on a large canvas; Omniglot itself is not cropped).
        inner_lr, steps: the MAML inner step size and number of steps.
        batch_norm: ``"support"`` (normalise with the support set's statistics;
            predictions independent of the other queries) or ``"episode"``
            (support and queries in one batch, as the book's evaluations).

    Attributes:
        classes_: the labels in order of first appearance in ``fit``; the
            columns of :meth:`predict_proba`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        method: str = "protonet",
        image_format: ImageFormat = OMNIGLOT_FORMAT,
        invert: bool | str = "auto",
        crop_to_ink: bool = False,
        inner_lr: float | None = None,
        steps: int | None = None,
        batch_norm: str = "support",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}.")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
        if method == "maml":
            if inner_lr is None or steps is None:
                raise ValueError("method='maml' needs inner_lr and steps.")
            maml.check_inner_loop(inner_lr, steps, dict(model.named_parameters()))
        if invert not in ("auto", True, False):
            raise ValueError(f"invert must be 'auto', True or False, got {invert!r}.")
        if batch_norm not in BATCH_NORMS:
            raise ValueError(
                f"batch_norm must be one of {BATCH_NORMS}, got {batch_norm!r}."
            )
        self.model, self.method, self.image_format = model, method, image_format
        self.invert, self.crop_to_ink = invert, crop_to_ink
        self.inner_lr, self.steps, self.batch_norm = inner_lr, steps, batch_norm
        self.classes_: tuple[Hashable, ...] = ()
        self._support_x: torch.Tensor | None = None
        self._support_y: torch.Tensor | None = None
        self._weights: dict[str, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        parameter = next(self.model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the model's parameters (float32 if it has none)."""
        for parameter in self.model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return torch.float32

    def _prepare_batch(self, images: torch.Tensor) -> torch.Tensor | None:
        """A tensor batch already ``[N, 1, size, size]``, prepared without Pillow.

        The same result as :func:`prepare_image` image by image (Pillow's
        resize to the same size is a copy): the ink made bright by the border
        median, quantised to 8 bits, normalised. ``None`` if the batch does not
        qualify (then the general path converts it, or raises).
        """
        size = self.image_format.size
        if (self.crop_to_ink or images.dim() != 4 or images.shape[0] == 0
                or tuple(images.shape[1:]) != (1, size, size)):
            return None
        if images.dtype == torch.uint8:
            x = images.double() / 255.0
        elif images.is_floating_point():
            x = images.double()
            if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
                return None
        else:
            return None
        x = x[:, 0]  # [N, S, S]
        border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
        if self.invert == "auto":
            flip = torch.quantile(border, 0.5, dim=1) > 0.5  # [N], as np.median
        else:
            flip = torch.full((x.shape[0],), bool(self.invert))
        ink = torch.where(flip[:, None, None], 1.0 - x, x)
        pixels = torch.round(ink * 255) / 255  # 8 bits, as the Pillow path
        if not self.image_format.bright_ink:
            pixels = 1.0 - pixels
        pixels = (pixels - self.image_format.mean) / self.image_format.std
        return pixels[:, None].to(self.device, self.dtype)

    def prepare(self, images: Any) -> torch.Tensor:
        """Images as the model's batch ``[N, 1, size, size]``, its device and dtype."""
        if isinstance(images, torch.Tensor):
            fast = self._prepare_batch(images.detach().cpu())
            if fast is not None:
                return fast
        singles = as_image_list(images)
        if not singles:
            raise ValueError("no images given; pass at least one image.")
        batch = [
            prepare_image(image, self.image_format, invert=self.invert,
                          crop_to_ink=self.crop_to_ink)
            for image in singles
        ]
        return torch.stack(batch).to(self.device, self.dtype)

    def fit(self, support_images: Any, support_labels: Any) -> FewShotClassifier:
        """Store the support set (and, for MAML, adapt to it).

        Raises:
            ValueError: no images, a single class, a label count that differs
                from the image count, or (MAML) a class count that differs from
                the model's ways; the image errors of :func:`to_grey`.
            TypeError: labels that are not a list of hashable values.
        """
        singles = as_image_list(support_images)
        if not singles:
            raise ValueError("the support set is empty; give a few labelled images.")
        labels = _check_labels(support_labels, len(singles))
        classes = tuple(dict.fromkeys(labels))  # first appearance order
        if len(classes) < 2:
            raise ValueError(
                f"the support set has a single class ({classes[0]!r}); a classifier "
                "needs at least two classes."
            )
        ways = getattr(self.model, "ways", None)
        if self.method == "maml" and getattr(self.model, "head", None) is not None:
            if ways != len(classes):
                raise ValueError(
                    f"this MAML model has a {ways}-way head but the support set has "
                    f"{len(classes)} classes; give exactly {ways} classes."
                )
        index = {label: i for i, label in enumerate(classes)}
        self._support_x = self.prepare(singles)
        self._support_y = torch.tensor([index[label] for label in labels],
                                       device=self.device)
        self.classes_ = classes
        if self.method == "maml":
            params = {n: p.detach() for n, p in self.model.named_parameters()}
            buffers = dict(self.model.named_buffers())
            with torch.enable_grad():
                adapted = maml.adapt(
                    self.model, params, buffers, self._support_x, self._support_y,
                    inner_lr=self.inner_lr, steps=self.steps, first_order=True,
                    loss_fn=F.cross_entropy)
            self._weights = {n: p.detach() for n, p in adapted.items()}
        return self

    def _query_scores(self, query_x: torch.Tensor) -> torch.Tensor:
        """Scores ``[Q, ways]``: one forward pass of ``[support; queries]``."""
        assert self._support_x is not None and self._support_y is not None
        support_x, support_y = self._support_x, self._support_y
        size, ways = support_x.shape[0], len(self.classes_)
        weights = {**dict(self.model.named_parameters()),
                   **dict(self.model.named_buffers())}
        if self.method == "maml":
            weights.update(self._weights)
        statistics = (support_statistics(self.model, size)
                      if self.batch_norm == "support" else contextlib.nullcontext())
        batch = torch.cat([support_x, query_x])  # [K + Q, 1, S, S]
        with torch.no_grad(), statistics:
            outputs = functional_call(self.model, weights, (batch,))
        if self.method == "maml":
            return outputs[size:]  # the queries' logits
        centres = prototypes(outputs[:size], support_y, ways)  # [ways, D]
        return -squared_distances(outputs[size:], centres)  # [Q, ways]

    def _check_fitted(self) -> None:
        if self._support_x is None:
            raise RuntimeError(
                "this FewShotClassifier is not fitted yet; call "
                "fit(support_images, support_labels) first."
            )

    def predict_proba(self, images: Any) -> torch.Tensor:
        """Class probabilities ``[N, ways]`` (columns in the order of ``classes_``)."""
        self._check_fitted()
        return self._query_scores(self.prepare(images)).softmax(dim=1).cpu()

    def predict(self, images: Any) -> list[Hashable]:
        """The most probable label of each image."""
        best = self.predict_proba(images).argmax(dim=1).tolist()
        return [self.classes_[i] for i in best]

    def score(self, images: Any, labels: Any) -> float:
        """Accuracy of :meth:`predict` on labelled images."""
        predicted = self.predict(images)
        truth = _check_labels(labels, len(predicted))
        return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))

    @classmethod
    def from_zoo(
        cls, name: str = "protonet-60w1s", **options: Any
    ) -> FewShotClassifier:
        """A classifier on a model of :mod:`metalearn.zoo` (loaded or trained).

        An embedding (``protonet-60w1s``, ``matching-60w1s``) gives a ProtoNet
        classifier; a network with a head (``maml-5w1s``, ``fomaml-5w1s``,
        ``reptile-5w``) a MAML classifier with its recipe's ``inner_lr`` and
        ``test_steps``. ``options`` override these and pass on to the class.
        """
        from metalearn import zoo

        trained = zoo.load_or_train(name)
        recipe = trained.recipe
        if getattr(trained.model, "head", None) is not None:
            options.setdefault("method", "maml")
            options.setdefault("inner_lr", getattr(recipe, "inner_lr", None))
            options.setdefault("steps", getattr(recipe, "test_steps", None))
        return cls(trained.model, **options)

    def __repr__(self) -> str:
        fitted = f"{len(self.classes_)} classes" if self.classes_ else "not fitted"
        return f"FewShotClassifier(method={self.method!r}, {fitted})"


def draw_symbols(
    symbols: Sequence[str],
    examples: int,
    *,
    size: int = 105,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[str]]:
    """Draw each symbol ``examples`` times, as a person would: a little rotated,
    shifted, scaled, with a varying stroke; dark ink on white, like Omniglot.

    Matplotlib renders the glyphs (DejaVu Sans, which has Greek, Cyrillic,
    arrows and many mathematical signs), so this needs no file and no network.

    Args:
        symbols: one string per class, e.g. ``["λ", "Ж", "∮"]``.
        examples: drawings per symbol.
        size: side of each ``uint8`` image, in pixels (105, as Omniglot).
        seed: of the random variations.

    Returns:
        ``(images, labels)``: ``len(symbols) * examples`` arrays ``[size, size]``
        and the symbol of each, grouped by symbol.
    """
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ValueError(f"examples must be a positive int, got {examples!r}.")
    if not symbols or not all(isinstance(x, str) and x for x in symbols):
        raise ValueError(f"symbols must be non-empty strings, got {symbols!r}.")
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for symbol in symbols:
        for _ in range(examples):
            figure = Figure(figsize=(1, 1), dpi=size)
            canvas = FigureCanvasAgg(figure)
            stroke = float(rng.uniform(0.0, 2.5))
            figure.text(
                0.5 + rng.uniform(-0.08, 0.08), 0.5 + rng.uniform(-0.08, 0.08),
                symbol, fontsize=float(rng.uniform(38, 50)),
                rotation=float(rng.uniform(-15, 15)), ha="center", va="center",
                color="black", family="DejaVu Sans",
                path_effects=[patheffects.withStroke(linewidth=stroke,
                                                     foreground="black")],
            )
            canvas.draw()
            rgba = np.asarray(canvas.buffer_rgba())[..., :3]  # [size, size, 3]
            images.append(rgba.mean(axis=-1).round().astype(np.uint8))
            labels.append(symbol)
    return images, labels


def show_predictions(
    support: torch.Tensor,
    support_labels: Sequence[Hashable],
    queries: torch.Tensor,
    predicted: Sequence[Hashable],
    truth: Sequence[Hashable] | None = None,
    *,
    max_queries: int = 12,
) -> Figure:
    """The support set (top) and queries with their predicted labels (bottom).

    Args:
        support: ``[K, 1, S, S]`` as the model sees them
            (:meth:`FewShotClassifier.prepare`).
        support_labels: one label per support image.
        queries: ``[Q, 1, S, S]``.
        predicted: one predicted label per query.
        truth: the true labels; a correct prediction is titled in green, a
            wrong one in red.
    """
    if len(support_labels) != len(support) or len(predicted) != len(queries):
        raise ValueError("need one label per support image and per query.")
    shown = min(len(queries), max_queries)
    columns = max(len(support), shown)
    fig, axes = plt.subplots(2, columns, figsize=(1.1 * columns, 2.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes[0], support, support_labels, strict=False):
        ax.imshow(image[0].detach().cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{label}", fontsize=9)
    for i in range(shown):
        ax = axes[1, i]
        ax.imshow(queries[i, 0].detach().cpu().numpy(), cmap="gray_r", vmin=0,
                  vmax=1)
        colour = "black" if truth is None else (
            "tab:green" if predicted[i] == truth[i] else "tab:red")
        ax.set_title(f"-> {predicted[i]}", fontsize=9, color=colour)
    axes[0, 0].text(-0.3, 0.5, "support", transform=axes[0, 0].transAxes,
                    rotation=90, va="center", ha="right")
    axes[1, 0].text(-0.3, 0.5, "queries", transform=axes[1, 0].transAxes,
                    rotation=90, va="center", ha="right")
    fig.suptitle("few-shot classification: support set and predicted query labels")
    fig.tight_layout()
    return fig
