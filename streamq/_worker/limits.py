"""A job's time limit as the runner sees it: armed when the job's code starts, held while a
sync step waits for a thread. The lanes keep it (:class:`~streamq._worker.lanes.Lane`); a runner
used without lanes falls back to ``asyncio.timeout`` (:class:`HeldTimeout`)."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Protocol


class TimeLimitReached(Exception):
    """The job's own time limit ran out (a TimeoutError of the handler's is just an error)."""


class JobCancelled(Exception):
    """A cancel request stopped the job (``Queue.cancel``; docs/control.md)."""


class Pausable(Protocol):
    """A running time limit that can be held while a step waits for a thread. It also holds
    the running job's JobContext (``job_context``, when its steps take one), for a cancel
    request to set its ``cancelled`` flag (``_worker.cancelling``)."""

    job_context: Any

    def pause(self) -> float:
        """Hold it; the seconds it had left (``inf`` when it is not armed)."""
        ...

    def resume(self, seconds: float) -> None:
        """Arm it again with ``seconds`` left."""
        ...


class Limit(Pausable, Protocol):
    """A job's time limit, kept by whoever runs the job's task (the worker's lanes).

    ``start`` arms it for the running task; ``stop`` disarms it and says whether it fired, that
    is, whether it cancelled the task (that cancel is then withdrawn). ``pause``/``resume``
    hold it while a sync step waits for a thread, so that the limit covers the time the steps
    run, not the time they wait to start.
    """

    #: the cancel that fired was a cancel request's, not the time limit (read before ``stop``)
    cancelling: bool

    def start(self, seconds: float) -> None: ...

    def stop(self) -> bool: ...


class HeldTimeout:
    """:class:`Pausable` over an ``asyncio.timeout`` (a runner used without lanes)."""

    __slots__ = ("_timeout", "job_context")

    def __init__(self, timeout: asyncio.Timeout) -> None:
        self._timeout = timeout
        self.job_context: Any = None

    def pause(self) -> float:
        when = self._timeout.when()
        self._timeout.reschedule(None)
        return math.inf if when is None else when - asyncio.get_running_loop().time()

    def resume(self, seconds: float) -> None:
        if seconds != math.inf:
            self._timeout.reschedule(asyncio.get_running_loop().time() + seconds)
