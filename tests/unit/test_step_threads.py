"""The threads sync steps run in: time limits from the step's start, and no hold on exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from waiting import eventually

from streamq import Job, MemoryBackend, Queue, Registry, Worker
from streamq._worker.threads import Threads

ROOT = Path(__file__).resolve().parents[2]
FAST = {"claim_after": 0.5, "heartbeat": 0.1, "block": 0.05, "retry_base": 0.02}


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


async def dead_count_is(queue: Queue, type: str, n: int) -> bool:
    """Whether ``type`` has exactly ``n`` dead letters."""
    return len(await queue.dead(type)) == n


async def test_waiting_for_a_thread_does_not_count_against_the_time_limit() -> None:
    """With every thread up to the cap stuck (concurrency 1: two), a sync step waits for one to
    be freed; its time limit starts when it starts to run, so a step shorter than its timeout
    succeeds even after waiting more than the rest of its timeout."""
    free = [threading.Event(), threading.Event()]

    def hang(job: Job[Item]) -> None:
        free[job.args.n].wait()

    def slow(job: Job[Item]) -> None:
        time.sleep(2.0)  # two thirds of its timeout

    registry = Registry()
    registry.register("hang", Item, hang, timeout=0.2, max_deliveries=1)
    registry.register("slow", Item, slow, timeout=3.0, max_deliveries=1)
    backend = MemoryBackend()
    queue = Queue(backend, registry=registry)
    await queue.enqueue_many([Job(type="hang", args=Item(n)) for n in range(2)])
    worker = Worker(backend, registry, ["hang", "slow"], concurrency=1, **FAST)
    try:
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(worker.run())
            await eventually(lambda: dead_count_is(queue, "hang", 2))
            await queue.enqueue(Job(type="slow", args=Item(0)))
            await eventually(lambda: worker.in_flight == 1)
            await asyncio.sleep(1.5)  # waiting for a thread: half its timeout
            free[0].set()
            await eventually(lambda: worker.in_flight == 0)
            worker.stop()
            await asyncio.wait_for(task, 10)
    finally:
        for event in free:
            event.set()

    (stats,) = await queue.stats(["slow"])
    assert (stats.processed, stats.failed, stats.dead) == (1, 0, 0)
    (exhausted,) = [e for e in logs if e["event"] == "streamq.worker.threads_exhausted"]
    assert (exhausted["threads"], exhausted["stuck"], exhausted["cap"]) == (2, 2, 2)


STUCK_FOREVER = """
    import asyncio
    import threading
    from dataclasses import dataclass

    from streamq import Job, MemoryBackend, Queue, Registry, Worker

    started = threading.Event()


    @dataclass(frozen=True)
    class Item:
        n: int


    def stuck(job):
        started.set()
        threading.Event().wait()  # never set


    async def main():
        registry = Registry()
        registry.register("stuck", Item, stuck)
        backend = MemoryBackend()
        await Queue(backend, registry=registry).enqueue(Job(type="stuck", args=Item(1)))
        worker = Worker(backend, registry, ["stuck"], shutdown_grace=0.1, block=0.05)
        task = asyncio.create_task(worker.run())
        while not started.is_set():
            await asyncio.sleep(0.01)
        worker.stop()
        await task
        print("main returned", flush=True)


    asyncio.run(main())
"""


def test_a_stuck_sync_step_does_not_keep_the_process_from_exiting() -> None:
    """A sync step blocked forever does not keep the interpreter alive once the worker stopped
    and main returned (its thread is a daemon thread)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(STUCK_FOREVER)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"the process did not exit; it said: {out!r} {err[-2000:]!r}"
        ) from None
    assert "main returned" in out, err
    assert proc.returncode == 0, err


async def test_threads_reuse_idle_ones_replace_stuck_ones_and_shrink_back() -> None:
    """Calls reuse idle threads (never more alive than calls at once); a given-up call's thread
    counts as stuck and a new one runs the next call; once freed, threads beyond ``size`` exit,
    and close ends the idle ones."""
    loop = asyncio.get_running_loop()
    threads = Threads(2, 4, name="test-step")
    for _ in range(50):
        calls = [threads.submit(loop, pow, n, 2) for n in range(2)]
        assert [await c.done for c in calls] == [0, 1]
    assert (threads.live, threads.stuck) == (2, 0)

    gate = threading.Event()
    stuck = threads.submit(loop, gate.wait)
    assert stuck.started is None  # an idle thread took it at once
    await asyncio.sleep(0.05)
    stuck.done.cancel()
    assert threads.withdraw(stuck)  # it was running: its thread is stuck
    assert threads.stuck == 1
    # Three calls that each end only once all three run at once: they need three threads.
    barrier = threading.Barrier(3)
    calls = [threads.submit(loop, barrier.wait, 10) for _ in range(3)]
    assert all(c.started is None for c in calls)  # new threads instead of waiting
    assert sorted([await c.done for c in calls]) == [0, 1, 2]
    # Four were alive for them (one stuck); of the three freed, two stay idle.
    await eventually(lambda: threads.live == 3)

    gate.set()
    await eventually(lambda: threads.stuck == 0 and threads.live == 2)
    threads.close()
    await eventually(lambda: threads.live == 0)
    assert not [t for t in threading.enumerate() if t.name.startswith("test-step-")]
