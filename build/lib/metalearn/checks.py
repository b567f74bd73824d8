"""Argument checks shared by the library: loud, specific errors in one place."""

from __future__ import annotations


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int >= 1``; raise otherwise.

    Sizes such as ``ways`` (N), ``shots`` (K), ``queries``, ``tasks`` and
    layer widths all go through this check, so they fail with the same message.

    Args:
        name: the argument's name, quoted in the error message.
        value: the value to check.

    Returns:
        ``value``, unchanged.

    Raises:
        TypeError: ``value`` is not an ``int`` (a ``bool`` is rejected too).
        ValueError: ``value < 1``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}.")
    return value
