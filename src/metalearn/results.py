"""Numbers one chapter measures and a later chapter reads, instead of copying them.

A chapter that measures something other chapters discuss records it::

    results.record("maml_omniglot", "second_order_cost", {"steps": [...], ...})

and a later chapter reads it back with :func:`recorded`. The numbers live in
``$METALEARN_CACHE/results/<profile>/<chapter>.json`` (the profile folder of
:func:`metalearn.experiments.checkpoint_dir`, so a capped dry run never mixes with
a real one), written atomically. Values are plain data: numbers, strings,
booleans, ``None``, lists and dicts, and :class:`~metalearn.evaluate.Accuracy`
(stored as its mean, CI half-width and episode count).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from metalearn.data.download import atomic_write
from metalearn.data.paths import cache_root
from metalearn.evaluate import Accuracy
from metalearn.profiles import Profile, get_profile


def results_path(chapter: str, profile: Profile | None = None) -> Path:
    """The JSON file of ``chapter``'s recorded numbers under ``profile``."""
    if not isinstance(chapter, str) or not chapter.replace("_", "").isalnum():
        raise ValueError(
            f"chapter must be a chapter's file name such as 'maml_omniglot', got "
            f"{chapter!r}."
        )
    profile = profile or get_profile()
    folder = profile.name
    if profile.max_steps is not None:
        folder += f"-max{profile.max_steps}"
    return cache_root() / "results" / folder / f"{chapter}.json"


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, Accuracy):
        return {"mean": value.mean, "ci95": value.ci95, "episodes": value.episodes}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}; record finite numbers only.")
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where} has a key that is not a string.")
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(
        f"{where} has type {type(value).__name__}; record numbers, strings, lists, "
        "dicts or Accuracy objects."
    )


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); delete it and run the chapter again."
        ) from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a dict; delete it and run the chapter.")
    return data


def record(
    chapter: str, name: str, value: Any, *, profile: Profile | None = None
) -> None:
    """Store ``value`` as ``chapter``'s result ``name`` (replacing an older one)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")
    path = results_path(chapter, profile)
    data = _read(path)
    data[name] = _plain(value, f"{chapter}.{name}")
    text = json.dumps(data, indent=1, sort_keys=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def recorded(chapter: str, name: str, *, profile: Profile | None = None) -> Any:
    """The result ``name`` that ``chapter`` recorded under ``profile``.

    Raises:
        LookupError: the chapter has not run under this profile in this cache
            (the message says which notebook to run).
    """
    profile = profile or get_profile()
    path = results_path(chapter, profile)
    data = _read(path)
    if name not in data:
        raise LookupError(
            f"No result {name!r} of chapter {chapter!r} under the {profile.name!r} "
            f"profile in {path.parent}: run chapters/{chapter}.ipynb first (with "
            "the same profile and METALEARN_CACHE), which records it."
        )
    return data[name]
