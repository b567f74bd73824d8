"""Tests for metalearn.metasgd and the per-parameter rates of metalearn.maml.

References: learn2learn's ``MetaSGD.clone()/adapt()`` (meta-gradients with
respect to theta and to the rates), finite differences (``gradcheck`` in
float64 through the inner loop, rates included), the float ``inner_lr`` path
of MAML (constant rates), and a loop over tasks for ``vmap``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_maml import (
    flat_grad,
    learn2learn_meta_loss,
    omniglot_like,
    random_batch,
    relative_error,
)
from torch import nn
from torch.autograd import gradcheck
from torch.func import functional_call

from metalearn.episodes import FixedEpisodes, sample_episodes
from metalearn.maml import (
    adapt,
    make_maml_step,
    maml_classifier,
    maml_step_from_sampler,
    meta_loss,
)
from metalearn.metasgd import MetaSGD, make_metasgd_step, metasgd_classifier
from metalearn.models import Conv4


def random_rates(metasgd: MetaSGD, low: float, high: float, seed: int) -> None:
    """Overwrite the rates with uniform draws in ``[low, high)``, elementwise.

    Distinct rates per scalar make a mix-up of rates between parameters, or
    between the elements of one parameter, visible in every test.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for rate in metasgd.inner_lr.values():
            draw = torch.rand(rate.shape, generator=generator, dtype=torch.float64)
            rate.copy_(low + (high - low) * draw)


def rates_grad(metasgd: MetaSGD) -> torch.Tensor:
    return torch.cat([rate.grad.flatten() for rate in metasgd.inner_lr.values()])


