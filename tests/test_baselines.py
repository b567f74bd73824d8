import numpy as np
import pytest
import torch
from scipy import optimize

from metalearn import baselines
from metalearn.episodes import Episode, FixedEpisodes
from metalearn.evaluate import evaluate


def make_episode(seed=0, ways=3, shots=2, queries=4, dim=6):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(ways, dim, generator=g) * 3
    noise = 0.1
    sx = centres.repeat_interleave(shots, 0) + noise * torch.randn(
        ways * shots, dim, generator=g
    )
    qx = centres.repeat_interleave(queries, 0) + noise * torch.randn(
        ways * queries, dim, generator=g
    )
    return Episode(
        sx.view(-1, 1, 2, 3),
        torch.arange(ways).repeat_interleave(shots),
        qx.view(-1, 1, 2, 3),
        torch.arange(ways).repeat_interleave(queries),
        torch.arange(ways),
    )


def test_nearest_neighbour_matches_brute_force():
    episode = make_episode(seed=1, queries=6)
    expected = []
    for q in episode.query_x.flatten(1):
        d = [float(((q - s) ** 2).sum()) for s in episode.support_x.flatten(1)]
        expected.append(int(episode.support_y[d.index(min(d))]))
    assert baselines.nearest_neighbour(episode).tolist() == expected
    assert expected == episode.query_y.tolist()  # well-separated clusters


def test_logistic_regression_reaches_the_penalised_optimum():
    episode = make_episode(seed=2)
    l2 = 1e-2
    logits = baselines.logistic_regression(episode, l2=l2)
    assert logits.shape == (12, 3)
    assert (logits.argmax(1) == episode.query_y).all()
    # Independent check: solve the same penalised problem with SciPy's L-BFGS-B
    # in float64 and compare the predicted probabilities.
    x = episode.support_x.flatten(1).double().numpy()
    y = episode.support_y.numpy()

    def objective(theta):
        w, b = theta[:18].reshape(6, 3), theta[18:]
        z = x @ w + b
        z = z - z.max(1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
        loss = -log_p[np.arange(len(y)), y].mean() + 0.5 * l2 * (w**2).sum()
        grad_z = np.exp(log_p)
        grad_z[np.arange(len(y)), y] -= 1
        grad_z /= len(y)
        grad_w = x.T @ grad_z + l2 * w
        return loss, np.concatenate([grad_w.ravel(), grad_z.sum(0)])

    fit = optimize.minimize(
        objective,
        np.zeros(21),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "maxiter": 1000},
    )
    w, b = fit.x[:18].reshape(6, 3), fit.x[18:]
    reference = torch.from_numpy(episode.query_x.flatten(1).double().numpy() @ w + b)
    assert torch.allclose(logits.double().softmax(1), reference.softmax(1), atol=1e-4)


def test_logistic_regression_bad_arguments():
    episode = make_episode()
    with pytest.raises(ValueError, match="l2 must be a finite positive number"):
        baselines.logistic_regression(episode, l2=0.0)
    with pytest.raises(ValueError, match="max_iter must be positive"):
        baselines.logistic_regression(episode, max_iter=0)


def test_baselines_beat_chance_on_omniglot(omniglot_data):
    for method, count in (
        (baselines.nearest_neighbour, 60),
        (baselines.logistic_regression, 15),
    ):
        episodes = FixedEpisodes(omniglot_data.split("test"), count, 5, 1, 5, seed=0)
        result = evaluate(method, episodes, progress=False)
        # Vinyals et al. (2016) report 41.7% for pixel nearest neighbour.
        assert 0.30 < result.mean < 0.60, (method.__name__, result)
