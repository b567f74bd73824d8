"""Replay the table of reader mistakes against a version of the library.

Each row of ``tests/test_bad_inputs.py`` (and the extra rows below, for the
modules whose checks are still to come) makes one ordinary mistake with the
public API. Its outcome is

* ``clear``: the expected exception type, with a message naming the problem
  (the row's regex matches);
* ``confusing``: another exception, or a message that does not name it (e.g. a
  raw torch error from deep inside);
* ``silent``: no exception at all, i.e. a wrong result.

The regexes are those of the current messages, so on an older version a clear
but differently worded message counts as confusing; ``--verbose`` prints every
message so the reader can judge.

Usage (from the repository root; ``--src`` picks the library to replay)::

    PYTHONPATH=src python benchmarks/bad_inputs_survey.py
    python benchmarks/bad_inputs_survey.py --src ../main/src --verbose

Network access is disabled during the survey (a mistaken ``download`` flag
must not start a download).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import io
import re
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def extra_cases():
    """Mistakes in modules whose checks are not in this table's scope yet."""
    import torch
    import torch.nn.functional as F

    from metalearn import experiments, maml, runtime
    from metalearn.models import MLP, Conv4
    from metalearn.profiles import get_profile
    from metalearn.sinusoid import sample_sinusoid_tasks
    from metalearn.training import TrainConfig, train

    tasks = sample_sinusoid_tasks(2, 5, 5, torch.Generator().manual_seed(0))
    mlp = MLP()
    params, buffers = dict(mlp.named_parameters()), {}

    def sinusoid_adapt(**kwargs):
        options = dict(inner_lr=0.01, steps=1, first_order=True)
        options.update(kwargs)
        return lambda: maml.adapt(
            mlp, params, buffers, tasks.support_x[0], tasks.support_y[0], **options
        )

    def default_loss_on_regression():
        adapted = sinusoid_adapt()()
        if all(torch.equal(adapted[k], params[k]) for k in params):
            return "weights unchanged: cross-entropy of a 1-output model is 0"
        return None

    def empty_support():
        adapted = maml.adapt(
            mlp,
            params,
            buffers,
            tasks.support_x[0][:0],
            tasks.support_y[0][:0],
            inner_lr=0.01,
            steps=1,
            first_order=True,
            loss_fn=F.mse_loss,
        )
        return adapted

    conv = Conv4(1, ways=3, hidden=4)

    def resume_changed_inner_lr():
        images = torch.randint(0, 256, (8, 4, 1, 28, 28), dtype=torch.uint8)
        with tempfile.TemporaryDirectory() as directory:
            for inner_lr in (0.4, 0.1):
                torch.manual_seed(0)
                model = Conv4(1, ways=3, hidden=4)
                step = maml.make_maml_step(
                    model,
                    images,
                    ways=3,
                    shots=1,
                    queries=1,
                    meta_batch_size=2,
                    inner_lr=inner_lr,
                    steps=1,
                    first_order=True,
                )
                optimiser = torch.optim.Adam(model.parameters(), 1e-3)
                config = TrainConfig(steps=1, checkpoint_dir=directory)
                train(model, optimiser, step, config, progress=False)

    linear = torch.nn.Linear(1, 1)

    def fit_eval_every_zero():
        def step(generator):
            return linear(torch.ones(1, 1)).pow(2).mean(), {}

        optimiser = torch.optim.SGD(linear.parameters(), lr=0.1)
        experiments.fit(
            "survey",
            linear,
            optimiser,
            step,
            2,
            eval_every=0,
            resume=False,
            profile=get_profile("smoke"),
        )

    return [
        (
            "maml.adapt",
            "absurd inner_lr 1e308",
            sinusoid_adapt(inner_lr=1e308, loss_fn=F.mse_loss),
            ValueError,
            "inner_lr",
        ),
        (
            "maml.adapt",
            "default cross-entropy on regression",
            default_loss_on_regression,
            TypeError,
            "loss_fn|regression|mse",
        ),
        ("maml.adapt", "empty support set", empty_support, ValueError, "empty|support"),
        (
            "Conv4",
            "float64 input",
            lambda: conv(torch.rand(2, 1, 28, 28, dtype=torch.float64)),
            TypeError,
            "float64",
        ),
        (
            "Conv4",
            "uint8 input",
            lambda: conv(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)),
            TypeError,
            "uint8",
        ),
        (
            "train",
            "resume with a changed MAML inner_lr",
            resume_changed_inner_lr,
            ValueError,
            "inner_lr",
        ),
        ("fit", "eval_every=0", fit_eval_every_zero, ValueError, "eval_every"),
        (
            "checkpoint_dir",
            "'..'",
            lambda: experiments.checkpoint_dir("..", get_profile("smoke")),
            ValueError,
            "name",
        ),
        (
            "seed_everything",
            "seed beyond 64 bits",
            lambda: runtime.seed_everything(2**70),
            ValueError,
            "64",
        ),
        (
            "start_run",
            "a Profile where a name is expected",
            lambda: runtime.start_run(0, profile=get_profile("smoke")),
            TypeError,
            "profile",
        ),
    ]


