"""The anti-starvation rule of priorities (``streamq/backends/_priority.py``), on its own: the
order a consumer's reads take the levels in, for a given backlog (docs/flow-control.md)."""

from __future__ import annotations

import pytest

from streamq import ConfigError
from streamq.backends._priority import PASS_LIMIT, PRIORITIES, LevelTurns, check_priority


def simulate(backlog: dict[str, int], count: int, reads: int) -> str:
    """What ``reads`` reads of ``count`` slots take from ``backlog`` (a letter per job), as
    both backends ask: what low and default are owed first, then high, default, low."""
    turns, left, out = LevelTurns(), dict(backlog), []
    for _ in range(reads):
        reset, owed_taken, taken, room = [False] * 3, [0] * 3, [0] * 3, count
        owed = (0, *turns.owed("c", "t", count))
        for i in (2, 1):
            n = min(owed[i], room)
            if n > 0:
                got = min(n, left[PRIORITIES[i]])
                left[PRIORITIES[i]] -= got
                owed_taken[i] = taken[i] = got
                reset[i] = got < n
                room -= got
                out.append(PRIORITIES[i][0] * got)
        for i in range(3):
            if room > 0:
                reset[i] = True
                got = min(room, left[PRIORITIES[i]])
                left[PRIORITIES[i]] -= got
                taken[i] += got
                room -= got
                out.append(PRIORITIES[i][0] * got)
        turns.note("c", "t", reset, owed_taken, taken)
    return "".join(out)


def test_one_slot_reads_give_low_one_of_every_ten_under_a_steady_high_load() -> None:
    """-c 1, high and low waiting: nine high jobs, then one low, over and over."""
    assert simulate({"high": 100, "default": 0, "low": 100}, 1, 30) == "hhhhhhhhhl" * 3


def test_three_levels_each_lower_level_waits_at_most_pass_limit_higher_slots() -> None:
    """All three waiting: the documented start of the order, and between two jobs of a level
    never more than PASS_LIMIT jobs of the levels above it."""
    order = simulate({"high": 40, "default": 6, "low": 6}, 1, 52)
    assert order.startswith("hhhhhhhhhldhhhhhhhhlhdhhhhhhhlhhd")
    for level, above in (("d", "h"), ("l", "hd")):
        run = 0
        for x in order[: order.rindex(level)]:
            run = 0 if x == level else run + (x in above)
            assert run <= PASS_LIMIT, order


@pytest.mark.parametrize("count", [1, 2, 5, 10, 16, 37])
def test_reads_of_any_size_give_a_waiting_level_one_slot_per_pass_limit_above(count: int) -> None:
    """Reads of several slots under a steady high load: over any number of reads, low gets at
    least one slot for every PASS_LIMIT high ones (give or take one read's worth)."""
    order = ""
    for reads in range(1, 30):
        order = simulate({"high": 10_000, "default": 0, "low": 10_000}, count, reads)
        assert order.count("h") <= PASS_LIMIT * order.count("l") + PASS_LIMIT, (count, order)
    assert order.count("l") * (PASS_LIMIT + 1) >= len(order) - PASS_LIMIT


def test_nothing_owed_while_the_higher_levels_are_empty() -> None:
    """Only low waiting: every read takes low, and a high job arriving is taken next."""
    turns = LevelTurns()
    for _ in range(20):
        assert turns.owed("c", "t", 1) == (0, 0)
        turns.note("c", "t", [True, True, True], [0, 0, 0], [0, 0, 1])


def test_check_priority_names_the_levels() -> None:
    """A level passes through; anything else is a ConfigError listing the levels."""
    assert [check_priority(p) for p in PRIORITIES] == list(PRIORITIES)
    with pytest.raises(ConfigError, match="expected one of high, default, low"):
        check_priority("urgent")
