"""metalearn.zoo: the shared models, trained once and loaded by later chapters."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import omniglot_root

from metalearn import zoo
from metalearn.profiles import PROFILES, get_profile


@pytest.fixture
def cache(tmp_path, monkeypatch, omniglot_cache):
    """A fresh checkpoint cache that still finds the decoded Omniglot."""
    monkeypatch.setenv("METALEARN_DATA", str(omniglot_root()))
    for cached in omniglot_cache.glob("omniglot-*.pt"):
        (tmp_path / cached.name).write_bytes(cached.read_bytes())
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path))
    monkeypatch.delenv("METALEARN_MAX_STEPS", raising=False)
    return tmp_path


def test_every_recipe_is_named_after_its_key_in_every_profile():
    for profile in PROFILES.values():
        for name in zoo.names():
            recipe = zoo.recipe(name, profile)
            assert recipe.name == name
            assert recipe.steps >= 1
            dataclasses.asdict(recipe)  # plain data: it goes into the checkpoint


def test_paper_recipes_follow_the_papers():
    paper, short = PROFILES["paper"], PROFILES["short"]
    protonet = zoo.recipe("protonet-60w1s", paper)
    assert (protonet.ways, protonet.queries, protonet.schedule, protonet.lr) == (
        60, 5, "halving", 1e-3)  # Snell et al. 2017
    assert zoo.recipe("protonet-60w1s", short).queries == 2
    maml = zoo.recipe("maml-5w1s", paper)
    assert (maml.meta_batch, maml.inner_lr, maml.train_steps, maml.test_steps) == (
        32, 0.4, 1, 3)  # Finn et al. 2017, Omniglot 5-way
    reptile = zoo.recipe("reptile-5w", paper)
    assert (reptile.meta_batch, reptile.shots, reptile.train_steps) == (5, 10, 5)
    with pytest.raises(ValueError, match="No model called 'nope'"):
        zoo.recipe("nope")


def test_the_cpu_loop_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert zoo.prefers_vmap(cpu, "maml", shots=1, queries=1)
        torch.set_num_threads(1)  # one thread: vmap does not win (measured)
        assert not zoo.prefers_vmap(cpu, "maml", shots=1, queries=1)
    finally:
        torch.set_num_threads(threads)
    assert not zoo.prefers_vmap(cpu, "maml", shots=5, queries=1)
    assert not zoo.prefers_vmap(cpu, "reptile", shots=10, queries=1)
    assert zoo.prefers_vmap(cuda, "reptile", shots=10, queries=1)


def test_train_then_load_and_refuse_another_recipe(cache, monkeypatch):
    smoke = get_profile("smoke")
    first = zoo.load_or_train("maml-sinusoid", profile=smoke, device="cpu")
    assert not first.loaded and first.fitted.steps == smoke.sinusoid_meta_iterations
    again = zoo.load_or_train("maml-sinusoid", profile=smoke, device="cpu")
    assert again.loaded and "loaded from the checkpoint" in again.summary()
    for p, q in zip(first.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(p, q)
    original = zoo.REGISTRY["maml-sinusoid"]
    changed = lambda profile: dataclasses.replace(original(profile), inner_lr=0.02)  # noqa: E731
    monkeypatch.setitem(zoo.REGISTRY, "maml-sinusoid", changed)
    with pytest.raises(ValueError, match="inner_lr"):
        zoo.load_or_train("maml-sinusoid", profile=smoke, device="cpu")


def test_an_omniglot_recipe_trains_validates_and_classifies(cache):
    trained = zoo.load_or_train("protonet-60w1s", profile=get_profile("smoke"),
                                device="cpu")
    assert trained.fitted.history.eval_steps[-1] == trained.fitted.steps
    assert 0.2 < trained.fitted.final("acc_1shot") <= 1.0  # above 5-way chance
    assert "final validation accuracy: 1shot" in trained.summary()
    from metalearn.episodes import sample_episode

    images = torch.rand(10, 4, 1, 28, 28)
    episode = sample_episode(images, 5, 1, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert trained.classifier()(episode).shape == (10, 5)


def test_register_refuses_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        zoo.register("siamese", lambda profile: None)
    with pytest.raises(TypeError, match="callable"):
        zoo.register("new-model", "not a function")
