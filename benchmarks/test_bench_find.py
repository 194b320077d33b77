"""Benchmarks of finding one job by its id (``Queue.job``; not tests, see conftest.py).

Group ``find x100000``: one lookup on a type whose stream holds 100 000 waiting ``launch`` jobs
(bodies of about 300 bytes, as the application enqueues them), with a few more running, waiting
in the schedule and dead:

- an id that is nowhere (``unknown``): the whole walk, the worst case (the stream in calls of
  ``_find.CHUNK`` entries, the schedule, the dead stream, the tail);
- the newest waiting job: found by the last call of the stream walk;
- a running job (the oldest entries are the delivered ones): found by the first call;
- the floor (the reference): a script that walks the same stream in the same chunks with the
  same ``XRANGE`` and looks at nothing, one call per chunk: what reading the entries into Lua
  costs by itself.

Each records, beside the rate, the server's own CPU per lookup (``INFO cpu`` around each timed
round), the number of script calls a lookup made, and the longest single call the server ran
(``SLOWLOG`` with every command logged, read after each round): the figure that says how long
one lookup can hold the server at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.test_bench_core import _record
from benchmarks.test_bench_schedule import ServerCpu
from streamq import Job, Queue
from streamq.backends._base import DeadLetter
from streamq.backends.redis import RedisBackend, _find

ENTRIES = 100_000
ROUNDS = 5
FILL = 1000
LAUNCH = Job(
    type="launch",
    args={
        "provider": "aws",
        "reservation_id": 421337,
        "pubkey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOb6m3c9q0jKxw5Yf7Qb0kS2uZ0n0dJmYV3sZ8q",
        "amount": 3,
        "instance_type": "t3.small",
        "image_id": "ami-0abcdef1234567890",
        "region": "eu-north-1",
    },
    account_id=7,
    request_id="req-4f2a9c",
)


class Stage:
    """The type's keys, filled once per benchmark: ENTRIES waiting, 5 running, 5 scheduled
    (a day away), 5 dead; the ids of the newest waiting job and of a running one."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: Queue) -> None:
        backend = queue.backend

        async def fill() -> tuple[str, str]:
            await backend.ensure_groups(["launch"])
            ids = await queue.enqueue_many([LAUNCH] * 10)
            held = await backend.read(["launch"], "bench-worker", 10, 100)
            letter = DeadLetter("failed 5 times (max_deliveries 5)", "CloudError: x", 5, True)
            for d in held[5:]:
                await backend.dead_letter("launch", "bench-worker", d.entry_id, letter, 100)
            await queue.enqueue_many([LAUNCH] * 5, delay=86_400)
            newest = ""
            for _ in range((ENTRIES - 10) // FILL + 1):
                newest = (await queue.enqueue_many([LAUNCH] * FILL))[-1]
            return ids[0], newest

        self.running, self.newest = loop.run_until_complete(fill())


@pytest.fixture
def stage(loop: asyncio.AbstractEventLoop, backend: RedisBackend) -> Stage:
    """The filled type (its own prefix; emptied with the database after the benchmark)."""
    return Stage(loop, Queue(backend))


class Calls:
    """How many calls of one script, and the longest one, the server saw in a round (SLOWLOG,
    every command logged: ``slowlog-log-slower-than 0``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, raw: aioredis.Redis, sha: str) -> None:
        self._loop, self._raw, self._sha = loop, raw, sha.encode()
        self._started = False
        #: per round (the warm-up round first): calls, and the longest in µs
        self.counts: list[int] = []
        self.longest_us: list[int] = []
        loop.run_until_complete(raw.config_set("slowlog-max-len", 100_000))
        loop.run_until_complete(raw.config_set("slowlog-log-slower-than", 0))

    def round_starts(self) -> None:
        """Forget what was logged before the round."""
        self._loop.run_until_complete(self._raw.slowlog_reset())
        self._started = True

    def round_ended(self) -> None:
        """Count the round's calls of the script and keep the longest (nothing before the
        first round)."""
        if not self._started:
            return
        self._started = False
        rows = self._loop.run_until_complete(self._raw.slowlog_get(100_000))
        durations = [
            int(r["duration"])
            for r in rows
            if r["command"].split(b" ")[:2] == [b"EVALSHA", self._sha]
        ]
        self.counts.append(len(durations))
        self.longest_us.append(max(durations, default=0))

    def restore(self) -> None:
        """Back to the server's defaults."""
        self._loop.run_until_complete(self._raw.config_set("slowlog-log-slower-than", 10_000))
        self._loop.run_until_complete(self._raw.config_set("slowlog-max-len", 128))


