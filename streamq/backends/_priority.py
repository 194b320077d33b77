"""Job priorities: the levels, and the rule by which a worker's reads take them.

A type given a priority has one stream per level (``high``, ``default``, ``low``; the default
level is the type's plain stream). Each read of a consumer asks the levels in order, high first,
for as many entries as it wants, so a waiting ``high`` job is taken before any ``default`` or
``low`` one. So that a lower level is never starved, each consumer counts, per type, the slots
its reads gave to the levels above a level since that level was last asked (``passed``): a read
of ``count`` slots that could otherwise take ``passed + count`` > :data:`PASS_LIMIT` slots past
it asks that level for one entry first. A level with jobs waiting thus gets at least one of
every ``PASS_LIMIT + 1`` slots a worker fills for the type (1 in 10), whatever the load above
it. The Redis backend runs the asking in ``read_levels.lua``, the memory backend under its lock;
both keep the counts here.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamq.exceptions import ConfigError

#: The levels, highest first.
PRIORITIES = ("high", "default", "low")

#: The level of a job enqueued without one.
DEFAULT = "default"

#: The most slots a consumer's reads of a type give to the levels above a level that has jobs
#: waiting before they ask it for one (so it gets at least 1 of every ``PASS_LIMIT + 1``).
PASS_LIMIT = 9


def check_priority(priority: object) -> str:
    """``priority`` when it names a level, else a :class:`ConfigError` that lists them."""
    if priority not in PRIORITIES:
        raise ConfigError(f"unknown priority {priority!r}: expected one of {', '.join(PRIORITIES)}")
    return str(priority)


class LevelTurns:
    """Per (consumer, type), the slots given past ``default`` and past ``low`` since each was
    last asked: what decides which lower levels a read asks first."""

    __slots__ = ("_passed",)

    def __init__(self) -> None:
        self._passed: dict[tuple[str, str], list[int]] = {}

    def owed(self, consumer: str, type: str, count: int) -> tuple[bool, bool]:
        """Whether this read of ``count`` asks ``default`` and ``low`` for one entry first."""
        passed = self._passed.get((consumer, type))
        if passed is None:
            return False, False
        return passed[0] + count > PASS_LIMIT, passed[1] + count > PASS_LIMIT

    def note(self, consumer: str, type: str, asked: Sequence[bool], taken: Sequence[int]) -> None:
        """After a read: which levels it asked and how many entries each gave (high first)."""
        passed = self._passed.setdefault((consumer, type), [0, 0])
        passed[0] = 0 if asked[1] else passed[0] + taken[0]
        passed[1] = 0 if asked[2] else passed[1] + taken[0] + taken[1]
