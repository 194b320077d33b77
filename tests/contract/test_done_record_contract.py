"""Finished-job records on every backend: a job that finished answers ``done`` (when, how long
its last delivery ran, its deliveries, the consumer that acked it) for ``keep_done``; none is
written with ``keep_done=0``; at most ``keep_done_max`` are kept per type, the oldest dropped;
the records ride every kind of ack (plain, unique, multi-step, retried)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from test_contract import TIMEOUT, MakeWorker, drain, serving, stats_of
from waiting import eventually

from streamq import ConfigError, Job, JobContext, Queue, Registry, Retry


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


def job(n: int = 0) -> Job[Item]:
    return Job(type="t", args=Item(n), account_id=7)


async def test_a_finished_job_is_done_with_when_how_long_and_deliveries(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """The default worker keeps a record: ``done``, ended_at after the enqueue, the run's
    duration (the handler slept 0.2 s), one delivery, the worker that acked it."""

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        await asyncio.sleep(0.2)

    before = datetime.now(UTC)
    job_id = await queue.enqueue(job(1))
    worker = make_worker("t")
    await drain(worker)
    found = await queue.job("t", job_id)
    assert found.state == "done", found
    assert found.ended_at is not None
    # The server's clock against this process's: the same machine, within a second.
    assert found.ended_at.timestamp() >= before.timestamp() - 1
    assert found.duration_s is not None
    assert 0.19 <= found.duration_s < TIMEOUT
    assert (found.deliveries, found.consumer) == (1, worker.consumer)
    assert (found.job, found.entry_id, found.due_at, found.last_error) == (None,) * 4
    assert "done" in repr(found)


async def test_a_job_that_succeeded_on_its_third_delivery_says_three(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Deliveries count those before its retries (the record is written by the last one)."""
    runs: list[int] = []

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise Retry(0.05, reason="not yet")

    job_id = await queue.enqueue(job(2))
    async with serving(make_worker("t", max_deliveries=5)):

        async def done() -> bool:
            return (await queue.job("t", job_id)).state == "done"

        await eventually(done, TIMEOUT)
    found = await queue.job("t", job_id)
    assert (found.state, found.deliveries) == ("done", 3)
    assert len(runs) == 3


async def test_a_unique_job_and_a_multi_step_job_leave_records_too(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """The ack that releases a unique key (and keeps none behind) writes the record in the same
    call; so does the ack of a job with steps (whose step progress it deletes)."""
    steps: list[int] = []

    def first(j: Job[Item], ctx: JobContext) -> None:
        steps.append(1)

    def second(j: Job[Item], ctx: JobContext) -> None:
        steps.append(2)

    registry.register("t", Item, first, second)
    unique = await queue.enqueue(job(1), unique_key="reservation:1")
    plain = await queue.enqueue(job(2))
    await drain(make_worker("t"))
    assert sorted(steps) == [1, 1, 2, 2]
    for job_id in (unique, plain):
        found = await queue.job("t", job_id)
        assert (found.state, found.deliveries) == ("done", 1), found
        assert found.step is None
    assert await queue.backend.job_progress("t", plain) is None
    again = await queue.enqueue(job(3), unique_key="reservation:1")
    assert not again.duplicate  # the key went with the ack


async def test_keep_done_zero_writes_no_record(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """``keep_done=0``: the plain ack, no record: a finished job is ``unknown`` (and is still
    counted processed); unique and multi-step jobs end as they always did."""
    steps: list[str] = []

    def first(j: Job[Item]) -> None:
        steps.append("a")

    def second(j: Job[Item]) -> None:
        steps.append("b")

    registry.register("t", Item, first, second)
    plain = await queue.enqueue(job(1))
    unique = await queue.enqueue(job(2), unique_key="k")
    await drain(make_worker("t", keep_done=0))
    for job_id in (plain, unique):
        assert (await queue.job("t", job_id)).state == "unknown"
    assert (await stats_of(queue, "t")).processed == 2
    assert sorted(steps) == ["a", "a", "b", "b"]
    assert await queue.backend.job_progress("t", plain) is None
    assert not (await queue.enqueue(job(3), unique_key="k")).duplicate


async def test_at_most_keep_done_max_records_the_oldest_go_first(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """With ``keep_done_max=3``, three jobs finished, then three more: the newer three are
    ``done``, the older ``unknown`` (a partitioned type keeps each partition's share)."""

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        return None

    older = [await queue.enqueue(job(n)) for n in range(3)]
    await drain(make_worker("t", keep_done_max=3))
    newer = [await queue.enqueue(job(n)) for n in range(3, 6)]
    await drain(make_worker("t", keep_done_max=3))
    states = [(await queue.job("t", i)).state for i in older + newer]
    assert states == ["unknown"] * 3 + ["done"] * 3


async def test_a_record_is_gone_after_keep_done(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """``keep_done=0.3`` s: ``done`` at once, ``unknown`` after it, with no other job to trim
    it (the server's records expire on their own)."""

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        return None

    job_id = await queue.enqueue(job(1))
    await drain(make_worker("t", keep_done=0.3))
    assert (await queue.job("t", job_id)).state == "done"

    async def gone() -> bool:
        return (await queue.job("t", job_id)).state == "unknown"

    await eventually(gone, TIMEOUT)


async def test_bad_keep_settings_are_config_errors(
    registry: Registry, make_worker: MakeWorker
) -> None:
    """A negative retention or a cap below one is said at once."""

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        return None

    with pytest.raises(ConfigError, match="keep_done must not be negative"):
        make_worker("t", keep_done=-1)
    with pytest.raises(ConfigError, match="keep_done_max must be at least 1"):
        make_worker("t", keep_done_max=0)


async def test_cancelling_a_done_job_says_done(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A finished job is not cancelled (``done``: nothing to cancel) and stays ``done``."""

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        return None

    job_id = await queue.enqueue(job(1))
    await drain(make_worker("t"))
    result = await queue.cancel("t", job_id)
    assert (result.state, result.already) == ("done", False)
    assert (await queue.job("t", job_id)).state == "done"
    assert (await stats_of(queue, "t")).processed == 1
