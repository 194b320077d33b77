"""What a task per delivery used to give for free, pinned now that lanes run the deliveries.

The worker runs deliveries on ``concurrency`` long-lived lanes (streamq/_worker/lanes.py). These
tests hold the properties a handler author relies on: asyncio's own tools inside a handler act on
that handler, nothing one job binds for its logs reaches the next, a time limit that fired leaves
the lane clean, and jobs that wait on I/O still run side by side up to the concurrency.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from test_contract import fifo

from streamq import Backend, Job, Principal, Queue, Registry, Worker
from streamq._logging import job_fields

MakeWorker = Callable[..., Worker]


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


async def drain(worker: Worker) -> None:
    await asyncio.wait_for(worker.run(stop_when_empty=True), 10.0)


async def test_asyncio_timeout_inside_a_handler_is_the_handlers_own(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A handler's own ``asyncio.timeout`` cancels that handler, not the worker; its
    TimeoutError is an ordinary error, not the job's time limit, and the worker goes on."""
    done: list[int] = []

    async def handler(job: Job[Item]) -> None:
        if job.args.n == 0:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(10)
        await asyncio.sleep(0.01)
        done.append(job.args.n)

    registry.register("own_timeout", Item, handler)
    await queue.enqueue_many([Job(type="own_timeout", args=Item(n)) for n in range(4)])

    await drain(make_worker("own_timeout", concurrency=1, max_deliveries=1))

    assert sorted(done) == [1, 2, 3]
    (dead,) = await queue.dead("own_timeout")
    assert dead.error.startswith("TimeoutError")
    assert "JobTimeoutError" not in dead.error


