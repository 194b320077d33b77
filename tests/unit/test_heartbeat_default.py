"""Worker's heartbeat default follows claim_after; only an explicit contradiction is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from handlers import registry
from streamq import Worker
from streamq.backends.memory import MemoryBackend
from streamq.exceptions import ConfigError


@pytest.mark.parametrize(
    ("claim_after", "heartbeat"),
    [(2.0, 2.0 / 3), (0.3, 0.1), (30.0, 10.0), (60.0, 10.0), (3600.0, 10.0)],
)
def test_default_heartbeat_is_a_third_of_claim_after_at_most_10s(
    claim_after: float, heartbeat: float
) -> None:
    """Without a heartbeat, Worker takes min(10 s, claim_after / 3), so any claim_after works."""
    worker = Worker(MemoryBackend(), registry, ["noop"], claim_after=claim_after)
    assert worker.heartbeat == pytest.approx(heartbeat)
    assert worker.heartbeat * 2 <= worker.claim_after


def test_default_heartbeat_follows_a_timedelta_claim_after() -> None:
    """claim_after as a timedelta derives the same default as the number of seconds."""
    worker = Worker(MemoryBackend(), registry, ["noop"], claim_after=timedelta(seconds=2))
    assert worker.heartbeat == pytest.approx(2 / 3)


def test_explicit_heartbeat_is_kept() -> None:
    """A heartbeat the caller gives is used as given, even above the derived default."""
    worker = Worker(MemoryBackend(), registry, ["noop"], claim_after=2.0, heartbeat=1.0)
    assert worker.heartbeat == 1.0


def test_explicit_contradictory_heartbeat_is_refused() -> None:
    """An explicit heartbeat above claim_after / 2 is still a ConfigError naming both."""
    with pytest.raises(ConfigError, match=r"heartbeat \(5.0s\).*claim_after \(2.0s\)"):
        Worker(MemoryBackend(), registry, ["noop"], claim_after=2.0, heartbeat=5.0)


@pytest.mark.parametrize(("claim_after", "heartbeat"), [(0.0, None), (-1.0, None), (2.0, 0.0)])
def test_a_claim_after_or_heartbeat_that_is_not_positive_is_refused(
    claim_after: float, heartbeat: float | None
) -> None:
    """claim_after 0 would take every running job over at once (and derive a heartbeat of 0):
    refused, as a heartbeat of 0 is."""
    with pytest.raises(ConfigError, match="must be positive"):
        Worker(MemoryBackend(), registry, ["noop"], claim_after=claim_after, heartbeat=heartbeat)
