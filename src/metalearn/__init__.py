"""metalearn: the library behind the course *Meta-learning for few-shot learning*.

One module per idea: :mod:`~metalearn.profiles` (run budgets),
:mod:`~metalearn.runtime` (seeds, devices, run header), :mod:`~metalearn.data`
(data sets), :mod:`~metalearn.episodes` (N-way K-shot tasks),
:mod:`~metalearn.evaluate` (accuracy with confidence intervals),
:mod:`~metalearn.baselines` (methods that learn nothing across tasks) and
:mod:`~metalearn.plots`.
"""

__version__ = "0.2.0"


def __getattr__(name: str):
    # metalearn.FewShotClassifier, imported on first use (it pulls in torch).
    if name == "FewShotClassifier":
        from metalearn.classifier import FewShotClassifier

        return FewShotClassifier
    raise AttributeError(f"module 'metalearn' has no attribute {name!r}")
