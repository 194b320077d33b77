"""SAQ: ``Queue.enqueue`` gathered in chunks of 1000 (SAQ has no batch enqueue); one ``Worker``.

SAQ's defaults throughout: ``RedisQueue`` from ``Queue.from_url`` (json, at most 20 concurrent
operations per queue object: ``max_concurrent_ops``), jobs with a 10 s timeout and results kept
600 s, the worker's ``dequeue_timeout=0`` (BLMOVE blocks until a job arrives) and upkeep timers.
``Queue.batch()`` is not a batched enqueue (it only aborts the jobs enqueued in its block if the
block raises), and ``Queue.map`` gathers ``enqueue`` calls the same way, then waits for results.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from saq import Queue, Worker

from benchmarks.peers._child import Tally, settle

CHUNK = 1000


@asynccontextmanager
async def _queue(url: str) -> AsyncIterator[Any]:
    queue = Queue.from_url(url)
    await queue.connect()
    try:
        yield queue
    finally:
        await queue.disconnect()


@asynccontextmanager
async def producer(url: str) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    async with _queue(url) as queue:

        async def send(count: int) -> None:
            for start in range(0, count, CHUNK):
                n = min(CHUNK, count - start)
                jobs = await asyncio.gather(*(queue.enqueue("noop") for _ in range(n)))
                if None in jobs:  # None: a job with the same key was already queued
                    raise RuntimeError(f"SAQ refused {jobs.count(None)} of {n} jobs")

        yield send


async def consume(url: str, tally: Tally, *, concurrency: int, limit_s: float) -> dict[str, Any]:
    """``Worker.start`` until the tally; ``Worker.stop`` once SAQ counts every job complete.

    ``queue.complete`` counts a job after its final status is written. ``stop`` cancels the
    processing tasks (the default grace period is none): by then they only wait in BLMOVE.
    """

    async def noop(ctx: Any) -> None:
        tally.tick()

    async with _queue(url) as queue:
        worker = Worker(queue, functions=[("noop", noop)], concurrency=concurrency)
        tally.start()
        run = asyncio.ensure_future(worker.start())
        if await tally.wait(run, limit_s):
            await settle(lambda: queue.complete >= tally.target or run.done())
        await worker.stop()
        await run
        return {"completed": queue.complete, "failed": queue.failed, "retried": queue.retried}


async def leftover(url: str) -> dict[str, Any]:
    """``Queue.count``: queued, active, and incomplete (queued, active or scheduled) jobs."""
    async with _queue(url) as queue:
        return {
            "queued": await queue.count("queued"),
            "active": await queue.count("active"),
            "incomplete": await queue.count("incomplete"),
        }
