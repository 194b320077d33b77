"""Job types for the integration tests' worker subprocesses (``--handlers itjobs``).

Every execution is recorded in Redis, so the tests count starts and finishes per job id across
processes:
- ``sleepy``: ``{prefix}:{it}:started`` and ``{prefix}:{it}:done`` are hashes job_id -> count
  (see :func:`record_key`).
- ``flaky``: fails while the key ``{prefix}:flaky:fail`` exists and records each success in
  ``{prefix}:flaky:done``, so a test can dead-letter a job, "fix" it by deleting the key, and
  see the retried job succeed under its own id.
- ``stepped``: three steps, each run counted in ``{prefix}:stepped:<step>`` (job_id -> count);
  step 1 saves its process id as the checkpoint, step 2 waits while ``{prefix}:stepped:hold``
  exists, and step 3 writes what its context says (checkpoint, first step, deliveries, its
  process id) as JSON in ``{prefix}:stepped:seen``.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from streamq import Job, JobContext, Registry
from streamq._urls import cluster_flag

_client: aioredis.Redis | aioredis.RedisCluster | None = None


def _redis() -> aioredis.Redis | aioredis.RedisCluster:
    """One client per worker process: the cluster client for a ``?cluster=true`` URL (an option
    streamq reads; redis-py gets the URL without it)."""
    global _client
    if _client is None:
        address, cluster = cluster_flag(os.environ["STREAMQ_REDIS_URL"])
        if cluster:
            _client = aioredis.RedisCluster.from_url(address)
        else:
            _client = aioredis.Redis.from_url(address)
    return _client


def record_key(prefix: str, what: str) -> str:
    """The hash where ``sleepy`` records its starts or finishes (``what``: started or done).

    The hash tag ``{it}`` puts both on one cluster slot, known in advance, so a failover test
    can spare the master that holds the records it counts.
    """
    return f"{prefix}:{{it}}:{what}"


def _key(what: str, space: str) -> str:
    return f"{os.environ['STREAMQ_PREFIX']}:{space}:{what}"


@dataclass(frozen=True)
class SleepyArgs:
    """Sleep this long between recording the start and the finish."""

    sleep: float = 0.0


async def sleepy(job: Job[Any]) -> None:
    """Record the start, sleep, record the finish."""
    prefix = os.environ["STREAMQ_PREFIX"]
    await _redis().hincrby(record_key(prefix, "started"), job.id or "", 1)
    await asyncio.sleep(job.args.sleep)
    await _redis().hincrby(record_key(prefix, "done"), job.id or "", 1)


class FlakyError(Exception):
    """The failure a ``flaky`` job raises while its fail key exists."""


@dataclass(frozen=True)
class FlakyArgs:
    """No arguments: whether it fails is decided by the fail key."""


async def flaky(job: Job[Any]) -> None:
    """Fail while the fail key exists; otherwise record the success."""
    if await _redis().exists(_key("fail", "flaky")):
        raise FlakyError("flaky is told to fail")
    await _redis().hincrby(_key("done", "flaky"), job.id or "", 1)


@dataclass(frozen=True)
class SteppedArgs:
    """No arguments."""


async def stepped_one(job: Job[Any], ctx: JobContext[Any]) -> None:
    """Count the run; save this process's id for the later steps."""
    await _redis().hincrby(_key("one", "stepped"), job.id or "", 1)
    ctx.save({"pid": os.getpid()})


async def stepped_two(job: Job[Any]) -> None:
    """Count the start; wait while the hold key exists; count the finish."""
    await _redis().hincrby(_key("two_started", "stepped"), job.id or "", 1)
    # Polled: the hold is a key another process deletes (no event to wait on across them).
    for _ in range(6000):
        if not await _redis().exists(_key("hold", "stepped")):
            break
        await asyncio.sleep(0.05)
    await _redis().hincrby(_key("two_done", "stepped"), job.id or "", 1)


async def stepped_three(job: Job[Any], ctx: JobContext[Any]) -> None:
    """Count the run and say what the context held."""
    await _redis().hincrby(_key("three", "stepped"), job.id or "", 1)
    seen = {
        "checkpoint": ctx.checkpoint,
        "first_step": ctx.first_step,
        "deliveries": ctx.deliveries,
        "pid": os.getpid(),
    }
    await _redis().hset(_key("seen", "stepped"), job.id or "", json.dumps(seen))


registry = Registry()
registry.register("sleepy", SleepyArgs, sleepy)
registry.register("flaky", FlakyArgs, flaky)
registry.register("stepped", SteppedArgs, stepped_one, stepped_two, stepped_three)
