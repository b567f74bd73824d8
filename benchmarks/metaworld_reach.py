"""How fast does Meta-World run here, and what does a small MAML run on ML1 show?

Measures the simulator's speed (one ``reach-v3`` simulator stepped with random
actions, and ``T x R`` simulators stepped through
:class:`metalearn.rl.metaworld.MetaWorldTasks` with a policy), then meta-trains
the book's Gaussian MLP policy with MAML (first order by default) on ML1
``reach-v3`` training tasks for ``--iterations`` meta-iterations, and measures
the return and success rate of held-out *test* tasks before and after one
policy-gradient step, for the meta-trained policy, a policy pre-trained on the
same training tasks without adaptation (same iterations, batch and optimiser),
and a freshly initialised one (mean and 95% CI over test tasks). The
applications chapter took the Meta-World budget of its `short` profile
(``metalearn.rl.BUDGETS``) from these runs; see
``benchmarks/results/metaworld_reach_cpu.txt``.

Run: ``python benchmarks/metaworld_reach.py --iterations 30 --tasks 10
--rollouts 5 --horizon 100 --test-tasks 10`` (``--quick``: 1 iteration of
2 x 2 short episodes, to check the script). Needs the optional extra
``metalearn[metaworld]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from metalearn.evaluate import mean_confidence_interval
from metalearn.rl import (
    GaussianMLPPolicy,
    MetaRLConfig,
    adaptation_returns,
    make_maml_rl_step,
    make_pretrain_step,
    num_threads,
    rollout,
)
from metalearn.rl.metaworld import MetaWorldML1
from metalearn.runtime import cpu_name


def summary(values: torch.Tensor) -> str:
    mean, ci = mean_confidence_interval(values.tolist())
    return f"{mean:8.1f} ± {ci:5.1f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="reach-v3")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--rollouts", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--test-tasks", type=int, default=10)
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--inner-lr", type=float, default=0.1)
    parser.add_argument("--second-order", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="check the script")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.tasks, args.rollouts = 1, 2, 2
        args.horizon, args.test_tasks = 5, 2
    print(f"hardware: {cpu_name()}, {args.threads} torch thread(s); python "
          f"{platform.python_version()}, torch {torch.__version__}")
    print(f"settings: {json.dumps(vars(args))}", flush=True)
    results: dict = {}
    with num_threads(args.threads):
        started = time.perf_counter()
        ml1 = MetaWorldML1(args.env, seed=args.seed)
        results["benchmark_s"] = time.perf_counter() - started
        print(f"{ml1} built in {results['benchmark_s']:.1f} s")

        env = ml1.make_env("train")
        env.set_task(ml1.task_list("train")[0])
        env.reset()
        steps = 50 if args.quick else 2_000
        rng = np.random.default_rng(args.seed)
        started = time.perf_counter()
        for t in range(steps):
            if t % 500 == 499:
                env.reset()
            env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        results["steps_per_s_single"] = steps / (time.perf_counter() - started)
        print(f"one simulator, random actions: "
              f"{results['steps_per_s_single']:.0f} steps/s")

        generator = torch.Generator().manual_seed(args.seed)
        policy = GaussianMLPPolicy(39, 4, (100, 100), generator=generator)
        config = MetaRLConfig(inner_lr=args.inner_lr, rollouts=args.rollouts,
                              first_order=not args.second_order)
        sample = ml1.sampler(args.tasks, rollouts=args.rollouts, horizon=args.horizon)
        batch = sample(generator)
        started = time.perf_counter()
        rollout(policy, policy.task_params(batch.tasks), batch, args.rollouts,
                generator)
        elapsed = time.perf_counter() - started
        results["steps_per_s_batched"] = batch.tasks * args.rollouts * args.horizon / (
            elapsed)
        print(f"{batch.tasks} x {args.rollouts} simulators with the policy: "
              f"{results['steps_per_s_batched']:.0f} steps/s")

        def init(seed: int) -> GaussianMLPPolicy:
            return GaussianMLPPolicy(39, 4, (100, 100),
                                     generator=torch.Generator().manual_seed(seed))

        fresh, pretrained = init(args.seed), init(args.seed)
        for name, model, make_step in (("MAML", policy, make_maml_rl_step),
                                       ("pre-trained", pretrained, make_pretrain_step)):
            optimiser = torch.optim.Adam(model.parameters(), lr=args.meta_lr)
            step = make_step(model, sample, config)
            started = time.perf_counter()
            history = []
            for i in range(args.iterations):
                loss, metrics = step(generator)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                history.append(metrics)
                if (i + 1) % max(args.iterations // 5, 1) == 0:
                    shown = ", ".join(f"{k} {v:7.1f}" for k, v in metrics.items())
                    print(f"  {name} iteration {i + 1:4d}: {shown}", flush=True)
            results[f"{name}_train_s"] = time.perf_counter() - started
            results[f"{name}_history"] = history
            print(f"{name}: {args.iterations} iterations in "
                  f"{results[f'{name}_train_s']:.1f} s")

        test = ml1.tasks("test", range(args.test_tasks), rollouts=args.rollouts,
                         horizon=args.horizon)
        started = time.perf_counter()
        for name, model in (("MAML", policy), ("pre-trained", pretrained),
                            ("fresh init", fresh)):
            curve = adaptation_returns(model, test, config, 1,
                                       torch.Generator().manual_seed(args.seed + 1))
            results[name] = {"returns": curve.returns.tolist(),
                             "success": curve.success.tolist()}
            print(f"{name:>11}: test return before {summary(curve.returns[0])}, "
                  f"after 1 step {summary(curve.returns[1])}; success rate "
                  f"{100 * float(curve.success[0].mean()):.0f}% -> "
                  f"{100 * float(curve.success[1].mean()):.0f}%")
        results["test_s"] = time.perf_counter() - started
        print(f"test adaptation: {results['test_s']:.1f} s")
    return results


if __name__ == "__main__":
    main()
