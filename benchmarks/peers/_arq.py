"""arq: ``ArqRedis.enqueue_job`` gathered 100 at a time (arq has no batch enqueue); one
``Worker(max_jobs=C)``.

Each ``enqueue_job`` holds a connection for its WATCH / MULTI / EXEC, and redis-py's pool (which
arq's ``create_pool`` does not size) allows 100 connections: 100 concurrent calls is the most it
takes without ``MaxConnectionsError``.

arq's defaults otherwise (pickle, ``poll_delay=0.5``, ``queue_read_limit = max(5 * max_jobs,
100)``, results kept 3600 s, ``max_tries=5``, ``job_timeout=300``). ``handle_signals=False``
because the worker runs inside a process this harness drives (arq's advice when it runs inside
another framework); the stop is arq's own ``Worker.close``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from arq import Worker, create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name, in_progress_key_prefix
from arq.worker import func

from benchmarks.peers._child import Tally, settle

#: Concurrent ``enqueue_job`` calls: the size of redis-py's default connection pool.
CHUNK = 100


@asynccontextmanager
async def producer(url: str) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    pool = await create_pool(RedisSettings.from_dsn(url))
    try:

        async def send(count: int) -> None:
            for start in range(0, count, CHUNK):
                n = min(CHUNK, count - start)
                jobs = await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(n)))
                if None in jobs:  # None: a job with the same id already exists
                    raise RuntimeError(f"arq refused {jobs.count(None)} of {n} jobs")

        yield send
    finally:
        await pool.aclose()


async def consume(
    url: str, tally: Tally, *, concurrency: int, limit_s: float, **options: Any
) -> dict[str, Any]:
    """``Worker.async_run`` until the tally; ``close`` once every run_job task has finished.

    ``options`` go to ``Worker`` (the ``arq-poll10ms`` variant passes ``poll_delay=0.01``).

    arq counts a job complete before it writes the result and removes the job from the queue
    (``finish_job``), so the harness waits for the run_job tasks themselves before closing.
    """

    async def noop(ctx: Any) -> None:
        tally.tick()

    worker = Worker(
        functions=[func(noop, name="noop")],
        redis_settings=RedisSettings.from_dsn(url),
        max_jobs=concurrency,
        handle_signals=False,
        **options,
    )
    tally.start()
    run = asyncio.ensure_future(worker.async_run())

    def finished() -> bool:
        done = worker.jobs_complete + worker.jobs_failed >= tally.target
        return run.done() or (done and all(t.done() for t in worker.tasks.values()))

    if await tally.wait(run, limit_s):
        await settle(finished)
    await worker.close()
    if not run.done():
        run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    return {
        "completed": worker.jobs_complete,
        "failed": worker.jobs_failed,
        "retried": worker.jobs_retried,
    }


async def leftover(url: str) -> dict[str, Any]:
    """The queue's sorted set (what ``ArqRedis.queued_jobs`` reads) and in-progress markers."""
    pool = await create_pool(RedisSettings.from_dsn(url))
    try:
        queued = await pool.zcard(default_queue_name)
        in_progress = [k async for k in pool.scan_iter(match=in_progress_key_prefix + "*")]
    finally:
        await pool.aclose()
    return {"queued": queued, "in_progress": len(in_progress)}
