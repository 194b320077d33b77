"""Benchmarks of the engine's hot paths, each beside a raw redis-py baseline from the same run.

Groups (one streamq figure and its reference in each; ``make bench`` prints the ratios):

- ``enqueue x1``: ``Queue.enqueue`` of a noop job vs a bare ``XADD`` of the same three fields;
- ``enqueue x1 latency``: the same pair, each call timed on its own (``perf_counter_ns``):
  p50/p99 per call instead of a rate (the issue's target is a p50 within 1.3x one raw XADD);
- ``enqueue_many x1000``: ``Queue.enqueue_many`` of 1000 noop jobs vs 1000 ``XADD`` in one
  non-transactional redis-py pipeline;
- ``consume noop cN``: a ``Worker`` (concurrency N) draining a pre-filled stream of 20 000 noop
  jobs vs the least a consumer can do: ``XREADGROUP COUNT N``, then ``XACK`` + ``XDEL`` of the
  batch in one pipelined ``MULTI``, no handler, until the stream is empty.

Everything runs on one event loop per benchmark driven by ``loop.run_until_complete``, and both
sides of a group go through the same harness (same loop, same server, same batch per round).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter_ns
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

import handlers
from benchmarks import _latency
from handlers.noop import NoopArgs
from streamq import Job, Queue, Worker, _codec
from streamq.backends.redis import RedisBackend

#: Sequential awaits per timed round of the single-enqueue pair (one round trip each).
ENQUEUE_BATCH = 100
ENQUEUE_ROUNDS = 100
#: Single enqueues timed one by one (after untimed warm-up calls) for the per-call latency pair.
LATENCY_CALLS = 5000
LATENCY_WARMUP = 500
#: Target of the per-call pair: streamq's p50 at most this multiple of one raw XADD's p50.
TARGET_ENQUEUE_P50 = 1.3
#: Jobs per ``enqueue_many`` call and per baseline pipeline.
MANY = 1000
MANY_ROUNDS = 30
#: Jobs drained per timed round of the consume pair, and the concurrencies compared.
E2E_JOBS = 20_000
E2E_ROUNDS = 5
FILL_CHUNK = 1000
CONCURRENCIES = [32, 256]
#: The worker's read block. Its default (1 s) is how long the last XREADGROUP waits once the
#: stream holds only jobs in flight; ``stop_when_empty`` can only stop after that read returns,
#: so the default would add up to a fixed idle second to each 20 000-job round. Throughput is
#: what is measured here, so the tail wait is bounded to 10 ms (see README.md).
WORKER_BLOCK_S = 0.01

NOOP = Job(type="noop", args=NoopArgs())
#: Targets of the performance work to come, as a fraction of the raw baseline's rate.
TARGET_ENQUEUE_MANY = 0.80
TARGET_CONSUME = 0.60


def _record(
    benchmark: BenchmarkFixture,
    *,
    per_round: int,
    unit: str,
    reference: bool = False,
    target: float | None = None,
) -> float:
    """Put what the summary needs in ``extra_info``; returns the rate (per second, median)."""
    rate = per_round / benchmark.stats.stats.median
    benchmark.extra_info.update(
        ops_per_round=per_round,
        unit=unit,
        reference=reference,
        rate_per_s=round(rate, 1),
        us_per_op=round(1e6 / rate, 3),
    )
    if target is not None:
        benchmark.extra_info["target"] = target
    return rate


def _noop_fields() -> _codec.Fields:
    """The stream fields streamq writes for a noop job: the baselines send the same bytes."""
    return _codec.encode(NOOP, str(uuid4()))


# enqueue, one job per call --------------------------------------------------------------------


def test_enqueue_streamq(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
) -> None:
    """Queue.enqueue: check args, new UUID, trace context, orjson, EVALSHA (XADD + HINCRBY)."""
    benchmark.group = "enqueue x1"

    async def batch() -> None:
        for _ in range(ENQUEUE_BATCH):
            await queue.enqueue(NOOP)

    benchmark.pedantic(
        lambda: loop.run_until_complete(batch()), rounds=ENQUEUE_ROUNDS, warmup_rounds=5
    )
    _record(benchmark, per_round=ENQUEUE_BATCH, unit="enqueues")
    stored = loop.run_until_complete(raw.xlen(backend.jobs_key("noop")))
    assert stored == ENQUEUE_BATCH * (ENQUEUE_ROUNDS + 5)


def test_enqueue_raw_xadd(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    prefix: str,
) -> None:
    """Baseline: one redis-py XADD of an already encoded noop job per call."""
    benchmark.group = "enqueue x1"
    key, fields = f"{prefix}:{{noop}}:jobs", _noop_fields()

    async def batch() -> None:
        for _ in range(ENQUEUE_BATCH):
            await raw.xadd(key, fields)  # type: ignore[arg-type]

    benchmark.pedantic(
        lambda: loop.run_until_complete(batch()), rounds=ENQUEUE_ROUNDS, warmup_rounds=5
    )
    _record(benchmark, per_round=ENQUEUE_BATCH, unit="enqueues", reference=True)


# enqueue, one job per call, each call timed -------------------------------------------------


async def _timed_calls(call: Callable[[], Awaitable[object]]) -> list[int]:
    """``LATENCY_WARMUP`` untimed calls, then ``LATENCY_CALLS`` each timed on its own (ns)."""
    for _ in range(LATENCY_WARMUP):
        await call()
    samples = []
    for _ in range(LATENCY_CALLS):
        start = perf_counter_ns()
        await call()
        samples.append(perf_counter_ns() - start)
    return samples


def test_enqueue_latency_streamq(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
) -> None:
    """Queue.enqueue of a noop job, per call: p50/p99 of single calls, not a batch's rate."""
    benchmark.group = "enqueue x1 latency"
    samples = benchmark.pedantic(
        lambda: loop.run_until_complete(_timed_calls(lambda: queue.enqueue(NOOP))),
        rounds=1,
        iterations=1,
    )
    _latency.record(
        benchmark,
        samples,
        what="one Queue.enqueue call",
        target_p50_at_most=TARGET_ENQUEUE_P50,
    )
    stored = loop.run_until_complete(raw.xlen(backend.jobs_key("noop")))
    assert stored == LATENCY_WARMUP + LATENCY_CALLS


