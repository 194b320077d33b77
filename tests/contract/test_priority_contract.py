"""Job priorities (``enqueue(priority=...)``): workers take higher levels first, a lower level
with jobs waiting is passed over at most ``PASS_LIMIT`` slots in a row, a retry keeps its
level, and job state, pending, stats and cancel see level jobs (docs/flow-control.md,
"Priorities"). A partitioned type refuses a priority with a clear error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from test_contract import serving
from waiting import eventually

from streamq import PRIORITIES, Backend, ConfigError, Job, Queue, Registry, Worker
from streamq.backends._priority import PASS_LIMIT

MakeWorker = Callable[..., Worker]


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs: a number, and its level (for the handler's record)."""

    n: int
    level: str = "default"


def partitioned(backend_kind: str) -> bool:
    """Whether every type of this backend is partitioned (priorities refused there)."""
    return backend_kind.endswith("partitioned")


def record_starts(registry: Registry, gate: asyncio.Event | None = None) -> list[Item]:
    """Register ``work``: each start appends its args; the first start waits for ``gate``."""
    starts: list[Item] = []

    async def handler(job: Job[Item]) -> None:
        starts.append(job.args)
        if gate is not None and len(starts) == 1:
            await gate.wait()

    registry.register("work", Item, handler)
    return starts


async def test_an_unknown_level_is_refused(queue: Queue, registry: Registry) -> None:
    """A priority that is not high, default or low raises ConfigError naming the levels."""
    record_starts(registry)
    assert PRIORITIES == ("high", "default", "low")
    with pytest.raises(ConfigError, match="high, default, low"):
        await queue.enqueue(Job(type="work", args=Item(0)), priority="urgent")
    with pytest.raises(ConfigError, match="unknown priority"):
        await queue.enqueue_many([Job(type="work", args=Item(0))], priority="HIGH")


async def test_a_high_job_enqueued_after_a_low_backlog_starts_next(
    registry: Registry, queue: Queue, make_worker: MakeWorker, backend_kind: str
) -> None:
    """A worker at -c 1 runs a backlog of low jobs; a high job enqueued while the first low
    one runs is the next to start, before the 5 other low jobs."""
    gate = asyncio.Event()
    starts = record_starts(registry, gate)
    low = [Job(type="work", args=Item(n, "low")) for n in range(6)]
    if partitioned(backend_kind):
        with pytest.raises(ConfigError, match="partitioned"):
            await queue.enqueue_many(low, priority="low")
        return
    await queue.enqueue_many(low, priority="low")
    async with serving(make_worker("work", concurrency=1)):
        await eventually(lambda: len(starts) == 1)
        await queue.enqueue(Job(type="work", args=Item(100, "high")), priority="high")
        gate.set()
        await eventually(lambda: len(starts) == 7)
    assert [s.n for s in starts] == [0, 100, 1, 2, 3, 4, 5]


async def test_a_lower_level_is_not_starved_under_a_steady_high_load(
    registry: Registry, queue: Queue, make_worker: MakeWorker, backend_kind: str
) -> None:
    """40 high, 6 default and 6 low jobs waiting, -c 1: while a level has jobs waiting, at
    most PASS_LIMIT starts of higher levels come between two of its starts (counted, not
    timed), so low and default each start at least twice among the first 30."""
    if partitioned(backend_kind):
        pytest.skip("priorities are refused on a partitioned type (pinned above)")
    starts = record_starts(registry)
    for level, n in (("high", 40), ("default", 6), ("low", 6)):
        jobs = [Job(type="work", args=Item(i, level)) for i in range(n)]
        await queue.enqueue_many(jobs, priority=level)
    async with serving(make_worker("work", concurrency=1)):
        await eventually(lambda: len(starts) == 52)
    levels = [s.level for s in starts]
    for level, above in (("default", {"high"}), ("low", {"high", "default"})):
        last = max(i for i, x in enumerate(levels) if x == level)
        run = 0
        for x in levels[:last]:
            run = 0 if x == level else run + (x in above)
            assert run <= PASS_LIMIT, levels
        assert levels[:30].count(level) >= 2, levels
    # Each level's own jobs start in the order they were enqueued.
    for level in PRIORITIES:
        assert [s.n for s in starts if s.level == level] == sorted(
            s.n for s in starts if s.level == level
        )


async def test_a_retry_keeps_its_level(
    registry: Registry, queue: Queue, make_worker: MakeWorker, backend_kind: str
) -> None:
    """A high job that fails once is retried as a high job: in flight again at priority high
    (pending shows it), and it runs before a low backlog enqueued meanwhile is done."""
    if partitioned(backend_kind):
        pytest.skip("priorities are refused on a partitioned type (pinned above)")
    second = asyncio.Event()
    seen: list[tuple[int, int]] = []

    async def handler(job: Job[Item]) -> None:
        seen.append((job.args.n, len(seen)))
        if job.args.n == 1 and sum(1 for n, _ in seen if n == 1) == 1:
            raise RuntimeError("first delivery fails")
        if job.args.n == 1:
            await second.wait()

    registry.register("work", Item, handler)
    job_id = await queue.enqueue(Job(type="work", args=Item(1, "high")), priority="high")
    async with serving(make_worker("work", concurrency=1)):
        await eventually(lambda: sum(1 for n, _ in seen if n == 1) == 2)
        (pending,) = await queue.pending("work")
        assert (pending.job_id, pending.priority, pending.deliveries) == (job_id, "high", 2)
        state = await queue.job("work", job_id)
        assert (state.state, state.priority) == ("running", "high")
        second.set()
        await eventually(lambda: len(seen) == 2)


async def test_job_state_stats_and_cancel_see_level_jobs(
    registry: Registry, queue: Queue, backend: Backend, backend_kind: str
) -> None:
    """Level jobs are found (Queue.job: waiting, at their level), counted per level in stats
    (waiting_by_priority), and a waiting high job is cancelled like any other."""
    if partitioned(backend_kind):
        pytest.skip("priorities are refused on a partitioned type (pinned above)")
    record_starts(registry)
    plain = await queue.enqueue(Job(type="work", args=Item(0)))
    (before,) = await queue.stats(["work"])
    assert before.waiting_by_priority == {}
    high = [await queue.enqueue(Job(type="work", args=Item(n)), priority="high") for n in (1, 2)]
    low = await queue.enqueue(Job(type="work", args=Item(3)), priority="low")
    await queue.enqueue(Job(type="work", args=Item(4)), priority="default")
    (stats,) = await queue.stats(["work"])
    assert stats.waiting == 5
    assert stats.waiting_by_priority == {"high": 2, "default": 2, "low": 1}
    for job_id, level in ((high[0], "high"), (low, "low"), (plain, "default")):
        state = await queue.job("work", job_id)
        assert (state.state, state.priority) == ("waiting", level)
        if level != "default" and backend_kind != "memory":
            assert state.entry_id is not None
            assert state.entry_id.endswith(f"@{level}")
    result = await queue.cancel("work", high[1])
    assert result.state == "cancelled"
    assert (await queue.job("work", high[1])).state == "cancelled"
    (after,) = await queue.stats(["work"])
    assert after.waiting_by_priority == {"high": 1, "default": 2, "low": 1}
