"""Job types for the integration tests' worker subprocesses (``--handlers itjobs``).

Every execution is recorded in Redis, so the tests count starts and finishes per job id across
processes:
- ``sleepy``: ``{prefix}:it:started`` and ``{prefix}:it:done`` are hashes job_id -> count.
- ``flaky``: fails while the key ``{prefix}:flaky:fail`` exists and records each success in
  ``{prefix}:flaky:done``, so a test can dead-letter a job, "fix" it by deleting the key, and
  see the retried job succeed under its own id.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from streamq import Job, Registry

_client: aioredis.Redis | None = None


def _redis() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["STREAMQ_REDIS_URL"])
    return _client


def _key(what: str, space: str = "it") -> str:
    return f"{os.environ['STREAMQ_PREFIX']}:{space}:{what}"


@dataclass(frozen=True)
class SleepyArgs:
    """Sleep this long between recording the start and the finish."""

    sleep: float = 0.0


async def sleepy(job: Job[Any]) -> None:
    """Record the start, sleep, record the finish."""
    await _redis().hincrby(_key("started"), job.id or "", 1)
    await asyncio.sleep(job.args.sleep)
    await _redis().hincrby(_key("done"), job.id or "", 1)


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


registry = Registry()
registry.register("sleepy", SleepyArgs, sleepy)
registry.register("flaky", FlakyArgs, flaky)
