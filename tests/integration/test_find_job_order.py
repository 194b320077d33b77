"""The Redis lookup of one job (``_find``) on a real server, with a job moved between its calls:
the order of the walk (stream, schedule, dead stream, the stream's new tail, again while the
counters moved) finds a job that exists throughout wherever it goes, and each call looks at no
more than one chunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from streamq import Job, Queue, RedisBackend
from streamq.backends._base import DeadLetter
from streamq.backends.redis import _find

Hook = Callable[[], Awaitable[Any]]


class Interleaved:
    """The backend's lookup calls, counted by what each looks at (stream, schedule, dead), with
    a hook run just before a given one (the n-th call of a kind)."""

    def __init__(self, backend: RedisBackend) -> None:
        finder = backend._finder
        self._real = finder._call
        finder._call = self._call  # type: ignore[method-assign]
        self.calls: list[str] = []
        self.before: dict[tuple[str, int], Hook] = {}

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        what = str(args[0]) if name == "find_job" else name  # find_done: the finished records
        self.calls.append(what)
        hook = self.before.pop((what, self.calls.count(what)), None)
        if hook is not None:
            await hook()
        return await self._real(name, keys, args)


@pytest.fixture
async def queue(redis_url: str, prefix: str) -> AsyncIterator[Queue]:
    """A queue on a plain Redis, its lookups one entry per call (so a walk has many calls)."""
    backend = RedisBackend(redis_url, prefix=prefix)
    backend._finder.chunk = 1
    async with Queue(backend) as q:
        await backend.ensure_groups(["t"])
        yield q


def backend_of(queue: Queue) -> RedisBackend:
    """The queue's Redis backend."""
    assert isinstance(queue.backend, RedisBackend)
    return queue.backend


async def held(queue: Queue, n: int) -> list[tuple[str, str]]:
    """``n`` jobs enqueued and delivered to consumer ``c``: (job id, entry id) each."""
    ids = [await queue.enqueue(Job(type="t", args={"n": i})) for i in range(n)]
    deliveries = await queue.backend.read(["t"], "c", n, 10)
    return list(zip(ids, [d.entry_id for d in deliveries], strict=True))


async def test_a_job_failing_into_the_schedule_behind_the_walk_is_found_retrying(
    queue: Queue,
) -> None:
    """The last of five running jobs fails into the schedule while the stream walk is at the
    first: the walk misses it, the schedule scan after it finds it retrying."""
    jobs = await held(queue, 5)
    target, entry = jobs[-1]
    calls = Interleaved(backend_of(queue))

    async def fail() -> None:
        kw = {"delay_ms": 60_000, "deliveries": 1, "error": "E: x"}
        assert await queue.backend.retry_later("t", "c", entry, **kw)

    calls.before[("stream", 2)] = fail
    found = await queue.job("t", target)
    assert (found.state, found.last_error, found.deliveries) == ("retrying", "E: x", 1)
    assert "schedule" in calls.calls


async def test_a_job_dying_behind_the_walk_is_found_dead(queue: Queue) -> None:
    """The last of five running jobs is dead-lettered while the walk is at the first: found in
    the dead stream."""
    jobs = await held(queue, 5)
    target, entry = jobs[-1]
    calls = Interleaved(backend_of(queue))
    letter = DeadLetter("failed 1 times (max_deliveries 1)", "E: y", 1, failed=True)

    async def die() -> None:
        assert await queue.backend.dead_letter("t", "c", entry, letter, 100)

    calls.before[("stream", 2)] = die
    found = await queue.job("t", target)
    assert (found.state, found.reason, found.last_error) == ("dead", letter.reason, "E: y")


async def test_a_job_moved_from_the_schedule_while_it_is_scanned_is_found_by_the_tail(
    queue: Queue,
) -> None:
    """A delayed job due and moved into the stream just before the schedule is scanned (after
    the stream walk passed) is found by the walk of the stream's new tail: waiting."""
    await held(queue, 3)
    target = await queue.enqueue(Job(type="t", args={"n": 9}), delay=0.05)
    await asyncio.sleep(0.1)
    calls = Interleaved(backend_of(queue))

    async def move() -> None:
        assert await queue.backend.move_due(["t"], 10) == 1

    calls.before[("schedule", 1)] = move
    found = await queue.job("t", target)
    assert found.state == "waiting"
    assert calls.calls.index("schedule") < len(calls.calls) - 1
    assert calls.calls[-1] == "stream"


