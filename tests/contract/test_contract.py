"""The contract every backend meets, pinned through Queue and Worker on memory and on Redis."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import pytest
from waiting import eventually

from streamq import (
    Backend,
    InvalidJobError,
    Job,
    Principal,
    Queue,
    Registry,
    SyncQueue,
    TypeStats,
    UnknownJobTypeError,
    Worker,
    _codec,
)
from streamq.backends._base import HANDED_BACK

MakeWorker = Callable[..., Worker]
TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the simple test jobs."""

    n: int


@dataclass(frozen=True, slots=True)
class Count:
    """Args whose one field must be an int."""

    count: int


@dataclass(frozen=True, slots=True)
class Placement:
    """A nested args dataclass."""

    zone: str
    size: int


@dataclass(frozen=True, slots=True)
class Rich:
    """Args with every kind of field a job type declares."""

    name: str
    count: int
    ratio: float
    enabled: bool
    tags: list[str]
    placement: Placement
    mode: Literal["fast", "safe"]
    note: str | None = None
    labels: list[str] = field(default_factory=list)


def fifo(queue: Queue, type: str) -> bool:
    """Whether the type's jobs are delivered in enqueue order (one stream: not partitioned)."""
    streams = getattr(queue.backend, "streams", None)
    return streams is None or len(streams(type)) == 1


@contextlib.asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker`` in the background; stop it and wait for its run to end on exit."""
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, TIMEOUT)


async def drain(worker: Worker) -> None:
    """Run ``worker`` until every stream it serves is empty."""
    await asyncio.wait_for(worker.run(stop_when_empty=True), TIMEOUT)


async def dead_count_is(queue: Queue, type: str, n: int) -> bool:
    """Whether ``type`` has exactly ``n`` dead letters."""
    return len(await queue.dead(type)) == n


async def stats_of(queue: Queue, type: str) -> TypeStats:
    """The one TypeStats of ``type``."""
    (stats,) = await queue.stats([type])
    return stats


# the happy path ---------------------------------------------------------------------------


async def test_enqueued_jobs_are_handled_and_acknowledged(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Each job reaches its handler with id, account, identity and request id, then is acked."""
    seen: list[Job[Item]] = []

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        seen.append(job)

    who = Principal(account_number="acct-42", org_id="org-7", type="User", user="jdoe")
    ids = [
        await queue.enqueue(
            Job(type="t", args=Item(n), account_id=1000 + n, identity=who, request_id=f"req-{n}")
        )
        for n in range(5)
    ]
    assert len(set(ids)) == 5

    await drain(make_worker("t"))

    by_id = {job.id: job for job in seen}
    assert len(seen) == 5
    assert set(by_id) == set(ids)
    for n, job_id in enumerate(ids):
        job = by_id[job_id]
        assert job.type == "t"
        assert job.args == Item(n)
        assert job.account_id == 1000 + n
        assert job.identity == who
        assert job.request_id == f"req-{n}"
    stats = await stats_of(queue, "t")
    assert (stats.waiting, stats.in_flight, stats.processed, stats.enqueued) == (0, 0, 5, 5)
    assert (stats.failed, stats.retried, stats.dead) == (0, 0, 0)
    assert (await backend.stats("t")).length == 0