def classify(call, error, pattern) -> tuple[str, str]:
    """``(outcome, message)`` of one row; the call's own output is swallowed."""
    quiet = io.StringIO()
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(quiet),
            contextlib.redirect_stderr(quiet),
        ):
            warnings.simplefilter("ignore")
            result = call()
    except Exception as exc:  # noqa: BLE001 - every outcome is recorded
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        if isinstance(exc, error) and re.search(pattern, str(exc)):
            return "clear", message
        return "confusing", message
    return "silent", "returned " + " ".join(str(result)[:80].split())


def main(argv: list[str] | None = None) -> dict[tuple[str, str], dict[str, int]]:
    """Run the survey; return ``{(rows, function): {outcome: count}}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(REPO / "src"), help="library to replay")
    parser.add_argument("--verbose", action="store_true", help="print every message")
    parser.add_argument(
        "--no-extra", action="store_true", help="only the rows of the test table"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(args.src).resolve()))
    sys.path.insert(1, str(REPO / "tests"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network disabled by the survey")

    real_urlopen, urllib.request.urlopen = urllib.request.urlopen, offline
    try:
        counts = _survey(args)
    finally:
        urllib.request.urlopen = real_urlopen
    return {key: dict(counter) for key, counter in counts.items()}


def _survey(args: argparse.Namespace) -> dict[tuple[str, str], collections.Counter]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = importlib.util.spec_from_file_location(
        "bad_inputs", REPO / "tests" / "test_bad_inputs.py"
    )
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    rows = [("table", *row) for row in table.CASES]
    if not args.no_extra:
        rows += [("extra", *row) for row in extra_cases()]

    counts: dict[tuple[str, str], collections.Counter] = collections.defaultdict(
        collections.Counter
    )
    for source, function, case, call, error, pattern in rows:
        outcome, message = classify(call, error, pattern)
        plt.close("all")
        counts[(source, function)][outcome] += 1
        if args.verbose:
            print(f"{outcome:9} {function}: {case}: {message[:160]}")

    import metalearn

    print(f"\nlibrary: {Path(metalearn.__file__).parent}")
    print(f"{'rows':6} {'function':28} {'clear':>6} {'confusing':>10} {'silent':>7}")
    totals: dict[str, collections.Counter] = collections.defaultdict(
        collections.Counter
    )
    for (source, function), counter in counts.items():
        print(
            f"{source:6} {function:28} {counter['clear']:6d} "
            f"{counter['confusing']:10d} {counter['silent']:7d}"
        )
        totals[source].update(counter)
    for source, counter in totals.items():
        print(
            f"{source:6} {'TOTAL':28} {counter['clear']:6d} "
            f"{counter['confusing']:10d} {counter['silent']:7d}"
        )
    return counts


if __name__ == "__main__":
    main()