#: The SHA1 of find_job.lua, as the backend loads it (nothing is put in front of it).
FIND_SHA = hashlib.sha1(
    (Path(_find.__file__).parent / "find_job.lua").read_bytes(), usedforsecurity=False
).hexdigest()


def _bench(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    lookup: Callable[[], Awaitable[Any]],
    *,
    sha: str = FIND_SHA,
    reference: bool = False,
) -> None:
    benchmark.group = f"find x{ENTRIES}"
    cpu, calls = ServerCpu(loop, raw), Calls(loop, raw, sha)

    def setup() -> tuple[tuple[()], dict[str, object]]:
        cpu.round_ended()
        calls.round_ended()
        calls.round_starts()
        cpu.round_starts()
        return (), {}

    try:
        benchmark.pedantic(
            lambda: loop.run_until_complete(lookup()), setup=setup, rounds=ROUNDS, warmup_rounds=1
        )
        cpu.round_ended()
        calls.round_ended()
    finally:
        calls.restore()
    _record(benchmark, per_round=1, unit="lookups", reference=reference)
    per_lookup = [c * 1e6 for c in cpu.seconds[1:]]  # the warm-up round left out
    benchmark.extra_info["server_cpu"] = {
        "us_per_op": round(statistics.median(per_lookup), 3),
        "us_per_op_per_round": [round(c, 3) for c in per_lookup],
    }
    benchmark.extra_info["script_calls"] = calls.counts[-1]
    benchmark.extra_info["longest_call_us"] = max(calls.longest_us[1:])
    benchmark.extra_info["longest_call_us_per_round"] = calls.longest_us[1:]
    assert len(per_lookup) == len(calls.counts[1:]) == ROUNDS
    # Every timed lookup made the same calls (the warm-up has one more: NOSCRIPT, then loaded).
    assert len(set(calls.counts[1:])) == 1, calls.counts


def test_find_unknown(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    queue: Queue,
    stage: Stage,
) -> None:
    """An id that is nowhere: every call of the walk, then the schedule, dead stream, tail."""

    async def lookup() -> None:
        assert (await queue.job("launch", "no-such-job")).state == "unknown"

    _bench(benchmark, loop, raw, lookup)


def test_find_newest_waiting(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    queue: Queue,
    stage: Stage,
) -> None:
    """The newest waiting job: found by the last call of the stream walk."""

    async def lookup() -> None:
        assert (await queue.job("launch", stage.newest)).state == "waiting"

    _bench(benchmark, loop, raw, lookup)


def test_find_running(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    queue: Queue,
    stage: Stage,
) -> None:
    """A running job (delivered entries are the oldest): found by the first call."""

    async def lookup() -> None:
        assert (await queue.job("launch", stage.running)).state == "running"

    _bench(benchmark, loop, raw, lookup)


#: The floor's script: the same XRANGE chunk by chunk, the entries looked at by nobody.
FLOOR_LUA = """
local rows = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
if #rows < tonumber(ARGV[2]) then
  return ''
end
return '(' .. rows[#rows][1]
"""


def test_find_floor_walk(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    raw: aioredis.Redis,
    backend: RedisBackend,
    stage: Stage,
) -> None:
    """Floor: XRANGE over the whole stream in the same chunks, in a script that only returns
    the next start."""
    floor = raw.register_script(FLOOR_LUA)
    jobs = backend.jobs_key("launch")

    async def walk() -> None:
        start: bytes | str = "-"
        while start := await floor(keys=[jobs], args=[start, _find.CHUNK]):
            pass

    _bench(benchmark, loop, raw, walk, sha=floor.sha, reference=True)
