"""The finished-job records on a real server (``done_record.lua``): an entry of the stream's
``finished`` stream per ack call, the cap kept with the ``processed`` counter's marks (the
oldest entries go first, the newest records stay), the key's expiry, records of ids no longer
owned left out, and job ids of any shape found exactly."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis

from streamq import Job, Queue, Registry, Worker
from streamq.backends._base import JobEnd, KeepDone
from streamq.backends.redis import RedisBackend

DAY = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Item:
    n: int


def _registry() -> Registry:
    registry = Registry()

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        return None

    return registry


def _records(raw: redis.Redis, prefix: str) -> list[str]:
    """Every record line kept, oldest first."""
    out: list[str] = []
    for _, fields in raw.xrange(f"{prefix}:{{t}}:finished"):
        out += [line for line in fields[b"r"].decode().split("\n") if line]
    return out


async def test_the_cap_drops_the_oldest_records_and_keeps_the_newest(
    redis_url: str, prefix: str
) -> None:
    """Ten waves of 30 jobs with keep_done_max=90: after each, at most 90 records are kept,
    give or take one ack's jobs (an ack's records go together), and at least 7/8 of what the
    cap allows less one ack's; every job of the last wave is done, none of the first."""
    registry = _registry()
    backend = RedisBackend(redis_url, prefix=prefix)
    raw = redis.Redis.from_url(redis_url)
    queue = Queue(backend, registry=registry)
    try:
        waves: list[list[str]] = []
        for w in range(10):
            waves.append([await queue.enqueue(Job(type="t", args=Item(w))) for _ in range(30)])
            worker = Worker(backend, registry, ["t"], concurrency=4, block=0.05, keep_done_max=90)
            await worker.run(stop_when_empty=True)
            kept = len(_records(raw, prefix))
            assert min(90, 30 * (w + 1)) * 7 // 8 - 4 <= kept <= 90 + 4, (w, kept)
        last = [(await queue.job("t", i)).state for i in waves[-1]]
        assert last == ["done"] * 30
        first = [(await queue.job("t", i)).state for i in waves[0]]
        assert first == ["unknown"] * 30
        # The key expires on its own: keep_done (a day by default) plus a slack of keep_done/64
        # after a worker last set it, and it was set by the first ack of each worker.
        ttl = int(raw.pttl(f"{prefix}:{{t}}:finished"))
        assert DAY - 60_000 <= ttl <= DAY + DAY // 64
    finally:
        raw.close()
        await backend.aclose()


async def test_a_record_older_than_its_keep_is_gone(redis_url: str, prefix: str) -> None:
    """A record past the time it was to be kept answers unknown even while its entry is still in
    the stream (another worker's record kept the key alive), and the next worker's first ack
    trims it while the younger record stays."""
    registry = _registry()
    backend = RedisBackend(redis_url, prefix=prefix)
    queue = Queue(backend, registry=registry)
    raw = redis.Redis.from_url(redis_url)

    async def one_job(n: int) -> str:
        job_id = await queue.enqueue(Job(type="t", args=Item(n)))
        own = RedisBackend(redis_url, prefix=prefix)
        try:
            worker = Worker(own, registry, ["t"], block=0.05, keep_done=2.0)
            await worker.run(stop_when_empty=True)
        finally:
            await own.aclose()
        return job_id

    try:
        old = await one_job(1)
        assert (await queue.job("t", old)).state == "done"
        await asyncio.sleep(1.2)
        young = await one_job(2)  # a new backend: its first ack sets the expiry again
        await asyncio.sleep(1.2)
        assert raw.xlen(f"{prefix}:{{t}}:finished") == 2  # the old record's entry is still there
        assert (await queue.job("t", old)).state == "unknown"
        assert (await queue.job("t", young)).state == "done"
        third = await one_job(3)  # its first ack trims what is older than keep_done
        assert [line.split()[0] for line in _records(raw, prefix)] == [young, third]
    finally:
        raw.close()
        await backend.aclose()


async def test_only_the_owned_ids_get_records(redis_url: str, prefix: str) -> None:
    """An ack of three entries, one of them claimed by another consumer meanwhile: the two
    owned ones are acked and recorded, the third is reported lost and has no record."""
    backend = RedisBackend(redis_url, prefix=prefix)
    raw = redis.Redis.from_url(redis_url)
    try:
        await backend.ensure_groups(["t"])
        for n in range(3):
            await backend.enqueue("t", {b"id": f"job-{n}".encode(), b"n": b"%d" % n})
        got = await backend.read(["t"], "a", 3, 10)
        ids = [d.entry_id for d in got]
        raw.xclaim(f"{prefix}:{{t}}:jobs", "workers", "b", 0, [ids[1]])
        ends = [JobEnd(i, f"job-{n}", took_ms=5, deliveries=1) for n, i in enumerate(ids)]
        lost = await backend.ack("t", "a", ids, ends, KeepDone(DAY, 1000))
        assert lost == [ids[1]]
        assert _records(raw, prefix) == ["job-0 5 1", "job-2 5 1"]
        assert raw.xpending(f"{prefix}:{{t}}:jobs", "workers")["pending"] == 1
        assert int(raw.hget(f"{prefix}:{{t}}:stats", "processed")) == 2
        assert (await backend.find_job("t", "job-1")).__class__.__name__ == "InStream"
        found = await backend.find_job("t", "job-2")
        assert (found.state, found.took_ms, found.deliveries, found.consumer) == (  # type: ignore[union-attr]
            "done",
            5,
            1,
            "a",
        )
    finally:
        raw.close()
        await backend.aclose()


async def test_job_ids_of_any_shape_are_found_exactly(redis_url: str, prefix: str) -> None:
    """Ids holding spaces, line breaks, percent signs, or another id as a prefix: each lookup
    finds its own record and no other's."""
    registry = _registry()
    backend = RedisBackend(redis_url, prefix=prefix)
    queue = Queue(backend, registry=registry)
    ids = ["a", "a b", "a\nb", "b", "a%20b", "%", "a 1 1"]
    try:
        for n, job_id in enumerate(ids[:-1]):
            await queue.enqueue(Job(type="t", args=Item(n), id=job_id))
        worker = Worker(backend, registry, ["t"], concurrency=1, block=0.05)
        await worker.run(stop_when_empty=True)
        for job_id in ids[:-1]:
            assert (await queue.job("t", job_id)).state == "done", job_id
        assert (await queue.job("t", ids[-1])).state == "unknown"
        assert (await queue.job("t", "a\n")).state == "unknown"
    finally:
        await backend.aclose()
