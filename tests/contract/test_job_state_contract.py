"""Where is my job? on every backend: ``Queue.job`` follows one job through its life
(scheduled, waiting, running, retrying, running again, dead), says ``unknown`` for an id never
seen, and finds a job of a partitioned type in its partition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from test_contract import TIMEOUT, MakeWorker, serving
from waiting import eventually

from streamq import Backend, Job, JobState, Principal, Queue, Registry, SyncQueue


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


class CloudError(Exception):
    """A provider's error that a retry may mend."""


def job(n: int = 0) -> Job[Item]:
    """A test job of type ``t``, with an identity."""
    who = Principal(account_number="5678", org_id="1234", user="alice")
    return Job(type="t", args=Item(n), account_id=7, identity=who, request_id="req-1")


@pytest.fixture
def typed(registry: Registry) -> Registry:
    """``registry`` with a do-nothing handler for ``t`` (for the tests that run no job)."""

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        return None

    return registry


async def state_is(queue: Queue, job_id: str, state: str) -> JobState | None:
    """The job's state if it is ``state`` now, else None (for ``eventually``)."""
    found = await queue.job("t", job_id)
    return found if found.state == state else None


async def wait_for_state(queue: Queue, job_id: str, state: str) -> JobState:
    """Poll ``Queue.job`` until the job is in ``state``; that answer."""
    seen: list[JobState] = []

    async def check() -> bool:
        found = await state_is(queue, job_id, state)
        if found is not None:
            seen.append(found)
        return found is not None

    await eventually(check, TIMEOUT)
    return seen[-1]


