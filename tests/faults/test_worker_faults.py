"""A worker under partial server failures: a broken stream, a refused ack, a stalled server."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog

from streamq import Job, Queue, RedisBackend, Registry, Worker
from streamq._server import PrivateServer
from streamq.exceptions import BackendError

TIMEOUT = 20.0


@dataclass(frozen=True)
class Empty:
    """No args."""


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    """Only warnings and errors from streamq's structlog logger, restored after the test."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.configure(**before)


@contextlib.asynccontextmanager
async def admin(url: str) -> AsyncIterator[Any]:
    """A plain redis-py client on ``url`` for breaking and mending keys behind the worker."""
    r = aioredis.Redis.from_url(url)
    try:
        yield r
    finally:
        await r.aclose()


async def eventually(check: Any, what: str) -> None:
    """Poll ``check`` (sync or async) until it holds; fail naming ``what`` after TIMEOUT."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                ok = check()
                if asyncio.iscoroutine(ok):
                    ok = await ok
                if ok:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {TIMEOUT}s: {what}") from None


async def break_stream(r: Any, key: str) -> None:
    """Put a string where the stream ``key`` was (kept aside): every stream command on it fails
    with WRONGTYPE."""
    await r.rename(key, f"{key}:aside")
    await r.set(key, "not a stream")


async def mend_stream(r: Any, key: str) -> None:
    """Undo :func:`break_stream`."""
    await r.delete(key)
    await r.rename(f"{key}:aside", key)


# item 8: lease refresh isolates errors per stream ---------------------------------------------


async def test_a_broken_type_does_not_cost_another_type_its_leases(
    redis_url: str, prefix: str
) -> None:
    """Lease refresh goes on type by type past a failure: with one type's stream broken, the
    running job of the other type keeps its lease (it is never idle long enough to be taken)."""
    registry = Registry()
    started = {"a": asyncio.Event(), "b": asyncio.Event()}
    finish = asyncio.Event()

    def step_of(name: str) -> Any:
        async def step(job: Job[Any]) -> None:
            started[name].set()
            await finish.wait()

        return step

    registry.register("a", Empty, step_of("a"))
    registry.register("b", Empty, step_of("b"))
    backend = RedisBackend(redis_url, prefix=prefix)
    queue = Queue(backend, registry=registry)
    worker = Worker(
        backend, registry, ["a", "b"], concurrency=4, claim_after=0.6, heartbeat=0.1, block=0.05
    )
    task = asyncio.create_task(worker.run())
    try:
        # a first: its jobs are refreshed first, so its failure comes before b's refresh.
        await queue.enqueue(Job(type="a", args=Empty()))
        await asyncio.wait_for(started["a"].wait(), TIMEOUT)
        await queue.enqueue(Job(type="b", args=Empty()))
        await asyncio.wait_for(started["b"].wait(), TIMEOUT)
        async with admin(redis_url) as r:
            with structlog.testing.capture_logs() as logs:
                await break_stream(r, backend.jobs_key("a"))
                try:
                    await asyncio.sleep(3 * worker.claim_after)
                    (held,) = await backend.pending("b", consumer=None, min_idle_ms=0, limit=10)
                finally:
                    await mend_stream(r, backend.jobs_key("a"))
        assert held.consumer == worker.consumer
        assert held.idle_ms < worker.claim_after * 1000
        failed = [e for e in logs if e["event"] == "streamq.worker.lease_refresh_failed"]
        assert failed
        assert {e["job_type"] for e in failed} == {"a"}
        finish.set()
        await eventually(lambda: worker.processed == 2, "both jobs acked")
    finally:
        finish.set()
        worker.stop()
        await asyncio.wait_for(task, TIMEOUT)
        await backend.aclose()


async def test_refresh_goes_on_past_a_broken_partition(redis_url: str, prefix: str) -> None:
    """RedisBackend.refresh refreshes every partition's entries even when one partition's call
    fails, then raises naming the failure."""
    backend = RedisBackend(redis_url, prefix=prefix, partitions={"t": 3})
    queue = Queue(backend)
    try:
        await backend.ensure_groups(["t"])
        await queue.enqueue_many([Job(type="t", args={}) for _ in range(6)])
        held: list[str] = []
        for _ in range(20):
            held += [d.entry_id for d in await backend.read(["t"], "c", 6 - len(held), 10)]
            if len(held) == 6:
                break
        assert len(held) == 6
        # The broken partition's ids first: the call reaches it before the healthy ones.
        held.sort(key=lambda ref: ref.rpartition("@")[2])
        assert held[0].endswith("@0")
        await asyncio.sleep(0.4)
        streams = backend.streams("t")
        async with admin(redis_url) as r:
            await break_stream(r, streams[0].jobs)
            try:
                with pytest.raises(BackendError, match="WRONGTYPE") as caught:
                    await backend.refresh("t", "c", held)
                for s in streams[1:]:
                    rows = await r.xpending_range(s.jobs, backend.group, "-", "+", 10)
                    assert rows
                    assert all(row["time_since_delivered"] < 400 for row in rows)
                assert "1 of 3 streams" in str(caught.value)
            finally:
                await mend_stream(r, streams[0].jobs)
    finally:
        await backend.aclose()


# item 3: a failed ack keeps the leases and is retried ------------------------------------------


async def test_a_refused_ack_is_retried_and_no_finished_job_runs_again(
    private_server: PrivateServer,
) -> None:
    """While the server refuses XACK (the worker's ACL user loses it for a while), finished jobs
    keep their leases and their acks are retried with backoff: after several claim_after periods
    every job has run once and been acked once."""
    user = f"w{uuid.uuid4().hex[:6]}"
    async with admin(private_server.url) as r:
        await r.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-xack")
    url = private_server.url.replace("redis://", f"redis://{user}:pw@")
    registry = Registry()
    runs: collections.Counter[str] = collections.Counter()

    async def step(job: Job[Any]) -> None:
        runs[job.id or ""] += 1

    registry.register("t", Empty, step)
    backend = RedisBackend(url, prefix="p")
    queue = Queue(backend, registry=registry)
    worker = Worker(backend, registry, ["t"], concurrency=8, claim_after=0.5, heartbeat=0.1)
    worker.block = 0.05
    ids = await queue.enqueue_many([Job(type="t", args=Empty()) for _ in range(20)])
    task = asyncio.create_task(worker.run())
    try:
        with structlog.testing.capture_logs() as logs:
            await eventually(lambda: len(runs) == 20, "every job ran")
            await eventually(
                lambda: any(e["event"] == "streamq.job.ack_failed" for e in logs), "ack refused"
            )
            # Long enough for a recovery pass to take any job whose lease lapsed.
            await asyncio.sleep(4 * worker.claim_after)
            assert worker.processed == 0
            async with admin(private_server.url) as r:
                await r.execute_command("ACL", "SETUSER", user, "+xack")
            await eventually(lambda: worker.processed == 20, "every job acked")
    finally:
        worker.stop()
        await asyncio.wait_for(task, TIMEOUT)
    try:
        assert runs == dict.fromkeys(ids, 1)
        (stats,) = await queue.stats(["t"])
        assert (stats.processed, stats.waiting, stats.in_flight) == (20, 0, 0)
        failures = [e for e in logs if e["event"] == "streamq.job.ack_failed"]
        assert failures
        assert all(e["retry_in"] > 0 and "'xack'" in e["error"] for e in failures)
        assert not [e for e in logs if e["event"] == "streamq.job.lease_lost"]
    finally:
        await backend.aclose()


async def test_acks_refused_at_shutdown_are_retried_until_the_deadline(
    private_server: PrivateServer,
) -> None:
    """A stop while the server refuses acks goes on retrying them within shutdown_cleanup: once
    XACK is allowed again, the finished jobs are acked before run() returns, not run again."""
    user = f"w{uuid.uuid4().hex[:6]}"
    async with admin(private_server.url) as r:
        await r.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-xack")
    url = private_server.url.replace("redis://", f"redis://{user}:pw@")
    registry = Registry()
    ran: list[str] = []

    async def step(job: Job[Any]) -> None:
        ran.append(job.id or "")

    registry.register("t", Empty, step)
    backend = RedisBackend(url, prefix="p")
    queue = Queue(backend, registry=registry)
    worker = Worker(
        backend, registry, ["t"], claim_after=5, heartbeat=0.5, block=0.05, shutdown_cleanup=5
    )
    await queue.enqueue_many([Job(type="t", args=Empty()) for _ in range(5)])
    task = asyncio.create_task(worker.run())
    try:
        with structlog.testing.capture_logs() as logs:
            await eventually(lambda: len(ran) == 5, "every job ran")
            await eventually(
                lambda: any(e["event"] == "streamq.job.ack_failed" for e in logs), "ack refused"
            )
            worker.stop()
            await asyncio.sleep(0.5)
            assert not task.done()  # still retrying its acks
            async with admin(private_server.url) as r:
                await r.execute_command("ACL", "SETUSER", user, "+xack")
            await asyncio.wait_for(task, TIMEOUT)
        assert worker.processed == 5
        (stats,) = await queue.stats(["t"])
        assert (stats.processed, stats.in_flight, stats.waiting) == (5, 0, 0)
        assert len(ran) == 5
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, TIMEOUT)
        await backend.aclose()


# item 6: shutdown is bounded, even against a server that does not answer ---------------------


async def test_stopping_against_a_stalled_server_returns_within_the_deadline(
    private_server: PrivateServer,
) -> None:
    """With the server frozen (SIGSTOP) while a job runs, stop() still returns within
    shutdown_grace + shutdown_cleanup although every call would wait out a 30 s socket timeout;
    the unfinished job is still pending once the server is back."""
    registry = Registry()
    started = asyncio.Event()

    async def step(job: Job[Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    registry.register("t", Empty, step)
    backend = RedisBackend(private_server.url, prefix="p", socket_timeout=30)
    queue = Queue(backend, registry=registry)
    job_id = await queue.enqueue(Job(type="t", args=Empty()))
    worker = Worker(
        backend,
        registry,
        ["t"],
        concurrency=2,
        claim_after=5,
        heartbeat=0.5,
        block=0.05,
        shutdown_grace=0.3,
        shutdown_cleanup=1.5,
    )
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), TIMEOUT)
        private_server.pause()
        try:
            await asyncio.sleep(0.2)  # the worker's next read and lease refresh are waiting now
            worker.stop()
            began = time.monotonic()
            done, _ = await asyncio.wait([task], timeout=10)
            took = time.monotonic() - began
        finally:
            private_server.resume()
        assert task in done, "run() did not return within 10 s of stop()"
        assert took < 0.3 + 1.5 + 5.0  # the deadline, plus a generous moment
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 60)
        await backend.aclose()
    check = RedisBackend(private_server.url, prefix="p")
    try:
        pending = await Queue(check).pending("t")
        assert [p.job_id for p in pending] == [job_id]
    finally:
        await check.aclose()
