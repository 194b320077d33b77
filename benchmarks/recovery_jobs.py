"""The job type of the recovery benchmark's workers: ``--handlers benchmarks.recovery_jobs``.

``hold`` notes when it starts, then sleeps for ``args.sleep`` seconds: long enough to still be
running when its worker is SIGKILLed. Each start is appended to the list
``{STREAMQ_PREFIX}:bench:started`` as ``"SEQ PID TIME_NS"`` (``time.time_ns()`` at the
handler's first line, the worker's process id), through a client of its own on
``STREAMQ_REDIS_URL``, so the benchmark sees which process started which job, and when.

The same mechanism as the integration tests' ``tests/helpers/itjobs.py``: the benchmark starts
``streamq consume hold --handlers benchmarks.recovery_jobs`` with the repository root on
``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from streamq import Job, Registry

_client: aioredis.Redis | None = None


def started_key(prefix: str) -> str:
    """The list the handler appends its starts to, under the worker's key prefix."""
    return f"{prefix}:bench:started"


def _redis() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["STREAMQ_REDIS_URL"])
    return _client


@dataclass(frozen=True, slots=True)
class HoldArgs:
    """Which job of the round this is, and how long it runs once started."""

    seq: int
    sleep: float


async def hold(job: Job[Any]) -> None:
    """Record the start (seq, pid, time), then sleep."""
    now = time.time_ns()
    entry = f"{job.args.seq} {os.getpid()} {now}"
    await _redis().rpush(started_key(os.environ["STREAMQ_PREFIX"]), entry)
    await asyncio.sleep(job.args.sleep)


registry = Registry()
registry.register("hold", HoldArgs, hold)
