"""Stopping is bounded, on both backends: a job that will not end never keeps a worker alive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from test_contract import drain, stats_of

from streamq import Job, Queue, Registry, Worker
from streamq.backends._base import HANDED_BACK


@dataclass(frozen=True)
class Empty:
    """No args."""


def stubborn(registry: Registry, attempts: list[int]) -> asyncio.Event:
    """Register type ``t``: its first delivery swallows every cancel (until it is closed), later
    ones succeed. Returns an event set when the first delivery started."""
    started = asyncio.Event()

    async def step(job: Job[Any]) -> None:
        attempts.append(0)
        if len(attempts) > 1:
            return
        started.set()
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                attempts[0] += 1  # a handler that will not be stopped

    registry.register("t", Empty, step)
    return started


async def ended_within(task: asyncio.Task[None], seconds: float) -> float:
    """Seconds until ``task`` ended; fails (without cancelling it) if it takes over ``seconds``."""
    began = time.monotonic()
    done, _ = await asyncio.wait([task], timeout=seconds)
    assert task in done, f"the worker's run() did not return within {seconds}s"
    task.result()
    return time.monotonic() - began


async def test_run_returns_past_a_handler_that_swallows_its_cancel(
    queue: Queue, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    """A handler that swallows CancelledError in a loop does not keep the worker alive: run()
    returns within shutdown_grace + shutdown_cleanup, and the job, handed back, is run by the
    next worker."""
    attempts: list[int] = []
    started = stubborn(registry, attempts)
    await queue.enqueue(Job(type="t", args=Empty()))
    worker = make_worker("t", shutdown_grace=0.2, shutdown_cleanup=1.0)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    # Generous: the bound is 1.2 s, plus a moment to close what was abandoned.
    await ended_within(task, 5)
    assert attempts[0] >= 1  # it was cancelled, and swallowed it
    (held,) = await queue.pending("t")
    assert (held.consumer, held.deliveries) == (HANDED_BACK, 0)
    await drain(make_worker("t"))
    assert len(attempts) == 2
    assert (await stats_of(queue, "t")).processed == 1


async def test_a_second_stop_returns_at_once_past_a_handler_that_swallows_its_cancel(
    queue: Queue, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    """stop(now=True) (the second signal) during a long grace period ends run() promptly, even
    with a handler that swallows its cancel; the job stays pending for other workers."""
    attempts: list[int] = []
    started = stubborn(registry, attempts)
    await queue.enqueue(Job(type="t", args=Empty()))
    worker = make_worker("t", shutdown_grace=60, shutdown_cleanup=60)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.sleep(0.2)
    assert not task.done()  # the grace period runs
    worker.stop(now=True)
    # Generous: the bound is HARD_STOP_CLEANUP (1 s), plus a moment.
    await ended_within(task, 5)
    (held,) = await queue.pending("t")
    assert held.deliveries == 0
    await drain(make_worker("t"))
    assert (await stats_of(queue, "t")).processed == 1
