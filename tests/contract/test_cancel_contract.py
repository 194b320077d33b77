"""Cancelling one job on every backend (docs/control.md): a scheduled or a waiting job is
removed at once, its unique key released, and ``Queue.job`` answers ``cancelled``; a running
job gets a cancel request for its worker; a dead or unknown job is left alone and said so."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from uuid import uuid4

from test_contract import TIMEOUT, MakeWorker, serving
from waiting import eventually

from streamq import Backend, Job, Principal, Queue, Registry


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
    assert (await queue.job("t", kept)).state == "unknown"  # finished: no record yet


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
    assert stats.processed == 1


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


async def _is(queue: Queue, job_id: str, state: str) -> bool:
    return (await queue.job("t", job_id)).state == state


async def test_a_running_job_gets_a_cancel_request_for_its_worker(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    started = asyncio.Event()
    go = asyncio.Event()

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        started.set()
        await go.wait()

    job_id = await queue.enqueue(job(1))
    assert await backend.cancel_requests("t") == set()
    worker = make_worker("t")
    async with serving(worker):
        await asyncio.wait_for(started.wait(), TIMEOUT)
        result = await queue.cancel("t", job_id)
        assert (result.state, result.consumer) == ("cancelling", worker.consumer)
        assert await backend.cancel_requests("t") == {job_id}
        go.set()
        await eventually(lambda: _is(queue, job_id, "unknown"), TIMEOUT)
