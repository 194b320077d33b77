"""Quickstart: a two-step job type, a few jobs, one worker that drains them, then the stats.

Run from the repository root, on a server and key prefix of your choice::

    STREAMQ_REDIS_URL=redis://127.0.0.1:6379/0 STREAMQ_PREFIX=quickstart \
        .venv/bin/python docs/examples/quickstart.py

Without ``STREAMQ_REDIS_URL`` it uses the embedded server (started on demand); without
``STREAMQ_PREFIX`` the keys live under ``streamq:``. The counters are kept per prefix, so a second
run with the same prefix shows the totals of both runs.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

import structlog

import streamq
from streamq import Job, Queue, Registry, Worker


@dataclass(frozen=True, slots=True)
class GreetArgs:
    """The args of a ``greet`` job: checked field by field at enqueue and again by the worker."""

    name: str
    excited: bool = False


# Stands in for a database table keyed by job id. Steps share state through it, not through
# return values (a job has none), and writing the same key twice is harmless: a job delivered
# twice must not do its work twice.
GREETINGS: dict[str, str] = {}


async def compose(job: Job[GreetArgs]) -> None:
    """Step 1, async: runs on the worker's event loop."""
    mark = "!" if job.args.excited else "."
    GREETINGS.setdefault(str(job.id), f"Hello, {job.args.name}{mark}")


def deliver(job: Job[GreetArgs]) -> None:
    """Step 2, sync: runs in the worker's thread pool, after step 1 succeeded."""
    # One write per line: print() writes the text and the newline separately, and sync steps of
    # different jobs run at the same time in different threads.
    sys.stdout.write(f"delivered {job.id}: {GREETINGS[str(job.id)]}\n")


registry = Registry()
registry.register("greet", GreetArgs, compose, deliver)

NAMES = ["Ada", "Grace", "Edsger", "Barbara", "Ken"]


async def main() -> None:
    """Enqueue, drain with one worker, print the counts."""
    backend = streamq.connect()  # STREAMQ_REDIS_URL (else the embedded server), STREAMQ_PREFIX
    async with Queue(backend, registry=registry) as queue:
        jobs = [Job(type="greet", args=GreetArgs(name=n, excited=n == "Ada")) for n in NAMES]
        ids = await queue.enqueue_many(jobs)
        print(f"enqueued {len(ids)} jobs")

        worker = Worker(backend, registry, ["greet"], concurrency=4)
        await worker.run(stop_when_empty=True)
        print(f"processed {worker.processed} jobs")

        [stats] = await queue.stats(["greet"])
        print(
            f"stats: waiting={stats.waiting} in_flight={stats.in_flight} "
            f"enqueued={stats.enqueued} processed={stats.processed} "
            f"failed={stats.failed} dead={stats.dead}"
        )


if __name__ == "__main__":
    # The library never configures structlog, whose default prints every level (debug
    # included) to stdout: keep the worker's own log lines to warnings, on stderr.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    asyncio.run(main())
