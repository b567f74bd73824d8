import dataclasses

import pytest
import torch

from metalearn.profiles import PROFILES, Profile, default_profile_name, get_profile


def test_names_and_explicit_choice():
    assert set(PROFILES) == {"smoke", "short", "paper"}
    for name in PROFILES:
        assert get_profile(name).name == name
    assert get_profile(" Short ").name == "short"


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("METALEARN_PROFILE", "smoke")
    assert get_profile().name == "smoke"


def test_default_depends_on_cuda(monkeypatch):
    monkeypatch.delenv("METALEARN_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_profile_name() == "paper" and get_profile().name == "paper"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile().name == "short"


@pytest.mark.parametrize("bad", ["fast", "", "papers"])
def test_unknown_profile_lists_valid_names(bad, monkeypatch):
    monkeypatch.setenv("METALEARN_PROFILE", "nonsense")
    with pytest.raises(ValueError, match="'smoke', 'short', 'paper'"):
        get_profile("nonsense" if bad == "" else bad)


def test_environment_error_names_the_variable(monkeypatch):
    monkeypatch.setenv("METALEARN_PROFILE", "turbo")
    with pytest.raises(ValueError, match="METALEARN_PROFILE"):
        get_profile()


def test_profiles_are_frozen_and_ordered_by_budget():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["short"].eval_episodes = 1
    assert isinstance(PROFILES["paper"], Profile)
    assert PROFILES["smoke"].eval_episodes < PROFILES["short"].eval_episodes
    assert PROFILES["short"].eval_episodes == PROFILES["paper"].eval_episodes == 600
