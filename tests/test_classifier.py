"""Tests for metalearn.classifier: image conversion (against the Omniglot loader),
ProtoNet and MAML predictions (against the library's own functions, one query
at a time), label handling, and the table of bad inputs."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import omniglot_root
from PIL import Image
from torch import nn
from torch.func import functional_call

from metalearn import maml
from metalearn.classifier import (
    FewShotClassifier,
    ImageFormat,
    as_image_list,
    prepare_image,
    to_grey,
)
from metalearn.data.omniglot import decode_png
from metalearn.models import Conv4
from metalearn.protonet import protonet_logits


def symbol(kind: str, size: int = 64, ink_dark: bool = True) -> np.ndarray:
    """A uint8 drawing of a simple shape, dark ink on white by default."""
    yy, xx = np.mgrid[:size, :size] / size
    if kind == "ring":
        r = np.hypot(yy - 0.5, xx - 0.5)
        ink = (r > 0.25) & (r < 0.33)
    elif kind == "bar":
        ink = (np.abs(xx - 0.5) < 0.06) & (np.abs(yy - 0.5) < 0.35)
    elif kind == "cross":
        ink = (np.abs(xx - yy) < 0.05) | (np.abs(xx + yy - 1) < 0.05)
    else:
        raise ValueError(kind)
    ink = ink & (np.minimum(xx, yy) > 0.1) & (np.maximum(xx, yy) < 0.9)
    return np.where(ink == ink_dark, 0, 255).astype(np.uint8)


# --- image conversion ----------------------------------------------------------------


def test_omniglot_png_converts_like_the_data_loader():
    root = omniglot_root()
    with zipfile.ZipFile(root / "omniglot" / "images_evaluation.zip") as archive:
        names = [n for n in archive.namelist() if n.endswith(".png")][:40]
        for name in names:
            data = archive.read(name)
            expected = decode_png(data, 28).astype(np.float32) / 255  # ink = 1
            got = prepare_image(Image.open(io.BytesIO(data)))
            assert got.shape == (1, 28, 28) and got.dtype == torch.float32
            # The same 8-bit Lanczos resize; the loader inverts after resizing,
            # we before, so a pixel may differ by one grey level (1/255).
            np.testing.assert_allclose(got[0].numpy(), expected, atol=1.01 / 255)


def test_every_input_kind_gives_the_same_tensor(tmp_path):
    drawing = symbol("ring")  # dark on white
    path = tmp_path / "ring.png"
    Image.fromarray(drawing).save(path)
    rgb = np.repeat(drawing[..., None], 3, axis=2)
    kinds = {
        "path": str(path),
        "pathlib": path,
        "PIL grey": Image.fromarray(drawing),
        "PIL RGB": Image.fromarray(rgb),
        "uint8 HW": drawing,
        "float HW": drawing / 255.0,
        "uint8 HWC": rgb,
        "tensor CHW": torch.from_numpy(rgb).permute(2, 0, 1),
        "tensor HW float": torch.from_numpy(drawing / 255.0),
        "inverted (light on dark)": 255 - drawing,
    }
    reference = prepare_image(drawing)
    assert float(reference.max()) > 0.5 and float(reference[0, 0, 0]) < 0.05
    for name, image in kinds.items():
        torch.testing.assert_close(prepare_image(image), reference, atol=2e-6,
                                   rtol=0, msg=name)


def test_transparency_is_composited_over_white():
    drawing = symbol("bar")
    alpha = 255 - drawing  # ink opaque, background transparent
    rgba = np.stack([np.zeros_like(drawing)] * 3 + [alpha], axis=-1)
    torch.testing.assert_close(prepare_image(Image.fromarray(rgba, "RGBA")),
                               prepare_image(drawing), atol=1e-6, rtol=0)
    torch.testing.assert_close(prepare_image(rgba), prepare_image(drawing),
                               atol=1e-6, rtol=0)


def test_non_square_images_are_padded_not_stretched():
    drawing = symbol("ring", size=60)
    wide = np.full((60, 120), 255, dtype=np.uint8)
    wide[:, 30:90] = drawing  # the same ring in the middle of a wide canvas
    got = prepare_image(wide)[0]
    # The ring is round: its ink is spread equally over rows and columns.
    rows, cols = got.sum(1), got.sum(0)
    assert float(got[:6].sum()) < 1e-3  # the padding above is background
    torch.testing.assert_close(rows[7:21].sum(), cols[7:21].sum(), rtol=0.1, atol=0)


def test_crop_to_ink_centres_a_small_symbol():
    canvas = np.full((300, 300), 255, dtype=np.uint8)
    canvas[10:74, 200:264] = symbol("cross")  # small, off-centre
    loose = prepare_image(canvas)[0]
    tight = prepare_image(canvas, crop_to_ink=True)[0]
    assert float(tight.sum()) > 5 * float(loose.sum())
    centre = (tight.sum(0) * torch.arange(28)).sum() / tight.sum()
    assert abs(float(centre) - 13.5) < 1.5


def test_image_format_normalisation_and_dark_ink():
    drawing = symbol("bar")
    plain = prepare_image(drawing)
    dark = prepare_image(drawing, ImageFormat(bright_ink=False))
    torch.testing.assert_close(dark, 1 - plain)
    normed = prepare_image(drawing, ImageFormat(size=32, mean=0.5, std=0.25))
    assert normed.shape == (1, 32, 32)
    assert float(normed.min()) == pytest.approx(-2.0, abs=0.05)


def test_as_image_list_splits_batches_by_layout():
    assert len(as_image_list(np.zeros((7, 28, 28, 1)))) == 7  # NumPy: NHWC
    assert len(as_image_list(torch.zeros(7, 1, 28, 28))) == 7  # torch: NCHW
    assert len(as_image_list(np.zeros((28, 28, 3)))) == 1
    assert len(as_image_list(torch.zeros(3, 28, 28))) == 1
    assert len(as_image_list([np.zeros((5, 5))] * 4)) == 4
    assert to_grey(np.zeros((5, 6, 1))).shape == (5, 6)


# --- predictions ---------------------------------------------------------------------


def prepared_episode(seed=0, ways=3, shots=2, queries=4):
    g = torch.Generator().manual_seed(seed)
    # Images with a light background and dark ink, prepared to bright ink.
    support = 1 - 0.8 * (torch.rand(ways * shots, 1, 28, 28, generator=g) > 0.7)
    query = 1 - 0.8 * (torch.rand(queries, 1, 28, 28, generator=g) > 0.7)
    labels = [f"class {i % ways}" for i in range(ways * shots)]
    return support.float(), labels, query.float()


def test_protonet_matches_the_library_one_query_at_a_time():
    torch.manual_seed(0)
    embedding = Conv4(hidden=8, head=False)
    support, labels, query = prepared_episode()
    classifier = FewShotClassifier(embedding, chunk=3).fit(support, labels)
    probabilities = classifier.predict_proba(query)
    support_x = classifier.prepare(support)
    support_y = torch.tensor([int(label[-1]) for label in labels])
    for i, q in enumerate(classifier.prepare(query)):
        with torch.no_grad():
            logits = protonet_logits(embedding, support_x, support_y, q[None], ways=3)
        torch.testing.assert_close(probabilities[i], logits.softmax(1)[0],
                                   atol=1e-5, rtol=1e-4)
    assert classifier.classes_ == ("class 0", "class 1", "class 2")
    torch.testing.assert_close(probabilities.sum(1), torch.ones(4))


def test_a_prediction_does_not_depend_on_the_other_queries():
    torch.manual_seed(1)
    classifier = FewShotClassifier(Conv4(hidden=8, head=False))
    support, labels, query = prepared_episode(seed=1, queries=6)
    classifier.fit(support, labels)
    together = classifier.predict_proba(query)
    alone = torch.cat([classifier.predict_proba(query[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-5)


def test_maml_matches_adapt_and_a_forward_pass_with_the_support():
    torch.manual_seed(2)
    model = Conv4(hidden=8, ways=3)
    support, labels, query = prepared_episode(seed=2)
    classifier = FewShotClassifier(model, method="maml", inner_lr=0.4, steps=2)
    probabilities = classifier.fit(support, labels).predict_proba(query)
    support_x = classifier.prepare(support)
    support_y = torch.tensor([int(label[-1]) for label in labels])
    params = {n: p.detach() for n, p in model.named_parameters()}
    adapted = maml.adapt(model, params, {}, support_x, support_y, inner_lr=0.4,
                         steps=2, first_order=True, loss_fn=F.cross_entropy)
    for i, q in enumerate(classifier.prepare(query)):
        with torch.no_grad():
            logits = functional_call(model, adapted, (torch.cat([support_x, q[None]]),))
        torch.testing.assert_close(probabilities[i], logits[-1].softmax(0),
                                   atol=1e-5, rtol=1e-4)


def test_nearest_prototype_in_pixel_space_reads_simple_symbols():
    """An identity embedding (pixels) already separates very different shapes."""
    classifier = FewShotClassifier(nn.Flatten())
    kinds = ["ring", "bar", "cross"]
    support = [symbol(k, size=s) for k in kinds for s in (60, 90)]
    labels = [k for k in kinds for _ in range(2)]
    classifier.fit(support, labels)
    queries = [symbol(k, size=75) for k in kinds]
    assert classifier.predict(queries) == kinds
    assert classifier.score(queries, kinds) == 1.0


def test_labels_of_any_hashable_type_and_tensor_labels():
    classifier = FewShotClassifier(nn.Flatten())
    images = [symbol("ring"), symbol("bar"), symbol("ring")]
    classifier.fit(images, [(1, "x"), 7, (1, "x")])
    assert classifier.classes_ == ((1, "x"), 7)
    assert classifier.predict([symbol("bar")]) == [7]
    classifier.fit(images, torch.tensor([3, 5, 3]))  # values, not tensor objects
    assert classifier.classes_ == (3, 5)
    assert all(isinstance(c, int) for c in classifier.classes_)


def test_the_support_order_does_not_matter():
    torch.manual_seed(3)
    classifier = FewShotClassifier(Conv4(hidden=8, head=False))
    support, labels, query = prepared_episode(seed=3)
    first = classifier.fit(support, labels).predict_proba(query)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    shuffled = [labels[i] for i in order]
    # classes_ follow first appearance, so compare columns by label.
    second = classifier.fit(support[order], shuffled).predict_proba(query)
    columns = [classifier.classes_.index(f"class {k}") for k in range(3)]
    torch.testing.assert_close(second[:, columns], first, atol=1e-5, rtol=1e-4)


# --- the bad-input table -------------------------------------------------------------


def _unreadable(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not a PNG file")
    return path


def _fitted():
    return FewShotClassifier(nn.Flatten()).fit([symbol("ring"), symbol("bar")],
                                               ["a", "b"])


GOOD = symbol("ring")
BAD_INPUTS = [
    ("empty support set", lambda t: _fitted().fit([], []), ValueError,
     "support set is empty"),
    ("one class", lambda t: _fitted().fit([GOOD, GOOD], ["a", "a"]), ValueError,
     "single class"),
    ("more images than labels", lambda t: _fitted().fit([GOOD] * 3, ["a", "b"]),
     ValueError, "3 support images but 2 labels"),
    ("labels as one string", lambda t: _fitted().fit([GOOD] * 2, "ab"), TypeError,
     "one label per image"),
    ("unhashable label", lambda t: _fitted().fit([GOOD] * 2, [["a"], "b"]), TypeError,
     "not hashable"),
    ("unreadable file", lambda t: _fitted().predict([_unreadable(t)]), ValueError,
     "could not read image file"),
    ("missing file", lambda t: _fitted().predict([t / "missing.png"]),
     FileNotFoundError, "does not exist"),
    ("1-D image", lambda t: _fitted().predict([np.zeros(28)]), ValueError, "rank 1"),
    ("5-D batch", lambda t: _fitted().predict(np.zeros((2, 2, 28, 28, 1))),
     ValueError, "rank 5"),
    ("4-D image in a list", lambda t: _fitted().predict([np.zeros((1, 28, 28, 1))]),
     ValueError, "rank 4"),
    ("ambiguous 3-D array", lambda t: _fitted().predict(np.zeros((5, 28, 28))),
     ValueError, "cannot tell whether"),
    ("float pixels above 1", lambda t: _fitted().predict([np.full((9, 9), 255.0)]),
     ValueError, "must lie in [0, 1]"),
    ("integer pixels above 255", lambda t: _fitted().predict([np.full((9, 9), 300)]),
     ValueError, "must lie in 0..255"),
    ("NaN pixels", lambda t: _fitted().predict([np.full((9, 9), np.nan)]),
     ValueError, "NaN"),
    ("not an image", lambda t: _fitted().predict([42]), TypeError,
     "cannot read an image"),
    ("no query images", lambda t: _fitted().predict([]), ValueError,
     "no images given"),
    ("query before fit", lambda t: FewShotClassifier(nn.Flatten()).predict([GOOD]),
     RuntimeError, "not fitted yet"),
    ("unknown method", lambda t: FewShotClassifier(nn.Flatten(), method="knn"),
     ValueError, "method must be one of"),
    ("MAML without a step size", lambda t: FewShotClassifier(Conv4(), method="maml"),
     ValueError, "needs inner_lr and steps"),
    ("MAML with the wrong class count",
     lambda t: FewShotClassifier(Conv4(ways=5), method="maml", inner_lr=0.4,
                                 steps=1).fit([GOOD, GOOD], ["a", "b"]),
     ValueError, "5-way head"),
    ("model that is not a module", lambda t: FewShotClassifier(lambda x: x),
     TypeError, "must be a torch.nn.Module"),
    ("bad invert option", lambda t: FewShotClassifier(nn.Flatten(), invert="yes"),
     ValueError, "invert must be"),
]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_inputs_raise_clear_errors(tmp_path, call, error, words):
    with pytest.raises(error) as raised:
        call(tmp_path)
    assert words in str(raised.value)
