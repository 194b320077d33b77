"""Unique jobs on every backend: while a job holds its unique key (scheduled, waiting, running,
waiting for a retry) another enqueue with the key creates nothing and returns that job's id;
the key is released with the job's end (done or dead), or kept ``unique_for`` after it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from test_contract import TIMEOUT, MakeWorker, drain, serving, stats_of
from waiting import eventually

from streamq import Backend, ConfigError, Job, JobId, Queue, Registry


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


class CloudError(Exception):
    """A failure a retry may mend."""


def job(n: int = 0, type: str = "t") -> Job[Item]:
    """A test job."""
    return Job(type=type, args=Item(n), account_id=1)


async def test_a_duplicate_of_a_waiting_or_scheduled_job_creates_nothing(
    registry: Registry, queue: Queue
) -> None:
    """The second enqueue of a key returns the first job's id with duplicate=True and writes
    nothing; another key, or the same key on another type, is another job."""
    registry.job("t", Item)(lambda j: None)
    registry.job("u", Item)(lambda j: None)
    first = await queue.enqueue(job(1), unique_key="reservation:42")
    assert isinstance(first, JobId)
    assert not first.duplicate
    again = await queue.enqueue(job(2), unique_key="reservation:42")
    assert (again, again.duplicate) == (first, True)
    other = await queue.enqueue(job(3), unique_key="reservation:43")
    on_u = await queue.enqueue(job(4, "u"), unique_key="reservation:42")
    assert not other.duplicate
    assert not on_u.duplicate
    assert len({first, other, on_u}) == 3
    later = await queue.enqueue(job(5), unique_key="later", delay=30)
    assert (await queue.enqueue(job(6), unique_key="later")).duplicate
    assert (await queue.enqueue(job(7), unique_key="later", delay=5)) == later
    stats = await stats_of(queue, "t")
    assert (stats.enqueued, stats.waiting, stats.scheduled) == (3, 2, 1)
    plain = await queue.enqueue(job(8))
    assert isinstance(plain, JobId)
    assert not plain.duplicate


async def test_the_key_is_held_while_running_and_retrying_and_freed_when_done(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Running, then waiting for its retry, the job still holds its key; once it is done the
    key is free and the next enqueue makes a new job."""
    release = asyncio.Event()
    runs: list[int] = []

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        runs.append(j.args.n)
        if len(runs) == 1:
            await release.wait()
            raise CloudError("first delivery fails")

    async with serving(make_worker("t", retry_base=0.6)):
        first = await queue.enqueue(job(1), unique_key="k")
        await eventually(lambda: len(runs) == 1, TIMEOUT)
        assert (await queue.enqueue(job(2), unique_key="k")) == first  # running
        release.set()
        await eventually(lambda: _scheduled(queue), TIMEOUT)
        dup = await queue.enqueue(job(3), unique_key="k")  # waiting for its retry
        assert dup.duplicate
        assert dup == first
        await eventually(lambda: len(runs) == 2, TIMEOUT)
        await eventually(lambda: _processed(queue, 1), TIMEOUT)
        fresh = await queue.enqueue(job(4), unique_key="k")
        assert not fresh.duplicate
        assert fresh != first
        await eventually(lambda: _processed(queue, 2), TIMEOUT)
    assert runs == [1, 1, 4]


async def _scheduled(queue: Queue) -> bool:
    return (await stats_of(queue, "t")).scheduled == 1


async def _processed(queue: Queue, n: int) -> bool:
    return (await stats_of(queue, "t")).processed == n


async def test_a_dead_job_frees_its_key_and_unique_for_keeps_it_after_the_end(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A job dead-lettered (here at once: fail_on) frees its key; a job done with
    unique_for=0.6 s keeps absorbing duplicates for that long, then the key is free."""

    async def handle(j: Job[Item]) -> None:
        if j.args.n == 1:
            raise ValueError("bad")

    registry.register("t", Item, handle, fail_on=ValueError)
    dead = await queue.enqueue(job(1), unique_key="dies")
    kept = await queue.enqueue(job(2), unique_key="kept", unique_for=0.6)
    await drain(make_worker("t"))
    assert [d.job_id for d in await queue.dead("t")] == [dead]
    assert not (await queue.enqueue(job(3), unique_key="dies")).duplicate
    late = await queue.enqueue(job(4), unique_key="kept")
    assert (late, late.duplicate) == (kept, True)
    await asyncio.sleep(0.8)
    assert not (await queue.enqueue(job(5), unique_key="kept")).duplicate


async def test_an_expired_unique_job_frees_its_key(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A unique job dead-lettered as expired frees its key like any dead job."""
    registry.job("t", Item)(lambda j: None)
    first = await queue.enqueue(job(1), unique_key="k", expires=0.1)
    await asyncio.sleep(0.2)
    await drain(make_worker("t"))
    (dead,) = await queue.dead("t")
    assert (dead.job_id, dead.reason) == (first, "expired")
    assert not (await queue.enqueue(job(2), unique_key="k")).duplicate


async def test_a_worker_that_died_mid_job_leaves_the_key_held_until_the_job_is_over(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A job delivered to a consumer that never finishes it (a killed worker) keeps its key;
    the worker that recovers it after claim_after runs it, and then the key is free."""
    ran: list[int] = []
    registry.job("t", Item)(lambda j: ran.append(j.args.n))
    first = await queue.enqueue(job(1), unique_key="k")
    await backend.ensure_groups(["t"])
    got = []
    while not got:
        got = await backend.read(["t"], "killed-worker", 1, 50)
    assert (await queue.enqueue(job(2), unique_key="k")) == first
    async with serving(make_worker("t")):  # claim_after 0.5 s
        await eventually(lambda: ran == [1], TIMEOUT)
        await eventually(lambda: _processed(queue, 1), TIMEOUT)
    assert not (await queue.enqueue(job(3), unique_key="k")).duplicate


async def test_concurrent_enqueues_of_one_key_create_one_job(
    registry: Registry, queue: Queue
) -> None:
    """Fifty enqueues of one key at once: one job, and every call gets its id."""
    registry.job("t", Item)(lambda j: None)
    ids = await asyncio.gather(*(queue.enqueue(job(i), unique_key="k") for i in range(50)))
    assert len(set(ids)) == 1
    assert sum(not i.duplicate for i in ids) == 1
    stats = await stats_of(queue, "t")
    assert (stats.enqueued, stats.waiting) == (1, 1)


@pytest.mark.parametrize(
    ("key", "keep", "match"),
    [
        ("", None, "non-empty"),
        (None, 5, "non-empty"),
        ("x" * 513, None, "longer than"),
        ("k", -1, "negative"),
    ],
)
async def test_bad_unique_settings_are_config_errors(
    registry: Registry, queue: Queue, key: str | None, keep: float | None, match: str
) -> None:
    """An empty or too long key, unique_for without a key or negative: nothing is sent."""
    registry.job("t", Item)(lambda j: None)
    with pytest.raises(ConfigError, match=match):
        await queue.enqueue(job(), unique_key=key, unique_for=keep)
    assert (await stats_of(queue, "t")).enqueued == 0
