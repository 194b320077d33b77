"""Step progress under faults: a worker SIGKILLed between two steps of a job (another one
resumes the job at the step that was interrupted, with the checkpoint of the steps before), and
a record that cannot be written."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import itjobs
import pytest
import redis.asyncio as aioredis
import structlog
from worker_procs import Workers, wait_until

from streamq import Job, Queue, RedisBackend, Registry, SyncQueue, Worker

ARGS = ("-c", "4", "--claim-after", "1s", "--heartbeat", "200ms")


@pytest.fixture
def queue(redis_url: str, prefix: str) -> Iterator[SyncQueue]:
    """A sync queue on the test's prefix with the test job types."""
    q = SyncQueue(lambda: Queue(RedisBackend(redis_url, prefix=prefix), registry=itjobs.registry))
    yield q
    q.close()


def test_a_worker_killed_between_steps_resumes_elsewhere_at_the_next_step(
    workers: Workers, queue: SyncQueue, prefix: str
) -> None:
    """Worker A runs step 1 (recorded) and is SIGKILLed in step 2; worker B claims the job
    after claim_after and starts at step 2 with A's checkpoint: step 1 ran once, step 2 twice
    (once to its end), step 3 once; the job's progress is gone after its ack."""
    r = workers.redis
    key = f"{prefix}:stepped:"
    r.set(key + "hold", 1)
    a = workers.start(*ARGS, types=("stepped",))
    job_id = queue.enqueue(Job(type="stepped", args={}))
    wait_until(lambda: r.hget(key + "two_started", job_id) == b"1", 30, "step 2 on worker A")
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    progress = backend.streams("stepped")[0].progress(job_id)
    # Step 1's record went before step 2 started.
    assert r.hget(progress, "done") == b"1"
    assert r.hget(progress, "next") == b"stepped_two"
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    r.delete(key + "hold")
    b = workers.start(*ARGS, types=("stepped",))
    wait_until(lambda: r.hexists(key + "seen", job_id), 30, "step 3 on worker B")

    counts = {step: r.hget(key + step, job_id) for step in ("one", "two_started", "two_done")}
    assert counts == {"one": b"1", "two_started": b"2", "two_done": b"1"}
    assert r.hget(key + "three", job_id) == b"1"
    seen = json.loads(r.hget(key + "seen", job_id) or b"{}")
    assert seen == {"checkpoint": {"pid": a.pid}, "first_step": 1, "deliveries": 2, "pid": b.pid}
    wait_until(lambda: queue.stats(["stepped"])[0].processed == 1, 30, "the job acked")
    assert not r.exists(progress)
    assert b.poll() is None, workers.log_of(b)


@dataclass(frozen=True)
class Empty:
    """No args."""


async def test_a_record_that_cannot_be_written_is_logged_and_its_job_goes_on(
    redis_url: str, prefix: str
) -> None:
    """One job's progress key is broken (a string where the hash goes): its record fails alone
    (the other job's, in the same call or not, is written), it says so
    (``streamq.job.step_not_recorded``) and runs on to its ack, which deletes the broken key."""
    registry = Registry()
    runs: list[tuple[str, str]] = []

    async def one(job: Job[Any]) -> None:
        runs.append(("one", job.id or ""))

    async def two(job: Job[Any]) -> None:
        runs.append(("two", job.id or ""))

    registry.register("t", Empty, one, two)
    backend = RedisBackend(redis_url, prefix=prefix)
    admin = aioredis.Redis.from_url(redis_url)
    capture, saved = structlog.testing.LogCapture(), structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        queue = Queue(backend, registry=registry)
        broken, fine = "job-broken", "job-fine"
        await queue.enqueue_many([Job(type="t", args=Empty(), id=i) for i in (broken, fine)])
        await admin.set(backend.streams("t")[0].progress(broken), "not a hash")
        worker = Worker(backend, registry, ["t"], claim_after=2.0, heartbeat=0.2, block=0.05)
        await asyncio.wait_for(worker.run(stop_when_empty=True), 30)
        (stats,) = await queue.stats(["t"])
        keys = [k async for k in admin.scan_iter(match=f"{prefix}:*:progress:*")]
    finally:
        structlog.configure(**saved)
        await admin.aclose()
        await backend.aclose()
    assert sorted(runs) == sorted((step, j) for step in ("one", "two") for j in (broken, fine))
    assert stats.processed == 2
    said = [e for e in capture.entries if e["event"] == "streamq.job.step_not_recorded"]
    assert [(e["job_id"], e["done"]) for e in said] == [(broken, 1)]
    assert "could not be written" in said[0]["error"]
    assert keys == []


async def test_a_broken_progress_key_reads_as_no_progress(redis_url: str, prefix: str) -> None:
    """A progress key that is not a hash (not streamq's) is no record: the lookup answers None
    rather than failing every delivery of its job."""
    backend = RedisBackend(redis_url, prefix=prefix)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await admin.set(backend.streams("t")[0].progress("j-1"), "not a hash")
        assert await backend.job_progress("t", "j-1") is None
    finally:
        await admin.aclose()
        await backend.aclose()
