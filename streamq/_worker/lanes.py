"""Lanes: a fixed set of long-lived tasks that run deliveries one at a time each.

A task per delivery costs more than a no-op job itself (creating and scheduling the task, its
done callback, and a timer handle for ``asyncio.timeout``; the figure: benchmarks/README.md,
"Figures behind the code"). The worker instead keeps ``concurrency`` lanes. A lane takes the
next delivery from a shared queue and awaits it; a job that never suspends costs one coroutine
call, and the lane goes on with the next without passing through the event loop.

Concurrency stays bounded by the number of lanes. Only one lane is woken for new work; when the
job a lane runs suspends (it awaits I/O), the lane wakes another idle one if work is waiting,
so jobs that wait on I/O still run side by side up to the number of lanes.

Each delivery runs in a context of its own (a copy of the worker's context at start, as a task
per delivery would get), so what one job binds for its log lines never leaks into the next. A
lane whose last job changed nothing in its context after the job's own code started starts the
next one in a copy of that job's context as it was then: it holds the previous job's log fields,
so the runner sets only those that differ (``_logging.bind_job``). Whatever a job binds itself
sends the next job back to a plain copy of the worker's context.

Time limits: each lane holds the deadline of the job it runs, and one timer, armed at the
earliest deadline, cancels the lanes whose job is overdue (a :class:`Lane` is the
:class:`~streamq._worker.limits.Limit` the runner starts and stops).

Closing is bounded: a job that swallows its cancel (``except CancelledError`` in a loop) would
keep its lane, and so the worker and the interpreter, alive for ever. Past the time
:meth:`Lanes.close` is given, such lanes are abandoned: cancelled once more, and this time the
job's coroutine is closed (GeneratorExit at its ``await``) instead of being handed the cancel.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import Any, Generic, TypeVar

from streamq._logging import logger

T = TypeVar("T")


class Lane:
    """One lane: its task, and the time limit of the job it runs."""

    __slots__ = (
        "_baseline",
        "_pool",
        "cancelling",
        "context",
        "deadline",
        "fired",
        "job_context",
        "started_in",
        "task",
    )

    def __init__(self, pool: Lanes[Any]) -> None:
        self._pool = pool
        self.task: asyncio.Task[None] | None = None
        self.deadline: float | None = None
        self.fired = False
        self._baseline = 0
        # What the next job's context is a copy of; and the running job's context as it was
        # when its own code started (see the module's docstring).
        self.context = pool.base
        self.started_in: contextvars.Context | None = None
        #: a cancel request stopped the job it runs (see :meth:`cancel_job`)
        self.cancelling = False
        #: the running job's JobContext, when its steps take one (its ``cancelled`` flag)
        self.job_context: Any = None

    def start(self, seconds: float) -> None:
        """Arm the time limit of the job this lane starts now (its own code runs next)."""
        assert self.task is not None
        self.started_in = contextvars.copy_context()
        self._baseline = self.task.cancelling()
        pool = self._pool
        self.deadline = at = pool.time() + seconds
        if at < pool.timer_at:
            pool.watch(at)

    def cancel_job(self) -> bool:
        """A cancel request for the job running now: set its context's ``cancelled`` flag and
        cancel its task at its next await, as its time limit would (the runner tells the two
        apart by :attr:`cancelling`). False when no job's code is running (its time limit is
        not armed: it has not started, or a sync step waits for a thread): ask again later."""
        if self.deadline is None or self.task is None or self.fired:
            return False
        if self.job_context is not None:
            self.job_context.cancelled.set()
        self.cancelling = True
        self.fired = True
        self.task.cancel()
        return True

    def stop(self) -> bool:
        """Disarm it; True when it fired (its cancel withdrawn) and nothing else cancelled."""
        self.deadline = None
        if not self.fired:
            return False
        self.fired = False
        assert self.task is not None
        return self.task.uncancel() <= self._baseline

    def pause(self) -> float:
        """Hold the time limit (a sync step waits for a thread); the seconds it had left."""
        at, self.deadline = self.deadline, None
        return float("inf") if at is None else at - self._pool.time()

    def resume(self, seconds: float) -> None:
        """Arm it again with ``seconds`` left (the job's context is not taken again)."""
        if seconds == float("inf"):  # it was not armed
            return
        self.deadline = at = self._pool.time() + seconds
        if at < self._pool.timer_at:
            self._pool.watch(at)


class _InContext:
    """Await the rest of a coroutine whose first step yielded ``yielded``, with every step of
    it run in ``ctx``, as a task of its own would.

    Each time the coroutine suspends, ``on_suspend`` is called (the pool wakes another lane).
    """

    __slots__ = ("_coro", "_ctx", "_on_suspend", "_pool", "_yielded")

    def __init__(
        self,
        coro: Coroutine[Any, Any, None],
        ctx: contextvars.Context,
        pool: Lanes[Any],
        yielded: Any,
    ) -> None:
        self._coro = coro
        self._ctx = ctx
        self._on_suspend = pool.on_suspend
        self._pool = pool
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        run, coro, yielded = self._ctx.run, self._coro, self._yielded
        while True:
            self._on_suspend()
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancel (or anything) thrown into the lane
                if self._pool.abandoning:
                    _close(coro, run)
                    raise
                try:
                    yielded = run(coro.throw, exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = run(coro.send, sent)
                except StopIteration:
                    return


def _close(coro: Coroutine[Any, Any, None], run: Callable[..., Any]) -> None:
    """Close an abandoned job's coroutine, in its own context; it may refuse (it catches
    GeneratorExit too and awaits again): then say so, there is nothing more to do."""
    try:
        run(coro.close)
    except RuntimeError as exc:
        logger.error("streamq.worker.job_not_closed", error=str(exc))


class Lanes(Generic[T]):
    """``size`` lanes running ``work(item, lane)`` for each submitted item."""

    def __init__(
        self,
        size: int,
        work: Callable[[T, Lane], Coroutine[Any, Any, None]],
        crashed: Callable[[T], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.time = self.loop.time
        self._work = work
        self._on_crash = crashed
        self._queue: deque[T] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._busy = 0
        self._closing = False
        #: past the time close() was given: lanes still running have their job closed, not cancelled
        self.abandoning = False
        self._drained: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")
        # Each item runs in a copy of this (the context the worker was started in), or of its
        # lane's last item's context as it was when that item's own code started.
        self.base = contextvars.copy_context()
        self._lanes = [Lane(self) for _ in range(size)]
        for lane in self._lanes:
            lane.task = self.loop.create_task(self._run_lane(lane))

    # work -------------------------------------------------------------------------------

    def submit(self, items: Iterable[T]) -> None:
        """Queue items and wake one idle lane: it runs them one after another, and wakes
        another lane whenever the item it runs suspends while more are waiting."""
        self._queue.extend(items)
        if self._queue:
            self._wake_one()

    @property
    def waiting(self) -> int:
        """Items queued and not started yet."""
        return len(self._queue)

    def _wake_one(self) -> None:
        while self._idle:
            fut = self._idle.pop()
            if not fut.done():
                fut.set_result(None)
                return

    def _crashed(self, item: T, exc: Exception) -> None:
        # A bug in the worker itself (handler errors are caught by the runner): say so, and
        # let the owner release what the item held.
        logger.error("streamq.worker.job_task_crashed", error=repr(exc), exc_info=exc)
        self._on_crash(item)

    def on_suspend(self) -> None:
        """The job a lane runs suspended: wake another lane if work is waiting."""
        if self._queue:
            self._wake_one()

    async def _run_lane(self, lane: Lane) -> None:
        queue, work = self._queue, self._work
        while True:
            if not queue:
                if self._closing:
                    return
                fut = self.loop.create_future()
                self._idle.append(fut)
                await fut
                continue
            item = queue.popleft()
            self._busy += 1
            coro = work(item, lane)
            ctx = lane.context.copy()
            try:
                # The first step inline: a job that never suspends ends here, with no
                # awaitable wrapper around it.
                yielded = ctx.run(coro.send, None)
            except StopIteration:
                pass
            except Exception as exc:
                self._crashed(item, exc)
            else:
                try:
                    await _InContext(coro, ctx, self, yielded)
                except Exception as exc:
                    self._crashed(item, exc)
            finally:
                self._busy -= 1
                lane.deadline = None
                lane.cancelling = False
                lane.job_context = None
                # Reused only if nothing changed in the context since the job's code started.
                started_in, lane.started_in = lane.started_in, None
                lane.context = started_in if started_in == ctx else self.base
            drained = self._drained
            if not queue and not self._busy and drained is not None and not drained.done():
                drained.set_result(None)

    # stopping ----------------------------------------------------------------------------

    async def drained(self) -> None:
        """Return once nothing is queued or running."""
        while self._queue or self._busy:
            self._drained = self.loop.create_future()
            await self._drained

    @property
    def running(self) -> int:
        """Lanes running an item right now."""
        return self._busy

    async def close(self, *, cancel: bool, within: float | None = None) -> int:
        """Stop the lanes: idle ones return; with ``cancel``, running items are cancelled.

        Lanes still running after ``within`` seconds are abandoned (see the module's
        docstring); returns how many were. Their items never finish: the caller still holds
        them.
        """
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        for fut in self._idle:
            if not fut.done():
                fut.set_result(None)
        if cancel:
            self._queue.clear()
            for t in tasks:
                t.cancel()
        if not tasks:
            return 0
        _, stuck = await asyncio.wait(tasks, timeout=within)
        if not stuck:
            return 0
        self.abandoning = True
        for t in stuck:
            t.cancel()
        # A closed job's lane ends at its next step; one that refused to close is left behind.
        _, left = await asyncio.wait(stuck, timeout=0.1)
        logger.error("streamq.worker.jobs_abandoned", count=len(stuck), still_running=len(left))
        return len(stuck)

    # time limits ------------------------------------------------------------------------

    def watch(self, at: float) -> None:
        """A lane's deadline is ``at``: make sure the timer fires by then."""
        if at < self.timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self.timer_at = at
            self._timer = self.loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer, self.timer_at = None, float("inf")
        now = self.loop.time()
        for lane in self._lanes:
            at = lane.deadline
            if at is None:
                continue
            if at <= now:
                if not lane.fired and lane.task is not None:
                    lane.fired = True
                    lane.task.cancel()
            else:
                self.watch(at)
