"""Delayed jobs on every backend: they wait in the schedule, then the workers move them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from test_contract import TIMEOUT, MakeWorker, serving, stats_of
from waiting import eventually

from streamq import Backend, ConfigError, Job, Queue, Registry, SyncQueue


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the delayed test jobs."""

    n: int


async def test_a_delayed_job_runs_no_earlier_than_its_time(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A job enqueued with delay=0.5 s runs after 0.5 s, and within about a second of it."""
    ran: dict[str, float] = {}

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        ran[job.id] = time.monotonic()

    async with serving(make_worker("t")):
        start = time.monotonic()
        job_id = await queue.enqueue(Job(type="t", args=Item(1), account_id=1), delay=0.5)
        await eventually(lambda: job_id in ran, TIMEOUT)
    waited = ran[job_id] - start
    assert waited >= 0.45  # the server's ms clock may round the due time down by 1 ms
    assert waited < 1.5


async def test_at_in_the_past_and_no_delay_run_now(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """``at=`` already past and a delay of 0 enqueue for now: nothing waits in the schedule."""
    ran: set[str] = set()

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        ran.add(job.id)

    past = datetime.now(UTC) - timedelta(hours=1)
    ids = [
        await queue.enqueue(Job(type="t", args=Item(1), account_id=1), at=past),
        await queue.enqueue(Job(type="t", args=Item(2), account_id=1), delay=0),
        await queue.enqueue(Job(type="t", args=Item(3), account_id=1), delay=timedelta(0)),
    ]
    assert (await stats_of(queue, "t")).scheduled == 0
    async with serving(make_worker("t")):
        await eventually(lambda: ran == set(ids), TIMEOUT)


async def test_bad_delay_arguments_are_config_errors(registry: Registry, queue: Queue) -> None:
    """A naive ``at``, or both ``delay`` and ``at``, is refused before anything is sent."""
    registry.job("t", Item)(lambda job: None)
    job = Job(type="t", args=Item(1), account_id=1)
    with pytest.raises(ConfigError, match="aware"):
        await queue.enqueue(job, at=datetime(2030, 1, 1))
    with pytest.raises(ConfigError, match="not both"):
        await queue.enqueue_many([job], delay=1, at=datetime.now(UTC))
    assert (await stats_of(queue, "t")).enqueued == 0


async def test_enqueue_many_with_a_delay_waits_in_the_schedule_then_runs(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """enqueue_many(delay=) puts all in the schedule (stats and listing show them with their due
    times); a worker moves them when due, and ``scheduled`` drops to 0."""
    ran: set[str] = set()

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        ran.add(job.id)

    before = datetime.now(UTC)
    ids = await queue.enqueue_many(
        [Job(type="t", args=Item(n), account_id=1) for n in range(20)], delay=0.8
    )
    stats = await stats_of(queue, "t")
    assert (stats.scheduled, stats.waiting, stats.enqueued) == (20, 0, 20)
    listed = await queue.scheduled("t")
    assert {s.job_id for s in listed} == set(ids)
    for s in listed:
        assert s.why == "delay"
        assert s.deliveries == 0
        assert 0 < s.due_in_s <= 0.8
        assert before < s.due_at < before + timedelta(seconds=5)
    assert [s.due_at for s in listed] == sorted(s.due_at for s in listed)
    assert len(await queue.scheduled("t", limit=5)) == 5
    async with serving(make_worker("t")):
        await eventually(lambda: ran == set(ids), TIMEOUT)
    stats = await stats_of(queue, "t")
    assert (stats.scheduled, stats.processed) == (0, 20)
    assert await queue.scheduled("t") == []


async def test_several_workers_moving_due_jobs_never_duplicate_one(
    make_backend: Callable[[], Backend], registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Three workers, each on its own backend object, move the same due jobs: each runs once."""
    runs: list[str] = []

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        runs.append(job.id)

    ids = await queue.enqueue_many(
        [Job(type="t", args=Item(n), account_id=1) for n in range(300)], delay=0.3
    )
    backends = [make_backend() for _ in range(3)]
    try:
        workers = [make_worker("t", on=b) for b in backends]
        async with serving(workers[0]), serving(workers[1]), serving(workers[2]):
            await eventually(lambda: len(runs) >= len(ids), TIMEOUT)
            await asyncio.sleep(0.3)  # a duplicate would show up by now
    finally:
        for b in backends:
            if b is not queue.backend:
                await b.aclose()
    assert sorted(runs) == sorted(ids)
    assert (await stats_of(queue, "t")).scheduled == 0


async def test_a_sync_queue_passes_delay_through(
    make_backend: Callable[[], Backend], registry: Registry, queue: Queue
) -> None:
    """SyncQueue.enqueue(delay=) and enqueue_many(at=) schedule the jobs like Queue does."""
    registry.job("t", Item)(lambda job: None)
    sync = SyncQueue(lambda: Queue(make_backend(), registry=registry))
    try:
        await asyncio.to_thread(
            sync.enqueue, Job(type="t", args=Item(1), account_id=1), delay=timedelta(minutes=5)
        )
        later = datetime.now(UTC) + timedelta(minutes=5)
        await asyncio.to_thread(
            lambda: sync.enqueue_many([Job(type="t", args=Item(2), account_id=1)], at=later)
        )
    finally:
        await asyncio.to_thread(sync.close)
    assert (await stats_of(queue, "t")).scheduled == 2


async def test_the_same_job_delayed_twice_is_two_jobs(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """One job (a caller-given id) enqueued twice with a delay runs twice, as without a delay."""
    runs: list[str] = []

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        runs.append(job.id)

    job = Job(type="t", args=Item(1), account_id=1, id="fixed-id")
    await queue.enqueue(job, delay=0.2)
    await queue.enqueue(job, delay=0.2)
    assert (await stats_of(queue, "t")).scheduled == 2
    async with serving(make_worker("t")):
        await eventually(lambda: len(runs) == 2, TIMEOUT)
    assert runs == ["fixed-id", "fixed-id"]
