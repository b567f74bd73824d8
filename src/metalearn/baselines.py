"""Few-shot baselines that learn nothing across tasks.

Each episode is solved from its support set alone, on raw pixels. These are
the numbers every meta-learning method in the book has to beat: whatever a
meta-learner gains over them is what it learned from the meta-training tasks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metalearn.checks import check_positive_float, check_positive_int
from metalearn.episodes import Episode, check_episode


def nearest_neighbour(episode: Episode) -> torch.Tensor:
    """1-nearest-neighbour on flattened pixels (Euclidean distance).

    Returns:
        Predicted query labels ``[N*Q]``: the label of the closest support image.

    Raises:
        TypeError, ValueError: ``episode`` is not a valid episode
            (:func:`metalearn.episodes.check_episode`).
    """
    check_episode(episode)
    support = episode.support_x.flatten(1)  # [N*K, D]
    query = episode.query_x.flatten(1)  # [N*Q, D]
    nearest = torch.cdist(query, support).argmin(dim=1)  # [N*Q]
    return episode.support_y[nearest]


def logistic_regression(
    episode: Episode, *, l2: float = 1e-2, max_iter: int = 100
) -> torch.Tensor:
    """Multinomial logistic regression fitted on the support set, on pixels.

    Minimises ``mean_i CE(W x_i + b, y_i) + l2/2 * ||W||^2`` over the support
    set with L-BFGS, starting from zero weights (so the fit is deterministic).

    Args:
        episode: the task.
        l2: the weight-decay strength; must be positive (a 1-shot support set
            is linearly separable, so without it the weights diverge).
        max_iter: L-BFGS iterations.

    Returns:
        Query scores (logits) ``[N*Q, N]``.

    Raises:
        TypeError, ValueError: ``episode`` is not a valid episode, ``l2`` is
            not a finite positive number or ``max_iter`` not a positive int.
    """
    check_episode(episode)
    check_positive_float("l2", l2)
    check_positive_int("max_iter", max_iter)
    x = episode.support_x.flatten(1).double()  # [N*K, D]
    ways = episode.ways
    weight = x.new_zeros(x.shape[1], ways, requires_grad=True)
    bias = x.new_zeros(ways, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, episode.support_y)
        loss = loss + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    with torch.no_grad():
        return (episode.query_x.flatten(1).double() @ weight + bias).float()
