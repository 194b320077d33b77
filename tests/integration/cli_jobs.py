"""A job type for the CLI tests' worker subprocesses (``--handlers cli_jobs``).

``flaky`` fails while the Redis key ``{prefix}:flaky:fail`` exists, and records each success in
the hash ``{prefix}:flaky:done`` (job id -> count), so a test can dead-letter a job, "fix" it by
deleting the key, and see the retried job succeed under its own id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from streamq import Job, Registry

_client: aioredis.Redis | None = None


class FlakyError(Exception):
    """The failure a ``flaky`` job raises while its fail key exists."""


def _redis() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["STREAMQ_REDIS_URL"])
    return _client


def _key(what: str) -> str:
    return f"{os.environ['STREAMQ_PREFIX']}:flaky:{what}"


@dataclass(frozen=True)
class FlakyArgs:
    """No arguments: whether it fails is decided by the fail key."""


async def flaky(job: Job[Any]) -> None:
    """Fail while the fail key exists; otherwise record the success."""
    if await _redis().exists(_key("fail")):
        raise FlakyError("flaky is told to fail")
    await _redis().hincrby(_key("done"), job.id or "", 1)


registry = Registry()
registry.register("flaky", FlakyArgs, flaky)