async def test_one_job_through_its_life_each_state_with_its_fields(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """scheduled (due at, no deliveries) -> waiting (its entry) -> running (consumer, idle,
    1 delivery) -> retrying (next attempt, last error) -> running (2 deliveries: the PEL's
    one and the one before the retry) -> dead (reason, last error, deliveries, dead at)."""
    go: asyncio.Queue[None] = asyncio.Queue()
    runs: list[int] = []

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        runs.append(j.args.n)
        await go.get()
        raise CloudError(f"boom {len(runs)}")

    before = datetime.now(UTC)
    job_id = await queue.enqueue(job(3), delay=0.3)
    scheduled = await queue.job("t", job_id)
    assert scheduled.state == "scheduled", scheduled
    assert (scheduled.type, scheduled.job_id, scheduled.deliveries) == ("t", job_id, 0)
    assert scheduled.due_at is not None
    assert scheduled.due_in_s is not None
    assert 0 < scheduled.due_in_s <= 0.3
    assert scheduled.last_error is None
    assert scheduled.entry_id is None
    assert scheduled.job is not None
    assert scheduled.job.args == {"n": 3}
    assert scheduled.job.identity.user == "alice"
    assert scheduled.job.account_id == 7
    assert scheduled.enqueued_at is not None
    assert scheduled.enqueued_at >= before.replace(microsecond=0)

    # Due, and moved into the stream (what a worker's mover does): waiting, not delivered.
    await asyncio.sleep(0.35)
    assert await backend.move_due(["t"], 10) == 1
    waiting = await queue.job("t", job_id)
    assert waiting.state == "waiting", waiting
    assert waiting.entry_id is not None
    assert waiting.deliveries == 0
    assert waiting.consumer is None
    assert waiting.due_at is None

    worker = make_worker("t", max_deliveries=2, retry_base=1.0)
    async with serving(worker):
        running = await wait_for_state(queue, job_id, "running")
        assert (running.consumer, running.deliveries) == (worker.consumer, 1)
        assert running.entry_id == waiting.entry_id
        assert running.idle_s is not None
        assert 0 <= running.idle_s < TIMEOUT
        # A one-step type: at its first step, and no progress to name it.
        assert (running.step, running.step_name) == (0, None)

        go.put_nowait(None)
        retrying = await wait_for_state(queue, job_id, "retrying")
        assert retrying.deliveries == 1
        assert retrying.last_error == "CloudError: boom 1"
        assert retrying.due_in_s is not None
        assert retrying.due_in_s <= 1.2
        assert retrying.due_at is not None
        assert retrying.entry_id is None

        again = await wait_for_state(queue, job_id, "running")
        assert (again.consumer, again.deliveries) == (worker.consumer, 2)
        assert again.entry_id != waiting.entry_id  # a retry is a new entry

        go.put_nowait(None)
        dead = await wait_for_state(queue, job_id, "dead")
    assert dead.reason == "failed 2 times (max_deliveries 2)"
    assert (dead.last_error, dead.deliveries) == ("CloudError: boom 2", 2)
    assert dead.dead_at is not None
    assert dead.dead_at >= before.replace(microsecond=0)
    assert dead.dead_id is not None
    assert dead.entry_id is not None
    assert dead.job is not None
    assert dead.job.args == {"n": 3}
    assert (dead.consumer, dead.due_at) == (None, None)
    assert runs == [3, 3]


async def test_a_dead_job_retried_is_waiting_again(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A dead job put back (``retry_dead``) is found waiting, with a fresh delivery count."""

    @registry.job("t", Item)
    async def handle(j: Job[Item]) -> None:
        raise CloudError("no")

    job_id = await queue.enqueue(job(1))
    async with serving(make_worker("t", max_deliveries=1)):
        await wait_for_state(queue, job_id, "dead")
    assert await queue.retry_dead("t", [job_id]) == [job_id]
    again = await queue.job("t", job_id)
    assert (again.state, again.deliveries, again.last_error) == ("waiting", 0, None)


async def test_an_id_never_seen_is_unknown(queue: Queue, backend: Backend, typed: Registry) -> None:
    """A random id, on a type with jobs and on a type with none: unknown, settled, nothing
    else set."""
    await queue.enqueue(job(1))
    for type_ in ("t", "never-used"):
        found = await queue.job(type_, str(uuid4()))
        assert (found.state, found.type, found.settled) == ("unknown", type_, True)
        assert (found.job, found.deliveries, found.entry_id, found.due_at) == (None,) * 4


async def test_ids_are_looked_up_literally(queue: Queue, typed: Registry) -> None:
    """Caller-given ids: one with ``*``, ``?`` or ``[...]`` in it never finds another job
    (the Redis schedule's MATCH pattern escapes them, and every match is checked)."""
    for n, given in enumerate(["job-a", "job-abc", "job-\\"]):
        await queue.enqueue(Job(type="t", args=Item(n), id=given), delay=60)
    for n, given in enumerate(["job-a", "job-abc", "job-\\"]):
        found = await queue.job("t", given)
        assert found.job is not None, (given, found)
        assert found.job.args == {"n": n}, (given, found)
    for pattern in ("job-?", "job-*", "job-[a]", "job-", "job-[a]bc"):
        assert (await queue.job("t", pattern)).state == "unknown", pattern


async def test_a_job_of_a_partitioned_type_is_found_in_its_partition(
    queue: Queue, backend_kind: str, typed: Registry
) -> None:
    """Jobs spread over the partitions (round robin) are each found, waiting, their entry ids
    naming their partition; on an unpartitioned backend the ids are plain."""
    ids = [await queue.enqueue(job(n)) for n in range(6)]
    found = [await queue.job("t", i) for i in ids]
    assert [f.state for f in found] == ["waiting"] * 6
    assert [f.job.args["n"] for f in found if f.job] == list(range(6))
    partitions = {f.entry_id.partition("@")[2] for f in found if f.entry_id}
    if backend_kind.endswith("partitioned"):
        assert partitions == {"0", "1", "2"}
    else:
        assert partitions == {""}


def test_sync_queue_answers_the_same(make_backend: Callable[[], Backend]) -> None:
    """``SyncQueue.job`` blocks and answers with the same JobState."""
    sync = SyncQueue(lambda: Queue(make_backend()))
    try:
        job_id = sync.enqueue(job(5), delay=60)
        found = sync.job("t", job_id)
        assert isinstance(found, JobState)
        assert (found.state, found.job_id) == ("scheduled", job_id)
        assert sync.job("t", "nope").state == "unknown"
    finally:
        sync.close()


async def test_a_running_job_s_idle_time_grows_without_its_worker(
    backend: Backend, queue: Queue, typed: Registry
) -> None:
    """A job delivered to a consumer that is gone stays ``running`` under that consumer, its
    idle time growing (a recovery pass takes it after claim_after)."""
    job_id = await queue.enqueue(job(1))
    await backend.ensure_groups(["t"])
    assert await backend.read(["t"], "gone-worker", 10, 10)
    first = await queue.job("t", job_id)
    await asyncio.sleep(0.1)
    later = await queue.job("t", job_id)
    assert (first.state, first.consumer, later.consumer) == (
        "running",
        "gone-worker",
        "gone-worker",
    )
    assert later.idle_s is not None
    assert first.idle_s is not None
    assert later.idle_s >= first.idle_s + 0.05


async def test_a_unique_job_is_found_like_any_other(queue: Queue, typed: Registry) -> None:
    """A unique job (whose schedule member is tagged by its id) is found scheduled, and one
    enqueued for now waiting; a duplicate enqueue answers the same job."""
    later = await queue.enqueue(job(1), unique_key="reservation:1", delay=60)
    now = await queue.enqueue(job(2), unique_key="reservation:2")
    assert (await queue.job("t", later)).state == "scheduled"
    assert (await queue.job("t", now)).state == "waiting"
    again = await queue.enqueue(job(3), unique_key="reservation:1")
    assert again.duplicate
    assert again == later
    found = await queue.job("t", again)
    assert found.job is not None
    assert found.job.args == {"n": 1}
