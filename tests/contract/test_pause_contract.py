"""Pause and resume on every backend: a paused type's jobs wait (running ones finish), other
types go on, a recovery pass and the ticker leave it alone, and a resume starts it again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from test_contract import TIMEOUT, Item, MakeWorker, serving, stats_of
from test_periodic_contract import INTERVAL, now_ms, periodic_registry, tick_times
from waiting import eventually

from streamq import Backend, ConfigError, Job, Queue, Registry, SyncQueue, Worker
from streamq.backends._base import Delivery

#: Longer than any read of the FAST settings blocks (0.05 s): a read that started before the
#: worker saw the pause has ended by then, so what is enqueued after it meets the pause.
SETTLE = 0.3


async def seen_paused(worker: Worker, *types: str) -> None:
    """Wait until ``worker`` sees exactly ``types`` paused, and for its reads to settle."""
    await eventually(lambda: worker.paused_types == frozenset(types))
    await asyncio.sleep(SETTLE)


def recording(registry: Registry, *types: str) -> tuple[list[tuple[str, int]], asyncio.Event]:
    """Register ``types`` with one step that records (type, n) once it ran; a job with n = 0
    waits for the returned event before it ends."""
    ran: list[tuple[str, int]] = []
    gate = asyncio.Event()

    def for_type(name: str) -> Callable[[Job[Item]], Any]:
        async def step(job: Job[Item]) -> None:
            if job.args.n == 0:
                await gate.wait()
            ran.append((name, job.args.n))

        return step

    for name in types:
        registry.register(name, Item, for_type(name))
    return ran, gate


async def test_a_running_job_finishes_and_new_ones_wait_for_the_resume(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Paused while a job runs: that job ends and is acked; jobs enqueued meanwhile wait
    (counted as waiting, none run) and run after the resume."""
    ran, gate = recording(registry, "t")
    worker = make_worker("t")
    async with serving(worker):
        await queue.enqueue(Job(type="t", args=Item(0)))
        await eventually(lambda: worker.in_flight == 1)
        assert await queue.pause("t") is True
        await seen_paused(worker, "t")
        await queue.enqueue_many([Job(type="t", args=Item(n)) for n in (1, 2, 3)])
        gate.set()
        await eventually(lambda: ran == [("t", 0)])
        await eventually(lambda: worker.processed == 1)
        await asyncio.sleep(SETTLE)
        stats = await stats_of(queue, "t")
        assert (stats.paused, stats.waiting, stats.in_flight, stats.processed) == (True, 3, 0, 1)
        assert ran == [("t", 0)]

        assert await queue.resume("t") is True
        await eventually(lambda: len(ran) == 4)
        await eventually(lambda: worker.processed == 4)
    stats = await stats_of(queue, "t")
    assert (stats.paused, stats.waiting, stats.processed) == (False, 0, 4)
    assert sorted(n for _, n in ran) == [0, 1, 2, 3]


