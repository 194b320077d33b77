"""streamq: ``Queue.enqueue_many`` in chunks of 1000; one ``Worker`` at concurrency C.

The job type is the application's ``noop`` (``handlers.noop``: its args class, settings and
step), with the step wrapped so that each run also ticks the tally, the one thing every peer's
handler does. Jobs are ``Job(type="noop", args=NoopArgs())``, as in benchmarks/test_bench_core.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import handlers
from benchmarks.peers._child import Tally, settle
from handlers import noop
from handlers.noop import NoopArgs
from streamq import Job, Queue, Registry, Worker
from streamq.backends.redis import RedisBackend

CHUNK = 1000
NOOP = Job(type="noop", args=NoopArgs())
#: The worker's read block (default 1 s). It does not bound throughput: reads block only when
#: no entry is waiting, which during the drain happens only after the last one was delivered.
#: It bounds how long ``stop()`` waits for the read in progress, as in test_bench_core.py.
WORKER_BLOCK_S = 0.01


@asynccontextmanager
async def producer(url: str) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """A queue that checks args against the application's registry, as an app builds it."""
    async with Queue(RedisBackend(url), registry=handlers.registry) as queue:

        async def send(count: int) -> None:
            for start in range(0, count, CHUNK):
                await queue.enqueue_many([NOOP] * min(CHUNK, count - start))

        yield send


def _counting_registry(tally: Tally) -> Registry:
    (step,) = noop.JOB_TYPE.steps

    async def counted(job: Job[Any]) -> None:
        await step(job)  # type: ignore[misc]
        tally.tick()

    return Registry([dataclasses.replace(noop.JOB_TYPE, steps=(counted,))])


async def consume(url: str, tally: Tally, *, concurrency: int, limit_s: float) -> dict[str, Any]:
    """One worker until the tally is reached; then it acks what it ran and stops."""
    backend = RedisBackend(url)
    try:
        worker = Worker(
            backend,
            _counting_registry(tally),
            ["noop"],
            concurrency=concurrency,
            block=WORKER_BLOCK_S,
        )
        tally.start()
        run = asyncio.ensure_future(worker.run())
        if await tally.wait(run, limit_s):
            # processed counts acked jobs: every job that ran is acked before the stop.
            await settle(lambda: worker.processed >= tally.target or run.done())
        worker.stop()
        await run
        return {"completed": worker.processed}
    finally:
        await backend.aclose()


async def leftover(url: str) -> dict[str, Any]:
    """``Queue.stats``: entries not yet delivered, in the PEL, and dead-lettered."""
    async with Queue(RedisBackend(url)) as queue:
        (stats,) = await queue.stats(["noop"])
    return {
        "queued": stats.waiting,
        "in_flight": stats.in_flight,
        "dead": stats.dead,
        "info_processed": stats.processed,
    }
