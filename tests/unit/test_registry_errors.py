"""Registering a job type wrong is said at once, not by every job dying later."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from streamq import ConfigError, Job, Registry


@dataclass(frozen=True, slots=True)
class Item:
    n: int


def first(j: Job[Item]) -> None:
    return None


def second(j: Job[Item]) -> None:
    return None


def test_steps_given_in_a_list_are_a_config_error() -> None:
    """``register(name, args, [a, b])`` (the steps are varargs): a ConfigError naming the fix,
    where it used to register a type whose every job failed with "'list' object is not
    callable"."""
    registry = Registry()
    with pytest.raises(ConfigError, match=r"step 0 is a list, not a function .*register\(name"):
        registry.register("t", Item, [first, second])  # type: ignore[arg-type]
    assert "t" not in registry


def test_steps_one_by_one_register() -> None:
    registry = Registry()
    jt = registry.register("t", Item, first, second)
    assert jt.step_names == ("first", "second")
