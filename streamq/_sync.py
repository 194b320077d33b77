"""SyncQueue: the Queue for sync code (Flask, Django), safe across a pre-forking server's fork."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar

from streamq._job import Job
from streamq._producer import JobId, Queue
from streamq._registry import seconds
from streamq.exceptions import BackendError, ConfigError

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0

# Every live SyncQueue, so that a forked child can replace their locks (a lock some other thread
# of the parent held at the fork stays held for ever in the child).
_instances: weakref.WeakSet[SyncQueue] = weakref.WeakSet()
# In a forked child: the loops, threads and queues its parent left. They are kept, never used nor
# closed: closing a connection here would unregister its socket from the epoll instance the
# child shares with its parent, and the parent would stop hearing from that connection.
_inherited_states: list[object] = []


def _after_fork_in_child() -> None:
    for queue in list(_instances):
        queue._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SyncQueue:
    """A blocking Queue for sync code (Flask, Django): runs its own event loop in a thread.

    ``factory`` builds the async Queue on that loop, so connections belong to it. After a fork
    (a pre-forking server such as gunicorn ``--preload``, ``multiprocessing``) the first call in
    the child starts afresh: a loop thread of its own and a new Queue from ``factory``. The
    parent's connections are never used in the child, so ``factory`` must build the backend,
    not capture one built before the fork (``from_url`` does).

    Args:
        factory: builds the Queue (called on the loop thread, once per process).
        timeout: the longest any call may take; then it is cancelled and raises
            :class:`BackendError` (an enqueue may or may not have been written).
    """

    def __init__(
        self, factory: Callable[[], Queue], *, timeout: float | timedelta = DEFAULT_TIMEOUT
    ) -> None:
        self.timeout = seconds(timeout)
        if self.timeout <= 0:
            raise ConfigError(f"timeout={self.timeout!r} must be positive")
        self._queue_factory = factory
        self._lock = threading.Lock()
        self._closed = False
        self._pid = 0  # of the process _state belongs to
        # The loop thread and the queue built on it: this process's, or a parent's after a fork.
        self._state: _LoopState | None = None
        with self._lock:
            self._state = self._start_loop()
        _instances.add(self)

    @classmethod
    def from_url(
        cls, url: str | None = None, *, timeout: float | timedelta = DEFAULT_TIMEOUT, **kwargs: Any
    ) -> SyncQueue:
        """A sync queue on Redis at ``url`` (see :func:`resolve_url`); ``kwargs`` go to Queue."""
        return cls(lambda: Queue.from_url(url, **kwargs), timeout=timeout)

    def _start_loop(self) -> _LoopState:
        """Start a loop thread in this process and build the queue on it (lock held)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True, name="streamq-sync")
        thread.start()
        factory = self._queue_factory

        async def build() -> Queue:
            return factory()

        try:
            queue = self._result_within_timeout(
                asyncio.run_coroutine_threadsafe(build(), loop), "__init__"
            )
        except BaseException:
            _stop_loop(loop, thread, self.timeout)
            raise
        self._pid = os.getpid()
        return _LoopState(queue, loop, thread)

    def _current_state(self) -> _LoopState:
        """This process's queue and loop: started afresh after a fork."""
        with self._lock:
            if self._closed:
                raise ConfigError("this SyncQueue is closed")
            if self._state is not None and self._pid != os.getpid():
                # A forked child: the loop thread did not survive the fork, and the connections
                # are the parent's. Leave them be (see _inherited_states) and start again.
                _inherited_states.append(self._state)
                self._state = None
            if self._state is None:  # forked, or a start after a fork failed: (re)start
                self._state = self._start_loop()
            return self._state

    def _run_blocking(self, what: str, op: Callable[[Queue], Coroutine[Any, Any, T]]) -> T:
        """Run ``op(queue)`` on the loop and wait for it, at most ``timeout``."""
        state = self._current_state()
        return self._result_within_timeout(
            asyncio.run_coroutine_threadsafe(op(state.queue), state.loop), what
        )

    def _result_within_timeout(self, future: concurrent.futures.Future[T], what: str) -> T:
        try:
            return future.result(self.timeout)
        except TimeoutError:
            if future.done():  # it ended meanwhile, or raised a TimeoutError of its own
                return future.result()
            future.cancel()
            raise BackendError(
                f"SyncQueue.{what} did not finish within {self.timeout:g}s and was cancelled "
                "(is the server reachable?)"
            ) from None

    def __getattr__(self, name: str) -> Any:
        # Reached only for names SyncQueue lacks. Queue's coroutine methods (stats, pending,
        # dead, retry_dead, recover, ...) become blocking calls; plain attributes (registry,
        # max_job_size, backend) are passed through. A private name is never forwarded: copy
        # and pickle look some up on an instance whose __init__ never ran, and forwarding would
        # read self._state, which would come back here.
        if name.startswith("_") or "_lock" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = getattr(self._current_state().queue, name)
        if not inspect.iscoroutinefunction(value):
            return value

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._run_blocking(name, lambda q: getattr(q, name)(*args, **kwargs))

        blocking.__name__ = blocking.__qualname__ = name
        blocking.__doc__ = value.__doc__
        return blocking

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a SyncQueue holds a loop thread and connections: it cannot be pickled or copied "
            "(build one per process; after a fork it rebuilds itself)"
        )

    def enqueue(
        self,
        job: Job[Any],
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
        priority: str = "default",
    ) -> JobId:
        """Add one job (later, with ``delay`` or ``at``; with a deadline, ``expires``; at most
        one per ``unique_key``; at a ``priority`` level: see :meth:`Queue.enqueue`); its id, a
        :class:`JobId`."""
        return self._run_blocking(
            "enqueue",
            lambda q: q.enqueue(
                job,
                delay=delay,
                at=at,
                expires=expires,
                unique_key=unique_key,
                unique_for=unique_for,
                priority=priority,
            ),
        )

    def enqueue_many(
        self,
        jobs: Iterable[Job[Any]],
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        priority: str = "default",
    ) -> list[str]:
        """Add many jobs in one round trip (later, with ``delay`` or ``at``; a deadline,
        ``expires``; a level, ``priority``)."""
        jobs = list(jobs)
        return self._run_blocking(
            "enqueue_many",
            lambda q: q.enqueue_many(jobs, delay=delay, at=at, expires=expires, priority=priority),
        )

    def close(self) -> None:
        """Close connections and stop the loop thread (in a forked child: forget the parent's)."""
        with self._lock:
            state, self._state = self._state, None
            self._closed = True
            if state is None:
                return
            if self._pid != os.getpid():
                _inherited_states.append(state)
                return
        try:
            self._result_within_timeout(
                asyncio.run_coroutine_threadsafe(state.queue.aclose(), state.loop), "close"
            )
        finally:
            _stop_loop(state.loop, state.thread, self.timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class _LoopState:
    """What a SyncQueue runs on in one process."""

    queue: Queue
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread, timeout: float) -> None:
    """Stop the loop thread; close the loop unless something on it blocks past ``timeout``."""
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout)
    if not thread.is_alive():  # else it is a daemon thread stuck in sync code: let it be
        loop.close()
