"""Per-type caps in one worker: the totals they resolve to, the contradictions refused, and how
a read's free slots are shared out among capped and uncapped types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from streamq import MemoryBackend, Registry, Worker
from streamq._views import concurrency_text, worker_json
from streamq._web import _pages as pages
from streamq._worker.type_caps import DEFAULT_CONCURRENCY, TypeCaps, describe, resolve_caps
from streamq.exceptions import ConfigError


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test types."""


def held(**per_type: int) -> dict[tuple[str, str], object]:
    """What a worker holds: ``per_type[t]`` deliveries of each type ``t``."""
    return {(t, f"{i}-0"): None for t, n in per_type.items() for i in range(n)}


def test_every_type_capped_and_no_total_gives_the_sum_of_the_caps() -> None:
    """No total given and a cap on every type served: the total is their sum."""
    assert resolve_caps(["a", "b"], {"a": 2, "b": 3}, None) == ({"a": 2, "b": 3}, 5)


def test_some_types_capped_and_no_total_gives_the_default_or_the_sum() -> None:
    """No total given and some type uncapped: the default, or the caps' sum when that is more."""
    assert resolve_caps(["a", "b"], {"a": 8}, None) == ({"a": 8}, DEFAULT_CONCURRENCY)
    assert resolve_caps(["a", "b"], {"a": 50}, None) == ({"a": 50}, 50)
    assert resolve_caps(["a"], None, None) == ({}, DEFAULT_CONCURRENCY)


def test_a_total_given_is_kept_when_no_cap_exceeds_it() -> None:
    """A total at least as large as each cap is the total (the caps may add up to more)."""
    assert resolve_caps(["a", "b"], {"a": 8, "b": 8}, 10) == ({"a": 8, "b": 8}, 10)


@pytest.mark.parametrize(
    ("caps", "total", "message"),
    [
        ({"a": 20}, 16, "a=20 is more than the worker's concurrency (16)"),
        ({"a": 0}, None, "must be a whole number ≥ 1, not 0"),
        ({"a": "8"}, None, "must be a whole number ≥ 1, not '8'"),
        ({"a": True}, None, "must be a whole number ≥ 1, not True"),
        ({"z": 2}, None, "names 'z', which this worker does not serve"),
        ({}, 0, "concurrency must be at least 1"),
    ],
)
def test_contradicting_settings_are_a_config_error(
    caps: dict[str, Any], total: int | None, message: str
) -> None:
    """A cap above the total given, below 1, not a number, or of a type not served: refused."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_caps(["a", "b"], caps, total)


def test_the_worker_resolves_and_shows_its_caps() -> None:
    """Worker(type_concurrency=...) keeps the caps and the resolved total."""
    registry = Registry()
    for t in ("a", "b"):
        registry.register(t, Item, lambda job: None)
    worker = Worker(MemoryBackend(), registry, ["a", "b"], type_concurrency={"a": 2, "b": 3})
    assert (worker.type_concurrency, worker.concurrency) == ({"a": 2, "b": 3}, 5)
    assert describe(worker.type_concurrency) == "a=2,b=3"
    with pytest.raises(ConfigError):
        Worker(MemoryBackend(), registry, ["a"], concurrency=4, type_concurrency={"a": 5})


def test_a_full_capped_type_is_left_out_and_its_share_goes_to_the_others() -> None:
    """launch at its cap: the whole read goes to noop."""
    caps = TypeCaps({"launch": 2}, held(launch=2))
    assert caps.shares(["launch", "noop"], 8, {}) == {"noop": 8}


def test_a_capped_type_gets_no_more_than_its_room() -> None:
    """launch with room for 1: 1 of 8, the other 7 to noop; the even split otherwise."""
    caps = TypeCaps({"launch": 2}, held(launch=1))
    assert caps.shares(["launch", "noop"], 8, {}) == {"launch": 1, "noop": 7}
    caps = TypeCaps({"launch": 8}, held())
    assert caps.shares(["launch", "noop"], 8, {}) == {"launch": 4, "noop": 4}


def test_finished_jobs_whose_ack_goes_with_the_read_free_their_type() -> None:
    """A capped type at its cap with one job finished (acked with this read) has room for 1."""
    caps = TypeCaps({"launch": 2}, held(launch=2))
    assert caps.shares(["launch", "noop"], 8, {"launch": 1}) == {"launch": 1, "noop": 7}


def test_every_type_full_answers_nothing() -> None:
    """Every type readable at its cap: no read at all (the worker waits for a slot)."""
    caps = TypeCaps({"a": 1, "b": 2}, held(a=1, b=2))
    assert caps.shares(["a", "b"], 5, {}) == {}


def test_the_shares_never_exceed_the_free_slots_and_rotate_with_few() -> None:
    """However the caps fall, a read asks for at most ``free``; with fewer free slots than
    types, the type that gets one moves on at each read."""
    caps = TypeCaps({"a": 3}, held(a=1))
    for free in range(1, 12):
        shares = caps.shares(["a", "b", "c"], free, {})
        assert sum(shares.values()) == free
        assert shares.get("a", 0) <= 2
    caps = TypeCaps({"a": 5}, held())
    firsts = [next(iter(caps.shares(["a", "b", "c"], 1, {}))) for _ in range(3)]
    assert sorted(firsts) == ["a", "b", "c"]


def test_room_counts_what_the_type_holds() -> None:
    """The recovery pass's room: cap minus held; None for a type without a cap."""
    caps = TypeCaps({"launch": 3}, held(launch=2, noop=5))
    assert caps.room("launch") == 1
    assert caps.room("noop") is None


def test_workers_views_show_the_caps_from_the_heartbeat_record() -> None:
    """``workers --json`` parses the record's caps (skipping what is not TYPE=N); the table
    and the dashboard show them beside the total."""
    record = {"id": "w1", "concurrency": "16", "type_concurrency": "launch=2,noop=x,=3"}
    doc = worker_json(record, now=0.0)
    assert doc["type_concurrency"] == {"launch": 2}
    assert concurrency_text(doc) == "16 (launch≤2)"
    assert concurrency_text(worker_json({"id": "w2", "concurrency": "8"}, now=0.0)) == "8"
    assert "<td>16 (launch≤2)</td>" in pages.workers([doc], [], refresh_s=5.0)
