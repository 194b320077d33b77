"""How steps run, on every backend: async steps behind decorators, partials and callable objects
are awaited (never acked unrun), and sync steps stuck past their time limit do not starve the
rest of the worker's sync jobs."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import structlog
from test_contract import dead_count_is, drain, eventually, serving, stats_of

from streamq import Job, Queue, Registry, Worker

MakeWorker = Callable[..., Worker]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


def traced(fn: F) -> F:
    """A decorator of the usual shape (tracing, metrics): a plain ``functools.wraps`` wrapper
    that returns whatever the wrapped function returns (here: its coroutine)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class AsyncCallable:
    """An object whose ``__call__`` is a coroutine function."""

    def __init__(self, ran: list[str]) -> None:
        self.ran = ran

    async def __call__(self, job: Job[Item]) -> None:
        await asyncio.sleep(0)
        self.ran.append(f"object-{job.args.n}")


async def test_async_steps_behind_decorators_partials_and_objects_are_awaited(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """An async step wrapped by a functools.wraps decorator, a functools.partial of an async
    function, an object with an async __call__, and a lambda returning a coroutine all run (on
    the event loop) before their job is acked."""
    ran: list[str] = []
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    @traced
    async def decorated(job: Job[Item]) -> None:
        await asyncio.sleep(0)
        threads.add(threading.get_ident())
        ran.append(f"decorated-{job.args.n}")

    async def tagged(tag: str, job: Job[Item]) -> None:
        await asyncio.sleep(0)
        threads.add(threading.get_ident())
        ran.append(f"{tag}-{job.args.n}")

    async def later(job: Job[Item]) -> None:
        await asyncio.sleep(0)
        threads.add(threading.get_ident())
        ran.append(f"lambda-{job.args.n}")

    registry.register("decorated", Item, decorated)
    registry.register("partial", Item, functools.partial(tagged, "partial"))
    registry.register("object", Item, AsyncCallable(ran))
    # Not detectable at registration: the coroutine it returns is awaited when it comes back.
    registry.register("lambda", Item, lambda job: later(job))
    # Two steps, so the decorated one also runs outside the single-step fast path.
    registry.register("two", Item, traced(functools.partial(tagged, "first")), decorated)

    # Taken for async through its __wrapped__, but sync: it runs (on the loop), nothing to await.
    def sync_after_all(job: Job[Item]) -> None:
        ran.append(f"sync-{job.args.n}")

    registry.register("sync", Item, functools.wraps(later)(sync_after_all))
    types = ["decorated", "partial", "object", "lambda", "two", "sync"]
    for t in types:
        await queue.enqueue_many([Job(type=t, args=Item(n)) for n in range(3)])

    with structlog.testing.capture_logs() as logs:
        await drain(make_worker(*types))

    tags = ("decorated", "partial", "object", "lambda", "first", "sync")
    assert set(ran) == {f"{tag}-{n}" for tag in tags for n in range(3)}
    assert len(ran) == 21  # decorated ran for its own type and as the second step of "two"
    assert threads == {loop_thread}
    for t in types:
        stats = await stats_of(queue, t)
        assert (stats.processed, stats.failed, stats.dead) == (3, 0, 0), t
    # The two misdetected steps are named once each.
    warned = [e for e in logs if e["event"].startswith("streamq.job.step_returned")]
    assert sorted((e["event"], e["step"]) for e in warned) == [
        ("streamq.job.step_returned_awaitable", "<lambda>"),
        ("streamq.job.step_returned_no_awaitable", "later"),
    ]


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event stuck sync steps wait on, set at teardown so that their threads end."""
    event = threading.Event()
    yield event
    event.set()


async def test_sync_steps_stuck_past_their_timeout_do_not_starve_the_others(
    registry: Registry, queue: Queue, make_worker: MakeWorker, release: threading.Event
) -> None:
    """With concurrency 2, two sync steps hung far past their timeout keep their threads, and
    the worker's later sync jobs still run (in new threads) and succeed."""
    started = threading.Semaphore(0)

    def hang(job: Job[Item]) -> None:
        started.release()
        release.wait()

    done: list[int] = []

    def quick(job: Job[Item]) -> None:
        done.append(job.args.n)

    registry.register("hang", Item, hang, timeout=0.2, max_deliveries=1)
    registry.register("quick", Item, quick, timeout=5)
    await queue.enqueue_many([Job(type="hang", args=Item(n)) for n in range(2)])
    worker = make_worker("hang", "quick", concurrency=2)
    with structlog.testing.capture_logs() as logs:
        async with serving(worker):
            for _ in range(2):
                assert await asyncio.to_thread(started.acquire, timeout=10)
            await eventually(lambda: dead_count_is(queue, "hang", 2))
            await queue.enqueue_many([Job(type="quick", args=Item(n)) for n in range(6)])
            await eventually(lambda: len(done) == 6)
            await eventually(lambda: worker.in_flight == 0)

    assert sorted(done) == list(range(6))
    stats = await stats_of(queue, "quick")
    assert (stats.processed, stats.failed, stats.dead) == (6, 0, 0)
    for dead in await queue.dead("hang"):
        assert dead.error.startswith("JobTimeoutError: job ran longer than its timeout")
    stuck = [e for e in logs if e["event"] == "streamq.worker.thread_stuck"]
    assert [e["step"] for e in stuck] == ["hang", "hang"]
    assert stuck[-1]["stuck"] == 2


async def test_a_step_that_gets_no_thread_within_its_timeout_fails_saying_so(
    registry: Registry, queue: Queue, make_worker: MakeWorker, release: threading.Event
) -> None:
    """With every thread up to the cap stuck and none freed, a sync step fails once its
    timeout has passed, with a reason that says it got no thread (it never ran)."""
    ran: list[int] = []

    def hang(job: Job[Item]) -> None:
        release.wait()

    registry.register("hang", Item, hang, timeout=0.2, max_deliveries=1)
    registry.register("starved", Item, lambda job: ran.append(1), timeout=0.3, max_deliveries=1)
    await queue.enqueue_many([Job(type="hang", args=Item(n)) for n in range(2)])
    worker = make_worker("hang", "starved", concurrency=1)
    async with serving(worker):
        await eventually(lambda: dead_count_is(queue, "hang", 2))
        await queue.enqueue(Job(type="starved", args=Item(0)))
        await eventually(lambda: dead_count_is(queue, "starved", 1))

    assert ran == []
    (dead,) = await queue.dead("starved")
    assert dead.error.startswith("JobTimeoutError: step '<lambda>' got no thread")
    assert "2 of the worker's 2 step threads are stuck" in dead.error
