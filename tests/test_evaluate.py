import math

import numpy as np
import pytest
import torch
from scipy import stats

from metalearn.episodes import FixedEpisodes
from metalearn.evaluate import (
    Accuracy,
    accuracy,
    evaluate,
    fixed_test_episodes,
    mean_confidence_interval,
    median_confidence_interval,
)
from metalearn.profiles import get_profile


def test_confidence_interval_matches_scipy():
    values = np.random.default_rng(0).uniform(size=600)
    mean, half = mean_confidence_interval(values)
    sem = stats.sem(values)  # ddof=1
    assert mean == pytest.approx(values.mean())
    assert half == pytest.approx(1.96 * sem)
    # The normal approximation is within 0.3% of the t interval for n = 600.
    assert half == pytest.approx(stats.t.ppf(0.975, 599) * sem, rel=3e-3)


def test_confidence_interval_edge_cases():
    assert mean_confidence_interval([0.5, 0.5, 0.5]) == (0.5, 0.0)
    mean, half = mean_confidence_interval([0.3])
    assert mean == 0.3 and math.isnan(half)
    with pytest.raises(ValueError, match="at least one"):
        mean_confidence_interval([])
    with pytest.raises(ValueError, match="NaN"):
        mean_confidence_interval([0.1, float("nan")])


@pytest.mark.parametrize("n", [6, 7, 20, 101, 600])
def test_median_interval_uses_the_binomial_order_statistics(n):
    """The ranks are those of the textbook rule, computed here with scipy."""
    values = np.random.default_rng(n).exponential(size=n)
    median, low, high = median_confidence_interval(values.tolist())
    ranks = [r for r in range(1, n // 2 + 1)
             if 1 - 2 * stats.binom.cdf(r - 1, n, 0.5) >= 0.95]
    r = max(ranks)  # the narrowest interval that keeps 95% coverage
    ordered = np.sort(values)
    assert median == pytest.approx(np.median(values))
    assert (low, high) == (ordered[r - 1], ordered[n - r])


def test_median_interval_covers_the_median_at_least_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_median = np.log(2)  # of the unit exponential
    covered = [low <= true_median <= high for low, high in (
        median_confidence_interval(rng.exponential(size=51).tolist())[1:]
        for _ in range(2000))]
    assert 0.94 <= np.mean(covered) <= 0.99  # exact coverage here is 0.951


def test_median_interval_accepts_diverged_runs_and_refuses_nan():
    losses = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, math.inf]
    median, low, high = median_confidence_interval(losses)
    assert (median, low, high) == (0.5, 0.2, 0.8)  # r = 2 for n = 9 (96.1%)
    assert all(math.isnan(b) for b in median_confidence_interval([1.0, 2.0])[1:])
    with pytest.raises(ValueError, match="nan_to_num"):
        median_confidence_interval([0.1, float("nan")])


def test_accuracy_from_labels_and_scores():
    targets = torch.tensor([0, 1, 2, 2])
    assert accuracy(torch.tensor([0, 1, 0, 2]), targets) == 0.75
    scores = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 2]), 3).float()
    assert accuracy(scores, targets) == 0.75
    with pytest.raises(ValueError, match="shape"):
        accuracy(torch.tensor([0, 1]), targets)


def test_evaluate_oracle_and_constant(omniglot_data):
    episodes = FixedEpisodes(omniglot_data.split("test"), 10, 5, 1, 3, seed=0)
    oracle = evaluate(lambda e: e.query_y, episodes, progress=False)
    assert isinstance(oracle, Accuracy)
    assert oracle.mean == 1.0 and oracle.ci95 == 0.0 and oracle.episodes == 10
    zero = evaluate(lambda e: torch.zeros_like(e.query_y), episodes, progress=False)
    assert zero.mean == pytest.approx(0.2)  # label 0 is one class in five
    assert str(oracle) == "100.00 ± 0.00 %"


def test_fixed_test_episodes_follow_the_profile(omniglot_data):
    profile = get_profile("smoke")
    images = omniglot_data.split("test")
    a = fixed_test_episodes(images, 5, 1, profile)
    b = fixed_test_episodes(images, 5, 1, profile)
    assert len(a) == profile.eval_episodes
    assert a.queries == profile.eval_queries
    assert torch.equal(a.index.classes, b.index.classes)


def test_accuracy_checks_what_it_compares():
    targets = torch.tensor([0, 1, 2, 2])
    scores = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 2]), 3).float()
    assert accuracy(scores, targets, ways=3) == 0.75
    with pytest.raises(ValueError, match="5 columns but the episode is 3-way"):
        accuracy(torch.zeros(4, 5), targets, ways=3)
    with pytest.raises(ValueError, match=r"predictions holds labels \[7\]"):
        accuracy(torch.tensor([0, 1, 2, 7]), targets, ways=3)
    with pytest.raises(ValueError, match=r"targets holds labels \[2\] outside 0..1"):
        accuracy(torch.zeros(4, 2), targets)  # 2-column scores, labels up to 2
    with pytest.raises(ValueError, match="NaN"):
        accuracy(torch.full((4, 3), float("nan")), targets)
    with pytest.raises(ValueError, match="non-empty"):
        accuracy(torch.zeros(0).long(), torch.zeros(0).long())


def test_evaluate_refuses_a_model_built_for_other_ways(omniglot_data):
    episodes = FixedEpisodes(omniglot_data.split("test"), 3, 5, 1, 3, seed=0)
    with pytest.raises(ValueError, match="episode 0: .*20 columns but .* 5-way"):
        evaluate(lambda e: torch.zeros(15, 20), episodes, progress=False)
    with pytest.raises(TypeError, match="must return a tensor"):
        evaluate(lambda e: e.query_y.tolist(), episodes, progress=False)
    one = evaluate(lambda e: e.query_y, [episodes[0]], progress=False)
    assert one.mean == 1.0 and math.isnan(one.ci95)  # one episode: no spread
