"""Benchmarks of delayed jobs (not tests; see conftest.py).

Groups:

- ``enqueue_many x20000 delayed``: 20 000 noop jobs through ``Queue.enqueue_many`` in calls of
  1000, with ``delay=0.5`` (into the schedule, ``schedule.lua``) beside the same jobs for now
  (into the stream, ``enqueue.lua``): what a delay costs the producer;
- ``move_due x20000``: moving 20 000 due jobs from the schedule into the stream with
  ``move_due`` (``move_due.lua``, at most the worker's ``MOVE_LIMIT`` a call), as a worker's
  mover does: the move's cost per job on the server and its round trips.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.test_bench_core import NOOP, _record
from streamq import Queue, _codec
from streamq._worker.scheduling import MOVE_LIMIT
from streamq.backends.redis import RedisBackend

JOBS = 20_000
CHUNK = 1000
ROUNDS = 5
DELAY_S = 0.5


def _enqueue_all(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, queue: Queue, delay: float | None
) -> None:
    jobs = [NOOP] * CHUNK

    async def all_chunks() -> None:
        for _ in range(JOBS // CHUNK):
            await queue.enqueue_many(jobs, delay=delay)

    benchmark.pedantic(
        lambda: loop.run_until_complete(all_chunks()), rounds=ROUNDS, warmup_rounds=1
    )


def test_enqueue_many_delayed(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
) -> None:
    """enqueue_many(delay=0.5 s): encode, then one schedule.lua call (ZADD + HINCRBY) per 1000."""
    benchmark.group = f"enqueue_many x{JOBS} delayed"
    _enqueue_all(benchmark, loop, queue, DELAY_S)
    _record(benchmark, per_round=JOBS, unit="jobs")
    (s,) = backend.streams("noop")
    assert loop.run_until_complete(raw.zcard(s.scheduled)) == JOBS * (ROUNDS + 1)


def test_enqueue_many_for_now(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
) -> None:
    """Reference: the same 20 000 jobs for now (enqueue.lua: XADD + HINCRBY per 1000)."""
    benchmark.group = f"enqueue_many x{JOBS} delayed"
    _enqueue_all(benchmark, loop, queue, None)
    _record(benchmark, per_round=JOBS, unit="jobs", reference=True)
    assert loop.run_until_complete(raw.xlen(backend.jobs_key("noop"))) == JOBS * (ROUNDS + 1)


def test_move_due(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    backend: RedisBackend,
) -> None:
    """move_due until the schedule is empty: 20 000 due jobs, MOVE_LIMIT per script call."""
    benchmark.group = f"move_due x{JOBS}"
    items = [("noop", _codec.encode(NOOP, str(i))) for i in range(JOBS)]
    (s,) = backend.streams("noop")

    def setup() -> tuple[tuple[()], dict[str, object]]:
        async def fill() -> None:
            await raw.delete(s.jobs)
            for i in range(0, JOBS, CHUNK):
                await backend.schedule_many(items[i : i + CHUNK], 0)

        loop.run_until_complete(fill())
        return (), {}

    async def move_all() -> None:
        while await backend.move_due(["noop"], MOVE_LIMIT):
            pass

    benchmark.pedantic(
        lambda: loop.run_until_complete(move_all()), setup=setup, rounds=ROUNDS, warmup_rounds=1
    )
    _record(benchmark, per_round=JOBS, unit="jobs")
    assert loop.run_until_complete(raw.xlen(s.jobs)) == JOBS
    assert loop.run_until_complete(raw.zcard(s.scheduled)) == 0
