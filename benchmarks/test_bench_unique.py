"""Benchmarks of unique jobs (not tests; see conftest.py), each beside the plain path measured
in the same run.

Groups:

- ``enqueue x1 unique``: ``Queue.enqueue(job, unique_key=...)`` with a new key per call (one
  ``unique.lua`` call: ``SET NX PX`` + ``XADD`` + ``HINCRBY``) beside the plain
  ``Queue.enqueue`` (``enqueue.lua``), the reference;
- ``consume unique c32``: a Worker (concurrency 32) draining 5 000 noop jobs that each hold a
  unique key (each acked on its own with ``finish.lua``, which releases the key) beside the
  same jobs without keys (acked in batches with the next read), the reference.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

import handlers
from benchmarks.test_bench_core import NOOP, WORKER_BLOCK_S, _record
from streamq import Queue, Worker
from streamq.backends.redis import RedisBackend

ENQUEUE_BATCH = 100
ENQUEUE_ROUNDS = 50
JOBS = 5000
ROUNDS = 5
CONCURRENCY = 32

_keys = itertools.count()


async def fill_noop(
    queue: Queue, raw: aioredis.Redis, backend: RedisBackend, *, unique: bool
) -> None:
    """JOBS noop jobs into an empty stream (untimed): each with its own unique key, or in
    ``enqueue_many`` calls of 1000; then the group."""
    assert await raw.xlen(backend.jobs_key("noop")) == 0
    if unique:
        for _ in range(JOBS):
            await queue.enqueue(NOOP, unique_key=f"c{next(_keys)}")
    else:
        for i in range(0, JOBS, 1000):
            await queue.enqueue_many([NOOP] * min(1000, JOBS - i))
    await backend.ensure_groups(["noop"])


@pytest.mark.parametrize("side", ["unique", "plain"])
def test_enqueue_unique(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
    side: str,
) -> None:
    """One enqueue per call, with a fresh unique key (``unique``) or none (``plain``)."""
    benchmark.group = "enqueue x1 unique"

    async def batch() -> None:
        if side == "unique":
            for _ in range(ENQUEUE_BATCH):
                await queue.enqueue(NOOP, unique_key=f"k{next(_keys)}")
        else:
            for _ in range(ENQUEUE_BATCH):
                await queue.enqueue(NOOP)

    benchmark.pedantic(
        lambda: loop.run_until_complete(batch()), rounds=ENQUEUE_ROUNDS, warmup_rounds=3
    )
    _record(benchmark, per_round=ENQUEUE_BATCH, unit="enqueues", reference=side == "plain")
    stored = loop.run_until_complete(raw.xlen(backend.jobs_key("noop")))
    assert stored == ENQUEUE_BATCH * (ENQUEUE_ROUNDS + 3)


@pytest.mark.parametrize("side", ["unique", "plain"])
def test_consume_unique(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
    side: str,
) -> None:
    """A Worker at c32 drains 5 000 noop jobs, each with its own unique key or none."""
    benchmark.group = f"consume unique c{CONCURRENCY}"
    key = backend.jobs_key("noop")
    drained: list[int] = []

    def setup() -> tuple[tuple[Worker], dict[str, object]]:
        loop.run_until_complete(fill_noop(queue, raw, backend, unique=side == "unique"))
        # No finished-job records (test_bench_done.py measures them): the figure compares
        # the unique ack with the plain one, as it did before records existed.
        worker = Worker(
            backend,
            handlers.registry,
            ["noop"],
            concurrency=CONCURRENCY,
            block=WORKER_BLOCK_S,
            keep_done=0,
        )
        return (worker,), {}

    def drain(worker: Worker) -> None:
        loop.run_until_complete(worker.run(stop_when_empty=True))
        drained.append(worker.processed)

    benchmark.pedantic(drain, setup=setup, rounds=ROUNDS, iterations=1)
    _record(benchmark, per_round=JOBS, unit="jobs", reference=side == "plain")
    assert drained == [JOBS] * ROUNDS
    assert loop.run_until_complete(raw.xlen(key)) == 0
    left = loop.run_until_complete(raw.keys(f"{backend.prefix}:{{noop}}:unique:*"))
    assert left == []  # every key was released with its job's ack
