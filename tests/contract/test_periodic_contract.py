"""Periodic jobs on every backend: each tick fires once however many workers run, a gap fires
one catch-up tick, and a schedule removed from the code stops."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from test_contract import stats_of

from streamq import Backend, Job, Queue, Registry, Worker
from streamq._schedules import Schedule

INTERVAL = 0.2


@dataclass(frozen=True)
class Beat:
    """The args of the periodic type."""

    n: int = 0


def periodic_registry(seen: list[str], *, schedule: bool = True) -> tuple[Registry, Schedule]:
    """A registry with type ``beat`` (its step records the job ids) and, unless told not
    to, an ``every(INTERVAL)`` schedule of it."""
    registry = Registry()

    def step(job: Job[Any]) -> None:
        assert job.id is not None
        seen.append(job.id)

    registry.register("beat", Beat, step)
    declared = Schedule("beat", "every", {"n": 1}, interval=INTERVAL)
    if schedule:
        declared = registry.every(INTERVAL, "beat", args={"n": 1})
    return registry, declared


@contextlib.asynccontextmanager
async def workers_running(
    make_backend: Callable[[], Backend], registry: Registry, n: int
) -> AsyncIterator[None]:
    """``n`` workers of ``beat``, each on its own backend object, stopped and closed after."""
    backends = [make_backend() for _ in range(n)]
    workers = [
        Worker(b, registry, ["beat"], concurrency=4, claim_after=2.0, block=0.05) for b in backends
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for w in workers:
            w.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        for b in {id(b): b for b in backends}.values():
            await b.aclose()


def tick_times(schedule: Schedule, ids: list[str], start_ms: int, end_ms: int) -> list[int]:
    """The tick time of each job id (the ids are deterministic per tick)."""
    step = round(INTERVAL * 1000)
    by_id = {schedule.job_id(t): t for t in range(start_ms - start_ms % step, end_ms, step)}
    return [by_id[i] for i in ids]


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


async def test_three_workers_fire_each_tick_once(
    make_backend: Callable[[], Backend], queue: Queue
) -> None:
    """Three workers of an every(0.2 s) schedule enqueue about 10 ticks in 2 s, not 30, and no
    tick twice."""
    seen: list[str] = []
    registry, schedule = periodic_registry(seen)
    start = now_ms()
    async with workers_running(make_backend, registry, 3):
        await asyncio.sleep(2.0)
    ticks = tick_times(schedule, seen, start - 2000, now_ms() + 1000)
    assert 7 <= len(ticks) <= 13, ticks
    assert len(set(ticks)) == len(ticks)
    assert (await stats_of(queue, "beat")).enqueued == len(ticks)


async def test_a_gap_fires_one_catch_up_tick_then_regular_ones(
    make_backend: Callable[[], Backend],
) -> None:
    """All workers stopped for about 1 s (5 ticks missed): one tick fires for the gap when they
    come back, then the regular ones."""
    seen: list[str] = []
    registry, schedule = periodic_registry(seen)
    start = now_ms()
    async with workers_running(make_backend, registry, 3):
        await asyncio.sleep(1.0)
    stop = now_ms()
    before = len(seen)
    last_before = max(tick_times(schedule, seen, start - 2000, now_ms() + 1000))
    await asyncio.sleep(1.2)
    restart = now_ms()
    async with workers_running(make_backend, registry, 3):
        await asyncio.sleep(1.0)
    later = sorted(tick_times(schedule, seen[before:], start - 2000, now_ms() + 1000))
    # A tick fired just before the stop may run only after the restart (it waited in the
    # stream meanwhile): it is one of the ticks before the gap (no tick is fired early).
    last_before = max([last_before, *(t for t in later if t <= stop)])
    after = [t for t in later if t > stop]
    step = round(INTERVAL * 1000)
    # The first tick after the gap is its latest (the workers may come up just after it): the
    # four before it never fire, and from there on every tick fires once.
    assert (after[0] - last_before) // step >= 5, (last_before, after)
    assert after[0] >= restart - step, (restart, after)
    assert [b - a for a, b in itertools.pairwise(after)] == [step] * (len(after) - 1)
    assert len(after) >= 4


async def test_a_worker_whose_loop_was_blocked_still_fires_every_tick(
    make_backend: Callable[[], Backend],
) -> None:
    """A handler blocks the event loop (and so the ticker) for 2.5 intervals: when it wakes,
    the ticks that fell due meanwhile each fire, none dropped as after a gap with no worker."""
    seen: list[str] = []
    registry = Registry()

    async def step(job: Job[Any]) -> None:
        assert job.id is not None
        seen.append(job.id)
        if len(seen) == 2:
            time.sleep(2.5 * INTERVAL)  # noqa: ASYNC251 - the blocked loop is the point

    registry.register("beat", Beat, step)
    schedule = registry.every(INTERVAL, "beat", args={"n": 1})
    start = now_ms()
    async with workers_running(make_backend, registry, 1):
        await asyncio.sleep(1.8)
    ticks = sorted(tick_times(schedule, seen, start - 2000, now_ms() + 1000))
    step_ms = round(INTERVAL * 1000)
    assert len(ticks) >= 6, ticks
    assert [b - a for a, b in itertools.pairwise(ticks)] == [step_ms] * (len(ticks) - 1), ticks


async def test_a_schedule_removed_from_the_code_stops_firing(
    make_backend: Callable[[], Backend],
) -> None:
    """Workers with a registry that no longer declares the schedule enqueue no tick."""
    seen: list[str] = []
    registry, schedule = periodic_registry(seen)
    start = now_ms()
    async with workers_running(make_backend, registry, 1):
        await asyncio.sleep(0.5)
    assert seen
    removed = now_ms()
    without, _ = periodic_registry(seen, schedule=False)
    async with workers_running(make_backend, without, 2):
        await asyncio.sleep(1.0)
    # A tick enqueued just before the first worker stopped may run now: none is later.
    assert max(tick_times(schedule, seen, start - 2000, now_ms() + 1000)) <= removed


@pytest.mark.parametrize("fired_first", [True, False])
async def test_fire_tick_fires_a_tick_once(backend: Backend, fired_first: bool) -> None:
    """fire_tick is true for the first call of a tick and false for it again or for an
    earlier tick; last_ticks reports the latest."""
    fields = {b"id": b"x", b"v": b"1", b"body": b"{}"}
    assert await backend.last_ticks("beat", ["s"]) == {"s": None}
    assert await backend.fire_tick("beat", "s", 2000, fields)
    assert not await backend.fire_tick("beat", "s", 2000 if fired_first else 1000, fields)
    assert await backend.last_ticks("beat", ["s", "other"]) == {"s": 2000, "other": None}
    assert await backend.fire_tick("beat", "s", 3000, fields)
    assert await backend.last_ticks("beat", ["s"]) == {"s": 3000}
