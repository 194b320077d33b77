"""Helpers for unit-testing job handlers: run jobs through a real Worker on the memory backend.

    from streamq.testing import run_jobs

    async def test_resize_succeeds():
        result = await run_jobs(registry, [Job(type="resize", args={"image_id": "a", "width": 1})])
        assert result.stats["resize"].processed == 1
        assert result.dead == []

Everything the worker does in production happens here too (validation, steps in order, retries
with backoff, dead-lettering, timeouts), only with short intervals so tests stay fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streamq._inspect import TypeStats
from streamq._job import Job
from streamq._producer import Queue
from streamq._registry import Registry
from streamq._worker import Worker
from streamq.backends._base import DeadEntry
from streamq.backends.memory import MemoryBackend

#: Worker settings that keep retries quick in tests; any of them can be overridden.
FAST = {"claim_after": 1.0, "heartbeat": 0.2, "retry_base": 0.01, "block": 0.02}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of the jobs: stats per type and the dead letters of every type."""

    stats: dict[str, TypeStats]
    dead: list[DeadEntry]


async def run_jobs(
    registry: Registry,
    jobs: Iterable[Job[Any]],
    *,
    within: float = 30.0,
    **worker_settings: Any,
) -> Outcome:
    """Enqueue ``jobs`` on a fresh memory backend and run a worker until nothing is left.

    Raises TimeoutError if the jobs are not done within ``within`` seconds.
    """
    backend = MemoryBackend()
    queue = Queue(backend, registry=registry)
    jobs = list(jobs)
    await queue.enqueue_many(jobs)
    types = sorted({j.type for j in jobs}) or registry.names()
    worker = Worker(backend, registry, types, **(FAST | worker_settings))
    async with asyncio.timeout(within):
        await worker.run(stop_when_empty=True)
    stats = {s.type: s for s in await queue.stats(types)}
    dead = [d for t in types for d in await queue.dead(t, limit=1_000_000)]
    return Outcome(stats=stats, dead=dead)
