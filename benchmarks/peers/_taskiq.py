"""taskiq + taskiq-redis: ``.kiq()`` gathered in chunks of 1000 (taskiq has no batch kick);
one ``Receiver(max_async_tasks=C)`` on ``RedisStreamBroker``.

taskiq's defaults otherwise, as its CLI worker builds them: ``max_prefetch=0``, argument
validation on, ack when the result is saved (``WHEN_SAVED``), no result backend (taskiq's
default; results are dropped, as streamq stores none); the broker's defaults: XREADGROUP
``COUNT 100 BLOCK 2000``, consumer group created at ``$``, one XACK per message, no XDEL and no
MAXLEN (acked entries stay in the stream). The producer calls ``broker.startup()`` (untimed),
which creates the consumer group before the first XADD, so the group at ``$`` sees every job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

from benchmarks.peers._child import Tally

CHUNK = 1000
#: How long the receiver's graceful stop may take before the pool is closed under it.
STOP_TIMEOUT = 5.0
QUEUE = "taskiq"  # the broker's default stream and consumer group names
GROUP = "taskiq"


def _broker(url: str, tally: Tally | None) -> tuple[RedisStreamBroker, Any]:
    broker = RedisStreamBroker(url)

    @broker.task(task_name="noop")
    async def noop() -> None:
        if tally is not None:
            tally.tick()

    return broker, noop


@asynccontextmanager
async def producer(url: str) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    broker, noop = _broker(url, None)
    await broker.startup()
    try:

        async def send(count: int) -> None:
            for start in range(0, count, CHUNK):
                n = min(CHUNK, count - start)
                await asyncio.gather(*(noop.kiq() for _ in range(n)))

        yield send
    finally:
        await broker.shutdown()


async def consume(url: str, tally: Tally, *, concurrency: int, limit_s: float) -> dict[str, Any]:
    """``Receiver.listen`` until the tally; then the finish event, taskiq's graceful stop.

    On the finish event the receiver stops fetching and waits for the running callbacks (each
    acks its message after the handler) before ``listen`` returns; its CLI worker stops the
    same way on SIGTERM. In early trials here, with the event set right after the last handler
    ran, that stop never returned in about half of the runs: the XREADGROUP left blocking when
    fetching stops was cancelled, the cancel was lost, and the read kept waiting on its socket.
    Since the harness waits for the group to have no entry pending (every job acked) before
    the event, the stop has returned each time; as a guard it gets ``STOP_TIMEOUT`` seconds,
    then the broker's pool is closed (``broker.shutdown()``, which taskiq's CLI runs after
    ``listen`` anyway), which ends such a read. ``stop_hung`` reports whether that was needed.
    """
    broker, _ = _broker(url, tally)
    broker.is_worker_process = True  # what taskiq's worker CLI sets before startup
    receiver = Receiver(broker, max_async_tasks=concurrency)
    finish = asyncio.Event()
    tally.start()
    run = asyncio.ensure_future(receiver.listen(finish))
    if await tally.wait(run, limit_s):
        async with Redis.from_url(url) as client:
            await settle_async(lambda: _pending(client), run)
    finish.set()
    _, hung = await asyncio.wait([run], timeout=STOP_TIMEOUT)
    await broker.shutdown()
    if hung:
        await asyncio.wait([run], timeout=STOP_TIMEOUT)
    if not run.done():
        run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    # taskiq keeps no count of finished tasks: leftover() checks the group's PEL afterwards.
    return {"stop_hung": bool(hung)}


async def _pending(client: Redis) -> bool:
    """True once the group holds no delivered-but-unacked entry."""
    summary = await client.xpending(QUEUE, GROUP)
    return int(summary["pending"]) == 0


async def settle_async(done: Callable[[], Awaitable[bool]], run: asyncio.Future[Any]) -> None:
    """Like ``_child.settle``, for a check that needs a round trip (at most 30 s)."""
    deadline = time.monotonic() + 30.0
    while not run.done() and not await done():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.005)


async def leftover(url: str) -> dict[str, Any]:
    """The consumer group (XINFO GROUPS): entries never delivered (lag) and not acked (pending).

    taskiq-redis has no queue-size call for its stream broker; the group's own counts are what
    the broker relies on. XLEN stays at the number of jobs ever sent (no XDEL).
    """
    client = Redis.from_url(url)
    try:
        groups = await client.xinfo_groups(QUEUE)
        length = await client.xlen(QUEUE)
    finally:
        await client.aclose()
    (group,) = [g for g in groups if g["name"] in (GROUP, GROUP.encode())]
    return {"queued": group["lag"], "in_flight": group["pending"], "info_stream_length": length}