async def test_log_fields_bound_by_one_job_do_not_reach_the_next(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Each delivery has a context of its own, even when one lane runs them all."""
    seen: dict[int, dict[str, Any]] = {}

    async def handler(job: Job[Item]) -> None:
        seen[job.args.n] = structlog.contextvars.get_contextvars()
        structlog.contextvars.bind_contextvars(leaked=job.args.n)
        await asyncio.sleep(0)

    registry.register("ctx", Item, handler)
    jobs = [await queue.enqueue(Job(type="ctx", args=Item(n))) for n in range(3)]

    await drain(make_worker("ctx", concurrency=1))

    assert sorted(seen) == [0, 1, 2]
    for n, fields in seen.items():
        assert "leaked" not in fields
        assert fields["job_id"] == jobs[n]
        assert fields["job_type"] == "ctx"


@dataclass(frozen=True, slots=True)
class Reserved:
    """Args with a reservation id of changing JSON types (1 and true are not the same)."""

    n: int
    reservation_id: int | bool | None = None


async def test_each_job_on_a_lane_logs_its_own_fields(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """One lane runs jobs of changing accounts, requests, reservations and delivery counts, some
    of which rebind or clear the log fields themselves: each job still starts with exactly its
    own fields (a lane reuses its last job's context only where that job changed nothing)."""
    seen: dict[tuple[int, int], dict[str, Any]] = {}

    async def handler(job: Job[Reserved]) -> None:
        fields = structlog.contextvars.get_contextvars()
        seen[job.args.n, fields["deliveries"]] = fields
        if job.args.n % 4 == 1:
            structlog.contextvars.bind_contextvars(org_id="rebound", extra=job.args.n)
        if job.args.n % 5 == 2:
            structlog.contextvars.clear_contextvars()
        if job.args.n == 6 and fields["deliveries"] == 1:
            raise RuntimeError("once")  # delivered again, with deliveries 2

    registry.register("fields", Reserved, handler)
    reservations = [1, True, 1, None, 1, 1, True]
    jobs = [
        Job(
            type="fields",
            args=Reserved(n, reservations[n % len(reservations)]),
            account_id=n // 3,
            identity=Principal(account_number=f"a{n // 3}", org_id=f"o{n // 2}", user="u"),
            request_id=None if n % 3 else f"r{n}",
        )
        for n in range(14)
    ]
    ids = [await queue.enqueue(job) for job in jobs]

    await drain(make_worker("fields", concurrency=1, max_deliveries=2))

    assert sorted(seen) == sorted([(n, 1) for n in range(14)] + [(6, 2)])
    for (n, deliveries), fields in seen.items():
        expected = job_fields(dataclasses.replace(jobs[n], id=ids[n]), deliveries)
        assert {k: fields[k] for k in expected} == expected, (n, deliveries)
        assert type(fields["reservation_id"]) is type(jobs[n].args.reservation_id)
        assert "extra" not in fields
        # (trace ids too, when an earlier test left a tracing SDK installed)
        assert fields.keys() - {"trace_id", "span_id"} == expected.keys() | {"entry_id"}


async def test_a_poison_entry_after_a_job_logs_none_of_that_jobs_fields(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """On a lane, an entry that does not decode comes after a job of account 5: the lines about
    the poison carry its own fields only, none left from the job before it."""

    async def handler(job: Job[Reserved]) -> None:
        pass

    registry.register("mixed", Reserved, handler)
    ident = Principal(account_number="acct-5", org_id="org-5", user="u")
    poison = [
        {b"id": b"p-json", b"v": b"1", b"job": b"{not json"},
        {b"garbage": b"\xff"},
        {b"id": b"p-env", b"v": b"1", b"job": b"{}"},
    ]
    for fields in poison:
        await queue.enqueue(
            Job(type="mixed", args=Reserved(1, 9), account_id=5, identity=ident, request_id="r5")
        )
        await backend.enqueue("mixed", fields)

    # capture_logs(processors=...) would do, but only from structlog 25.5 (the floor is lower).
    capture, saved = structlog.testing.LogCapture(), structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        await drain(make_worker("mixed", concurrency=1))
    finally:
        structlog.configure(**saved)
    logs = capture.entries

    dead_lines = [e for e in logs if e["event"] == "streamq.job.dead"]
    assert len(dead_lines) == len(poison)
    for line in dead_lines:
        assert line["job_id"] in ("p-json", None, "p-env"), line
        for key, leaked in [
            ("account_id", 5),
            ("account_number", "acct-5"),
            ("org_id", "org-5"),
            ("request_id", "r5"),
            ("reservation_id", 9),
        ]:
            assert line.get(key) != leaked, (key, line)


async def test_a_lane_runs_normally_after_its_job_hit_the_time_limit(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """The time limit's cancel is withdrawn once it has stopped the job: the next job on the
    same lane awaits as usual and succeeds."""
    finished: list[int] = []

    async def handler(job: Job[Item]) -> None:
        await asyncio.sleep(10 if job.args.n == 0 else 0.05)
        finished.append(job.args.n)

    registry.register("limited", Item, handler, timeout=0.2)
    await queue.enqueue_many([Job(type="limited", args=Item(n)) for n in range(3)])

    worker = make_worker("limited", concurrency=1, max_deliveries=1)
    await drain(worker)

    assert sorted(finished) == [1, 2]
    (dead,) = await queue.dead("limited")
    assert dead.error.startswith("JobTimeoutError")
    assert worker.processed == 2


async def test_jobs_waiting_on_io_run_side_by_side_up_to_the_concurrency(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Jobs that suspend fill every lane, and never more than the concurrency."""
    running = 0
    most = 0

    async def handler(job: Job[Item]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.1)
        finally:
            running -= 1

    registry.register("io", Item, handler)
    await queue.enqueue_many([Job(type="io", args=Item(n)) for n in range(20)])

    worker = make_worker("io", concurrency=5)
    await drain(worker)

    assert most == 5
    assert worker.processed == 20


async def test_jobs_that_never_suspend_all_run_and_are_acked(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Handlers that finish without awaiting anything run one after another on a lane."""
    ran: list[int] = []

    async def handler(job: Job[Item]) -> None:
        ran.append(job.args.n)

    registry.register("instant", Item, handler)
    await queue.enqueue_many([Job(type="instant", args=Item(n)) for n in range(200)])

    worker = make_worker("instant", concurrency=16)
    await drain(worker)

    assert sorted(ran) == list(range(200))
    assert worker.processed == 200
    (stats,) = await queue.stats(["instant"])
    assert (stats.waiting, stats.in_flight, stats.processed) == (0, 0, 200)


async def test_a_cancelled_error_of_the_handlers_own_is_a_failure(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A handler that lets out a CancelledError nobody asked for (a future it awaited was
    cancelled) fails like any error; the worker keeps all its lanes."""
    done: list[int] = []

    async def handler(job: Job[Item]) -> None:
        if job.args.n == 0:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(fut.cancel)
            await fut
        done.append(job.args.n)

    registry.register("own_cancel", Item, handler)
    await queue.enqueue_many([Job(type="own_cancel", args=Item(n)) for n in range(3)])

    worker = make_worker("own_cancel", concurrency=1, max_deliveries=1)
    await drain(worker)

    assert sorted(done) == [1, 2]
    (dead,) = await queue.dead("own_cancel")
    assert dead.error.startswith("CancelledError")


async def test_a_bug_in_the_worker_frees_the_slot_and_keeps_the_entry_pending(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """If running a delivery crashes the worker's own code (simulated here by breaking the
    runner for one job), the error is logged, the slot is freed for the next jobs, and the entry
    stays pending, not acked, for recovery to run it again."""
    ran: list[int] = []

    async def handler(job: Job[Item]) -> None:
        ran.append(job.args.n)

    registry.register("buggy", Item, handler)
    await queue.enqueue_many([Job(type="buggy", args=Item(n)) for n in range(4)])
    worker = make_worker("buggy", concurrency=1, claim_after=30, heartbeat=1)
    real_run = worker._runner.run
    broken: list[str] = []

    def run(d: Any, limit: Any = None) -> Any:
        if not broken:
            broken.append(d.entry_id)
            raise RuntimeError("a bug in the worker")
        return real_run(d, limit)

    worker._runner.run = run  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(worker.run())
        try:
            for _ in range(200):
                if len(ran) == 3:
                    break
                await asyncio.sleep(0.02)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)

    assert len(set(ran)) == 3
    if fifo(queue, "buggy"):
        assert sorted(ran) == [1, 2, 3]  # the first job was the broken one
    assert any(e["event"] == "streamq.worker.job_task_crashed" for e in logs)
    pending = await queue.pending("buggy")
    assert [p.entry_id for p in pending] == broken
