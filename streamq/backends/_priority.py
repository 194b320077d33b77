"""Job priorities: the levels, and the rule by which a worker's reads take them.

A type given a priority has one stream per level (``high``, ``default``, ``low``; the default
level is the type's plain stream). Each read of a consumer asks the levels in order, high first,
for what is left of its slots, so a waiting ``high`` job is taken before any ``default`` or
``low`` one.

So that a lower level is never starved, each consumer keeps, per type and lower level, the
slots the levels above it took that the level has not been paid for (``passed``). A read of
``count`` slots first asks the level for ``(passed + count) // (PASS_LIMIT + 1)`` entries (``low``
before ``default``); then ``passed`` grows by the slots the levels above took and shrinks by
``PASS_LIMIT`` for each entry the level gave to that first ask (never below 0); it is 0 again
when the level ran out of jobs or was reached with room to spare. ``passed`` thus stays below
``PASS_LIMIT + 1``: a level with jobs waiting gets one slot for every ``PASS_LIMIT`` (9) the
levels above it take, at least 1 in 10, whatever the load above it and the size of the reads.
The Redis backend runs the asking in ``read_levels.lua``, the memory backend under its lock;
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
    """Per (consumer, type), the slots the levels above ``default`` and above ``low`` took that
    those levels were not paid for: how many entries a read owes each first."""

    __slots__ = ("_passed",)

    def __init__(self) -> None:
        self._passed: dict[tuple[str, str], list[int]] = {}

    def owed(self, consumer: str, type: str, count: int) -> tuple[int, int]:
        """How many entries this read of ``count`` asks ``default`` and ``low`` for first."""
        passed = self._passed.get((consumer, type)) or (0, 0)
        return (passed[0] + count) // (PASS_LIMIT + 1), (passed[1] + count) // (PASS_LIMIT + 1)

    def note(
        self,
        consumer: str,
        type: str,
        reset: Sequence[bool],
        owed_taken: Sequence[int],
        taken: Sequence[int],
    ) -> None:
        """After a read, each level high first: whether it ran out or was reached with room to
        spare (``reset``), what it gave to its owed ask, and what it gave in all."""
        passed = self._passed.setdefault((consumer, type), [0, 0])
        if reset[1]:
            passed[0] = 0
        else:
            passed[0] = max(0, passed[0] + taken[0] - PASS_LIMIT * owed_taken[1])
        if reset[2]:
            passed[1] = 0
        else:
            passed[1] = max(0, passed[1] + taken[0] + taken[1] - PASS_LIMIT * owed_taken[2])