def test_enqueue_latency_raw_xadd(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    prefix: str,
) -> None:
    """Baseline: one redis-py XADD of an already encoded noop job, per call."""
    benchmark.group = "enqueue x1 latency"
    key, fields = f"{prefix}:{{noop}}:jobs", _noop_fields()

    def xadd() -> Awaitable[object]:
        return raw.xadd(key, fields)  # type: ignore[arg-type]

    samples = benchmark.pedantic(
        lambda: loop.run_until_complete(_timed_calls(xadd)), rounds=1, iterations=1
    )
    _latency.record(benchmark, samples, what="one raw XADD call", reference=True)


# enqueue_many -----------------------------------------------------------------------------------


def test_enqueue_many_streamq(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
) -> None:
    """Queue.enqueue_many(1000): encode all, then one pipeline of XADDs and one HINCRBY."""
    benchmark.group = f"enqueue_many x{MANY}"
    jobs = [NOOP] * MANY  # no id: each enqueue gives every job a new UUID

    benchmark.pedantic(
        lambda: loop.run_until_complete(queue.enqueue_many(jobs)),
        rounds=MANY_ROUNDS,
        warmup_rounds=3,
    )
    _record(benchmark, per_round=MANY, unit="jobs", target=TARGET_ENQUEUE_MANY)
    stored = loop.run_until_complete(raw.xlen(backend.jobs_key("noop")))
    assert stored == MANY * (MANY_ROUNDS + 3)


