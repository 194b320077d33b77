"""The finished-job records on a real server: the ring of buckets keeps the cap (the oldest
buckets go first, the newest records stay), and each bucket and the index expire on their own."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from streamq import Job, Queue, Registry, Worker
from streamq.backends.redis import RedisBackend


@dataclass(frozen=True, slots=True)
class Item:
    n: int


def _registry() -> Registry:
    registry = Registry()

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        return None

    return registry


def _kept(raw: redis.Redis, prefix: str) -> int:
    return sum(int(raw.hlen(f"{prefix}:{{t}}:done:{i}")) for i in range(1, 10))


async def test_the_cap_drops_the_oldest_buckets_and_keeps_the_newest(
    redis_url: str, prefix: str
) -> None:
    """Ten waves of 30 jobs with keep_done_max=90: after each, at most 90 records are kept (and
    at least half of them: a bucket at a time goes), and every job of the last wave is done."""
    registry = _registry()
    backend = RedisBackend(redis_url, prefix=prefix)
    raw = redis.Redis.from_url(redis_url)
    queue = Queue(backend, registry=registry)
    try:
        waves: list[list[str]] = []
        for w in range(10):
            waves.append([await queue.enqueue(Job(type="t", args=Item(w))) for _ in range(30)])
            worker = Worker(backend, registry, ["t"], concurrency=8, block=0.05, keep_done_max=90)
            await worker.run(stop_when_empty=True)
            kept = _kept(raw, prefix)
            assert min(90, 30 * (w + 1)) // 2 <= kept <= 90, (w, kept)
        last = [(await queue.job("t", i)).state for i in waves[-1]]
        assert last == ["done"] * 30
        first = [(await queue.job("t", i)).state for i in waves[0]]
        assert first == ["unknown"] * 30
        index = {k.decode(): v.decode() for k, v in raw.hgetall(f"{prefix}:{{t}}:done").items()}
        assert int(index["total"]) == _kept(raw, prefix)
        # Every key of the records expires on its own (keep_done: a day by default), keep_done
        # plus a slack of an eighth of a bucket's span (a day / 8 / 8) after its expiry was set:
        # the keys written last (the index, the current bucket) have at least keep_done left.
        day = 24 * 3600 * 1000
        for key in [f"{prefix}:{{t}}:done", *(f"{prefix}:{{t}}:done:{i}" for i in range(1, 10))]:
            if raw.exists(key):
                assert 0 < int(raw.pttl(key)) <= day + day // 64, key
        current = f"{prefix}:{{t}}:done:{index['cur']}"
        for key in (f"{prefix}:{{t}}:done", current):
            assert int(raw.pttl(key)) >= day - 60_000, key
    finally:
        raw.close()
        await backend.aclose()
