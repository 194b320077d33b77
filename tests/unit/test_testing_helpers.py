"""streamq.testing: what users run their handler unit tests with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamq import Job, Registry
from streamq.testing import run_jobs


@dataclass(frozen=True)
class Args:
    """Fail when asked."""

    fail: bool = False


def registry_recording(seen: list[str]) -> Registry:
    """A registry whose one job type records each call and fails when asked."""
    registry = Registry()

    async def step(job: Job[Any]) -> None:
        seen.append(job.id or "")
        if job.args.fail:
            raise RuntimeError("asked to fail")

    registry.register("t", Args, step)
    return registry


async def test_run_jobs_reports_processed_and_dead() -> None:
    """Good jobs are processed once; a failing one is retried and reported dead with its error."""
    seen: list[str] = []
    jobs = [Job(type="t", args=Args(), id=f"ok-{i}") for i in range(3)]
    jobs.append(Job(type="t", args={"fail": True}, id="bad"))
    out = await run_jobs(registry_recording(seen), jobs, max_deliveries=2)
    assert out.stats["t"].processed == 3
    assert out.stats["t"].waiting == out.stats["t"].in_flight == 0
    assert [(d.job_id, d.deliveries) for d in out.dead] == [("bad", 2)]
    assert "RuntimeError: asked to fail" in out.dead[0].error
    assert sorted(seen) == ["bad", "bad", "ok-0", "ok-1", "ok-2"]


def test_sync_queue_passes_plain_attributes_through() -> None:
    """SyncQueue turns the queue's coroutine methods into blocking calls, and nothing else."""
    from streamq import MemoryBackend, Queue, SyncQueue

    registry = registry_recording([])
    backend = MemoryBackend()
    with SyncQueue(lambda: Queue(backend, registry=registry, max_job_size=10_000)) as queue:
        assert queue.registry is registry
        assert queue.max_job_size == 10_000
        job_id = queue.enqueue(Job(type="t", args={"fail": False}))
        assert [s.waiting for s in queue.stats(["t"])] == [1]
        assert job_id
