"""Every algorithm trains through the one loop, and survives an interruption.

For each method a tiny Conv-4 is trained on real Omniglot episodes for a few
steps, crashed at step 3, resumed from its checkpoint, and compared bitwise
with an uninterrupted run (issue: one training loop for every algorithm, with
exact resume).
"""

from __future__ import annotations

import functools

import pytest
import torch

from metalearn import maml, matching, protonet, reptile, siamese
from metalearn.episodes import FixedEpisodes
from metalearn.evaluate import evaluate
from metalearn.models import Conv4
from metalearn.training import TrainConfig, train

STEPS = 5
CRASH_AT = 3


def build(method: str, images: torch.Tensor):
    """(model, optimiser, step, classifier) for one method, seeded."""
    torch.manual_seed(0)
    episode = dict(ways=3, shots=1, queries=2)
    if method in ("maml", "fomaml", "reptile"):
        model = Conv4(1, ways=3, hidden=8)
        if method == "reptile":
            step = reptile.make_reptile_step(
                model, images, meta_batch_size=2, inner_lr=0.1, steps=2, **episode
            )
            classifier = reptile.reptile_classifier(model, inner_lr=0.1, steps=2)
            return model, torch.optim.SGD(model.parameters(), lr=0.5), step, classifier
        step = maml.make_maml_step(
            model,
            images,
            meta_batch_size=2,
            inner_lr=0.4,
            steps=1,
            first_order=method == "fomaml",
            **episode,
        )
        classifier = maml.maml_classifier(model, inner_lr=0.4, steps=1)
    elif method == "siamese":
        model = siamese.SiameseNetwork(Conv4(1, hidden=8, head=False), 8)
        step = siamese.make_siamese_step(model, images, pairs=8)
        classifier = siamese.siamese_classifier(model)
    else:
        model = Conv4(1, hidden=8, head=False)
        if method == "protonet":
            step = protonet.make_protonet_step(model, images, **episode)
            classifier = protonet.protonet_classifier(model)
        else:
            step = matching.make_matching_step(model, images, **episode)
            classifier = matching.matching_classifier(model)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), step, classifier


def crashing(step, at: int):
    calls = {"n": 0}

    @functools.wraps(step)  # keeps step.identity (the run's checkpoint identity)
    def wrapped(generator):
        calls["n"] += 1
        if calls["n"] == at:
            raise RuntimeError("simulated crash")
        return step(generator)

    return wrapped


METHODS = ["maml", "fomaml", "reptile", "protonet", "siamese", "matching"]


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_resumes_exactly(method, omniglot_data, tmp_path):
    images = omniglot_data.split("train")[:40]
    validation = FixedEpisodes(omniglot_data.split("val")[:20], 3, 3, 1, 2, seed=0)
    config = TrainConfig(
        steps=STEPS,
        eval_every=2,
        checkpoint_every=1,
        seed=1,
        checkpoint_dir=str(tmp_path / "interrupted"),
    )

    def run(config, crash_at=None):
        model, optimiser, step, classifier = build(method, images)
        if crash_at is not None:
            step = crashing(step, crash_at)

        def validate():
            return {"acc": evaluate(classifier, validation, progress=False).mean}

        history = train(
            model,
            optimiser,
            step,
            config,
            evaluate=validate,
            experiment={"method": method},
            progress=False,
        )
        return model, history

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(config, crash_at=CRASH_AT)
    resumed, history = run(config)
    reference, expected = run(
        TrainConfig(
            steps=STEPS,
            eval_every=2,
            checkpoint_every=1,
            seed=1,
            checkpoint_dir=str(tmp_path / "straight"),
        )
    )
    assert history.train_steps == list(range(1, STEPS + 1))
    assert history.to_dict() == expected.to_dict()
    for (name, a), (_, b) in zip(
        resumed.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), f"{method}: {name} differs after resume"
    assert all(torch.isfinite(torch.tensor(v)).all() for v in history.train.values())