def metasgd_gradient(
    metasgd: MetaSGD, batch, **kwargs
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Our meta-loss and its gradients on theta and on the rates."""
    metasgd.zero_grad(set_to_none=True)
    model = metasgd.model
    loss, _ = meta_loss(
        model,
        dict(model.named_parameters()),
        {},
        batch,
        inner_lr=metasgd.inner_lr,
        **kwargs,
    )
    loss.backward()
    theta_grad, alpha_grad = flat_grad(model), rates_grad(metasgd)
    metasgd.zero_grad(set_to_none=True)
    return float(loss.detach()), theta_grad, alpha_grad


def tiny_metasgd(seed: int = 0, dtype: torch.dtype = torch.float32) -> MetaSGD:
    torch.manual_seed(seed)
    return MetaSGD(Conv4(1, 3, hidden=4, image_size=16).to(dtype), init_lr=0.4)


# --- the module that owns the rates --------------------------------------------


def test_metasgd_rates_follow_the_model():
    metasgd = tiny_metasgd()
    named = dict(metasgd.model.named_parameters())
    rates = metasgd.inner_lr
    assert list(rates) == list(named)  # the model's names, in its order
    for name, rate in rates.items():
        assert rate.shape == named[name].shape and rate.dtype == named[name].dtype
        assert torch.equal(rate, torch.full_like(rate, 0.4))
        assert rate is metasgd.inner_lrs[name.replace(".", "-")]  # no copy
    # One optimiser over metasgd.parameters() sees every weight and every rate.
    ids = {id(p) for p in metasgd.parameters()}
    assert ids == {id(p) for p in [*named.values(), *rates.values()]}
    assert len(ids) == 2 * len(named)
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(metasgd(x), metasgd.model(x))


@pytest.mark.parametrize(
    ("init_lr", "error"),
    [(0.0, ValueError), (-0.1, ValueError), (math.nan, ValueError), (True, TypeError)],
)
def test_metasgd_rejects_bad_init_lr(init_lr, error):
    with pytest.raises(error, match="init_lr"):
        MetaSGD(nn.Linear(2, 2), init_lr=init_lr)
    with pytest.raises(ValueError, match="no parameters"):
        MetaSGD(nn.ReLU(), init_lr=0.1)


# --- the reference: learn2learn's MetaSGD --------------------------------------


@pytest.mark.learn2learn
@pytest.mark.parametrize(
    ("first_order", "steps", "dtype"),
    [
        (False, 1, torch.float32),
        (True, 1, torch.float32),
        (False, 2, torch.float64),
        (True, 2, torch.float64),
    ],
)
def test_meta_gradient_equals_learn2learn(first_order, steps, dtype):
    """Two inner steps in float64 only: in float32 a ReLU input of this batch
    can round to the other side of the kink (see test_maml.relu_margin)."""
    l2l = pytest.importorskip("learn2learn")
    torch.manual_seed(0)
    metasgd = MetaSGD(Conv4(1, 5, hidden=8, image_size=28), init_lr=0.4).to(dtype)
    random_rates(metasgd, 0.2, 0.6, seed=1)
    batch = random_batch(4, 5, 1, 3, 28, seed=4, dtype=dtype)
    kwargs = dict(steps=steps, first_order=first_order)
    ours_loss, ours_theta, ours_alpha = metasgd_gradient(metasgd, batch, **kwargs)
    reference = l2l.algorithms.MetaSGD(metasgd.model, first_order=first_order)
    with torch.no_grad():  # learn2learn keeps its rates in parameter order
        for theirs, ours in zip(reference.lrs, metasgd.inner_lr.values(), strict=True):
            theirs.copy_(ours)
    theirs_loss = learn2learn_meta_loss(reference, batch, steps)
    theirs_loss.backward()
    theta_reference = flat_grad(metasgd.model)
    alpha_reference = torch.cat([lr.grad.flatten() for lr in reference.lrs])

    tolerance = 1e-4 if dtype == torch.float32 else 1e-10
    assert math.isclose(ours_loss, float(theirs_loss.detach()), rel_tol=tolerance)
    assert relative_error(ours_theta, theta_reference) < tolerance
    assert relative_error(ours_alpha, alpha_reference) < tolerance
    if not first_order:  # the second-order term matters here
        _, first_theta, first_alpha = metasgd_gradient(
            metasgd, batch, steps=steps, first_order=True
        )
        assert relative_error(first_theta, theta_reference) > 1e-2
        # After one step, d L / d alpha = -g_0 o d L / d theta' holds exactly
        # in both modes (g_0 does not depend on alpha); from the second step
        # on, g_1 depends on alpha through theta_1, and first order drops it.
        if steps == 1:
            assert relative_error(first_alpha, alpha_reference) < 1e-4
        else:
            assert relative_error(first_alpha, alpha_reference) > 1e-2


# --- finite differences through the inner loop ---------------------------------


def query_loss_of_weights_and_rates(model, support_x, support_y, query_x, query_y):
    """f(*theta, *alpha) = L_query(adapt(theta, alpha)) for ``gradcheck``."""
    names = [name for name, _ in model.named_parameters()]

    def f(steps: int, *tensors: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, tensors[: len(names)], strict=True))
        rates = dict(zip(names, tensors[len(names) :], strict=True))
        adapted = adapt(
            model,
            params,
            {},
            support_x,
            support_y,
            inner_lr=rates,
            steps=steps,
            first_order=False,
        )
        return F.cross_entropy(functional_call(model, adapted, (query_x,)), query_y)

    return f


@pytest.mark.parametrize("steps", [1, 2])
def test_gradcheck_adapt_with_rates(steps):
    # tanh: no kinks, so every entry of the Hessian term is exercised; rates
    # drawn per element, one of them negative, as learned rates may become.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    generator = torch.Generator().manual_seed(2)
    support_x = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    query_x = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    f = query_loss_of_weights_and_rates(model, support_x, labels, query_x, labels)
    weights = [p.detach().clone().requires_grad_() for p in model.parameters()]
    rates = [
        (0.1 + 0.8 * torch.rand(p.shape, generator=generator, dtype=torch.float64))
        for p in weights
    ]
    rates[0][0, 0] = -0.2
    rates = [rate.requires_grad_() for rate in rates]
    assert gradcheck(
        lambda *t: f(steps, *t), (*weights, *rates), eps=1e-6, atol=1e-7, rtol=1e-5
    )


def test_gradcheck_vmapped_meta_loss_conv4_with_rates():
    # vmap over tasks, batch norm and per-element rates together, 2 steps.
    metasgd = tiny_metasgd(dtype=torch.float64)
    random_rates(metasgd, 0.2, 0.6, seed=3)
    model = metasgd.model
    batch = random_batch(3, 3, 1, 2, 16, dtype=torch.float64)
    names = [name for name, _ in model.named_parameters()]

    def f(*tensors):
        params = dict(zip(names, tensors[: len(names)], strict=True))
        rates = dict(zip(names, tensors[len(names) :], strict=True))
        loss, _ = meta_loss(
            model, params, {}, batch, inner_lr=rates, steps=2, first_order=False
        )
        return loss

    inputs = tuple(
        t.detach().clone().requires_grad_()
        for t in [*model.parameters(), *metasgd.inner_lr.values()]
    )
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


# --- constant rates are MAML; vmap equals the loop ----------------------------


@pytest.mark.parametrize("first_order", [False, True])
def test_constant_rates_equal_float_inner_lr(first_order):
    metasgd = tiny_metasgd()
    model = metasgd.model
    params = dict(model.named_parameters())
    batch = random_batch(3, 3, 1, 2, 16, seed=5)
    kwargs = dict(steps=2, first_order=first_order)
    scalar_rates = {name: torch.tensor(0.4) for name in params}
    task = batch[0]
    expected = adapt(
        model, params, {}, task.support_x, task.support_y, inner_lr=0.4, **kwargs
    )
    for rates in (metasgd.inner_lr, scalar_rates):
        adapted = adapt(
            model, params, {}, task.support_x, task.support_y, inner_lr=rates, **kwargs
        )
        assert all(torch.equal(adapted[n], expected[n]) for n in params)
    # The same holds for the meta-loss and its gradient on theta.
    model.zero_grad(set_to_none=True)
    loss, _ = meta_loss(model, params, {}, batch, inner_lr=0.4, **kwargs)
    loss.backward()
    maml_grad = flat_grad(model)
    ours_loss, ours_theta, _ = metasgd_gradient(metasgd, batch, **kwargs)
    assert ours_loss == float(loss.detach())
    assert torch.equal(ours_theta, maml_grad)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vmap_equals_loop(first_order, dtype):
    metasgd = MetaSGD(Conv4(1, 5, hidden=4, image_size=16).to(dtype), init_lr=0.4)
    random_rates(metasgd, -0.1, 0.6, seed=6)
    batch = random_batch(4, 5, 1, 2, 16, dtype=dtype, seed=6)
    kwargs = dict(steps=2, first_order=first_order)
    loop = metasgd_gradient(metasgd, batch, vectorise=False, **kwargs)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for chunk_size in (None, 3):
        vmapped = metasgd_gradient(
            metasgd, batch, vectorise=True, chunk_size=chunk_size, **kwargs
        )
        assert math.isclose(vmapped[0], loop[0], rel_tol=tolerance)
        assert relative_error(vmapped[1], loop[1]) < tolerance
        assert relative_error(vmapped[2], loop[2]) < tolerance


# --- the training step, learning, and the classifier --------------------------


def test_make_metasgd_step_matches_meta_loss_and_fills_both_grads():
    metasgd = tiny_metasgd()
    images = omniglot_like()
    step = make_metasgd_step(
        metasgd,
        images,
        ways=3,
        shots=1,
        queries=2,
        meta_batch_size=2,
        steps=1,
        first_order=True,
    )
    loss, metrics = step(torch.Generator().manual_seed(11))
    assert set(metrics) == {"query_loss", "query_acc"}
    batch = sample_episodes(images, 2, 3, 1, 2, torch.Generator().manual_seed(11))
    model = metasgd.model
    expected, _ = meta_loss(
        model,
        dict(model.named_parameters()),
        {},
        batch,
        inner_lr=metasgd.inner_lr,
        steps=1,
        first_order=True,
    )
    assert torch.equal(loss, expected)
    loss.backward()
    for p in metasgd.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert float(rates_grad(metasgd).abs().max()) > 0  # FOMAML: rates still learn


def test_meta_loss_falls_and_rates_carry_a_descent_direction():
    # A fixed batch, Adam on (theta, alpha): the meta-loss must fall clearly
    # (measured: 1.105 -> 0.954 in 12 steps; over 5 seeds the ratio was 0.83 to
    # 0.91). Then Adam on the rates alone, theta frozen: the loss must fall
    # too (1.105 -> 1.000 in 8 steps), which fails if the gradient on the
    # rates is wrong: ascending it instead raised the loss to 1.24.
    batch = random_batch(4, 3, 1, 2, 16, seed=8)
    kwargs = dict(steps=1, first_order=False)

    def train(metasgd, parameters, iterations: int, lr: float) -> list[float]:
        optimiser = torch.optim.Adam(parameters, lr=lr)
        losses = []
        for _ in range(iterations):
            optimiser.zero_grad()
            loss, _ = meta_loss(
                metasgd.model,
                dict(metasgd.model.named_parameters()),
                {},
                batch,
                inner_lr=metasgd.inner_lr,
                **kwargs,
            )
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        return losses

    metasgd = tiny_metasgd()
    losses = train(metasgd, metasgd.parameters(), 12, lr=3e-3)
    assert losses[-1] < 0.92 * losses[0], losses
    rates = torch.cat([r.detach().flatten() for r in metasgd.inner_lr.values()])
    assert rates.std() > 1e-3  # no longer one constant: learned per element

    metasgd = tiny_metasgd()
    before = {n: p.detach().clone() for n, p in metasgd.model.named_parameters()}
    losses = train(metasgd, metasgd.inner_lrs.parameters(), 8, lr=1e-2)
    assert losses[-1] < 0.95 * losses[0], losses
    for name, p in metasgd.model.named_parameters():
        assert torch.equal(p, before[name])


def test_metasgd_classifier_uses_current_rates_under_no_grad():
    metasgd = tiny_metasgd()
    random_rates(metasgd, 0.2, 0.6, seed=9)
    episode = FixedEpisodes(omniglot_like(1), 1, ways=3, shots=1, queries=2, seed=0)[0]
    classify = metasgd_classifier(metasgd, steps=2)
    with torch.no_grad():
        logits = classify(episode)
    assert logits.shape == (6, 3) and not logits.requires_grad
    model = metasgd.model
    adapted = adapt(
        model,
        dict(model.named_parameters()),
        {},
        episode.support_x,
        episode.support_y,
        inner_lr=metasgd.inner_lr,
        steps=2,
        first_order=True,
    )
    expected = functional_call(model, adapted, (episode.query_x,))
    torch.testing.assert_close(logits, expected.detach())
    with torch.no_grad():  # an optimiser updates the rates in place
        for rate in metasgd.inner_lr.values():
            rate.mul_(0.5)
        assert not torch.allclose(classify(episode), logits)
    assert all(rate.grad is None for rate in metasgd.inner_lr.values())


# --- loud errors -----------------------------------------------------------------


def bad_rates(kind: str, params: dict[str, torch.Tensor]) -> dict:
    rates = {name: torch.full_like(p, 0.4) for name, p in params.items()}
    first = next(iter(params))
    if kind == "missing":
        del rates[first]
    elif kind == "unexpected":
        rates["head.scale"] = torch.tensor(0.4)
    elif kind == "shape":
        rates[first] = torch.full((2, 3), 0.4)
    elif kind == "integer":
        rates[first] = torch.ones_like(params[first], dtype=torch.int64)
    elif kind == "dtype":
        rates[first] = rates[first].double()
    elif kind == "not a tensor":
        rates[first] = 0.4
    return rates


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("missing", ValueError, r"missing \['features.0.0.weight'\], unexpected \[\]"),
        ("unexpected", ValueError, r"missing \[\], unexpected \['head.scale'\]"),
        ("shape", ValueError, r"shape \(2, 3\).*shape \(4, 1, 3, 3\)"),
        ("integer", TypeError, r"'features.0.0.weight'.*floating-point.*torch.int64"),
        ("dtype", TypeError, r"'features.0.0.weight'.*torch.float64"),
        ("not a tensor", TypeError, r"'features.0.0.weight'.*must be a tensor"),
    ],
)
def test_rejects_bad_rates(kind, error, message):
    model = Conv4(1, 3, hidden=4, image_size=16)
    params = dict(model.named_parameters())
    batch = random_batch(2, 3, 1, 1, 16)
    rates = bad_rates(kind, params)
    kwargs = dict(inner_lr=rates, steps=1, first_order=False)
    with pytest.raises(error, match=message):
        adapt(model, params, {}, batch.support_x[0], batch.support_y[0], **kwargs)
    for vectorise in (True, False):
        with pytest.raises(error, match=message):
            meta_loss(model, params, {}, batch, vectorise=vectorise, **kwargs)
    with pytest.raises(error, match=message):
        maml_step_from_sampler(model, lambda g: batch, **kwargs)
    with pytest.raises(error, match=message):
        make_maml_step(
            model,
            omniglot_like(),
            ways=3,
            shots=1,
            queries=1,
            meta_batch_size=2,
            **kwargs,
        )
    with pytest.raises(error, match=message):
        maml_classifier(model, inner_lr=rates, steps=1)


def test_rejects_other_inner_lr_types_and_accepts_negative_rates():
    model = Conv4(1, 3, hidden=4, image_size=16)
    params = dict(model.named_parameters())
    task = random_batch(1, 3, 1, 1, 16)[0]
    kwargs = dict(steps=1, first_order=False)
    scalar = torch.tensor(0.4)  # one tensor for all: not a mapping, rejected
    with pytest.raises(TypeError, match="inner_lr must be a float, or a mapping"):
        adapt(
            model, params, {}, task.support_x, task.support_y, inner_lr=scalar, **kwargs
        )
    negative = {name: torch.full_like(p, -0.1) for name, p in params.items()}
    adapted = adapt(
        model, params, {}, task.support_x, task.support_y, inner_lr=negative, **kwargs
    )
    assert all(torch.isfinite(w).all() for w in adapted.values())
    with pytest.raises(TypeError, match="MetaSGD"):
        metasgd_classifier(model, steps=1)
