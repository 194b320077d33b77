"""Job types with flow control for the worker subprocesses of the flow tests (``--handlers
flowjobs``), docs/flow-control.md.

- ``flowed``: at most 2 at once per ``account_id`` (``Limit``). Each run records its start and
  its end, as JSON ``{"id", "account", "pid", "t"}`` (``t``: the host's wall clock, seconds),
  pushed on the lists ``{prefix}:{flow}:starts`` and ``{prefix}:{flow}:ends``
  (:func:`runs_key`), then sleeps ``args.sleep`` between the two (with ``args.hold``, first
  waits while the key ``{prefix}:{flow}:hold`` exists); so a test can rebuild every
  run's interval, across processes, and count how many of one account overlapped.
- ``rated``: the same limit and a rate of 5 a second per ``args.provider`` (for the start-up
  line); its runs record nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from streamq import Job, Limit, Rate, Registry
from streamq._urls import cluster_flag

_client: aioredis.Redis | aioredis.RedisCluster | None = None


def _redis() -> aioredis.Redis | aioredis.RedisCluster:
    global _client
    if _client is None:
        address, cluster = cluster_flag(os.environ["STREAMQ_REDIS_URL"])
        cls = aioredis.RedisCluster if cluster else aioredis.Redis
        _client = cls.from_url(address)
    return _client


def runs_key(prefix: str, what: str) -> str:
    """The list where ``flowed`` records its starts or ends (``what``: starts or ends)."""
    return f"{prefix}:{{flow}}:{what}"


@dataclass(frozen=True)
class FlowArgs:
    """Sleep this long between recording the start and the end."""

    sleep: float = 0.0
    #: wait first while the key ``{prefix}:{flow}:hold`` exists (polled, at most a minute)
    hold: bool = False
    provider: str = "aws"


async def _record(job: Job[Any], what: str) -> None:
    event = {"id": job.id, "account": job.account_id, "pid": os.getpid(), "t": time.time()}
    await _redis().rpush(runs_key(os.environ["STREAMQ_PREFIX"], what), json.dumps(event))


async def flowed(job: Job[Any]) -> None:
    """Record the start, sleep, record the end."""
    await _record(job, "starts")
    hold = runs_key(os.environ["STREAMQ_PREFIX"], "hold")
    # Polled: the hold is a key the test deletes (no event to wait on across processes).
    for _ in range(1200 if job.args.hold else 0):
        if not await _redis().exists(hold):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(job.args.sleep)
    await _record(job, "ends")


async def rated(job: Job[Any]) -> None:
    """Sleep."""
    await asyncio.sleep(job.args.sleep)


LIMIT = Limit(key="account_id", concurrency=2)

registry = Registry()
registry.register("flowed", FlowArgs, flowed, limit=LIMIT)
registry.register("rated", FlowArgs, rated, limit=LIMIT, rate=Rate(5, key="args.provider"))
