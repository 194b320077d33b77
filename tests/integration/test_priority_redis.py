"""Priorities on a real Redis server: the key layout (a type never given a priority keeps its
keys; level streams share the type's slot), a running worker that learns a type's levels
without a restart, ``ID@LEVEL`` ids, and the partitioned type's refusal
(docs/flow-control.md, "Priorities")."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.crc import key_slot

from streamq import ConfigError, Job, Queue, Registry, Worker
from streamq.backends.redis import RedisBackend

FAST: dict[str, Any] = {"claim_after": 0.5, "heartbeat": 0.1, "retry_base": 0.02, "block": 0.05}


@dataclass(frozen=True)
class Item:
    """Args of the test jobs."""

    n: int


async def _until(check: Any, what: str, limit: float = 10.0) -> None:
    """Wait (polling) until ``check()`` holds; fail naming ``what`` after ``limit`` s."""
    async with asyncio.timeout(limit):
        while not check():  # noqa: ASYNC110 - state of other tasks: no event to wait on
            await asyncio.sleep(0.02)
    assert check(), what


async def test_level_keys_appear_only_with_a_priority_and_share_the_slot(
    redis_url: str, prefix: str
) -> None:
    """Plain jobs leave the key layout as it was (no level field, no level stream, plain ids);
    the first high job records ``levels`` in the meta hash and writes to ``:high:jobs``, in
    the default stream's slot, with an id ending in ``@high`` that fetch reads back."""
    backend = RedisBackend(redis_url, prefix=prefix)
    client = aredis.Redis.from_url(redis_url)
    try:
        queue = Queue(backend)
        await queue.enqueue(Job(type="lv", args=Item(0)))
        keys = sorted(k.decode() for k in await client.keys(f"{prefix}:*"))
        assert keys == [f"{prefix}:{{lv}}:jobs", f"{prefix}:{{lv}}:stats"], keys
        assert await client.hget(f"{prefix}:{{lv}}:meta", "levels") is None
        await queue.enqueue(Job(type="lv", args=Item(1)), priority="high")
        assert await client.hget(f"{prefix}:{{lv}}:meta", "levels") == b"1"
        high, default = f"{prefix}:{{lv}}:high:jobs", f"{prefix}:{{lv}}:jobs"
        assert await client.xlen(high) == 1
        assert key_slot(high.encode()) == key_slot(default.encode())
        ((entry_id, _),) = await client.xrange(high)
        ref = f"{entry_id.decode()}@high"
        assert list(await backend.fetch("lv", [ref])) == [ref]
        with pytest.raises(ConfigError):
            await backend.fetch("lv", [f"{entry_id.decode()}@urgent"])
        assert await queue.types() == ["lv"]
    finally:
        await client.aclose()
        await backend.aclose()


async def test_a_running_worker_learns_a_types_levels_without_a_restart(
    redis_url: str, prefix: str
) -> None:
    """A worker serving a type that had no levels when it started runs the type's first high
    and low jobs (enqueued by another process) once it learned them again (relearn_s)."""
    registry = Registry()
    ran: list[int] = []

    @registry.job("later", Item)
    async def handle(job: Job[Item]) -> None:
        ran.append(job.args.n)

    backend = RedisBackend(redis_url, prefix=prefix)
    backend.relearn_s = 0.1
    producer = RedisBackend(redis_url, prefix=prefix)
    worker = Worker(backend, registry, ["later"], concurrency=4, **FAST)
    task = asyncio.create_task(worker.run())
    try:
        queue = Queue(producer, registry=registry)
        await queue.enqueue(Job(type="later", args=Item(0)))
        await _until(lambda: ran == [0], "the plain job ran")
        await queue.enqueue(Job(type="later", args=Item(1)), priority="high")
        await queue.enqueue(Job(type="later", args=Item(2)), priority="low")
        await _until(lambda: sorted(ran) == [0, 1, 2] or task.done(), "the level jobs ran")
        assert not task.done(), task.exception()
        (stats,) = await queue.stats(["later"])
        assert (stats.processed, stats.waiting, stats.in_flight) == (3, 0, 0)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        await backend.aclose()
        await producer.aclose()


async def test_a_partitioned_type_refuses_a_priority(redis_url: str, prefix: str) -> None:
    """A type set to 3 partitions: a priority is a ConfigError that says why; nothing is sent,
    and its plain enqueues go on."""
    backend = RedisBackend(redis_url, prefix=prefix, partitions={"parts": 3})
    try:
        queue = Queue(backend)
        with pytest.raises(ConfigError, match="partitioned: priorities are for types of one"):
            await queue.enqueue(Job(type="parts", args=Item(0)), priority="low")
        await queue.enqueue(Job(type="parts", args=Item(1)))
        (stats,) = await queue.stats(["parts"])
        assert (stats.waiting, stats.waiting_by_priority) == (1, {})
    finally:
        await backend.aclose()
