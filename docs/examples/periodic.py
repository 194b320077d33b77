"""Periodic jobs: two workers share one every(0.5 s) schedule; each tick runs once.

Run it with a server (STREAMQ_REDIS_URL, or the embedded one): it serves for 2.2 seconds and
prints each tick's job as it runs (about four), then how many the schedule enqueued.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import streamq


@dataclass(frozen=True)
class Cleanup:
    """What the periodic job cleans up."""

    table: str


async def clean_up(job: streamq.Job[Cleanup]) -> None:
    """The periodic job's one step."""
    print(f"tick {job.id}: cleaning {job.args.table}")


registry = streamq.Registry()
registry.register("cleanup", Cleanup, clean_up)
# Declared beside the type: every worker serving "cleanup" takes part, one job per tick.
registry.every(0.5, "cleanup", args={"table": "sessions"})


async def main() -> None:
    backends = [streamq.connect(), streamq.connect()]
    workers = [streamq.Worker(b, registry, ["cleanup"]) for b in backends]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    await asyncio.sleep(2.2)
    for w in workers:
        w.stop()
    await asyncio.gather(*tasks)
    async with streamq.Queue(backends[0]) as queue:
        (stats,) = await queue.stats(["cleanup"])
        print(f"enqueued {stats.enqueued} jobs, processed {stats.processed}")
    await backends[1].aclose()


if __name__ == "__main__":
    asyncio.run(main())
