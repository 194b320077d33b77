"""What the Redis server spends per job: its own CPU (``INFO cpu``) for streamq's enqueue and
consume, each beside the bare commands that do the same work (the floor), in the same run.

Halves (each round runs every streamq side and its floor on the session's server, the order
flipping each round, so the shared machine's drift falls on both):

- ``enqueue_many``: ``Queue.enqueue_many`` of ``JOBS`` noop jobs in calls of ``CHUNK``
  (one MULTI/EXEC of plain ``XADD``s on one server); floor: the same fields by ``XADD``,
  ``CHUNK`` to a plain pipeline;
- ``enqueue x1``: ``Queue.enqueue`` of ``SINGLE_JOBS`` jobs, one call each; floor: one ``XADD``
  per round trip;
- ``consume``: a ``Worker`` with default settings (concurrency 32, finished-job records on:
  ``keep_done`` 24 h; only ``block`` is short, as in every drain benchmark, so the last read does
  not wait a second) draining the ``JOBS`` that ``enqueue_many`` put in; floor: ``XREADGROUP
  COUNT 16`` (what the worker asks per read: half of its 32 slots) and the ``XACK`` + ``XDEL``
  of the previous batch, in one exchange per batch (the worker's acks travel with its next
  read, one round trip per batch too);
- ``consume keep_done=0``: the same drain without records (``ack.lua``), against the same
  floor: what the records add;
- ``total``: ``enqueue_many`` + ``consume`` against their floors' sum.

The server's idle cost (its cron, the clients' timers) is taken out: before each round an idle
window of ``IDLE_S`` gives the server's CPU per second when nothing is sent, and each measured
window is charged that rate times its wall time. The figure per job is the median over the
rounds; the ratio is that of each round's pair (median and range). ``INFO commandstats`` over the
streamq sides (``CONFIG RESETSTAT`` before each) gives the calls and microseconds per job of each
command, the scripts' own (``evalsha``: including the commands they call) and those their calls
make (counted again under their own names). All of it goes into
``extra_info["server_cost"]``; ``summarize.py`` prints it (``format_server_cost``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

import handlers
from benchmarks.test_bench_core import NOOP, WORKER_BLOCK_S, _noop_fields
from streamq import Queue, Worker
from streamq.backends.redis import RedisBackend

JOBS = 20_000
CHUNK = 1000
SINGLE_JOBS = 2_000
ROUNDS = 5
IDLE_S = 1.0
#: The issue's target: streamq's server CPU per job at most this multiple of the floor's.
TARGET = 1.4
#: The worker's default concurrency, and what it asks per read (half of its free slots).
CONCURRENCY = 32
BATCH = CONCURRENCY // 2
HALVES = ("enqueue_many", "enqueue x1", "consume", "consume keep_done=0")


class Meter:
    """The server's CPU time (``used_cpu_user + used_cpu_sys``) over windows, less its idle
    rate times each window's wall time."""

    def __init__(self, raw: aioredis.Redis) -> None:
        self._raw = raw
        #: server CPU seconds per wall second with no client sending anything
        self.idle_rate = 0.0

    async def cpu(self) -> float:
        info = await self._raw.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    async def measure_idle(self) -> float:
        """Note the idle rate over ``IDLE_S`` of silence; returns it (CPU s per s)."""
        start, t0 = await self.cpu(), time.perf_counter()
        await asyncio.sleep(IDLE_S)
        self.idle_rate = (await self.cpu() - start) / (time.perf_counter() - t0)
        return self.idle_rate

    async def spent(self, work: Callable[[], Awaitable[object]]) -> float:
        """Server CPU seconds that ``work`` cost, its idle share taken out."""
        start, t0 = await self.cpu(), time.perf_counter()
        await work()
        wall = time.perf_counter() - t0
        return await self.cpu() - start - self.idle_rate * wall


