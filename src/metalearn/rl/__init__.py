"""Meta-reinforcement learning: MAML over policy-gradient steps.

One module per idea:

* :mod:`~metalearn.rl.navigation`: the 2-D point navigation task family of
  Finn, Abbeel and Levine (2017), simulated for many tasks and rollouts at once;
* :mod:`~metalearn.rl.policy`: a Gaussian MLP policy, called on a parameter
  dictionary with one copy of the weights per task;
* :mod:`~metalearn.rl.gradients`: discounted returns, the linear baseline, and
  the policy-gradient surrogates (REINFORCE and the loaded DiCE objective);
* :mod:`~metalearn.rl.maml`: batched rollouts, the inner policy-gradient step,
  the MAML meta-objective, joint pre-training, and adaptation curves;
* :mod:`~metalearn.rl.budgets`: the chapter's budgets per run profile;
* :mod:`~metalearn.rl.metaworld`: the same sampler interface over Meta-World's
  MuJoCo tasks (optional extra ``metalearn[metaworld]``);
* :mod:`~metalearn.rl.plots`: the figures of the applications chapter.
"""

from metalearn.rl.budgets import BUDGETS, MetaRLBudget, budget_for, num_threads
from metalearn.rl.gradients import (
    discounted_returns,
    linear_feature_baseline,
    loaded_dice_surrogate,
    magic_box,
    reinforce_surrogate,
)
from metalearn.rl.maml import (
    MetaRLConfig,
    Trajectories,
    adapt,
    adaptation_returns,
    make_maml_rl_step,
    make_pretrain_step,
    maml_rl_objective,
    rollout,
)
from metalearn.rl.navigation import (
    PointNavigation,
    navigation_sampler,
    navigation_step,
    sample_goals,
)
from metalearn.rl.policy import GaussianMLPPolicy

__all__ = [
    "BUDGETS",
    "GaussianMLPPolicy",
    "MetaRLBudget",
    "MetaRLConfig",
    "PointNavigation",
    "Trajectories",
    "adapt",
    "adaptation_returns",
    "budget_for",
    "discounted_returns",
    "linear_feature_baseline",
    "loaded_dice_surrogate",
    "magic_box",
    "make_maml_rl_step",
    "make_pretrain_step",
    "maml_rl_objective",
    "navigation_sampler",
    "navigation_step",
    "num_threads",
    "reinforce_surrogate",
    "rollout",
    "sample_goals",
]
