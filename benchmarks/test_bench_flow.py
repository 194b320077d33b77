"""Benchmarks of flow control (not tests; see conftest.py), beside the same type without it in
the same run (docs/flow-control.md).

Group ``consume flow c32``: a Worker (concurrency 32, ``keep_done=0``) draining 5 000 noop jobs
spread over 1 000 accounts,

- ``plain``: the noop type as it is, the reference;
- ``limit``: ``Limit(key="account_id", concurrency=4)``: every read batch asks ``admit.lua``
  for its jobs' slots, every end gives them back (``flow_free.lua``); 5 jobs per account, so
  a few are held and woken;
- ``rate``: ``Rate(1_000_000)`` per second for the type, far above the load: every batch is
  admitted, nothing held (the cost of the check itself).

Each figure carries the server's CPU per job (``INFO cpu``, user + system, over the drains;
the fill is not counted) in ``extra_info["server_us_per_job"]``.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.test_bench_core import WORKER_BLOCK_S, _record
from benchmarks.test_bench_done import measured_drains
from benchmarks.test_bench_unique import CONCURRENCY, JOBS, ROUNDS
from handlers import noop
from streamq import Job, JobType, Limit, Queue, Rate, Registry, Worker
from streamq.backends.redis import RedisBackend

#: How many accounts the jobs are spread over.
ACCOUNTS = 1000

SIDES = {
    "plain": {},
    "limit": {"limit": Limit(key="account_id", concurrency=4)},
    "rate": {"rate": Rate(1_000_000)},
}


async def _fill(queue: Queue, raw: aioredis.Redis, backend: RedisBackend) -> None:
    assert await raw.xlen(backend.jobs_key("noop")) == 0
    for i in range(0, JOBS, 1000):
        batch = range(i, min(JOBS, i + 1000))
        await queue.enqueue_many(
            [Job(type="noop", account_id=n % ACCOUNTS, args=noop.NoopArgs()) for n in batch]
        )
    await backend.ensure_groups(["noop"])


@pytest.mark.parametrize("side", list(SIDES))
def test_consume_flow(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
    side: str,
) -> None:
    """A Worker at c32 drains 5 000 noop jobs of 1 000 accounts, with or without flow
    control."""
    benchmark.group = f"consume flow c{CONCURRENCY}"
    registry = Registry(
        [JobType(name="noop", args=noop.NoopArgs, steps=(noop.run,), **SIDES[side])]
    )
    drained = measured_drains(
        benchmark,
        loop,
        raw,
        fill=lambda: _fill(queue, raw, backend),
        worker=lambda: Worker(
            backend, registry, ["noop"], concurrency=CONCURRENCY, block=WORKER_BLOCK_S, keep_done=0
        ),
    )
    _record(benchmark, per_round=JOBS, unit="jobs", reference=side == "plain")
    assert drained == [JOBS] * ROUNDS
    assert loop.run_until_complete(raw.xlen(backend.jobs_key("noop"))) == 0
    if side == "limit":  # every slot given back, nothing left held
        index = f"{backend.prefix}:{{noop}}:flow:index"
        assert loop.run_until_complete(raw.zcard(index)) == 0
