"""Retries and expiry on every backend: a failed job waits in the schedule (no lease, no slot),
its deliveries and last error with it; the retry policy sends what no retry can mend to the
dead stream at once; a job not started by its deadline is dead-lettered as expired."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from test_contract import TIMEOUT, MakeWorker, drain, serving, stats_of
from waiting import eventually

from streamq import Backend, ConfigError, Job, NonRetryable, Queue, Registry, Retry, SyncQueue


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


class CloudError(Exception):
    """A provider's error that a retry may mend."""


class ReservationGone(NonRetryable):
    """An error no retry can mend."""


def job(n: int = 0) -> Job[Item]:
    """A test job of type ``t``."""
    return Job(type="t", args=Item(n), account_id=1)


# retries wait in the schedule -------------------------------------------------------------


async def test_a_retry_waits_in_the_schedule_holding_no_lease_and_no_slot(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A failed job waits its backoff in the schedule, longer than claim_after: it is not in
    flight, not reclaimed, and its worker's one slot runs another job meanwhile; `scheduled`
    shows it as a retry with its deliveries and last error; it then runs again."""
    runs: list[tuple[int, float]] = []

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        runs.append((j.args.n, time.monotonic()))
        if j.args.n == 0 and len([r for r in runs if r[0] == 0]) == 1:
            raise CloudError("throttled")

    # concurrency 1 and a backoff of 1.5 s (jitter +-10 %) against claim_after 0.5 s.
    worker = make_worker("t", concurrency=1, retry_base=1.5)
    async with serving(worker):
        first = await queue.enqueue(job(0))
        await eventually(lambda: len(runs) == 1, TIMEOUT)
        await eventually(lambda: _scheduled_count(queue), TIMEOUT)
        failed_at = runs[0][1]
        [waiting] = await queue.scheduled("t")
        assert (waiting.job_id, waiting.why, waiting.deliveries) == (first, "retry", 1)
        assert waiting.last_error == "CloudError: throttled"
        assert 1.2 <= waiting.due_in_s <= 1.7, waiting
        stats = await stats_of(queue, "t")
        assert (stats.in_flight, stats.waiting, stats.scheduled) == (0, 0, 1)
        assert await queue.pending("t") == []
        # The slot is free: a job enqueued now runs before the retry.
        await queue.enqueue(job(1))
        await eventually(lambda: len(runs) == 2, TIMEOUT)
        assert runs[1][0] == 1
        await eventually(lambda: len(runs) == 3, TIMEOUT)
    retried_after = runs[2][1] - failed_at
    assert runs[2][0] == 0
    assert 1.3 <= retried_after < 3.0, retried_after  # not reclaimed after claim_after (0.5 s)
    stats = await stats_of(queue, "t")
    assert (stats.processed, stats.failed, stats.retried, stats.dead) == (2, 1, 1, 0)
    assert (stats.scheduled, stats.in_flight) == (0, 0)


async def _scheduled_count(queue: Queue) -> bool:
    return (await stats_of(queue, "t")).scheduled == 1


async def test_the_deliveries_travel_with_the_retry_and_max_deliveries_sends_it_dead(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Each retry is a new entry, but the delivery count goes on: after max_deliveries (3)
    failures the job is dead with 3 deliveries and the last error; nothing is left behind."""
    calls: list[int] = []

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        calls.append(j.args.n)
        raise CloudError(f"boom {len(calls)}")

    job_id = await queue.enqueue(job(7))
    await drain(make_worker("t", max_deliveries=3))
    assert calls == [7, 7, 7]
    (dead,) = await queue.dead("t")
    assert (dead.job_id, dead.deliveries, dead.error) == (job_id, 3, "CloudError: boom 3")
    assert dead.reason == "failed 3 times (max_deliveries 3)"
    stats = await stats_of(queue, "t")
    assert (stats.failed, stats.retried, stats.dead, stats.processed) == (3, 2, 1, 0)
    assert (stats.scheduled, stats.in_flight, stats.waiting) == (0, 0, 0)


async def test_a_type_s_retry_max_caps_its_backoff(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """retry_base 30 s capped by the type's retry_max of 0.2 s: the retries come within the
    test's timeout (uncapped, the second delivery would wait 30 s)."""
    calls: list[float] = []

    async def handle(j: Job[Item]) -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise CloudError("not yet")

    registry.register("t", Item, handle, retry_base=30, retry_max=timedelta(seconds=0.2))
    await queue.enqueue(job())
    await drain(make_worker("t", max_deliveries=5))
    assert len(calls) == 3
    assert (await stats_of(queue, "t")).processed == 1


# the retry policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "settings", "why"),
    [
        (ValueError("bad size"), {"fail_on": (ValueError,)}, "ValueError is in fail_on"),
        (KeyError("x"), {"retry_on": (CloudError,)}, "KeyError is not in retry_on"),
        (ReservationGone("no reservation 42"), {}, "ReservationGone is NonRetryable"),
        (
            CloudError("fatal"),
            {"retry_on": CloudError, "fail_on": CloudError},
            "CloudError is in fail_on",
        ),
    ],
)
async def test_what_no_retry_can_mend_is_dead_at_once(
    registry: Registry,
    queue: Queue,
    make_worker: MakeWorker,
    error: Exception,
    settings: dict[str, object],
    why: str,
) -> None:
    """fail_on, retry_on and NonRetryable send a failing job to the dead stream after its first
    delivery, with the reason naming the rule; it is not retried."""
    calls: list[int] = []

    async def handle(j: Job[Item]) -> None:
        calls.append(1)
        raise error

    registry.register("t", Item, handle, **settings)  # type: ignore[arg-type]
    job_id = await queue.enqueue(job())
    await drain(make_worker("t", max_deliveries=5))
    assert calls == [1]
    (dead,) = await queue.dead("t")
    assert (dead.job_id, dead.deliveries) == (job_id, 1)
    assert dead.reason == f"not retryable: {why}"
    assert dead.error.startswith(type(error).__name__ + ":")
    stats = await stats_of(queue, "t")
    assert (stats.failed, stats.retried, stats.dead) == (1, 0, 1)


async def test_retry_on_lets_its_own_errors_retry(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """With retry_on=(CloudError,), a CloudError is retried as usual."""
    calls: list[int] = []

    @registry.job("t", Item, retry_on=(CloudError,))
    async def handle(j: Job[Item]) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise CloudError("throttled")

    await queue.enqueue(job())
    await drain(make_worker("t"))
    assert len(calls) == 2
    stats = await stats_of(queue, "t")
    assert (stats.processed, stats.retried, stats.dead) == (1, 1, 0)


async def test_a_step_s_retry_after_sets_the_wait(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Retry(after=0.4) waits 0.4 s whatever the backoff (30 s here) and whatever retry_on
    says; raised from an error, that error is the job's last error."""
    calls: list[float] = []
    seen: list[str] = []

    @registry.job("t", Item, retry_base=30, retry_on=(CloudError,))
    async def handle(j: Job[Item]) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            try:
                raise KeyError("Retry-After: 0.4")
            except KeyError as exc:
                raise Retry(after=timedelta(seconds=0.4)) from exc

    async with serving(make_worker("t")):
        await queue.enqueue(job())
        await eventually(lambda: _scheduled_count(queue), TIMEOUT)
        seen += [w.last_error for w in await queue.scheduled("t")]
        await eventually(lambda: len(calls) == 2, TIMEOUT)
    assert seen == ["KeyError: 'Retry-After: 0.4'"]
    assert 0.35 <= calls[1] - calls[0] < 2.0, calls


async def test_retry_settings_are_checked_when_registered(registry: Registry) -> None:
    """retry_on/fail_on take exception classes; retry_base/retry_max no negative number."""

    async def handle(j: Job[Item]) -> None:
        return None

    with pytest.raises(ConfigError, match="exception classes"):
        registry.register("a", Item, handle, retry_on=("CloudError",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="retry_max must not be negative"):
        registry.register("b", Item, handle, retry_max=-1)
    with pytest.raises(ValueError, match="0 or more"):
        Retry(after=-1)


# expiry -----------------------------------------------------------------------------------


async def test_a_job_not_started_by_its_deadline_is_dead_as_expired(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Jobs whose deadline passed before a worker took them are dead-lettered as `expired`
    (never run, never silently dropped); one with time left runs."""
    ran: list[int] = []

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        ran.append(j.args.n)

    late_ids = [
        await queue.enqueue(job(1), expires=0.2),
        *(await queue.enqueue_many([job(2)], expires=timedelta(milliseconds=200))),
        await queue.enqueue(job(3), delay=0.1, expires=0.3),
    ]
    on_time = await queue.enqueue(job(4), expires=datetime.now(UTC) + timedelta(minutes=5))
    await asyncio.sleep(0.4)  # no worker yet: every deadline but the last passes
    await drain(make_worker("t"))
    assert ran == [4]
    dead = {d.job_id: d for d in await queue.dead("t")}
    assert set(dead) == set(late_ids)
    for d in dead.values():
        assert d.reason == "expired"
        assert "not started by its deadline" in d.error
    assert on_time not in dead
    stats = await stats_of(queue, "t")
    assert (stats.processed, stats.dead, stats.failed) == (1, 3, 0)


async def test_a_dead_job_retried_starts_afresh(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Retrying a dead job drops its deadline and its deliveries so far: an expired job runs,
    and one that used up max_deliveries gets all of them again."""
    calls: dict[int, int] = {}

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        calls[j.args.n] = calls.get(j.args.n, 0) + 1
        if j.args.n == 2 and calls[2] < 5:
            raise CloudError("flaky")

    expired = await queue.enqueue(job(1), expires=0.05)
    await asyncio.sleep(0.1)
    used_up = await queue.enqueue(job(2))
    await drain(make_worker("t", max_deliveries=2))
    assert {d.job_id for d in await queue.dead("t")} == {expired, used_up}
    assert calls == {2: 2}
    assert sorted(await queue.retry_dead("t")) == sorted([expired, used_up])
    await drain(make_worker("t", max_deliveries=3))
    # The used-up job had 3 fresh deliveries (its 3rd, 4th and 5th runs: the 5th succeeds);
    # counting its 2 old ones it would have been dead again after its 3rd run.
    assert calls == {1: 1, 2: 5}
    assert await queue.dead("t") == []
    assert (await stats_of(queue, "t")).processed == 2


@pytest.mark.parametrize(
    ("expires", "delay", "match"),
    [
        (0, None, "already past"),
        (-5, None, "already past"),
        (datetime.now(UTC) - timedelta(seconds=1), None, "already past"),
        (datetime(2030, 1, 1), None, "aware datetime"),
        (5, 10, "before the job is due"),
    ],
)
async def test_bad_deadlines_are_config_errors_and_send_nothing(
    registry: Registry,
    queue: Queue,
    expires: float | datetime,
    delay: float | None,
    match: str,
) -> None:
    """A deadline already past, naive, or before the job is due is refused; nothing is sent."""

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        return None

    with pytest.raises(ConfigError, match=match):
        await queue.enqueue(job(), expires=expires, delay=delay)
    stats = await stats_of(queue, "t")
    assert (stats.enqueued, stats.waiting, stats.scheduled) == (0, 0, 0)


async def test_a_sync_queue_passes_expires_through(
    make_backend: Callable[[], Backend], registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """SyncQueue.enqueue(expires=) and enqueue_many(expires=) set the same deadline."""

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        return None

    sync = SyncQueue(lambda: Queue(make_backend(), registry=registry))
    try:
        ids = await asyncio.to_thread(
            lambda: [sync.enqueue(job(1), expires=0.1), *sync.enqueue_many([job(2)], expires=0.1)]
        )
    finally:
        await asyncio.to_thread(sync.close)
    await asyncio.sleep(0.2)
    await drain(make_worker("t"))
    assert sorted(d.job_id for d in await queue.dead("t")) == sorted(ids)
