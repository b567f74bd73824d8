"""Learning curves: what a training run records at each step and each evaluation.

:func:`metalearn.training.train` returns a :class:`History`; it is also stored
in every checkpoint, so a resumed run returns the curves of the whole run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """The learning curves of a run: one training row per step, one per evaluation.

    ``train[name][i]`` is the metric ``name`` at step ``train_steps[i]``; the
    metric ``"loss"`` is the value minimised unless ``step`` reports its own
    ``"loss"`` (e.g. Reptile reports the query loss, not its surrogate).
    ``eval[name][j]`` is what ``evaluate()`` returned at step ``eval_steps[j]``.
    Plot with ``plt.plot(history.train_steps, history.train["loss"])``.
    """

    train_steps: list[int] = field(default_factory=list)  # step of each train row
    train: dict[str, list[float]] = field(default_factory=dict)  # metric -> values
    eval_steps: list[int] = field(default_factory=list)  # step of each evaluation
    eval: dict[str, list[float]] = field(default_factory=dict)  # metric -> values

    def record_train(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append the training metrics of ``step``."""
        _append(self.train_steps, self.train, step, metrics, "step")

    def record_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append the evaluation metrics computed after ``step``."""
        _append(self.eval_steps, self.eval, step, metrics, "evaluate")

    def to_dict(self) -> dict[str, Any]:
        """The history as plain lists and dicts (JSON- and checkpoint-safe)."""
        return {
            "train_steps": list(self.train_steps),
            "train": {name: list(values) for name, values in self.train.items()},
            "eval_steps": list(self.eval_steps),
            "eval": {name: list(values) for name, values in self.eval.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: a key is missing or a metric's length differs from the
                number of steps it belongs to.
        """
        missing = {"train_steps", "train", "eval_steps", "eval"} - set(data)
        if missing:
            raise ValueError(f"A history dict needs the keys {sorted(missing)}.")
        history = cls(
            train_steps=[int(s) for s in data["train_steps"]],
            train={k: [float(v) for v in vs] for k, vs in data["train"].items()},
            eval_steps=[int(s) for s in data["eval_steps"]],
            eval={k: [float(v) for v in vs] for k, vs in data["eval"].items()},
        )
        for steps, metrics in (
            (history.train_steps, history.train),
            (history.eval_steps, history.eval),
        ):
            for name, values in metrics.items():
                if len(values) != len(steps):
                    raise ValueError(
                        f"History metric {name!r} has {len(values)} values for "
                        f"{len(steps)} steps."
                    )
        return history


def _append(
    steps: list[int],
    table: dict[str, list[float]],
    step: int,
    metrics: Mapping[str, float],
    source: str,
) -> None:
    if steps and set(metrics) != set(table):
        raise ValueError(
            f"{source} returned the metrics {sorted(metrics)} at step {step} but "
            f"{sorted(table)} before; it must return the same names every time."
        )
    steps.append(step)
    for name, value in metrics.items():
        table.setdefault(name, []).append(value)
