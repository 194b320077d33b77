"""streaq: ``Worker.enqueue_many`` in chunks of 1000; one ``Worker(concurrency=C)``.

streaq's defaults throughout (pickle serializer, prefetch = concurrency, results kept 5 min,
``max_tries=3``, per-task INFO logs not silenced). The task is registered with
``@worker.task(name="noop")`` on a worker object that the producer also uses, as streaq's docs
show; the producer enters ``async with worker`` (connect, load the Lua library) untimed.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from streaq import Worker

from benchmarks.peers._child import Tally, settle

CHUNK = 1000


def _worker(url: str, concurrency: int, tally: Tally | None) -> tuple[Worker[Any], Any]:
    worker: Worker[Any] = Worker(redis_url=url, concurrency=concurrency)

    @worker.task(name="noop")
    async def noop() -> None:
        if tally is not None:
            tally.tick()

    return worker, noop


@asynccontextmanager
async def producer(url: str) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    worker, noop = _worker(url, 32, None)
    async with worker:

        async def send(count: int) -> None:
            for start in range(0, count, CHUNK):
                await worker.enqueue_many(
                    [noop.enqueue() for _ in range(min(CHUNK, count - start))]
                )

        yield send


async def consume(url: str, tally: Tally, *, concurrency: int, limit_s: float) -> dict[str, Any]:
    """``run_async``, stopped by SIGTERM once the library counts every job completed.

    SIGTERM is streaq's own graceful stop: its handler cancels the reading and running tasks
    while the connections stay open, and each task's result write and ack (``finish_task``) is
    shielded from that cancel. (Cancelling ``run_async`` from outside would close the connections
    under the last acks in flight.)
    """
    worker, _ = _worker(url, concurrency, tally)
    async with anyio.create_task_group() as tg:
        tally.start()
        tg.start_soon(worker.run_async)
        with anyio.move_on_after(limit_s):
            await tally.reached.wait()
        if tally.reached.is_set():
            # counted as each result write and ack is queued in its pipeline
            await settle(lambda: worker.counters["completed"] >= tally.target)
        signal.raise_signal(signal.SIGTERM)
    return {"completed": worker.counters["completed"], "failed": worker.counters["failed"]}


async def leftover(url: str) -> dict[str, Any]:
    """``Worker.queue_size``: stream entries (deleted once finished) plus delayed tasks."""
    worker, _ = _worker(url, 32, None)
    async with worker:
        queued = await worker.queue_size()
        running = await worker.redis.scard(worker._running_set)
    return {"queued": queued, "running_set": running}
