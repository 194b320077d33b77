"""Steps that resume: a three-step job whose last step fails twice runs its first two once.

Run it with a server (STREAMQ_REDIS_URL, or the embedded one) and a key prefix of your choice::

    STREAMQ_REDIS_URL=redis://127.0.0.1:6379/0 STREAMQ_PREFIX=steps \\
        .venv/bin/python docs/examples/steps.py

It prints each step as it runs: ``reserve`` and ``launch`` once, ``describe`` three times (the
retries start at the step that failed, with the ids ``launch`` saved in the checkpoint).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

import structlog

import streamq
from streamq import Job, JobContext


@dataclass(frozen=True)
class Order:
    """The job's args."""

    reservation_id: int
    amount: int


@dataclass(frozen=True)
class Launched:
    """The checkpoint: what the steps done so far made, for the steps after them."""

    instance_ids: tuple[str, ...] = ()


async def reserve(job: Job[Order]) -> None:
    """Step 1 takes only the job (no context)."""
    print(f"reserve {job.args.reservation_id}")


async def launch(job: Job[Order], ctx: JobContext[Launched]) -> None:
    """Step 2 saves what step 3 needs; it is recorded with the step once it returns."""
    ids = tuple(f"i-{job.args.reservation_id}-{n}" for n in range(job.args.amount))
    ctx.save(Launched(instance_ids=ids))
    print(f"launch {' '.join(ids)}")


def describe(job: Job[Order], ctx: JobContext[Launched]) -> None:
    """Step 3, sync (in a thread): fails on the first two deliveries."""
    launched = ctx.checkpoint
    assert launched is not None
    print(f"describe {' '.join(launched.instance_ids)} (delivery {ctx.deliveries})")
    if ctx.deliveries < 3:
        raise RuntimeError("the provider is not ready yet")


registry = streamq.Registry()
registry.register("order", Order, reserve, launch, describe, checkpoint=Launched)


async def main() -> None:
    """Enqueue one job and run a worker until it is done."""
    backend = streamq.connect()
    async with streamq.Queue(backend, registry=registry) as queue:
        await queue.enqueue(Job(type="order", args=Order(reservation_id=42, amount=2)))
        worker = streamq.Worker(backend, registry, ["order"], retry_base=0.05, max_deliveries=5)
        await worker.run(stop_when_empty=True)
        [stats] = await queue.stats(["order"])
        print(f"processed={stats.processed} failed={stats.failed} dead={stats.dead}")


if __name__ == "__main__":
    # Warnings and errors only, on stderr: the two failures are logged there, with their step.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    asyncio.run(main())