def test_enqueue_many_raw_pipeline(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    prefix: str,
) -> None:
    """Baseline: 1000 XADD of already encoded noop jobs in one pipeline (transaction=False)."""
    benchmark.group = f"enqueue_many x{MANY}"
    key, fields = f"{prefix}:{{noop}}:jobs", _noop_fields()

    async def pipelined() -> None:
        async with raw.pipeline(transaction=False) as pipe:
            for _ in range(MANY):
                pipe.xadd(key, fields)  # type: ignore[arg-type]
            await pipe.execute()

    benchmark.pedantic(
        lambda: loop.run_until_complete(pipelined()), rounds=MANY_ROUNDS, warmup_rounds=3
    )
    _record(benchmark, per_round=MANY, unit="jobs", reference=True)


# consume: drain a pre-filled stream -----------------------------------------------------------


async def _prefill(queue: Queue, backend: RedisBackend, raw: aioredis.Redis) -> None:
    """Untimed: E2E_JOBS noop jobs on an empty stream, and the group (from id 0) to read them."""
    key = backend.jobs_key("noop")
    left = await raw.xlen(key)
    assert left == 0, f"the previous round left {left} entries in {key}"
    for _ in range(0, E2E_JOBS, FILL_CHUNK):
        await queue.enqueue_many([NOOP] * FILL_CHUNK)
    await backend.ensure_groups(["noop"])


async def _raw_drain(client: aioredis.Redis, key: str, group: str, count: int) -> int:
    """The least a consumer does per job: read a batch, then ack and delete it in one MULTI."""
    done = 0
    while True:
        reply = await client.xreadgroup(group, "raw-consumer", {key: ">"}, count=count)
        if not reply:
            if await client.xlen(key) == 0:
                return done
            continue
        ids = [entry_id for entry_id, _fields in reply[0][1]]
        async with client.pipeline(transaction=True) as pipe:
            pipe.xack(key, group, *ids)
            pipe.xdel(key, *ids)
            await pipe.execute()
        done += len(ids)


#: streamq and its reference side by side at each concurrency, in this order, so that each pair
#: runs back to back (the shared machine's speed drifts over minutes).
CONSUME_RUNS = [(c, side) for c in CONCURRENCIES for side in ("streamq_worker", "raw_loop")]


@pytest.mark.parametrize(
    ("concurrency", "side"), CONSUME_RUNS, ids=[f"{side}-{c}" for c, side in CONSUME_RUNS]
)
def test_consume(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    backend: RedisBackend,
    raw: aioredis.Redis,
    concurrency: int,
    side: str,
) -> None:
    """``streamq_worker``: one Worker in this process runs 20 000 noop jobs (read, decode, check
    args, run, ack+del). ``raw_loop``, the reference: XREADGROUP COUNT c, then XACK + XDEL
    pipelined, until the stream is empty."""
    benchmark.group = f"consume noop c{concurrency}"
    key = backend.jobs_key("noop")
    drained: list[int] = []

    def setup() -> tuple[tuple[Worker | None], dict[str, object]]:
        loop.run_until_complete(_prefill(queue, backend, raw))
        if side == "raw_loop":
            return (None,), {}
        worker = Worker(
            backend,
            handlers.registry,
            ["noop"],
            concurrency=concurrency,
            block=WORKER_BLOCK_S,
        )
        return (worker,), {}

    def drain(worker: Worker | None) -> None:
        if worker is None:
            drained.append(
                loop.run_until_complete(_raw_drain(raw, key, backend.group, concurrency))
            )
        else:
            loop.run_until_complete(worker.run(stop_when_empty=True))
            drained.append(worker.processed)

    benchmark.pedantic(drain, setup=setup, rounds=E2E_ROUNDS, iterations=1)
    if side == "raw_loop":
        rate = _record(benchmark, per_round=E2E_JOBS, unit="jobs", reference=True)
    else:
        rate = _record(benchmark, per_round=E2E_JOBS, unit="jobs", target=TARGET_CONSUME)
    benchmark.extra_info["jobs_per_s"] = round(rate, 1)
    assert drained == [E2E_JOBS] * E2E_ROUNDS
    assert loop.run_until_complete(raw.xlen(key)) == 0
