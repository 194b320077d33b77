"""Ownership of in-flight entries, on both backends: leases, stolen leases, slots, leaving."""

from __future__ import annotations

import asyncio
import contextlib
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
    once: both entries pass to the hand-back consumer (the running one claimable now, its
    interrupted delivery not counted; the retry with its count), and another worker ends both."""
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
    for t, deliveries in (("slow", 0), ("flaky", 1)):
        stats = await stats_of(queue, t)
        assert worker.consumer not in stats.consumers
        (held,) = await queue.pending(t)
        assert (held.consumer, held.deliveries) == (HANDED_BACK, deliveries)
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


async def test_claim_by_id_takes_idle_entries_counts_them_and_drops_deleted_ones(
    backend: Backend,
) -> None:
    """Backend.claim takes the given entries idle at least min_idle (a due retry) whoever holds
    them, counting the delivery; one not idle enough stays; a deleted one leaves the PEL."""
    await backend.ensure_groups(["t"])
    await backend.enqueue_many([("t", fields(i)) for i in range(3)])
    due, busy, gone = (d.entry_id for d in await read_n(backend, "a", 3))
    assert await backend.retry_later("t", "a", due, 5_000)
    assert await backend.retry_later("t", "a", gone, 5_000)
    await delete_entry(backend, "t", gone)

    claimed = await backend.claim("t", "b", [due, busy, gone], 5_000)

    assert [(d.entry_id, d.deliveries) for d in claimed.deliveries] == [(due, 2)]
    assert claimed.deliveries[0].fields[b"id"].startswith(b"job-")
    assert claimed.deleted == [gone]
    pending = await backend.pending("t", consumer=None, min_idle_ms=0, limit=10)
    assert sorted((p.entry_id, p.consumer) for p in pending) == sorted([(due, "b"), (busy, "a")])
    assert (await backend.claim("t", "c", [due], 5_000)).deliveries == []  # no longer idle
