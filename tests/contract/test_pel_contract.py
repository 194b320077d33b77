"""Ownership of in-flight entries, on both backends: leases, stolen leases, slots, leaving."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from test_contract import drain, eventually, fifo, serving, stats_of

from streamq import Backend, Job, MemoryBackend, Principal, Queue, RedisBackend, Registry, Worker
from streamq._codec import encode
from streamq.backends._base import HANDED_BACK, Delivery


@dataclass(frozen=True)
class Empty:
    """No args."""


def fields(n: int) -> dict[bytes, bytes]:
    """Stream fields of a valid job of type ``t``."""
    return encode(Job(type="t", args=Empty()), f"job-{n}")


async def test_refresh_and_release_reach_every_entry(backend: Backend) -> None:
    """One refresh resets the idle time of every owned entry; one release sets all of them."""
    await backend.ensure_groups(["t"])
    for i in range(3):
        await backend.enqueue("t", fields(i))
    ids = [d.entry_id for d in await backend.read(["t"], "c", 3, 10)]
    await asyncio.sleep(0.3)
    before = await backend.pending("t", consumer=None, min_idle_ms=0, limit=10)
    assert all(p.idle_ms >= 300 for p in before)
    assert await backend.refresh("t", "c", ids) == []
    after = await backend.pending("t", consumer=None, min_idle_ms=0, limit=10)
    assert sorted(p.entry_id for p in after) == sorted(ids)
    assert all(p.idle_ms < 300 for p in after)
    await backend.release("t", "c", ids, 60_000)
    released = await backend.pending("t", consumer=None, min_idle_ms=60_000, limit=10)
    assert sorted(p.entry_id for p in released) == sorted(ids)
    # A hand-back takes back the delivery it interrupted: the next claim makes it 1 again.
    assert all(p.deliveries == 0 for p in released)


async def test_stolen_lease_is_not_acked_by_the_loser(
    backend: Backend, queue: Queue, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    """When another consumer takes a running job, the first worker does not ack it, and says so
    on a line that carries the job's fields."""
    started, finish = asyncio.Event(), asyncio.Event()

    async def step(job: Job[Any]) -> None:
        started.set()
        await finish.wait()

    registry.register("t", Empty, step)
    job_id = await queue.enqueue(
        Job(type="t", args=Empty(), account_id=7, identity=Principal(org_id="o1", user="u"))
    )
    worker = make_worker("t", claim_after=30, heartbeat=0.1)
    with structlog.testing.capture_logs() as logs:
        async with serving(worker):
            await asyncio.wait_for(started.wait(), 5)
            # What a recovery pass elsewhere does when it believes this worker dead.
            claimed = await backend.claim_idle("t", "thief", 0, 10, "0-0")
            assert len(claimed.deliveries) == 1
            finish.set()
            await eventually(lambda: any(e["event"] == "streamq.job.lease_lost" for e in logs))
            await eventually(lambda: worker.in_flight == 0)
    lost = [e for e in logs if e["event"] == "streamq.job.lease_lost"]
    assert {(e["job_id"], e["account_id"], e["org_id"], e["job_type"]) for e in lost} == {
        (job_id, 7, "o1", "t")
    }
    assert all("u" not in e.values() for e in lost)  # the user is never logged
    pending = await queue.pending("t")
    assert [(p.consumer, p.deliveries) for p in pending] == [("thief", 2)]
    assert (await stats_of(queue, "t")).processed == 0