async def test_a_dead_job_redriven_while_the_dead_stream_is_walked_is_found_waiting(
    queue: Queue,
) -> None:
    """A dead job put back on the stream just before the dead stream is walked is found by
    the tail walk."""
    jobs = await held(queue, 2)
    target, entry = jobs[0]
    letter = DeadLetter("poison: x")
    assert await queue.backend.dead_letter("t", "c", entry, letter, 100)
    calls = Interleaved(backend_of(queue))

    async def redrive() -> None:
        assert await queue.retry_dead("t", [target]) == [target]

    calls.before[("dead", 1)] = redrive
    found = await queue.job("t", target)
    assert (found.state, found.deliveries) == ("waiting", 0)


async def test_a_job_that_fails_again_while_it_is_looked_for_is_found_in_the_next_round(
    queue: Queue,
) -> None:
    """A retry moved into the stream and delivered just before the schedule is scanned, then
    failed into the schedule again just before the dead stream is walked: neither the
    schedule scan, the dead stream nor the tail has it, but the retried counter moved, so the
    schedule is scanned again, and it is there."""
    jobs = await held(queue, 1)
    target, entry = jobs[0]
    backend = queue.backend
    assert await backend.retry_later("t", "c", entry, delay_ms=0, deliveries=1, error="E: 1")
    await asyncio.sleep(0.01)
    calls = Interleaved(backend_of(queue))
    delivered: list[str] = []

    async def due_and_delivered() -> None:
        assert await backend.move_due(["t"], 10) == 1
        [again] = await backend.read(["t"], "c", 1, 10)
        delivered.append(again.entry_id)

    async def failed_again() -> None:
        later = {"delay_ms": 60_000, "deliveries": 2, "error": "E: 2"}
        assert await backend.retry_later("t", "c", delivered[0], **later)

    calls.before[("schedule", 1)] = due_and_delivered
    calls.before[("dead", 1)] = failed_again
    found = await queue.job("t", target)
    assert (found.state, found.last_error, found.deliveries) == ("retrying", "E: 2", 2)
    assert calls.calls.count("schedule") == 2


async def test_unknown_is_not_settled_while_jobs_keep_failing(
    queue: Queue, redis_url: str, prefix: str
) -> None:
    """When the retried counter moves in every round (other jobs failing into the schedule),
    an id found nowhere answers unknown, not settled, after the last round."""
    await held(queue, 2)
    calls = Interleaved(backend_of(queue))
    admin = aioredis.Redis.from_url(redis_url)
    stats = backend_of(queue).stats_key("t")

    async def another_failure() -> None:
        await admin.hincrby(stats, "retried", 1)

    for n in range(1, _find.ROUNDS + 1):
        calls.before[("dead", n)] = another_failure
    try:
        found = await queue.job("t", "never-seen")
    finally:
        await admin.aclose()
    assert (found.state, found.settled) == ("unknown", False)
    assert calls.calls.count("dead") == _find.ROUNDS


async def test_unknown_is_settled_when_nothing_moved(queue: Queue) -> None:
    """Nothing moving: one walk of the stream, one scan of the schedule, one walk of the dead
    stream, one call for the tail; settled."""
    await held(queue, 3)
    calls = Interleaved(backend_of(queue))
    found = await queue.job("t", "never-seen")
    assert (found.state, found.settled) == ("unknown", True)
    # chunk 1: three entries, then the call that finds the end; the tail: one call; then the
    # finished jobs' records (empty: one call).
    assert calls.calls == ["stream"] * 4 + ["schedule", "dead", "stream", "find_done"]


async def test_each_call_looks_at_one_chunk_at_most(redis_url: str, prefix: str) -> None:
    """A walk over 250 entries in chunks of 100 takes three calls and the tail one; with the
    default chunk, one (the cost of a lookup is in calls of a bounded size)."""
    backend = RedisBackend(redis_url, prefix=prefix)
    async with Queue(backend) as queue:
        await queue.enqueue_many([Job(type="t", args={"n": i}) for i in range(250)])
        backend._finder.chunk = 100
        calls = Interleaved(backend)
        assert (await queue.job("t", "never-seen")).state == "unknown"
        assert calls.calls.count("stream") == 3 + 1
        calls.calls.clear()
        backend._finder.chunk = _find.CHUNK
        assert (await queue.job("t", "never-seen")).state == "unknown"
        assert calls.calls.count("stream") == 1 + 1
