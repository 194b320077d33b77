"""Pause and resume: a job type's worker leaves its jobs waiting while it is paused, the job
running at the pause finishes, and the resume starts the rest.

Run it with a server (STREAMQ_REDIS_URL, or the embedded one) and a key prefix of its own
(STREAMQ_PREFIX): it prints what happens, step by step, in about three seconds.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

import structlog

import streamq


@dataclass(frozen=True)
class Launch:
    """The instances a launch job starts."""

    reservation_id: int


async def launch(job: streamq.Job[Launch]) -> None:
    """The job's one step: a slow cloud call."""
    await asyncio.sleep(0.5)
    print(f"launched reservation {job.args.reservation_id}")


registry = streamq.Registry()
registry.register("launch", Launch, launch)


async def main() -> None:
    backend = streamq.connect()
    async with streamq.Queue(backend, registry=registry) as queue:
        worker = streamq.Worker(backend, registry, ["launch"], concurrency=4)
        running = asyncio.create_task(worker.run())
        await queue.enqueue(streamq.Job(type="launch", args=Launch(1)))
        while not worker.in_flight:
            await asyncio.sleep(0.01)

        await queue.pause("launch", reason="cloud API incident")
        print("paused launch")
        while "launch" not in worker.paused_types:  # the worker looks every half second
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a read that was waiting when it looked ends within 1 s
        await queue.enqueue_many([streamq.Job(type="launch", args=Launch(n)) for n in (2, 3)])
        await asyncio.sleep(0.5)
        (stats,) = await queue.stats(["launch"])
        print(f"waiting {stats.waiting}, paused {stats.paused}: {stats.pause_reason}")

        await queue.resume("launch")
        print("resumed launch")
        while worker.processed < 3:
            await asyncio.sleep(0.05)
        worker.stop()
        await running
        (stats,) = await queue.stats(["launch"])
        print(f"processed {stats.processed}, waiting {stats.waiting}, paused {stats.paused}")


if __name__ == "__main__":
    # Only warnings from the library's log (the pause and resume lines are at INFO), on stderr.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    asyncio.run(main())
