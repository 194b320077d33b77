"""The threads that run sync steps: daemon threads, one ready for each call, stuck ones replaced.

Not ``concurrent.futures.ThreadPoolExecutor``, for two reasons:

- its threads are joined at interpreter exit, so one step stuck for good keeps the process alive
  forever after the worker stopped. These are daemon threads: exit does not wait for them;
- a call whose await was given up (its job's time limit) keeps its thread, so after
  ``max_workers`` hung calls every later call waits in the executor's queue while its own time
  limit runs, and every sync job of the worker times out. Here a call never waits while fewer
  than ``cap`` threads are alive: with no idle thread a new one starts. A call given up while it
  runs counts its thread as stuck (:meth:`Threads.withdraw`); the next call gets a new thread in
  its place, up to ``cap`` threads alive, stuck ones included. Only past that does a call wait
  for a thread (:attr:`Call.started`), and the runner does not count that wait against the
  job's time limit.

At most ``size`` threads are kept idle; a thread freed beyond that (a stuck one whose call
finally returned) exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from queue import SimpleQueue
from typing import Any

from streamq._logging import logger

QUEUED, RUNNING, FINISHED, WITHDRAWN, ABANDONED = range(5)


class Call:
    """One call in a thread: ``done`` gets its result on the loop. ``started`` is set only for a
    call that had to wait for a thread (None otherwise), and resolves when one takes it."""

    __slots__ = ("args", "done", "fn", "loop", "started", "state")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.loop = loop
        self.fn = fn
        self.args = args
        self.done: asyncio.Future[Any] = loop.create_future()
        self.started: asyncio.Future[None] | None = None
        self.state = RUNNING


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """On the loop: hand a finished call's outcome to its awaiter."""
    if fut.done():  # its await was given up (a time limit, shutdown)
        if isinstance(result, Coroutine):
            result.close()  # a coroutine nobody will await: no "never awaited" warning
        return
    if exc is None:
        fut.set_result(result)
    elif isinstance(exc, StopIteration):
        # A future cannot hold StopIteration (as a coroutine cannot raise it).
        err = RuntimeError(f"the step raised {exc!r}")
        err.__cause__ = exc
        fut.set_exception(err)
    else:
        fut.set_exception(exc)


def _set_started(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Threads:
    """Daemon threads running calls for one event loop's awaiters (see the module docstring)."""

    def __init__(self, size: int, cap: int, *, name: str = "streamq-step") -> None:
        self.size = size
        self.cap = max(cap, size)
        self._name = name
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._idle: list[SimpleQueue[Call | None]] = []  # inboxes of idle threads, LIFO
        self._pending: deque[Call] = deque()  # calls waiting for a thread (only at the cap)
        self.live = 0  # threads alive, stuck ones included
        self.stuck = 0  # threads running a call that was given up
        self._closed = False
        self._exhausted_said = False

    @property
    def waiting(self) -> int:
        """Calls waiting for a thread."""
        return len(self._pending)

    def submit(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> Call:
        """Run ``fn(*args)`` in a thread: an idle one, else a new one below the cap, else the
        first to be freed (then ``started`` says when)."""
        call = Call(loop, fn, args)
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker's step threads are closed")
            if self._idle:
                inbox = self._idle.pop()
            elif self.live < self.cap:
                self.live += 1
                inbox = None
            else:
                call.state = QUEUED
                call.started = loop.create_future()
                self._pending.append(call)
                say, self._exhausted_said = not self._exhausted_said, True
                stuck, live = self.stuck, self.live
                inbox = None
        if call.state == QUEUED:
            if say:
                logger.error(
                    "streamq.worker.threads_exhausted",
                    threads=live,
                    stuck=stuck,
                    cap=self.cap,
                    note="sync steps wait for a thread; the wait does not count against their "
                    "time limit, but is bounded by it",
                )
            return call
        if inbox is not None:
            inbox.put(call)
            return call
        thread = threading.Thread(
            target=self._serve,
            args=(call, SimpleQueue()),
            name=f"{self._name}-{next(self._numbers)}",
            daemon=True,  # interpreter exit must not wait for a stuck step
        )
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self.live -= 1
            raise
        return call

    def withdraw(self, call: Call) -> bool:
        """On the loop, when ``call``'s await was given up: a waiting call never runs; True when
        it was running, and its thread now counts as stuck until the call returns."""
        with self._lock:
            if call.state == QUEUED:
                call.state = WITHDRAWN
                self._pending.remove(call)
                return False
            if call.state == RUNNING:
                call.state = ABANDONED
                self.stuck += 1
                return True
            return False

    def close(self) -> None:
        """On the loop: idle threads exit, busy ones once their call returns (nobody waits for
        them); calls still waiting for a thread are cancelled."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            pending, self._pending = list(self._pending), deque()
        for inbox in idle:
            inbox.put(None)
        for call in pending:
            call.state = WITHDRAWN
            call.done.cancel()
            if call.started is not None:
                call.started.cancel()

    # in the threads -------------------------------------------------------------------------

    def _serve(self, call: Call | None, inbox: SimpleQueue[Call | None]) -> None:
        while call is not None:
            try:
                result, exc = call.fn(*call.args), None
            except BaseException as e:  # handed to the awaiter, as an executor's future does
                result, exc = None, e
            call = self._next(call, result, exc, inbox)

    def _next(
        self, done: Call, result: Any, exc: BaseException | None, inbox: SimpleQueue[Call | None]
    ) -> Call | None:
        """Report ``done``'s outcome and take the next call: a waiting one, or one sent to this
        thread's inbox once idle. None: this thread exits."""
        nxt: Call | None = None
        with self._lock:
            freed = done.state == ABANDONED
            if freed:
                self.stuck -= 1
                self._exhausted_said = False
            done.state = FINISHED
            while self._pending:
                nxt = self._pending.popleft()
                if nxt.state == QUEUED:
                    nxt.state = RUNNING
                    break
                nxt = None
            idle = nxt is None and not self._closed and len(self._idle) < self.size
            if idle:
                self._idle.append(inbox)
            elif nxt is None:
                self.live -= 1
            stuck = self.stuck
        self._report(done, result, exc)
        if freed:
            logger.info(
                "streamq.worker.thread_freed", thread=threading.current_thread().name, stuck=stuck
            )
        if nxt is not None:
            assert nxt.started is not None
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits for it
                nxt.loop.call_soon_threadsafe(_set_started, nxt.started)
            return nxt
        if not idle:
            return None
        got = inbox.get()
        if got is None:  # closed
            with self._lock:
                self.live -= 1
        return got

    @staticmethod
    def _report(call: Call, result: Any, exc: BaseException | None) -> None:
        try:
            call.loop.call_soon_threadsafe(_resolve, call.done, result, exc)
        except RuntimeError:  # the loop is closed: nobody waits for this call any more
            if isinstance(result, Coroutine):
                result.close()