async def test_a_paused_type_does_not_hold_up_another_type_of_the_same_worker(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """One worker serving a and b, a paused: b's jobs run, a's wait, and run once resumed."""
    ran, _ = recording(registry, "a", "b")
    worker = make_worker("a", "b")
    async with serving(worker):
        await queue.pause("a")
        await seen_paused(worker, "a")
        await queue.enqueue_many([Job(type=t, args=Item(n)) for n in (1, 2, 3) for t in "ab"])
        await eventually(lambda: sorted(ran) == [("b", 1), ("b", 2), ("b", 3)])
        await asyncio.sleep(SETTLE)
        assert [t for t, _ in ran] == ["b"] * 3
        assert (await stats_of(queue, "a")).waiting == 3
        await queue.resume("a")
        await eventually(lambda: len(ran) == 6)
    assert sorted(ran) == [(t, n) for t in "ab" for n in (1, 2, 3)]


async def test_stats_report_the_pause_and_a_second_pause_keeps_the_first(queue: Queue) -> None:
    """stats show paused, since when (the server's clock) and why; pausing again changes
    nothing and says so; resume clears it and says whether there was one."""
    before = time.time()
    assert await queue.pause("t", reason="  deploy\n of v2  ") is True
    after = time.time()
    stats = await stats_of(queue, "t")
    assert stats.paused is True
    assert stats.pause_reason == "deploy of v2"  # one line
    assert stats.paused_since is not None
    assert before - 1 <= stats.paused_since <= after + 1

    assert await queue.pause("t", reason="another") is False
    again = await stats_of(queue, "t")
    assert (again.paused_since, again.pause_reason) == (stats.paused_since, "deploy of v2")

    assert await queue.resume("t") is True
    assert await queue.resume("t") is False
    cleared = await stats_of(queue, "t")
    assert (cleared.paused, cleared.paused_since, cleared.pause_reason) == (False, None, "")


async def test_a_type_with_no_jobs_yet_can_be_paused_and_is_listed(queue: Queue) -> None:
    """Pausing a type nobody enqueued to yet works, and lists it among the types (a typo shows
    up in stats); resuming it takes it off the list again."""
    assert "fresh" not in await queue.types()
    assert await queue.pause("fresh") is True
    assert "fresh" in await queue.types()
    assert await queue.resume("fresh") is True
    assert "fresh" not in await queue.types()


async def test_bad_pauses_are_refused_and_change_nothing(queue: Queue) -> None:
    """A bad type name or an overlong reason is a ConfigError, and nothing is paused."""
    with pytest.raises(ConfigError, match="invalid job type name"):
        await queue.pause("bad{name")
    with pytest.raises(ConfigError, match="invalid job type name"):
        await queue.resume("")
    with pytest.raises(ConfigError, match="at most 200 characters"):
        await queue.pause("t", reason="x" * 201)
    assert not (await stats_of(queue, "t")).paused


async def test_a_recovery_pass_leaves_a_paused_types_idle_entries(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A dead worker's entries of a paused type stay with it past claim_after (no pass claims
    them); after the resume a live worker recovers and runs them."""
    ran, _ = recording(registry, "t")
    await queue.enqueue_many([Job(type="t", args=Item(n)) for n in (1, 2)])
    await backend.ensure_groups(["t"])
    held: list[Delivery] = []
    async with asyncio.timeout(TIMEOUT):
        while len(held) < 2:
            held += await backend.read(["t"], "ghost", 2 - len(held), 50)
    await queue.pause("t")
    worker = make_worker("t", claim_after=0.3, heartbeat=0.1)
    async with serving(worker):
        await eventually(lambda: worker.paused_types == {"t"})
        await asyncio.sleep(1.5)  # five times claim_after: passes every 0.075 s
        assert ran == []
        assert {p.consumer for p in await queue.pending("t")} == {"ghost"}
        await queue.resume("t")
        await eventually(lambda: len(ran) == 2)
        await eventually(lambda: worker.processed == 2)
    assert sorted(ran) == [("t", 1), ("t", 2)]


class _CountingReads:
    """The backend under test, counting the reads made through it (all else passes through)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._backend, name)

    async def read(
        self, types: Sequence[str], consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        self.reads += 1
        return await self._backend.read(types, consumer, count, block_ms)

    async def ack_and_read(self, *args: Any) -> Any:
        self.reads += 1
        return await self._backend.ack_and_read(*args)


async def test_a_worker_whose_types_are_all_paused_reads_nothing_and_stops_when_empty(
    backend: Backend, registry: Registry, queue: Queue
) -> None:
    """Every served type paused: the worker makes no read at all while it waits (no busy
    loop), a resume starts it, and stop_when_empty counts a paused type as empty (it does not
    wait for ever on jobs it may not take)."""
    ran, _ = recording(registry, "t", "u")
    await queue.enqueue_many([Job(type=t, args=Item(n)) for n in (1, 2) for t in "tu"])
    await queue.pause("t")
    await queue.pause("u")
    counting = _CountingReads(backend)
    worker = Worker(counting, registry, ["t", "u"], block=0.05)  # type: ignore[arg-type]
    async with serving(worker):
        await eventually(lambda: worker.paused_types == {"t", "u"})
        await asyncio.sleep(1.0)
        assert (counting.reads, ran) == (0, [])
        await queue.resume("u")
        await eventually(lambda: len(ran) == 2)
    assert sorted(ran) == [("u", 1), ("u", 2)]

    drained = Worker(backend, registry, ["t", "u"], block=0.05)
    await asyncio.wait_for(drained.run(stop_when_empty=True), TIMEOUT)
    stats = await stats_of(queue, "t")
    assert (stats.paused, stats.waiting, len(ran)) == (True, 2, 2)


async def test_no_tick_of_a_paused_type_fires_and_ticks_go_on_after_the_resume(
    make_backend: Callable[[], Backend],
) -> None:
    """A periodic schedule of a paused type enqueues nothing while paused (not one job per
    tick piling up); after the resume it fires again (the missed ticks as the catch-up rule
    says: at most the latest one)."""
    seen: list[str] = []
    registry, schedule = periodic_registry(seen)
    backend = make_backend()
    queue = Queue(backend, registry=registry)
    worker = Worker(backend, registry, ["beat"], concurrency=4, claim_after=2.0, block=0.05)
    try:
        async with serving(worker):
            await eventually(lambda: len(seen) >= 2)
            await queue.pause("beat")
            await eventually(lambda: worker.paused_types == {"beat"})
            paused_at = now_ms()
            await asyncio.sleep(1.2)  # six ticks
            resumed_at = now_ms()
            await queue.resume("beat")
            await asyncio.sleep(1.0)
        step = round(INTERVAL * 1000)
        ticks = tick_times(schedule, seen, paused_at - 10_000, now_ms() + 1000)
        assert len(set(ticks)) == len(ticks)
        during = [t for t in ticks if paused_at + step <= t < resumed_at - step]
        assert during == [], (paused_at, resumed_at, ticks)
        assert len([t for t in ticks if t >= resumed_at - step]) >= 3
    finally:
        await backend.aclose()


def test_sync_queue_pauses_and_resumes(
    make_backend: Callable[[], Backend], registry: Registry
) -> None:
    """SyncQueue has pause and resume as blocking calls, and its stats show the pause."""
    sync = SyncQueue(lambda: Queue(make_backend(), registry=registry))
    try:
        assert sync.pause("t", reason="maintenance") is True
        (stats,) = sync.stats(["t"])
        assert (stats.paused, stats.pause_reason) == (True, "maintenance")
        assert sync.resume("t") is True
        (stats,) = sync.stats(["t"])
        assert stats.paused is False
    finally:
        sync.close()