async def test_reads_never_exceed_concurrency_across_types(
    queue: Queue, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    """XREADGROUP COUNT is per stream; a worker serving 3 types still runs at most its slots."""
    running = 0
    most = 0

    async def step(job: Job[Any]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    for t in ("a", "b", "c"):
        registry.register(t, Empty, step)
    await queue.enqueue_many([Job(type=t, args=Empty()) for t in "abc" for _ in range(10)])
    await drain(make_worker("a", "b", "c", concurrency=2))
    assert most == 2
    assert [s.processed for s in await queue.stats(["a", "b", "c"])] == [10, 10, 10]


async def test_clean_exit_leaves_the_group(
    queue: Queue, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    """A worker that stops with nothing pending removes its consumer name from the group."""

    async def step(job: Job[Any]) -> None:
        pass

    registry.register("t", Empty, step)
    await queue.enqueue(Job(type="t", args=Empty()))
    worker = make_worker("t")
    await drain(worker)
    stats = await stats_of(queue, "t")
    assert stats.processed == 1
    assert worker.consumer not in stats.consumers


async def test_entry_deleted_while_pending_is_dropped_by_recovery(
    backend: Backend, queue: Queue, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    """A pending entry whose stream entry was deleted is dropped from the PEL and logged."""
    ran: list[str] = []

    async def step(job: Job[Any]) -> None:
        ran.append(job.id or "")

    registry.register("t", Empty, step)
    await backend.ensure_groups(["t"])
    await backend.enqueue("t", fields(1))
    await backend.enqueue("t", fields(2))
    # A worker that died holding both; then one entry is deleted behind its back.
    gone, kept = await read_n(backend, "dead-worker", 2)
    await delete_entry(backend, "t", gone.entry_id)
    with structlog.testing.capture_logs() as logs:
        await drain(make_worker("t", claim_after=0.2, heartbeat=0.05))
    assert ran == [kept.fields[b"id"].decode()]
    vanished = [e for e in logs if e["event"] == "streamq.job.vanished"]
    assert [e["entry_id"] for e in vanished] == [gone.entry_id]
    assert await queue.pending("t") == []
    assert (await stats_of(queue, "t")).processed == 1


async def read_n(backend: Backend, consumer: str, n: int) -> list[Delivery]:
    """Read ``n`` entries of type t, never asking for more than are still missing (reads of a
    partitioned type may come back short)."""
    got: list[Delivery] = []
    for _ in range(20):
        got += await backend.read(["t"], consumer, n - len(got), 10)
        if len(got) == n:
            return got
    raise AssertionError(f"read {len(got)} of {n} entries")


async def delete_entry(backend: Backend, type: str, entry_id: str) -> None:
    """XDEL one entry (leaving its PEL reference), on either backend."""
    if isinstance(backend, MemoryBackend):
        assert backend.delete_entries(type, [entry_id]) == 1
    else:
        assert isinstance(backend, RedisBackend)
        ((stream, (plain,)),) = backend._keys.ids_by_stream(type, [entry_id]).items()
        assert await backend._wire.client.xdel(stream.jobs, plain) == 1


async def test_ack_and_read_acks_what_it_owns_then_reads(backend: Backend, queue: Queue) -> None:
    """The read loop's one call: ack the owned ids (not a stolen one), then read new entries."""
    ordered = fifo(queue, "t")
    await backend.ensure_groups(["t"])
    for i in range(4):
        await backend.enqueue("t", fields(i))
    held = await read_n(backend, "c", 2)
    first, stolen = (d.entry_id for d in held)
    rest_ids = sorted({b"job-%d" % i for i in range(4)} - {d.fields[b"id"] for d in held})
    assert len((await backend.claim_idle("t", "thief", 0, 1, stolen)).deliveries) == 1

    answer = await backend.ack_and_read({"t": [first, stolen]}, ["t"], "c", 1)

    assert (answer.lost, answer.failed) == ({"t": [stolen]}, {})
    # At most the one asked for (a partitioned type reads one partition then, maybe empty).
    new = [d.fields[b"id"] for d in answer.deliveries]
    assert new == [b"job-2"] if ordered else len(new) <= 1
    pending = await backend.pending("t", consumer=None, min_idle_ms=0, limit=10)
    assert sorted(p.consumer for p in pending) == ["c"] * len(new) + ["thief"]
    assert (await backend.stats("t")).length == 3  # the acked entry is deleted
    for _ in range(10):
        if len(new) == 2:
            break
        rest = await backend.ack_and_read({}, ["t"], "c", 10)
        assert (rest.lost, rest.failed) == ({}, {})
        new += [d.fields[b"id"] for d in rest.deliveries]
    assert new == [b"job-2", b"job-3"] if ordered else sorted(new) == rest_ids


async def test_ack_finds_its_entries_among_many_held(backend: Backend) -> None:
    """A consumer holding many more entries than it acks (retries waiting, a large batch) still
    acks exactly the ids it owns, wherever they are in its part of the PEL."""
    await backend.ensure_groups(["t"])
    await backend.enqueue_many([("t", fields(i)) for i in range(150)])
    ids = [d.entry_id for d in await backend.read(["t"], "c", 150, 10)]
    assert len(ids) == 150
    assert len((await backend.claim_idle("t", "thief", 0, 1, ids[-1])).deliveries) == 1

    lost = await backend.ack("t", "c", [ids[-1], ids[-2], ids[0]])

    assert lost == [ids[-1]]
    pending = await backend.pending("t", consumer="c", min_idle_ms=0, limit=200)
    assert len(pending) == 147
    assert {ids[-2], ids[0]}.isdisjoint(p.entry_id for p in pending)


async def test_ten_thousand_ids_in_one_ack_refresh_and_release(backend: Backend) -> None:
    """Refresh, release and ack of 10 000 ids at once work (no Lua unpack limit on the ids)."""
    n = 10_000
    await backend.ensure_groups(["t"])
    ids = await backend.enqueue_many([("t", fields(i)) for i in range(n)])
    assert len(ids) == n
    held: list[str] = []
    for _ in range(100):  # a read may watch only some partitions: it can come back empty
        held += [d.entry_id for d in await backend.read(["t"], "c", n - len(held), 10)]
        if len(held) == n:
            break
    assert len(held) == n
    assert await backend.refresh("t", "c", held) == []
    await backend.release("t", "c", held, 60_000)
    released = await backend.pending("t", consumer="c", min_idle_ms=60_000, limit=n)
    assert len(released) == n
    assert await backend.ack("t", "c", held) == []
    stats = await backend.stats("t")
    assert (stats.length, stats.pending, stats.counters["processed"]) == (0, 0, n)


async def test_jobs_interrupted_by_restarts_are_not_dead_lettered(
    queue: Queue, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    """A shutdown hand-back does not count as a delivery: a job with max_deliveries=2 that three
    restarts interrupt in turn still runs to completion on the fourth worker."""
    attempts = 0
    started = asyncio.Event()

    async def step(job: Job[Any]) -> None:
        nonlocal attempts
        attempts += 1
        started.set()
        if attempts <= 3:
            await asyncio.sleep(60)  # longer than shutdown_grace: the stop cancels it

    registry.register("t", Empty, step)
    await queue.enqueue(Job(type="t", args=Empty()))
    for _ in range(3):
        started.clear()
        worker = make_worker("t", max_deliveries=2, shutdown_grace=0.05)
        async with serving(worker):
            await asyncio.wait_for(started.wait(), 5)
    await drain(make_worker("t", max_deliveries=2))
    assert attempts == 4
    stats = await stats_of(queue, "t")
    assert (stats.processed, stats.dead) == (1, 0)


async def test_a_worker_that_hands_back_its_jobs_leaves_the_group(
    queue: Queue, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    """A worker stopping with a job running and a retry waiting removes its consumer name at
    once: the running entry passes to the hand-back consumer (claimable now, its interrupted
    delivery not counted), the retry waits in the schedule holding no entry at all, and
    another worker ends both."""
    attempts: dict[str, int] = {"slow": 0, "flaky": 0}
    slow_started = asyncio.Event()

    async def slow(job: Job[Any]) -> None:
        attempts["slow"] += 1
        slow_started.set()
        if attempts["slow"] == 1:
            await asyncio.sleep(60)

    async def flaky(job: Job[Any]) -> None:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise RuntimeError("first time fails")

    registry.register("slow", Empty, slow)
    registry.register("flaky", Empty, flaky)
    await queue.enqueue_many([Job(type="slow", args=Empty()), Job(type="flaky", args=Empty())])
    worker = make_worker("slow", "flaky", shutdown_grace=0.05, retry_base=0.4)
    async with serving(worker):
        await asyncio.wait_for(slow_started.wait(), 5)
        await eventually(async_retried(queue, "flaky"))
    for t in ("slow", "flaky"):
        assert worker.consumer not in (await stats_of(queue, t)).consumers
    (held,) = await queue.pending("slow")
    assert (held.consumer, held.deliveries) == (HANDED_BACK, 0)
    assert await queue.pending("flaky") == []
    [waiting] = await queue.scheduled("flaky")
    assert (waiting.why, waiting.deliveries) == ("retry", 1)
    await drain(make_worker("slow", "flaky"))
    assert attempts == {"slow": 2, "flaky": 2}
    assert [s.processed for s in await queue.stats(["slow", "flaky"])] == [1, 1]


def async_retried(queue: Queue, type: str) -> Callable[[], Any]:
    """A check for :func:`eventually`: ``type`` has had a retry scheduled."""

    async def check() -> bool:
        return (await stats_of(queue, type)).retried >= 1

    return check


async def test_recovery_reaches_orphans_deep_in_the_pel_during_a_retry_storm(
    backend: Backend, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    """Due retries are claimed by id and the recovery cursor keeps walking: with a job failing
    over and over at the head of the PEL and hundreds of live entries after it, the jobs a dead
    worker left deep in the PEL are still reached and run (XAUTOCLAIM looks at 10 x COUNT
    entries per call)."""
    ran: list[str] = []
    failures = 0

    async def step(job: Job[Any]) -> None:
        nonlocal failures
        if job.id == "job-0":
            failures += 1
            raise RuntimeError("fails every time")
        ran.append(job.id or "")

    registry.register("t", Empty, step)
    await backend.ensure_groups(["t"])
    busy_n, orphans_n = 400, 5
    # job-0 first (the head of its PEL), then the live ones, the orphans last (the deepest).
    await backend.enqueue_many([("t", fields(i)) for i in range(1 + busy_n + orphans_n)])
    held = await read_n(backend, "other", 1 + busy_n + orphans_n)
    by_job = {d.fields[b"id"].decode(): d.entry_id for d in held}
    busy = [by_job[f"job-{i}"] for i in range(1, 1 + busy_n)]
    orphans = {f"job-{i}" for i in range(1 + busy_n, 1 + busy_n + orphans_n)}

    async def keep_busy_alive() -> None:
        # A live worker elsewhere holding these: never idle long enough to be claimed.
        while True:
            await backend.refresh("t", "other", busy)
            await asyncio.sleep(0.05)

    alive = asyncio.create_task(keep_busy_alive())
    try:
        worker = make_worker("t", concurrency=2, max_deliveries=10_000, retry_base=0.02)
        await asyncio.sleep(worker.claim_after)  # job-0 and the orphans are claimable now
        async with serving(worker):
            await eventually(lambda: failures >= 5)
            await eventually(lambda: orphans <= set(ran))
        assert set(ran) == orphans
    finally:
        alive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await alive


async def test_retry_later_moves_the_entry_into_the_schedule_with_its_deliveries_and_error(
    backend: Backend,
) -> None:
    """Backend.retry_later takes an owned entry out of the stream and the PEL into the
    schedule, its deliveries so far and last error with it, counting failed and retried; a
    consumer that does not own it changes nothing. When due, move_due puts it back in the
    stream as a new entry that still carries them."""
    await backend.ensure_groups(["t"])
    await backend.enqueue_many([("t", fields(i)) for i in range(2)])
    got = await read_n(backend, "a", 2)
    first, other = (d.entry_id for d in got)
    job_id = got[0].fields[b"id"]
    assert not await backend.retry_later("t", "b", first, delay_ms=0, deliveries=1, error="x")
    before = int(time.time() * 1000)
    due = await backend.retry_later(
        "t", "a", first, delay_ms=300, deliveries=3, error="CloudError: throttled"
    )
    assert before + 300 - 50 <= due <= int(time.time() * 1000) + 300 + 50
    stats = await backend.stats("t")
    assert (stats.length, stats.pending, stats.scheduled) == (1, 1, 1)
    assert (stats.counters["failed"], stats.counters["retried"]) == (1, 1)
    pending = await backend.pending("t", consumer=None, min_idle_ms=0, limit=10)
    assert [p.entry_id for p in pending] == [other]
    [waiting] = await backend.scheduled("t", 10)
    assert (waiting.job_id, waiting.why, waiting.deliveries, waiting.error) == (
        job_id.decode(),
        "retry",
        3,
        "CloudError: throttled",
    )
    assert waiting.due_ms == due
    # Not owned any more: a second retry of the same entry changes nothing.
    assert not await backend.retry_later("t", "a", first, delay_ms=0, deliveries=4, error="y")
    assert await backend.move_due(["t"], 100) == 0  # not due yet
    await asyncio.sleep(0.35)
    assert await backend.move_due(["t"], 100) == 1
    [again] = await read_n(backend, "c", 1)
    assert again.entry_id not in (first, other)
    assert again.deliveries == 1  # the PEL's count of the new entry; the runner adds the rest
    assert again.fields[b"id"] == job_id
    assert (again.fields[b"deliveries"], again.fields[b"last_error"]) == (
        b"3",
        b"CloudError: throttled",
    )
    # Retried again, the fields are replaced, not doubled.
    assert await backend.retry_later(
        "t", "c", again.entry_id, delay_ms=0, deliveries=4, error="second"
    )
    await asyncio.sleep(0.01)
    assert await backend.move_due(["t"], 100) == 1
    [third] = await read_n(backend, "c", 1)
    assert (third.fields[b"deliveries"], third.fields[b"last_error"]) == (b"4", b"second")
    assert sorted(third.fields) == sorted([*got[0].fields, b"deliveries", b"last_error"])
