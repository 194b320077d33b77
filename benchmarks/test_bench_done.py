"""Benchmarks of finished-job records (not tests; see conftest.py), beside the plain ack
measured in the same run.

Group ``consume records c32``: a Worker (concurrency 32) draining 5 000 noop jobs,

- ``plain``: ``keep_done=0``, no records: the ack is ``ack.lua``, the reference;
- ``records``: the default (``keep_done`` 24 h): each ack batch writes its jobs' records in
  the same call (``ack_done.lua``: one ``HSET`` per batch into the current bucket);
- ``unique``: the jobs each hold a unique key, ``keep_done=0`` (``finish.lua``);
- ``unique+records``: unique keys and records (``finish.lua`` writing records).

Each figure carries the server's CPU per job (``INFO cpu``, user + system, over the drains;
the fill is not counted) in ``extra_info["server_us_per_job"]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

import handlers
from benchmarks.test_bench_core import WORKER_BLOCK_S, _record
from benchmarks.test_bench_unique import CONCURRENCY, JOBS, ROUNDS, fill_noop
from streamq import Queue, Worker
from streamq.backends.redis import RedisBackend


async def _server_cpu(raw: aioredis.Redis) -> float:
    info = await raw.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measured_drains(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    *,
    fill: Callable[[], Awaitable[None]],
    worker: Callable[[], Worker],
) -> list[int]:
    """ROUNDS timed drains, each of a fresh ``worker()`` after an untimed ``fill()``, with the
    server's CPU per job over the drains in ``extra_info["server_us_per_job"]``; returns how
    many each drain processed."""
    drained: list[int] = []
    server_s: list[float] = []

    def setup() -> tuple[tuple[Worker], dict[str, object]]:
        loop.run_until_complete(fill())
        return (worker(),), {}

    def drain(w: Worker) -> None:
        before = loop.run_until_complete(_server_cpu(raw))
        loop.run_until_complete(w.run(stop_when_empty=True))
        server_s.append(loop.run_until_complete(_server_cpu(raw)) - before)
        drained.append(w.processed)

    benchmark.pedantic(drain, setup=setup, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["server_us_per_job"] = round(1e6 * sum(server_s) / sum(drained), 2)
    return drained


@pytest.mark.parametrize("side", ["plain", "records", "unique", "unique+records"])
def test_consume_records(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
    side: str,
) -> None:
    """A Worker at c32 drains 5 000 noop jobs, with or without records and unique keys."""
    benchmark.group = f"consume records c{CONCURRENCY}"
    key = backend.jobs_key("noop")
    unique = side.startswith("unique")
    keep_done = 24 * 3600.0 if side.endswith("records") else 0.0
    drained = measured_drains(
        benchmark,
        loop,
        raw,
        fill=lambda: fill_noop(queue, raw, backend, unique=unique),
        worker=lambda: Worker(
            backend,
            handlers.registry,
            ["noop"],
            concurrency=CONCURRENCY,
            block=WORKER_BLOCK_S,
            keep_done=keep_done,
        ),
    )
    _record(benchmark, per_round=JOBS, unit="jobs", reference=side == "plain")
    assert drained == [JOBS] * ROUNDS
    assert loop.run_until_complete(raw.xlen(key)) == 0
    # Records written only when kept: an entry per ack call in the stream's finished stream.
    kept = loop.run_until_complete(raw.xlen(f"{backend.prefix}:{{noop}}:finished"))
    assert bool(kept) == bool(keep_done)
