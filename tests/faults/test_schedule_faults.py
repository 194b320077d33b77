"""Delayed jobs through faults: a server restart (append-only), a mover SIGKILLed mid-move, and
real partitions."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waiting import eventually

from streamq import Job, Queue, Registry, Worker
from streamq._server import PrivateServer
from streamq.backends.redis import RedisBackend

FAST = {"concurrency": 4, "claim_after": 1.0, "heartbeat": 0.2, "block": 0.05}


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the delayed test jobs."""

    n: int


def counting_registry(ran: list[str]) -> Registry:
    """A registry whose type ``t`` notes each job it runs."""
    registry = Registry()

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        ran.append(job.id)

    return registry


async def test_a_scheduled_job_survives_a_server_restart_and_then_runs(
    tmp_path: Path, prefix: str
) -> None:
    """SIGKILL an append-only server holding a scheduled job, start it again: the job is still
    in the schedule, and a worker runs it once it is due."""
    ran: list[str] = []
    registry = counting_registry(ran)
    with PrivateServer(tmp_path / "server", appendonly=True) as server:
        async with Queue(RedisBackend(server.url, prefix=prefix), registry=registry) as queue:
            job_id = await queue.enqueue(Job(type="t", args=Item(1), account_id=1), delay=1.0)
        server.kill()
        server.start()
        async with Queue(RedisBackend(server.url, prefix=prefix), registry=registry) as queue:
            assert [s.job_id for s in await queue.scheduled("t")] == [job_id]
            worker_backend = RedisBackend(server.url, prefix=prefix)
            worker = Worker(worker_backend, registry, ["t"], **FAST)
            task = asyncio.create_task(worker.run())
            try:
                await eventually(lambda: ran == [job_id], 10)
            finally:
                worker.stop()
                await asyncio.wait_for(task, 10)
                await worker_backend.aclose()
            assert (await queue.stats(["t"]))[0].scheduled == 0


async def test_each_partition_has_its_schedule_moved_into_its_own_stream(
    redis_url: str, prefix: str
) -> None:
    """On a type with three partitions a delayed job waits in the schedule of the partition it
    would go to, and every partition's schedule is moved and run."""
    ran: list[str] = []
    registry = counting_registry(ran)
    backend = RedisBackend(redis_url, prefix=prefix, partitions={"t": 3})
    async with Queue(backend, registry=registry) as queue:
        ids = await queue.enqueue_many(
            [Job(type="t", args=Item(n), account_id=1) for n in range(30)], delay=0.3
        )
        counts = [await backend._wire.client.zcard(s.scheduled) for s in backend.streams("t")]
        assert counts == [10, 10, 10]
        assert len({s.slot for s in backend.streams("t")}) == 3
        worker_backend = RedisBackend(redis_url, prefix=prefix)
        worker = Worker(worker_backend, registry, ["t"], **FAST)
        task = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: sorted(ran) == sorted(ids), 10)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
            await worker_backend.aclose()


MOVER = """
import asyncio, sys
from streamq.backends.redis import RedisBackend

async def main():
    backend = RedisBackend(sys.argv[1], prefix=sys.argv[2])
    print("moving", flush=True)
    while True:
        await backend.move_due(["t"], 50)

asyncio.run(main())
"""


async def test_a_mover_sigkilled_mid_move_loses_and_duplicates_no_job(
    redis_url: str, prefix: str
) -> None:
    """SIGKILL a process moving due jobs while it moves: every job is in the schedule or in the
    stream, exactly once."""
    backend = RedisBackend(redis_url, prefix=prefix)
    try:
        n = 20_000
        items = [("t", {b"id": str(i).encode(), b"v": b"1", b"job": b"{}"}) for i in range(n)]
        for i in range(0, n, 1000):
            await backend.schedule_many(items[i : i + 1000], 0)
        (s,) = backend.streams("t")
        client = backend._wire.client
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", MOVER, redis_url, prefix, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        await proc.stdout.readline()
        await eventually(lambda: _moved_some(client, s.jobs), 10)
        proc.kill()
        await proc.wait()
        left = await client.zcard(s.scheduled)
        assert 0 < left < n, "the kill should land in the middle of the moving"
        rows = await client.xrange(s.jobs)
        moved = [fields[b"id"] for _, fields in rows]
        assert len(moved) + left == n
        assert len(set(moved)) == len(moved)
    finally:
        await backend.aclose()


async def _moved_some(client: Any, key: str) -> bool:
    return int(await client.xlen(key)) >= 2000
