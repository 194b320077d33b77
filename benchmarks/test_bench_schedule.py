"""Benchmarks of delayed jobs (not tests; see conftest.py).

Groups:

- ``enqueue_many x20000 delayed``: 20 000 noop jobs through ``Queue.enqueue_many`` in calls of
  1000, with ``delay=0.5`` (into the schedule, ``schedule.lua``) beside the same jobs for now
  (into the stream, ``enqueue.lua``): what a delay costs the producer;
- ``move_due x20000``: moving 20 000 due jobs from the schedule into the stream with
  ``move_due`` (``move_due.lua``, at most the worker's ``MOVE_LIMIT`` a call), as a worker's
  mover does, beside the floor: the bare commands of the move in a trivial script (the same
  ``ZRANGEBYSCORE ... LIMIT``, an ``XADD`` of each member as it is, in one field, so nothing is
  unpacked, and one ``ZREM``; the reference), and the same commands sent by the client (an
  ``XADD`` of each job's fields and the ``ZREM`` in one plain pipeline). Each records, beside its
  rate, the server's own CPU per job moved (``INFO cpu`` before and after each timed round, the
  fills left out): the move's cost per job on the server as a ratio to the floor's.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.test_bench_core import NOOP, _record
from streamq import Queue, _codec
from streamq._worker.scheduling import MOVE_LIMIT
from streamq.backends.redis import RedisBackend
from streamq.backends.redis._schedule import unpack_fields

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


class ServerCpu:
    """The benchmark server's CPU time (``INFO cpu``: ``used_cpu_sys + used_cpu_user`` of the
    server process) spent in each round: read at the end of a round's setup and again at the
    start of the next setup (and once after the last round), so the untimed fills are left out."""

    def __init__(self, loop: asyncio.AbstractEventLoop, raw: aioredis.Redis) -> None:
        self._loop = loop
        self._raw = raw
        self._start: float | None = None
        #: Seconds of server CPU of each round, the warm-up round first.
        self.seconds: list[float] = []

    def _read(self) -> float:
        info = self._loop.run_until_complete(self._raw.info("cpu"))
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def round_starts(self) -> None:
        """Note the server's CPU time as a round is about to start."""
        self._start = self._read()

    def round_ended(self) -> None:
        """Keep the CPU time spent since the round started (nothing before the first)."""
        if self._start is not None:
            self.seconds.append(self._read() - self._start)
            self._start = None


def _bench_move(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    backend: RedisBackend,
    move_all: Callable[[], Awaitable[object]],
    *,
    reference: bool = False,
) -> None:
    """Time ``move_all`` over 20 000 due jobs put in the schedule untimed before each round (by
    ``schedule_many``, so every side moves the same members) and record the server's CPU per
    job moved beside the rate."""
    benchmark.group = f"move_due x{JOBS}"
    items = [("noop", _codec.encode(NOOP, str(i))) for i in range(JOBS)]
    (s,) = backend.streams("noop")
    cpu = ServerCpu(loop, raw)

    def setup() -> tuple[tuple[()], dict[str, object]]:
        cpu.round_ended()

        async def fill() -> None:
            await raw.delete(s.jobs)
            for i in range(0, JOBS, CHUNK):
                await backend.schedule_many(items[i : i + CHUNK], 0)

        loop.run_until_complete(fill())
        cpu.round_starts()
        return (), {}

    benchmark.pedantic(
        lambda: loop.run_until_complete(move_all()), setup=setup, rounds=ROUNDS, warmup_rounds=1
    )
    cpu.round_ended()
    _record(benchmark, per_round=JOBS, unit="jobs", reference=reference)
    per_job = [c / JOBS * 1e6 for c in cpu.seconds[1:]]  # the warm-up round left out
    benchmark.extra_info["server_cpu"] = {
        "us_per_op": round(statistics.median(per_job), 3),
        "us_per_op_per_round": [round(c, 3) for c in per_job],
    }
    assert len(per_job) == ROUNDS
    assert loop.run_until_complete(raw.xlen(s.jobs)) == JOBS
    assert loop.run_until_complete(raw.zcard(s.scheduled)) == 0


def test_move_due(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    backend: RedisBackend,
) -> None:
    """move_due until the schedule is empty: 20 000 due jobs, MOVE_LIMIT per script call."""

    async def move_all() -> None:
        while await backend.move_due(["noop"], MOVE_LIMIT):
            pass

    _bench_move(benchmark, loop, raw, backend, move_all)


#: The floor's script: the commands move_due.lua runs, without unpacking the members (each is
#: appended as it is, one field).
FLOOR_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'm', member)
end
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
return #due
"""


def test_move_due_floor_script(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    backend: RedisBackend,
) -> None:
    """Floor: the bare commands in a trivial script, MOVE_LIMIT a call: ZRANGEBYSCORE LIMIT,
    an XADD of each member as it is (one field), one ZREM."""
    (s,) = backend.streams("noop")
    floor = raw.register_script(FLOOR_LUA)

    async def move_all() -> None:
        while await floor(keys=[s.scheduled, s.jobs], args=[MOVE_LIMIT]):
            pass

    _bench_move(benchmark, loop, raw, backend, move_all, reference=True)


def test_move_due_client_pipeline(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    backend: RedisBackend,
) -> None:
    """The same commands from the client: ZRANGEBYSCORE LIMIT, then one plain pipeline of an
    XADD of each job's fields (unpacked by the client) and one ZREM."""
    (s,) = backend.streams("noop")

    async def move_all() -> None:
        while True:
            t = await raw.time()
            now = t[0] * 1000 + t[1] // 1000
            due = await raw.zrangebyscore(s.scheduled, "-inf", now, start=0, num=MOVE_LIMIT)
            if not due:
                return
            pipe = raw.pipeline(transaction=False)
            for member in due:
                pipe.xadd(s.jobs, unpack_fields(member))  # type: ignore[arg-type]
            pipe.zrem(s.scheduled, *due)
            await pipe.execute()

    _bench_move(benchmark, loop, raw, backend, move_all)
