"""Cancelling one job on every backend (docs/control.md): a scheduled or a waiting job is
removed at once, its unique key released, and ``Queue.job`` answers ``cancelled``; a running
job gets a cancel request for its worker; a dead or unknown job is left alone and said so."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from uuid import uuid4

from test_contract import TIMEOUT, MakeWorker, serving
from waiting import eventually

from streamq import Backend, Job, JobContext, Principal, Queue, Registry


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


def job(n: int = 0) -> Job[Item]:
    who = Principal(account_number="5678", org_id="1234", user="alice")
    return Job(type="t", args=Item(n), account_id=7, identity=who)


def typed(registry: Registry, runs: list[int]) -> None:
    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        runs.append(j.args.n)


async def test_a_scheduled_job_cancelled_never_runs_and_is_recorded_cancelled(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    runs: list[int] = []
    typed(registry, runs)
    cancelled = await queue.enqueue(job(1), delay=0.3)
    kept = await queue.enqueue(job(2), delay=0.3)
    result = await queue.cancel("t", cancelled)
    assert (result.state, result.already) == ("cancelled", False)
    state = await queue.job("t", cancelled)
    assert state.state == "cancelled", state
    assert state.ended_at is not None
    again = await queue.cancel("t", cancelled)
    assert (again.state, again.already) == ("cancelled", True)
    async with serving(make_worker("t")):
        await eventually(lambda: runs == [2], TIMEOUT)
        await asyncio.sleep(0.3)
    assert runs == [2]
    assert (await queue.job("t", kept)).state == "done"  # finished: its record says so
    # Counted once, though cancelled twice.
    stats = (await queue.stats(["t"]))[0]
    assert (stats.cancelled, stats.processed) == (1, 1)


async def test_a_waiting_job_cancelled_is_removed_and_its_unique_key_freed(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    runs: list[int] = []
    typed(registry, runs)
    first = await queue.enqueue(job(1), unique_key="reservation:42", unique_for=3600)
    assert (await queue.job("t", first)).state == "waiting"
    assert (await queue.cancel("t", first)).state == "cancelled"
    assert (await queue.job("t", first)).state == "cancelled"
    # Cancelled: its key is free at once (not kept unique_for), so the request can be made anew.
    second = await queue.enqueue(job(2), unique_key="reservation:42")
    assert not second.duplicate
    assert second != first
    async with serving(make_worker("t")):
        await eventually(lambda: runs == [2], TIMEOUT)
    stats = (await queue.stats(["t"]))[0]
    assert (stats.processed, stats.cancelled) == (1, 1)


async def test_dead_and_unknown_jobs_are_not_cancelled(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    @registry.job("t", Item, max_deliveries=1)
    async def handle(j: Job[Item]) -> None:
        raise ValueError("no")

    job_id = await queue.enqueue(job(1))
    async with serving(make_worker("t")):
        await eventually(lambda: _is(queue, job_id, "dead"), TIMEOUT)
    assert (await queue.cancel("t", job_id)).state == "dead"
    assert (await queue.job("t", job_id)).state == "dead"
    assert (await queue.cancel("t", str(uuid4()))).state == "unknown"
    assert (await queue.cancel("no-such-type", str(uuid4()))).state == "unknown"
    assert (await queue.stats(["t"]))[0].cancelled == 0


async def _is(queue: Queue, job_id: str, state: str) -> bool:
    return (await queue.job("t", job_id)).state == state


async def test_a_running_async_job_is_cancelled_at_its_next_await_and_acked(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Cancelled within about a second (the watcher polls every 0.5 s), not retried, not
    dead; its unique key freed; ``job`` answers cancelled; the worker goes on with others."""
    started = asyncio.Event()
    finished: list[int] = []
    stopped: list[int] = []

    @registry.job("t", Item, max_deliveries=5)
    async def handle(j: Job[Item]) -> None:
        if j.args.n == 1:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                stopped.append(j.args.n)
                raise
        finished.append(j.args.n)

    job_id = await queue.enqueue(job(1), unique_key="reservation:7")
    worker = make_worker("t", retry_base=0.05)
    async with serving(worker):
        await asyncio.wait_for(started.wait(), TIMEOUT)
        assert await backend.cancel_requests("t") == set()
        result = await queue.cancel("t", job_id)
        assert (result.state, result.consumer) == ("cancelling", worker.consumer)
        asked = time.monotonic()
        await eventually(lambda: _is(queue, job_id, "cancelled"), TIMEOUT)
        took = time.monotonic() - asked
        assert stopped == [1]
        assert await backend.cancel_requests("t") == set()
        # The same key is free, and the worker runs the next job.
        second = await queue.enqueue(job(2), unique_key="reservation:7")
        assert not second.duplicate
        await eventually(lambda: finished == [2], TIMEOUT)
    assert took < TIMEOUT
    stats = (await queue.stats(["t"]))[0]
    assert (stats.dead, stats.retried, stats.in_flight) == (0, 0, 0)
    assert (stats.cancelled, stats.processed) == (1, 1)
    assert (await queue.cancel("t", job_id)).already


async def test_a_sync_step_sees_ctx_cancelled(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A sync step polling ``ctx.cancelled`` is told; the job ends cancelled."""
    started = threading.Event()
    saw: list[bool] = []

    @registry.job("t", Item)
    def handle(j: Job[Item], ctx: JobContext[None]) -> None:
        started.set()
        saw.append(ctx.cancelled.wait(TIMEOUT))

    job_id = await queue.enqueue(job(1))
    async with serving(make_worker("t")):
        assert await asyncio.to_thread(started.wait, TIMEOUT)
        assert (await queue.cancel("t", job_id)).state == "cancelling"
        await eventually(lambda: _is(queue, job_id, "cancelled"), TIMEOUT)
        await eventually(lambda: saw == [True], TIMEOUT)
