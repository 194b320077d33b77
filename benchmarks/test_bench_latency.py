"""Enqueue -> handler start latency at a steady rate, beside a raw redis-py consumer loop.

A producer sends ``RATE`` jobs per second on a fixed schedule (``WARMUP + JOBS`` of them; the
first ``WARMUP`` are not counted), each carrying ``time.time_ns()`` taken just before it is
sent. The consumer notes ``time.time_ns()`` when the job starts, and the difference is one
sample:

- streamq: ``Queue.enqueue`` of a ``stamp`` job (defined below); one ``streamq.Worker``
  (concurrency 32, its default ``block`` of 1 s) runs it, and the handler's first line takes
  the time. The latency covers enqueue (args check, encoding, the EVALSHA), the server, the
  worker's XREADGROUP, decoding and checking the job, and starting its task.
- reference: ``XADD`` of two small fields (sequence number and timestamp); a loop of
  ``XREADGROUP BLOCK 1000 COUNT 32``, the time taken per entry as it is read, then ``XACK`` +
  ``XDEL`` of the batch in one pipelined ``MULTI`` (the core benchmark's raw consume loop).

Both run in this process on the benchmark's event loop: the producer and the consumer share
it, identically on both sides. At 1000 jobs/s the producer keeps the loop busy for a small
fraction of each millisecond, so it delays the consumer little, and it does so the same way for
both. The figures are percentiles of the samples (``extra_info["latency"]``); pytest-benchmark's
own time for the test is the whole paced run and means nothing by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks import _latency
from streamq import Job, Queue, Registry, Worker
from streamq.backends.redis import RedisBackend

#: Jobs per second the producer sends, and how many are counted after the warm-up ones.
RATE = 1000
JOBS = 5000
WARMUP = 500
#: The worker's concurrency; the reference reads at most this many entries per XREADGROUP.
CONCURRENCY = 32
#: The worker's read block (its default) and the reference's BLOCK, in ms.
BLOCK_MS = 1000
#: How long the consumer may take to see the last job before the benchmark gives up.
DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class StampArgs:
    """Which job of the run this is, and ``time.time_ns()`` just before it was enqueued."""

    seq: int
    sent_ns: int


#: seq -> handler start minus enqueue stamp (ns), filled by :func:`stamp`; one run at a time.
_STARTED: dict[int, int] = {}


async def stamp(job: Job[StampArgs]) -> None:
    """Note when this job started, against the enqueue time it carries."""
    now = time.time_ns()
    _STARTED[job.args.seq] = now - job.args.sent_ns


registry = Registry()
registry.register("stamp", StampArgs, stamp)


async def _paced(send: Callable[[int, int], Awaitable[Any]], count: int, rate: float) -> float:
    """Call ``send(seq, time_ns)`` ``count`` times on a fixed schedule; return the rate achieved.

    Job ``i`` is due at ``start + i / rate``; a late one is sent at once (the schedule does not
    slip, so a stall is followed by a short burst, as with a real steady producer).
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    for seq in range(count):
        delay = start + seq / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(seq, time.time_ns())
    return count / (loop.time() - start)


async def _wait_for(received: dict[int, int], count: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while len(received) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(received)} of {count} jobs seen in {DRAIN_TIMEOUT_S}s")
        await asyncio.sleep(0.01)


def _counted(received: dict[int, int]) -> list[int]:
    """The samples of the counted jobs (the warm-up ones dropped)."""
    assert sorted(received) == list(range(WARMUP + JOBS)), "a job was lost or seen twice"
    return [ns for seq, ns in received.items() if seq >= WARMUP]


def test_latency_streamq_worker(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    backend: RedisBackend,
    raw: aioredis.Redis,
) -> None:
    """Queue.enqueue at a steady rate -> handler start in one Worker (concurrency 32)."""
    benchmark.group = f"latency enqueue->start @{RATE}/s"
    queue = Queue(backend, registry=registry)
    achieved: list[float] = []

    async def run() -> None:
        _STARTED.clear()
        await backend.ensure_groups(["stamp"])
        worker = Worker(
            backend, registry, ["stamp"], concurrency=CONCURRENCY, block=BLOCK_MS / 1000
        )
        serving = asyncio.create_task(worker.run())

        async def send(seq: int, now_ns: int) -> None:
            await queue.enqueue(Job(type="stamp", args=StampArgs(seq=seq, sent_ns=now_ns)))

        try:
            achieved.append(await _paced(send, WARMUP + JOBS, RATE))
            await _wait_for(_STARTED, WARMUP + JOBS)
        finally:
            worker.stop()
            await serving
        assert worker.processed == WARMUP + JOBS

    benchmark.pedantic(lambda: loop.run_until_complete(run()), rounds=1, iterations=1)
    _latency.record(
        benchmark,
        _counted(_STARTED),
        what="enqueue -> handler start",
        rate_per_s=round(achieved[0], 1),
        target_rate_per_s=RATE,
    )
    assert loop.run_until_complete(raw.xlen(backend.jobs_key("stamp"))) == 0


async def _raw_consume(
    client: aioredis.Redis, key: str, group: str, received: dict[int, int], count: int
) -> None:
    """XREADGROUP BLOCK COUNT, the time of each entry as it is read, then XACK + XDEL."""
    while len(received) < count:
        reply: Any = await client.xreadgroup(
            group, "raw-consumer", {key: ">"}, count=CONCURRENCY, block=BLOCK_MS
        )
        if not reply:
            continue
        ids = []
        for entry_id, fields in reply[0][1]:
            now = time.time_ns()
            received[int(fields[b"seq"])] = now - int(fields[b"sent_ns"])
            ids.append(entry_id)
        async with client.pipeline(transaction=True) as pipe:
            pipe.xack(key, group, *ids)
            pipe.xdel(key, *ids)
            await pipe.execute()


def test_latency_raw_loop(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    prefix: str,
) -> None:
    """Baseline: XADD at the same rate -> receipt in a raw XREADGROUP BLOCK loop."""
    benchmark.group = f"latency enqueue->start @{RATE}/s"
    key, group = f"{prefix}:{{stamp}}:jobs", "raw"
    received: dict[int, int] = {}
    achieved: list[float] = []

    async def run() -> None:
        await raw.xgroup_create(key, group, id="0", mkstream=True)
        consuming = asyncio.create_task(_raw_consume(raw, key, group, received, WARMUP + JOBS))

        async def send(seq: int, now_ns: int) -> None:
            await raw.xadd(key, {"seq": seq, "sent_ns": now_ns})

        try:
            achieved.append(await _paced(send, WARMUP + JOBS, RATE))
            await asyncio.wait_for(consuming, DRAIN_TIMEOUT_S)
        finally:
            consuming.cancel()

    benchmark.pedantic(lambda: loop.run_until_complete(run()), rounds=1, iterations=1)
    _latency.record(
        benchmark,
        _counted(received),
        what="XADD -> XREADGROUP receipt",
        reference=True,
        rate_per_s=round(achieved[0], 1),
        target_rate_per_s=RATE,
    )
    assert loop.run_until_complete(raw.xlen(key)) == 0