async def test_jobs_of_one_type_run_in_enqueue_order(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """With concurrency 1, fifty jobs of a type are handled in the order they were enqueued."""
    if not fifo(queue, "t"):
        pytest.skip("a partitioned type keeps order per partition key (test_partitions.py)")
    order: list[int] = []

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        order.append(job.args.n)

    for n in range(50):
        await queue.enqueue(Job(type="t", args=Item(n)))

    await drain(make_worker("t", concurrency=1))

    assert order == list(range(50))


async def test_typed_args_arrive_as_their_dataclass(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Args round-trip as the type's dataclass; dict args are validated and converted at enqueue."""
    seen: dict[str, Rich] = {}

    @registry.job("rich", Rich)
    async def handle(job: Job[Rich]) -> None:
        assert job.id is not None
        seen[job.id] = job.args

    full = Rich(
        name="web-1",
        count=3,
        ratio=0.25,
        enabled=True,
        tags=["a", "b"],
        placement=Placement(zone="eu-1a", size=8),
        mode="safe",
        note="hello",
        labels=["x"],
    )
    as_dict = {
        "name": "db-2",
        "count": 1,
        "ratio": 1.5,
        "enabled": False,
        "tags": [],
        "placement": {"zone": "us-2b", "size": 2},
        "mode": "fast",
    }
    from_instance = await queue.enqueue(Job(type="rich", args=full))
    from_dict = await queue.enqueue(Job(type="rich", args=as_dict))

    with pytest.raises(InvalidJobError, match=r"args\.placement\.size") as bad_nested:
        await queue.enqueue(
            Job(type="rich", args=as_dict | {"placement": {"zone": "z", "size": "8"}})
        )
    assert bad_nested.value.job_type == "rich"
    with pytest.raises(InvalidJobError, match=r"args\.mode"):
        await queue.enqueue(Job(type="rich", args=as_dict | {"mode": "reckless"}))

    await drain(make_worker("rich"))

    assert seen[from_instance] == full
    assert type(seen[from_instance]) is Rich
    assert type(seen[from_instance].placement) is Placement
    assert seen[from_dict] == Rich(
        name="db-2",
        count=1,
        ratio=1.5,
        enabled=False,
        tags=[],
        placement=Placement(zone="us-2b", size=2),
        mode="fast",
        note=None,
    )
    assert type(seen[from_dict]) is Rich
    assert type(seen[from_dict].placement) is Placement
    assert len(seen) == 2
    assert (await stats_of(queue, "rich")).enqueued == 2


# poison --------------------------------------------------------------------------------------


async def test_invalid_args_are_dead_lettered_at_once(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Args that do not fit the type go to the dead stream on first delivery, naming the field."""
    handled: list[int] = []

    @registry.job("count", Count)
    async def handle(job: Job[Count]) -> None:
        handled.append(job.args.count)

    # A producer that does not know the types (no registry) cannot check args.
    unchecked = Queue(backend)
    bad_id = await unchecked.enqueue(Job(type="count", args={"count": "x"}))

    worker = make_worker("count")
    async with serving(worker) as task:
        await eventually(lambda: dead_count_is(queue, "count", 1))
        good_id = await queue.enqueue(Job(type="count", args=Count(7)))
        await eventually(lambda: handled == [7])
        assert not task.done()

    (dead,) = await queue.dead("count")
    assert dead.job_id == bad_id != good_id
    assert dead.deliveries == 1
    assert "args.count" in dead.reason
    assert handled == [7]
    stats = await stats_of(queue, "count")
    assert (stats.dead, stats.processed, stats.failed, stats.retried) == (1, 1, 0, 0)
    assert (stats.waiting, stats.in_flight) == (0, 0)

    # A queue that knows the types refuses such args before they reach a stream.
    with pytest.raises(InvalidJobError, match=r"args\.count") as refused:
        await queue.enqueue(Job(type="count", args={"count": "x"}))
    assert refused.value.job_type == "count"
    with pytest.raises(InvalidJobError, match=r"args\.count"):
        await queue.enqueue_many(
            [Job(type="count", args=Count(1)), Job(type="count", args={"count": "x"})]
        )
    stats = await stats_of(queue, "count")
    assert (stats.enqueued, stats.waiting) == (2, 0)


async def test_undecodable_and_unknown_entries_are_dead_lettered(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Entries that cannot be decoded or name an unknown type go dead with a reason; no crash."""
    handled: list[int] = []

    @registry.job("t1", Item)
    async def handle(job: Job[Item]) -> None:
        handled.append(job.args.n)

    registry.register("t2", Item, handle)

    poison: list[tuple[_codec.Fields, str]] = [
        (_codec.encode(Job(type="nope", args={}), "id-nope"), "unknown job type 'nope'"),
        (_codec.encode(Job(type="t2", args={"n": 1}), "id-t2"), "of type 't2' on the stream"),
        ({b"garbage": b"\xff"}, "unsupported envelope version 'missing'"),
        ({b"id": b"id-v9", b"v": b"9", b"job": b"{}"}, "unsupported envelope version '9'"),
        ({b"id": b"id-json", b"v": b"1", b"job": b"{not json"}, "not valid JSON"),
        ({b"id": b"id-env", b"v": b"1", b"job": b"{}"}, "invalid envelope"),
        ({b"id": b"id-nobody", b"v": b"1"}, "missing job body"),
    ]
    entry_ids = [await backend.enqueue("t1", fields) for fields, _ in poison]
    await queue.enqueue(Job(type="t1", args=Item(1)))

    await drain(make_worker("t1"))

    dead = {d.entry_id: d for d in await queue.dead("t1")}
    assert sorted(dead) == sorted(entry_ids)
    for entry_id, (fields, reason) in zip(entry_ids, poison, strict=True):
        entry = dead[entry_id]
        assert reason in entry.reason, entry.reason
        assert entry.deliveries == 1
        assert entry.fields == fields
        assert entry.job_id == _codec.job_id_of(fields)
    assert handled == [1]
    stats = await stats_of(queue, "t1")
    assert (stats.dead, stats.processed, stats.failed, stats.waiting, stats.in_flight) == (
        len(poison),
        1,
        0,
        0,
        0,
    )

    with pytest.raises(UnknownJobTypeError):
        await queue.enqueue(Job(type="nope", args={}))


# failures ------------------------------------------------------------------------------------


async def test_failing_handler_is_retried_with_growing_backoff_then_dead(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A raising handler runs max_deliveries times, waiting longer each time, then goes dead."""
    calls: list[float] = []

    @registry.job("flaky", Item)
    async def handle(job: Job[Item]) -> None:
        calls.append(time.monotonic())
        raise RuntimeError(f"boom {len(calls)}")

    job_id = await queue.enqueue(Job(type="flaky", args=Item(1)))
    # claim_after is long, so only the scheduled retries (0.1, 0.2, 0.4 s) bring the job back.
    worker = make_worker("flaky", max_deliveries=4, retry_base=0.1, claim_after=2.0, heartbeat=0.2)
    await drain(worker)

    assert len(calls) == 4
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] < gaps[1] < gaps[2], gaps
    (dead,) = await queue.dead("flaky")
    assert dead.job_id == job_id
    assert dead.deliveries == 4
    assert dead.error == "RuntimeError: boom 4"
    assert "4" in dead.reason
    stats = await stats_of(queue, "flaky")
    assert (stats.failed, stats.retried, stats.dead, stats.processed) == (4, 3, 1, 0)
    assert (stats.in_flight, stats.waiting) == (0, 0)


async def test_each_retry_runs_when_due_not_at_the_next_recovery_pass(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Jobs failing at different times are each retried at their own due time."""
    calls: dict[int, int] = {}

    @registry.job("flaky", Item)
    async def handle(job: Job[Item]) -> None:
        calls[job.args.n] = calls.get(job.args.n, 0) + 1
        if calls[job.args.n] == 1:
            # All fail before the first retry is due, each 30 ms after the previous one.
            await asyncio.sleep(0.03 * job.args.n)
            raise RuntimeError("first delivery fails")

    await queue.enqueue_many([Job(type="flaky", args=Item(n)) for n in range(3)])
    # A recovery pass comes every claim_after / 4 = 7.5 s: the retries (0.1 s after each
    # failure) finish well within the timeout only if the worker wakes for every one of them.
    worker = make_worker("flaky", max_deliveries=2, retry_base=0.1, claim_after=30.0, heartbeat=1.0)
    await asyncio.wait_for(worker.run(stop_when_empty=True), 5.0)

    assert calls == {0: 2, 1: 2, 2: 2}
    stats = await stats_of(queue, "flaky")
    assert (stats.processed, stats.retried, stats.dead, stats.in_flight) == (3, 3, 0, 0)


async def test_job_timeout_cancels_the_step(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A delivery longer than its type's timeout is cancelled and fails with JobTimeoutError."""
    events: list[str] = []

    async def slow(job: Job[Item]) -> None:
        events.append("started")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            events.append("finally")

    registry.register("slow", Item, slow, timeout=0.2)
    await queue.enqueue(Job(type="slow", args=Item(1)))

    await drain(make_worker("slow", max_deliveries=1))

    assert events == ["started", "cancelled", "finally"]
    (dead,) = await queue.dead("slow")
    assert dead.error.startswith("JobTimeoutError: ")
    assert "0.2" in dead.error
    assert dead.deliveries == 1
    stats = await stats_of(queue, "slow")
    assert (stats.failed, stats.dead, stats.processed, stats.in_flight) == (1, 1, 0, 0)


async def test_steps_run_in_order_sync_in_threads(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Steps run in order, sync ones in a worker thread, and a raising step stops the rest; its
    retry resumes at the step that raised (the steps before it are not run again)."""
    loop_thread = threading.get_ident()
    steps: dict[int, list[str]] = {}
    threads: dict[str, set[int]] = {"a": set(), "b": set(), "c": set()}
    lock = threading.Lock()

    def record(job: Job[Item], name: str) -> None:
        with lock:
            steps.setdefault(job.args.n, []).append(name)
            threads[name].add(threading.get_ident())

    def a(job: Job[Item]) -> None:
        record(job, "a")

    async def b(job: Job[Item]) -> None:
        await asyncio.sleep(0)
        record(job, "b")
        if job.args.n < 0:
            raise ValueError("step b refuses negative numbers")

    def c(job: Job[Item]) -> None:
        record(job, "c")

    registry.register("three", Item, a, b, c)
    await queue.enqueue_many([Job(type="three", args=Item(n)) for n in range(6)])
    await queue.enqueue(Job(type="three", args=Item(-1)))

    await drain(make_worker("three", max_deliveries=2))

    for n in range(6):
        assert steps[n] == ["a", "b", "c"]
    assert steps[-1] == ["a", "b", "b"]
    assert loop_thread not in threads["a"] | threads["c"]
    assert threads["b"] == {loop_thread}
    (dead,) = await queue.dead("three")
    assert dead.error == "ValueError: step b refuses negative numbers"
    stats = await stats_of(queue, "three")
    assert (stats.processed, stats.failed, stats.dead) == (6, 2, 1)


# dead letters --------------------------------------------------------------------------------


async def test_dead_jobs_can_be_retried_and_purged(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """retry_dead puts the chosen dead jobs back for a new run; purge_dead empties the dead."""
    failing = True
    done: list[str | None] = []

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        if failing:
            raise RuntimeError("not yet")
        done.append(job.id)

    first, second = await queue.enqueue_many([Job(type="t", args=Item(n)) for n in (1, 2)])
    await drain(make_worker("t", max_deliveries=1))
    assert sorted(d.job_id or "" for d in await queue.dead("t")) == sorted([first, second])

    failing = False
    assert await queue.retry_dead("t", [first]) == [first]
    assert [d.job_id for d in await queue.dead("t")] == [second]
    await drain(make_worker("t", max_deliveries=1))

    assert done == [first]
    stats = await stats_of(queue, "t")
    assert (stats.enqueued, stats.processed, stats.dead, stats.waiting) == (3, 1, 1, 0)
    assert await queue.purge_dead("t") == 1
    assert await queue.dead("t") == []
    assert (await stats_of(queue, "t")).dead == 0
    assert await queue.purge_dead("t") == 0


class _OtherClientFirst:
    """The backend under test, where another client's retry or purge of the dead stream lands
    between ``Queue.retry_dead``'s listing and its retry (everything else passes through)."""

    def __init__(self, backend: Backend, steal: Callable[[], Awaitable[object]]) -> None:
        self._backend = backend
        self._steal = steal

    def __getattr__(self, name: str) -> object:
        return getattr(self._backend, name)

    async def dead_retry(self, type: str, dead_ids: list[str]) -> list[str]:
        await self._steal()
        return await self._backend.dead_retry(type, dead_ids)


async def _three_dead(registry: Registry, queue: Queue, make_worker: MakeWorker) -> list[str]:
    """Three jobs of type t, each dead-lettered after one failed delivery; their job ids."""

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        raise RuntimeError("not yet")

    ids = await queue.enqueue_many([Job(type="t", args=Item(n)) for n in range(3)])
    await drain(make_worker("t", max_deliveries=1))
    assert len(await queue.dead("t")) == 3
    return ids


async def test_dead_retry_returns_only_the_dead_ids_it_redrove(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """backend.dead_retry returns the dead ids it re-drove, not those already gone."""
    await _three_dead(registry, queue, make_worker)
    first, second, third = [d.dead_id for d in await queue.dead("t")]
    assert await backend.dead_retry("t", [first]) == [first]
    assert await backend.dead_retry("t", [first, second]) == [second]
    assert await backend.dead_retry("t", [second, first]) == []
    assert [d.dead_id for d in await queue.dead("t")] == [third]
    assert (await stats_of(queue, "t")).waiting == 2


@pytest.mark.parametrize("other", ["retried", "purged"])
async def test_retry_dead_reports_only_jobs_it_redrove(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker, other: str
) -> None:
    """retry_dead names only the jobs it re-drove: not one another client retried or purged
    between its listing and its retry."""
    ids = await _three_dead(registry, queue, make_worker)
    by_job = {d.job_id: d.dead_id for d in await queue.dead("t")}

    async def steal() -> object:
        if other == "purged":
            return await backend.dead_purge("t")
        return await backend.dead_retry("t", [by_job[ids[0]]])

    racing = Queue(_OtherClientFirst(backend, steal))  # type: ignore[arg-type]
    done = await racing.retry_dead("t", ids)
    assert sorted(done) == ([] if other == "purged" else sorted(ids[1:]))
    assert await queue.dead("t") == []
    assert (await stats_of(queue, "t")).waiting == (0 if other == "purged" else 3)


# in flight and shutdown ----------------------------------------------------------------------


async def test_running_jobs_are_pending_and_in_flight(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Blocked jobs show in pending() under the worker and as in_flight; no slot is hoarded."""
    release = asyncio.Event()
    running: set[str] = set()
    most = 0

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        nonlocal most
        assert job.id is not None
        running.add(job.id)
        most = max(most, len(running))
        await release.wait()
        running.discard(job.id)

    ids = await queue.enqueue_many([Job(type="t", args=Item(n)) for n in range(5)])
    worker = make_worker("t", concurrency=2)
    async with serving(worker):
        await eventually(lambda: len(running) == 2)
        pending = await queue.pending("t")
        stats = await stats_of(queue, "t")
        assert {p.job_id for p in pending} == running
        if fifo(queue, "t"):
            assert running == set(ids[:2])
        assert all(p.consumer == worker.consumer and p.deliveries == 1 for p in pending)
        assert (stats.in_flight, stats.waiting) == (2, 3)
        assert stats.consumers[worker.consumer].in_flight == 2
        assert worker.in_flight == 2
        release.set()
        await eventually(lambda: worker.processed == 5)

    assert most == 2
    assert await queue.pending("t") == []
    stats = await stats_of(queue, "t")
    assert (stats.in_flight, stats.waiting, stats.processed) == (0, 0, 5)


async def test_stop_lets_running_jobs_finish_within_grace(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """stop() waits for running jobs up to shutdown_grace; they finish and are acknowledged."""
    release = asyncio.Event()
    started: list[int] = []
    finished: list[int] = []

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        started.append(job.args.n)
        await release.wait()
        finished.append(job.args.n)

    await queue.enqueue_many([Job(type="t", args=Item(n)) for n in range(3)])
    worker = make_worker("t", shutdown_grace=5.0)
    run = asyncio.create_task(worker.run())
    await eventually(lambda: len(started) == 3)
    worker.stop()
    await asyncio.sleep(0.1)  # the stop is under way, the jobs still running
    assert not run.done()
    release.set()
    await asyncio.wait_for(run, TIMEOUT)

    assert sorted(finished) == [0, 1, 2]
    assert worker.processed == 3
    stats = await stats_of(queue, "t")
    assert (stats.processed, stats.in_flight, stats.waiting) == (3, 0, 0)


async def test_stop_past_grace_cancels_and_leaves_the_job_pending(
    make_backend: Callable[[], Backend],
    registry: Registry,
    queue: Queue,
    make_worker: MakeWorker,
) -> None:
    """A job running past the grace is cancelled, stays pending, and another worker runs it."""
    calls: list[str] = []

    @registry.job("long", Item)
    async def handle(job: Job[Item]) -> None:
        calls.append("started")
        if len(calls) > 1:
            calls.append("completed")
            return
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            calls.append("cancelled")
            raise

    job_id = await queue.enqueue(Job(type="long", args=Item(1)))
    first = make_worker("long", shutdown_grace=0.1)
    run = asyncio.create_task(first.run())
    await eventually(lambda: calls == ["started"])
    first.stop()
    await asyncio.wait_for(run, TIMEOUT)

    assert calls == ["started", "cancelled"]
    assert first.processed == 0
    stats = await stats_of(queue, "long")
    assert (stats.in_flight, stats.waiting, stats.processed) == (1, 0, 0)
    (pending,) = await queue.pending("long")
    # Handed back: held by the hand-back consumer until claimed, the stop not counted.
    assert (pending.job_id, pending.consumer, pending.deliveries) == (job_id, HANDED_BACK, 0)

    other = make_backend()
    try:
        second = make_worker("long", on=other)
        await drain(second)
    finally:
        if other is not queue.backend:
            await other.aclose()

    assert calls == ["started", "cancelled", "started", "completed"]
    assert second.processed == 1
    stats = await stats_of(queue, "long")
    assert (stats.in_flight, stats.waiting, stats.processed, stats.dead) == (0, 0, 1, 0)


# the sync queue ------------------------------------------------------------------------------


def test_sync_queue_enqueues_from_sync_code(
    make_backend: Callable[[], Backend], registry: Registry
) -> None:
    """SyncQueue works from code with no event loop; a worker later processes what it enqueued."""
    done: list[str | None] = []

    @registry.job("t", Item)
    async def handle(job: Job[Item]) -> None:
        done.append(job.id)

    sync = SyncQueue(lambda: Queue(make_backend(), registry=registry))
    try:
        ids = [sync.enqueue(Job(type="t", args=Item(0)))]
        ids += sync.enqueue_many(Job(type="t", args=Item(n)) for n in (1, 2))
        (stats,) = sync.stats(["t"])
        assert (stats.enqueued, stats.waiting) == (3, 3)
        with pytest.raises(InvalidJobError, match=r"args\.n"):
            sync.enqueue(Job(type="t", args={"n": "x"}))
    finally:
        sync.close()

    async def consume() -> None:
        backend = make_backend()
        try:
            await drain(Worker(backend, registry, ["t"], block=0.05))
        finally:
            await backend.aclose()

    asyncio.run(consume())
    assert sorted(i or "" for i in done) == sorted(ids)


async def test_eviction_policy_of_a_default_server(backend: Backend) -> None:
    """A server left at its default (and every master of a cluster) reports noeviction, and so
    does the memory backend, which never evicts a job."""
    assert await backend.eviction_policy() == "noeviction"
