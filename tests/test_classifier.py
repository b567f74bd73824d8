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
    draw_symbols,
    prepare_image,
    show_predictions,
    support_statistics,
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


def test_tensor_batches_take_a_fast_path_with_the_same_result():
    g = torch.Generator().manual_seed(0)
    dark_on_light = 1 - (torch.rand(6, 1, 28, 28, generator=g) > 0.8).float() * 0.9
    light_on_dark = torch.rand(6, 1, 28, 28, generator=g) ** 4
    as_bytes = (torch.rand(6, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    for invert in ("auto", True, False):
        classifier = FewShotClassifier(nn.Flatten(), invert=invert)
        for batch in (dark_on_light, light_on_dark, as_bytes):
            fast = classifier.prepare(batch)
            slow = classifier.prepare(list(batch))  # image by image, with Pillow
            torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)


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


def conv4_by_hand(model, weights, support, queries):
    """Conv-4 written out with functional ops, batch norm with support statistics."""
    x = torch.cat([support, queries])
    for i, block in enumerate(model.features):
        prefix = f"features.{i}"
        x = F.conv2d(x, weights[f"{prefix}.0.weight"], weights[f"{prefix}.0.bias"],
                     padding=1)
        rows = x[: len(support)]
        mean = rows.mean(dim=(0, 2, 3), keepdim=True)
        var = rows.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        gamma = weights[f"{prefix}.1.weight"].view(1, -1, 1, 1)
        beta = weights[f"{prefix}.1.bias"].view(1, -1, 1, 1)
        x = gamma * (x - mean) / torch.sqrt(var + block[1].eps) + beta
        x = F.max_pool2d(torch.relu(x), 2)
    x = x.flatten(1)
    if model.head is not None:
        x = F.linear(x, weights["head.weight"], weights["head.bias"])
    return x[: len(support)], x[len(support) :]


def test_protonet_with_support_statistics_matches_a_hand_written_forward():
    torch.manual_seed(0)
    embedding = Conv4(hidden=8, head=False).double()
    support, labels, query = prepared_episode()
    classifier = FewShotClassifier(embedding).fit(support.double(), labels)
    probabilities = classifier.predict_proba(query.double())
    support_x = classifier.prepare(support).double()
    query_x = classifier.prepare(query).double()
    with torch.no_grad():
        weights = dict(embedding.named_parameters())
        z_support, z_query = conv4_by_hand(embedding, weights, support_x, query_x)
    centres = torch.stack([z_support[i::3].mean(0) for i in range(3)])  # by class
    expected = (-torch.cdist(z_query, centres) ** 2).softmax(1)
    torch.testing.assert_close(probabilities.double(), expected, atol=1e-6, rtol=1e-5)
    assert classifier.classes_ == ("class 0", "class 1", "class 2")
    # The support rows are normalised as in a batch of the support set alone.
    with torch.no_grad(), support_statistics(embedding, len(support_x)):
        together = embedding(torch.cat([support_x, query_x]))[: len(support_x)]
    torch.testing.assert_close(together, embedding(support_x).detach())


def test_episode_batch_norm_is_the_books_protonet():
    torch.manual_seed(0)
    embedding = Conv4(hidden=8, head=False)
    support, labels, query = prepared_episode()
    classifier = FewShotClassifier(embedding, batch_norm="episode").fit(support, labels)
    support_x, query_x = classifier.prepare(support), classifier.prepare(query)
    support_y = torch.tensor([int(label[-1]) for label in labels])
    with torch.no_grad():
        logits = protonet_logits(embedding, support_x, support_y, query_x, ways=3)
    torch.testing.assert_close(classifier.predict_proba(query), logits.softmax(1))


def test_a_prediction_does_not_depend_on_the_other_queries():
    torch.manual_seed(1)
    classifier = FewShotClassifier(Conv4(hidden=8, head=False))
    support, labels, query = prepared_episode(seed=1, queries=6)
    classifier.fit(support, labels)
    together = classifier.predict_proba(query)
    alone = torch.cat([classifier.predict_proba(query[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-5)
    # The hooks are gone afterwards: the model normalises its own batch again.
    model = classifier.model
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:2], model(x[:2]), atol=1e-2, rtol=1)
        assert not torch.allclose(model(x)[:2], model(x[:2]), atol=1e-6)


def test_maml_adapts_on_the_support_and_predicts_with_its_statistics():
    torch.manual_seed(2)
    model = Conv4(hidden=8, ways=3).double()
    support, labels, query = prepared_episode(seed=2)
    classifier = FewShotClassifier(model, method="maml", inner_lr=0.4, steps=2)
    probabilities = classifier.fit(support.double(), labels).predict_proba(
        query.double())
    support_x = classifier.prepare(support).double()
    support_y = torch.tensor([int(label[-1]) for label in labels])
    params = {n: p.detach() for n, p in model.named_parameters()}
    adapted = maml.adapt(model, params, {}, support_x, support_y, inner_lr=0.4,
                         steps=2, first_order=True, loss_fn=F.cross_entropy)
    with torch.no_grad():
        _, logits = conv4_by_hand(model, adapted, support_x,
                                  classifier.prepare(query).double())
    torch.testing.assert_close(probabilities.double(), logits.softmax(1),
                               atol=1e-6, rtol=1e-5)
    unadapted = functional_call(model, params, (support_x,))
    assert not torch.allclose(unadapted, functional_call(model, adapted, (support_x,)))


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
    ("bad batch-norm option",
     lambda t: FewShotClassifier(nn.Flatten(), batch_norm="running"), ValueError,
     "batch_norm must be one of"),
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


# --- the chapter's helpers -----------------------------------------------------------


def test_drawn_symbols_are_seeded_dark_on_white_and_varied():
    images, labels = draw_symbols(["λ", "Ж"], 3, size=64, seed=0)
    assert labels == ["λ"] * 3 + ["Ж"] * 3
    assert all(image.shape == (64, 64) and image.dtype == np.uint8 for image in images)
    assert all(image[0].min() == 255 and image.min() < 50 for image in images)
    assert not np.array_equal(images[0], images[1])  # each drawing differs
    again, _ = draw_symbols(["λ", "Ж"], 3, size=64, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(images, again, strict=True))
    with pytest.raises(ValueError, match="examples must be a positive int"):
        draw_symbols(["λ"], 0)


def test_show_predictions_draws_support_and_queries():
    support = torch.rand(3, 1, 28, 28)
    queries = torch.rand(4, 1, 28, 28)
    fig = show_predictions(support, ["a", "b", "c"], queries, ["a", "a", "b", "c"],
                           ["a", "b", "b", "c"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["a", "b", "c"] and "-> a" in titles
    colours = [ax.title.get_color() for ax in fig.axes[4:8]]
    assert colours == ["tab:green", "tab:red", "tab:green", "tab:green"]
    assert fig._suptitle.get_text()
    with pytest.raises(ValueError, match="one label per"):
        show_predictions(support, ["a"], queries, ["a"] * 4)
