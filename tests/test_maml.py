"""Tests for metalearn.maml against independent references.

References: finite differences (``torch.autograd.gradcheck`` in float64, which
checks the second-order term), the closed form for linear regression,
learn2learn's ``MAML.clone()/adapt()``, and a loop over tasks for ``vmap``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck
from torch.func import functional_call

from metalearn.episodes import EpisodeBatch, FixedEpisodes, sample_episodes
from metalearn.evaluate import evaluate
from metalearn.maml import (
    adapt,
    make_maml_step,
    maml_classifier,
    maml_step_from_sampler,
    meta_loss,
)
from metalearn.models import MLP, Conv4, op_by_op_batch_norm
from metalearn.sinusoid import sample_sinusoid_tasks


def random_batch(
    tasks: int,
    ways: int,
    shots: int,
    queries: int,
    size: int,
    *,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> EpisodeBatch:
    """Random images with class-major labels, shaped like an Omniglot batch."""
    generator = torch.Generator().manual_seed(seed)
    support_x = torch.rand(tasks, ways * shots, 1, size, size, generator=generator)
    query_x = torch.rand(tasks, ways * queries, 1, size, size, generator=generator)
    support_y = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1)
    query_y = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1)
    classes = torch.arange(ways).expand(tasks, -1)
    return EpisodeBatch(
        support_x.to(dtype), support_y, query_x.to(dtype), query_y, classes
    )


def flat_grad(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def meta_gradient(model: nn.Module, batch, **kwargs) -> tuple[float, torch.Tensor]:
    """Our meta-loss and the meta-gradient that ``loss.backward()`` leaves."""
    model.zero_grad(set_to_none=True)
    loss, _ = meta_loss(model, dict(model.named_parameters()), {}, batch, **kwargs)
    loss.backward()
    gradient = flat_grad(model)
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), gradient


def relu_margin(model: nn.Module, batch, **kwargs) -> float:
    """The smallest |input| of any ReLU of ``model`` in one meta-loss evaluation.

    Float32 and float64 meta-gradients can only be compared away from ReLU's
    kink: a pre-activation closer to 0 than float32 rounding may fall on the
    other side of it, which switches that unit's derivative and changes the
    second-order meta-gradient by a finite amount. Measured on a Conv-4 with 8
    filters, 4 random 5-way tasks of 1 + 3 images per class (28x28): after one
    inner step some pre-activation lies 2.9e-7 from 0, and multiplying the
    float64 weights by ``1 + 1e-6 * noise`` changed the float64 meta-gradient
    after 2 inner steps by 5.73e-4 for 2 of 6 noise draws (by about 1e-5 for
    the others). That is the 5.7e-4 (and, after 3 steps, 5.1e-3) that float32
    runs showed with oneDNN's convolutions, with the fused batch norm and with
    the batched GEMMs alike; it is not a loss of precision of any kernel.
    """
    seen: list[float] = []
    hooks = [
        module.register_forward_hook(
            lambda _, inputs, __: seen.append(float(inputs[0].detach().abs().min()))
        )
        for module in model.modules()
        if isinstance(module, nn.ReLU)
    ]
    try:
        meta_gradient(model, batch, vectorise=False, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return min(seen)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# --- gradcheck: finite differences through the inner loop --------------------


def learn2learn_meta_loss(algorithm, batch, steps: int) -> torch.Tensor:
    """The meta-loss by learn2learn's ``clone()``/``adapt()`` loop over tasks.

    ``algorithm`` is e.g. ``l2l.algorithms.MAML`` or ``MetaSGD``; the reference
    runs our batch norm op by op, as our twice-differentiated passes do.
    """
    total = 0.0
    with op_by_op_batch_norm():
        for i in range(len(batch)):
            learner = algorithm.clone()
            for _ in range(steps):
                support_loss = F.cross_entropy(
                    learner(batch.support_x[i]), batch.support_y[i]
                )
                learner.adapt(support_loss)
            query_loss = F.cross_entropy(learner(batch.query_x[i]), batch.query_y[i])
            total = total + query_loss
    return total / len(batch)


def query_loss_function(model, support_x, support_y, query_x, query_y, loss_fn, **kw):
    """f(*theta) = L_query(adapt(theta)) as a function of the parameter tensors."""
    names = [name for name, _ in model.named_parameters()]

    def f(*tensors):
        params = dict(zip(names, tensors, strict=True))
        adapted = adapt(model, params, {}, support_x, support_y, loss_fn=loss_fn, **kw)
        return loss_fn(functional_call(model, adapted, (query_x,)), query_y)

    inputs = tuple(
        p.detach().clone().requires_grad_() for _, p in model.named_parameters()
    )
    return f, inputs


@pytest.mark.parametrize("steps", [1, 3])
def test_gradcheck_adapt_mlp_regression(steps):
    torch.manual_seed(0)
    model = MLP(1, (4, 4), 1).double()
    tasks = sample_sinusoid_tasks(1, 5, 5, torch.Generator().manual_seed(1))
    data = [t[0].double() for t in tasks[:4]]
    f, inputs = query_loss_function(
        model, *data, F.mse_loss, inner_lr=0.05, steps=steps, first_order=False
    )
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("steps", [1, 3])
def test_gradcheck_adapt_smooth_classifier(steps):
    # tanh: no kinks, so every entry of the Hessian term is exercised.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    generator = torch.Generator().manual_seed(2)
    support_x = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    query_x = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    f, inputs = query_loss_function(
        model,
        support_x,
        labels,
        query_x,
        labels,
        F.cross_entropy,
        inner_lr=0.5,
        steps=steps,
        first_order=False,
    )
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
def test_gradcheck_adapt_conv4(steps):
    torch.manual_seed(0)
    model = Conv4(1, 3, hidden=4, image_size=16).double()
    batch = random_batch(1, 3, 1, 1, 16, dtype=torch.float64)
    f, inputs = query_loss_function(
        model,
        batch.support_x[0],
        batch.support_y[0],
        batch.query_x[0],
        batch.query_y[0],
        F.cross_entropy,
        inner_lr=0.4,
        steps=steps,
        first_order=False,
    )
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("vectorise", [True, False], ids=["vmap", "loop"])
def test_gradcheck_meta_loss_conv4(vectorise):
    # Finite differences through the vmapped loss and through the loop. The
    # trap the vmap case guards against: vmap + nn.BatchNorm2d gives a wrong
    # second-order meta-gradient.
    torch.manual_seed(0)
    model = Conv4(1, 3, hidden=4, image_size=16).double()
    batch = random_batch(3, 3, 1, 2, 16, dtype=torch.float64)
    names = [name for name, _ in model.named_parameters()]

    def f(*tensors):
        params = dict(zip(names, tensors, strict=True))
        loss, _ = meta_loss(
            model,
            params,
            {},
            batch,
            inner_lr=0.4,
            steps=2,
            first_order=False,
            vectorise=vectorise,
        )
        return loss

    inputs = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


# --- closed form: linear regression -------------------------------------------


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_matches_linear_regression_closed_form(first_order):
    # L(theta) = mean((X theta - y)^2): grad = A theta - b, A = 2 X^T X / n,
    # b = 2 X^T y / n. One step: theta' = theta - alpha (A_s theta - b_s);
    # MAML: (I - alpha A_s)(A_q theta' - b_q); FOMAML drops (I - alpha A_s).
    generator = torch.Generator().manual_seed(3)
    dims, points, tasks, alpha = 3, 5, 4, 0.1
    model = nn.Linear(dims, 1, bias=False).double()
    theta = model.weight.detach().flatten()

    def gen(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    batch = EpisodeBatch(
        gen(tasks, points, dims),
        gen(tasks, points, 1),
        gen(tasks, points, dims),
        gen(tasks, points, 1),
        torch.zeros(tasks, 1),
    )
    expected = torch.zeros(dims, dtype=torch.float64)
    for i in range(tasks):
        xs, ys = batch.support_x[i], batch.support_y[i].flatten()  # [n, d], [n]
        xq, yq = batch.query_x[i], batch.query_y[i].flatten()
        a_s, b_s = 2 * xs.T @ xs / points, 2 * xs.T @ ys / points
        a_q, b_q = 2 * xq.T @ xq / points, 2 * xq.T @ yq / points
        adapted = theta - alpha * (a_s @ theta - b_s)
        outer = a_q @ adapted - b_q
        if not first_order:
            outer = (torch.eye(dims, dtype=torch.float64) - alpha * a_s) @ outer
        expected += outer / tasks
    _, ours = meta_gradient(
        model,
        batch,
        inner_lr=alpha,
        steps=1,
        first_order=first_order,
        loss_fn=F.mse_loss,
    )
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


# --- learn2learn: the reference implementation --------------------------------


@pytest.mark.learn2learn
@pytest.mark.parametrize("path", ["vmap", "loop"])
@pytest.mark.parametrize(
    ("first_order", "steps", "dtype"),
    [
        (False, 1, torch.float32),
        (True, 1, torch.float32),
        (False, 1, torch.float64),
        (True, 1, torch.float64),
        (False, 2, torch.float64),
    ],
)
def test_meta_gradient_equals_learn2learn(first_order, steps, dtype, path):
    """Ours equals learn2learn's meta-gradient (< 1e-4 in float32, 1e-10 in
    float64). Two inner steps are compared in float64 only: in float32 some
    ReLU input of this batch sits within rounding of its kink (relu_margin)."""
    l2l = pytest.importorskip("learn2learn")
    torch.manual_seed(0)
    model = Conv4(1, 5, hidden=8, image_size=28).to(dtype)  # our batch norm too
    batch = random_batch(4, 5, 1, 3, 28, seed=4, dtype=dtype)
    inner_lr = 0.4
    paths = {"vmap": {}, "loop": {"vectorise": False}}
    kwargs = dict(inner_lr=inner_lr, steps=steps, first_order=first_order)
    ours_loss, ours = meta_gradient(model, batch, **paths[path], **kwargs)
    maml = l2l.algorithms.MAML(model, lr=inner_lr, first_order=first_order)
    theirs_loss = learn2learn_meta_loss(maml, batch, steps)
    theirs_loss.backward()
    reference = flat_grad(model)

    tolerance = 1e-4 if dtype == torch.float32 else 1e-10
    assert math.isclose(ours_loss, float(theirs_loss.detach()), rel_tol=tolerance)
    assert relative_error(ours, reference) < tolerance
    # The second-order term is not negligible here, so the test can tell them apart.
    if not first_order:
        _, first = meta_gradient(
            model, batch, inner_lr=inner_lr, steps=steps, first_order=True
        )
        assert relative_error(first, reference) > 1e-2


# --- first-order MAML, vmap vs loop ------------------------------------------


def test_first_order_is_query_gradient_at_adapted_weights():
    torch.manual_seed(0)
    model = Conv4(1, 3, hidden=4, image_size=16).double()
    batch = random_batch(3, 3, 2, 2, 16, dtype=torch.float64, seed=5)
    _, ours = meta_gradient(model, batch, inner_lr=0.3, steps=2, first_order=True)
    params = dict(model.named_parameters())
    expected = torch.zeros_like(ours)
    for task in batch:
        adapted = adapt(
            model,
            params,
            {},
            task.support_x,
            task.support_y,
            inner_lr=0.3,
            steps=2,
            first_order=False,
        )
        leaves = {n: w.detach().requires_grad_() for n, w in adapted.items()}
        loss = F.cross_entropy(
            functional_call(model, leaves, (task.query_x,)), task.query_y
        )
        grads = torch.autograd.grad(loss, list(leaves.values()))
        expected += torch.cat([g.flatten() for g in grads]) / len(batch)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vmap_equals_loop(first_order, dtype):
    torch.manual_seed(0)
    model = Conv4(1, 5, hidden=4, image_size=16).to(dtype)
    batch = random_batch(4, 5, 1, 2, 16, dtype=dtype, seed=6)
    kwargs = dict(inner_lr=0.4, steps=2, first_order=first_order)
    loss_vmap, grad_vmap = meta_gradient(model, batch, vectorise=True, **kwargs)
    loss_loop, grad_loop = meta_gradient(model, batch, vectorise=False, **kwargs)
    loss_chunk, grad_chunk = meta_gradient(
        model, batch, vectorise=True, chunk_size=3, **kwargs
    )
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for loss, gradient in [
        (loss_vmap, grad_vmap),
        (loss_chunk, grad_chunk),
    ]:
        assert math.isclose(loss, loss_loop, rel_tol=tolerance)
        assert relative_error(gradient, grad_loop) < tolerance


def test_metrics_and_purity():
    torch.manual_seed(0)
    model = Conv4(1, 5, hidden=4, image_size=16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = random_batch(3, 5, 1, 2, 16, seed=7)
    loss, metrics = meta_loss(
        model,
        dict(model.named_parameters()),
        {},
        batch,
        inner_lr=0.4,
        steps=1,
        first_order=False,
    )
    assert set(metrics) == {"query_loss", "query_acc"}
    assert metrics["query_loss"] == pytest.approx(float(loss.detach()))
    assert 0.0 <= metrics["query_acc"] <= 1.0
    # Nothing was written into the module.
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None


# --- the training-loop step and the classifier -------------------------------


def omniglot_like(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (8, 4, 1, 16, 16), generator=generator).to(torch.uint8)


def test_make_maml_step_matches_meta_loss_and_is_seeded():
    torch.manual_seed(0)
    images = omniglot_like()
    model = Conv4(1, 3, hidden=4, image_size=16)
    kwargs = dict(inner_lr=0.4, steps=1, first_order=False)
    step = make_maml_step(
        model, images, ways=3, shots=1, queries=2, meta_batch_size=2, **kwargs
    )
    loss_a, metrics = step(torch.Generator().manual_seed(11))
    loss_b, _ = step(torch.Generator().manual_seed(11))
    assert torch.equal(loss_a, loss_b)
    assert set(metrics) == {"query_loss", "query_acc"}
    batch = sample_episodes(images, 2, 3, 1, 2, torch.Generator().manual_seed(11))
    expected, _ = meta_loss(model, dict(model.named_parameters()), {}, batch, **kwargs)
    assert torch.equal(loss_a, expected)
    loss_a.backward()  # the training loop's contract
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_maml_classifier_adapts_under_no_grad():
    torch.manual_seed(0)
    images = omniglot_like(1)
    model = Conv4(1, 3, hidden=4, image_size=16)
    episodes = FixedEpisodes(images, 3, ways=3, shots=1, queries=2, seed=0)
    classify = maml_classifier(model, inner_lr=0.4, steps=2)
    episode = episodes[0]
    with torch.no_grad():
        logits = classify(episode)
    assert logits.shape == (6, 3) and not logits.requires_grad
    params = dict(model.named_parameters())
    adapted = adapt(
        model,
        params,
        {},
        episode.support_x,
        episode.support_y,
        inner_lr=0.4,
        steps=2,
        first_order=True,
    )
    expected = functional_call(model, adapted, (episode.query_x,))
    torch.testing.assert_close(logits, expected.detach())
    assert not torch.allclose(logits, model(episode.query_x))  # it did adapt
    result = evaluate(classify, episodes, progress=False)
    assert result.episodes == 3


def test_maml_learns_sinusoids():
    # 200 meta-steps on 10-shot sinusoids: afterwards one inner step must help a
    # lot, and beat the best predictor that ignores the support set (its MSE is
    # E[y^2] - E[m(x)^2] ~ 4.25 - 1.25 = 3.0 with m(x) = -(2/pi) E[A] cos x).
    torch.manual_seed(0)
    model = MLP(1, (20, 20), 1)
    kwargs = dict(inner_lr=0.01, steps=1, first_order=False, loss_fn=F.mse_loss)
    step = maml_step_from_sampler(
        model, lambda g: sample_sinusoid_tasks(10, 10, 10, g), **kwargs
    )
    assert set(step(torch.Generator().manual_seed(0))[1]) == {"query_loss"}
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(200):
        optimiser.zero_grad()
        loss, _ = step(generator)
        loss.backward()
        optimiser.step()
    test = sample_sinusoid_tasks(200, 10, 10, torch.Generator().manual_seed(99))
    params = {name: p.detach() for name, p in model.named_parameters()}
    post, _ = meta_loss(model, params, {}, test, **kwargs)
    with torch.no_grad():
        pre = F.mse_loss(model(test.query_x.flatten(0, 1)), test.query_y.flatten(0, 1))
    assert float(post) < 0.75 * float(pre)
    assert float(post) < 2.8


# --- loud errors ---------------------------------------------------------------


def tiny_setup():
    model = Conv4(1, 3, hidden=4, image_size=16)
    return model, dict(model.named_parameters()), random_batch(2, 3, 1, 1, 16)


@pytest.mark.parametrize("inner_lr", [0.0, -0.1, float("nan"), float("inf")])
def test_rejects_bad_inner_lr(inner_lr):
    model, params, batch = tiny_setup()
    with pytest.raises(ValueError, match="inner_lr"):
        adapt(
            model,
            params,
            {},
            batch.support_x[0],
            batch.support_y[0],
            inner_lr=inner_lr,
            steps=1,
            first_order=False,
        )
    with pytest.raises(ValueError, match="inner_lr"):
        meta_loss(
            model, params, {}, batch, inner_lr=inner_lr, steps=1, first_order=False
        )
    with pytest.raises(ValueError, match="inner_lr"):
        maml_classifier(model, inner_lr=inner_lr, steps=1)


@pytest.mark.parametrize(
    ("steps", "error"), [(0, ValueError), (-1, ValueError), (1.0, TypeError)]
)
def test_rejects_bad_steps(steps, error):
    model, params, batch = tiny_setup()
    with pytest.raises(error, match="steps"):
        meta_loss(
            model, params, {}, batch, inner_lr=0.1, steps=steps, first_order=False
        )
    with pytest.raises(error, match="steps"):
        make_maml_step(
            model,
            omniglot_like(),
            ways=3,
            shots=1,
            queries=1,
            meta_batch_size=2,
            inner_lr=0.1,
            steps=steps,
            first_order=False,
        )


def test_rejects_bad_batches_and_images():
    model, params, batch = tiny_setup()
    kwargs = dict(inner_lr=0.1, steps=1, first_order=False)
    mismatched = EpisodeBatch(
        batch.support_x,
        batch.support_y,
        batch.query_x[:1],
        batch.query_y[:1],
        batch.classes,
    )
    with pytest.raises(ValueError, match="number of tasks"):
        meta_loss(model, params, {}, mismatched, **kwargs)
    flat = EpisodeBatch(
        batch.support_x.flatten(2),
        batch.support_y,
        batch.query_x.flatten(2),
        batch.query_y,
        batch.classes,
    )
    for vectorise in (True, False):
        with pytest.raises(ValueError, match="Conv4 expects images"):
            meta_loss(model, params, {}, flat, vectorise=vectorise, **kwargs)
    with pytest.raises(ValueError, match="images must have shape"):
        make_maml_step(
            model,
            omniglot_like()[0],
            ways=3,
            shots=1,
            queries=1,
            meta_batch_size=2,
            **kwargs,
        )
    with pytest.raises(ValueError, match="meta_batch_size"):
        make_maml_step(
            model,
            omniglot_like(),
            ways=3,
            shots=1,
            queries=1,
            meta_batch_size=0,
            **kwargs,
        )


@pytest.mark.parametrize("steps", [1, 3])
def test_meta_gradient_in_float32_matches_float64(steps):
    """Both paths (vmap, loop) stay within 1e-5 of float64 as inner steps grow.

    On a batch whose ReLU inputs all stay at least 1e-5 from the kink in
    float64 (asserted: see relu_margin), so that float32 rounding cannot
    switch a unit and the comparison measures precision alone.
    """
    torch.manual_seed(1)
    model = Conv4(1, 5, hidden=4, image_size=16)
    exact = Conv4(1, 5, hidden=4, image_size=16).double()
    exact.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    kwargs = dict(inner_lr=0.4, steps=steps, first_order=False)
    batch = random_batch(2, 5, 1, 1, 16, seed=1)
    batch64 = random_batch(2, 5, 1, 1, 16, seed=1, dtype=torch.float64)
    assert relu_margin(exact, batch64, **kwargs) > 1e-5, "pick a batch off the kinks"
    _, truth = meta_gradient(exact, batch64, **kwargs)
    for path in ({"vectorise": True}, {"vectorise": False}):
        _, ours = meta_gradient(model, batch, **path, **kwargs)
        assert relative_error(ours, truth.float()) < 1e-5


def test_inner_loop_refuses_what_would_be_silently_wrong():
    torch.manual_seed(0)
    model = Conv4(1, 3, hidden=4, image_size=16)
    params = dict(model.named_parameters())
    batch = random_batch(1, 3, 1, 1, 16)
    x, y = batch.support_x[0], batch.support_y[0]
    kwargs = dict(inner_lr=0.4, steps=1, first_order=True)
    with pytest.raises(ValueError, match="far beyond any useful step size"):
        adapt(model, params, {}, x, y, inner_lr=1e308, steps=1, first_order=True)
    with pytest.raises(ValueError, match="unexpected \\['extra'\\]"):
        adapt(model, {**params, "extra": torch.zeros(1)}, {}, x, y, **kwargs)
    with pytest.raises(ValueError, match="missing \\['head.bias'\\]"):
        adapt(model, {k: v for k, v in params.items() if k != "head.bias"}, {}, x,
              y, **kwargs)
    with pytest.raises(ValueError, match="support set is empty"):
        adapt(model, params, {}, x[:0], y[:0], **kwargs)
    regression = MLP()
    tasks = sample_sinusoid_tasks(1, 5, 5, torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="loss_fn=F.mse_loss"):
        adapt(regression, dict(regression.named_parameters()), {},
              tasks.support_x[0], tasks.support_y[0], **kwargs)
