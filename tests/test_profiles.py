import dataclasses

import pytest
import torch

from metalearn.profiles import (
    CAPPED_FIELDS,
    PROFILES,
    Profile,
    capped,
    default_profile_name,
    get_profile,
)


def test_names_and_explicit_choice(monkeypatch):
    monkeypatch.delenv("METALEARN_MAX_STEPS", raising=False)
    assert set(PROFILES) == {"smoke", "short", "gpu", "paper"}
    for name in PROFILES:
        assert get_profile(name) == PROFILES[name]
    assert get_profile(" Short ").name == "short"


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("METALEARN_PROFILE", "smoke")
    assert get_profile().name == "smoke"


def test_default_depends_on_cuda(monkeypatch):
    monkeypatch.delenv("METALEARN_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_profile_name() == "gpu" and get_profile().name == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile().name == "short"


@pytest.mark.parametrize("bad", ["fast", "", "papers"])
def test_unknown_profile_lists_valid_names(bad, monkeypatch):
    monkeypatch.setenv("METALEARN_PROFILE", "nonsense")
    with pytest.raises(ValueError, match="'smoke', 'short', 'gpu', 'paper'"):
        get_profile("nonsense" if bad == "" else bad)


def test_environment_error_names_the_variable(monkeypatch):
    monkeypatch.setenv("METALEARN_PROFILE", "turbo")
    with pytest.raises(ValueError, match="METALEARN_PROFILE"):
        get_profile()


def test_a_profile_object_is_not_a_name():
    with pytest.raises(TypeError, match="a Profile needs no lookup"):
        get_profile(PROFILES["short"])


def test_profiles_are_frozen_and_ordered_by_budget():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["short"].eval_episodes = 1
    assert isinstance(PROFILES["paper"], Profile)
    for field in CAPPED_FIELDS:
        smoke, short, paper = (getattr(PROFILES[n], field) for n in
                               ("smoke", "short", "paper"))
        assert smoke <= short <= paper, field
        assert PROFILES["gpu"].__getattribute__(field) <= paper, field
    assert PROFILES["short"].eval_episodes == PROFILES["paper"].eval_episodes == 600


def test_max_steps_caps_counts_and_keeps_the_configuration(monkeypatch):
    monkeypatch.setenv("METALEARN_MAX_STEPS", "2")
    paper = get_profile("paper")
    assert paper.name == "paper" and paper.max_steps == 2
    for field in CAPPED_FIELDS:
        assert getattr(paper, field) == 2, field
    # the shape of each step is kept: meta-batch, queries, 5-shot models
    assert paper.maml_meta_batch == 32 and paper.eval_queries == 15
    assert paper.maml_5shot_models and paper.protonet_5shot_model
    assert "capped at 2 (METALEARN_MAX_STEPS)" in paper.budgets()
    assert capped(PROFILES["smoke"], 1000) == dataclasses.replace(
        PROFILES["smoke"], max_steps=1000)  # a cap above the budget changes nothing


@pytest.mark.parametrize("bad", ["0", "-3", "two", "1.5"])
def test_bad_max_steps_is_refused(bad, monkeypatch):
    monkeypatch.setenv("METALEARN_MAX_STEPS", bad)
    with pytest.raises(ValueError, match="METALEARN_MAX_STEPS"):
        get_profile("paper")