async def _commandstats(raw: aioredis.Redis) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` as command -> (calls, usec)."""
    stats = await raw.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}


def _median_range(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "per_round": [round(v, 3) for v in values],
    }


def test_server_cpu_per_job(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
    raw: aioredis.Redis,
    backend: RedisBackend,
    prefix: str,
) -> None:
    """streamq's enqueue and consume beside their bare commands: server CPU per job."""
    benchmark.group = "server CPU per job"
    meter = Meter(raw)
    key = backend.jobs_key("noop")
    floor_key = f"{prefix}:{{floor}}:jobs"
    single_key = f"{prefix}:{{single}}:jobs"
    fields = _noop_fields()
    per_job: dict[str, dict[str, list[float]]] = {h: {"streamq": [], "floor": []} for h in HALVES}
    commands: dict[str, dict[str, list[int]]] = {h: {} for h in HALVES}
    idle: list[float] = []
    processed: list[int] = []

    async def streamq_enqueue_many() -> None:
        for _ in range(0, JOBS, CHUNK):
            await queue.enqueue_many([NOOP] * CHUNK)

    async def floor_enqueue_many() -> None:
        for _ in range(0, JOBS, CHUNK):
            async with raw.pipeline(transaction=False) as pipe:
                for _ in range(CHUNK):
                    pipe.xadd(floor_key, fields)  # type: ignore[arg-type]
                await pipe.execute()

    async def streamq_enqueue_one() -> None:
        for _ in range(SINGLE_JOBS):
            await queue.enqueue(NOOP)

    async def floor_enqueue_one() -> None:
        for _ in range(SINGLE_JOBS):
            await raw.xadd(single_key, fields)  # type: ignore[arg-type]

    def streamq_consume(keep_done: float | None) -> Callable[[], Awaitable[None]]:
        async def drain() -> None:
            extra = {} if keep_done is None else {"keep_done": keep_done}
            worker = Worker(backend, handlers.registry, ["noop"], block=WORKER_BLOCK_S, **extra)
            assert worker.concurrency == CONCURRENCY
            await worker.run(stop_when_empty=True)
            processed.append(worker.processed)

        return drain

    async def floor_consume() -> None:
        done: list[bytes] = []
        while True:
            async with raw.pipeline(transaction=False) as pipe:
                if done:
                    pipe.xack(floor_key, "floor", *done)
                    pipe.xdel(floor_key, *done)
                pipe.xreadgroup("floor", "c", {floor_key: ">"}, count=BATCH)
                replies = await pipe.execute()
            if not replies[-1]:
                return
            done = [entry_id for entry_id, _ in replies[-1][0][1]]

    async def fill_floor() -> None:
        await raw.delete(floor_key)
        await floor_enqueue_many()
        await raw.xgroup_create(floor_key, "floor", "0")

    async def measured(half: str, side: str, work: Callable[[], Awaitable[object]]) -> None:
        jobs = SINGLE_JOBS if half == "enqueue x1" else JOBS
        if side == "streamq":
            await raw.config_resetstat()
        seconds = await meter.spent(work)
        per_job[half][side].append(seconds / jobs * 1e6)
        if side == "streamq":
            for name, (calls, usec) in (await _commandstats(raw)).items():
                if name in ("info", "config|resetstat"):
                    continue  # the measurement's own
                got = commands[half].setdefault(name, [0, 0, 0])
                got[0] += calls
                got[1] += usec
                got[2] += jobs

    async def one_round(flip: bool) -> None:
        def pair(streamq: Any, floor: Any) -> list[tuple[str, Any]]:
            sides = [("streamq", streamq), ("floor", floor)]
            return sides[::-1] if flip else sides

        idle.append(await meter.measure_idle() * 1e6)
        await backend.ensure_groups(["noop"])
        for side, work in pair(streamq_enqueue_many, floor_enqueue_many):
            if side == "floor":
                await raw.delete(floor_key)
            await measured("enqueue_many", side, work)
        await raw.xgroup_create(floor_key, "floor", "0")
        for side, work in pair(streamq_enqueue_one, floor_enqueue_one):
            await measured("enqueue x1", side, work)
        await raw.delete(single_key)
        # 20 000 of the jobs in the stream stay for the drain (all alike: which go is no matter)
        await raw.xtrim(key, maxlen=JOBS, approximate=False)
        for half, keep_done in (("consume", None), ("consume keep_done=0", 0.0)):
            if half != "consume":  # the first drain consumed enqueue_many's jobs; fill again
                await streamq_enqueue_many()
                await fill_floor()
            for side, work in pair(streamq_consume(keep_done), floor_consume):
                await measured(half, side, work)
            assert await raw.xlen(key) == 0
            assert await raw.xlen(floor_key) == 0

    def run() -> None:
        for r in range(ROUNDS):
            loop.run_until_complete(one_round(flip=bool(r % 2)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert processed == [JOBS] * (2 * ROUNDS)
    summary = _summary(per_job, commands, idle)
    benchmark.extra_info.update(ops_per_round=JOBS, unit="jobs", server_cost=summary)


def _summary(
    per_job: dict[str, dict[str, list[float]]],
    commands: dict[str, dict[str, list[int]]],
    idle: list[float],
) -> dict[str, Any]:
    halves: dict[str, Any] = {}
    for half, sides in per_job.items():
        ratios = [s / f for s, f in zip(sides["streamq"], sides["floor"], strict=True)]
        halves[half] = {
            "streamq_us": _median_range(sides["streamq"]),
            "floor_us": _median_range(sides["floor"]),
            "ratio": _median_range(ratios),
            "commands": {
                name: {
                    "calls_per_job": round(calls / jobs, 4),
                    "us_per_job": round(usec / jobs, 3),
                }
                for name, (calls, usec, jobs) in sorted(
                    commands[half].items(), key=lambda kv: -kv[1][1]
                )
            },
        }
    s, f = per_job["enqueue_many"], per_job["consume"]
    total_s = [a + b for a, b in zip(s["streamq"], f["streamq"], strict=True)]
    total_f = [a + b for a, b in zip(s["floor"], f["floor"], strict=True)]
    halves["total"] = {
        "streamq_us": _median_range(total_s),
        "floor_us": _median_range(total_f),
        "ratio": _median_range([a / b for a, b in zip(total_s, total_f, strict=True)]),
    }
    return {
        "jobs": JOBS,
        "single_jobs": SINGLE_JOBS,
        "chunk": CHUNK,
        "batch": BATCH,
        "rounds": ROUNDS,
        "idle_us_per_s": _median_range(idle),
        "target_at_most": TARGET,
        "halves": halves,
    }
