"""Calling a job's steps: async ones on the loop, sync ones in the step threads, each in a span
of its own when tracing; and what to do with a step that is not what registration took it for.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import math
import types
from collections.abc import Awaitable
from typing import Any

from streamq import _tracing
from streamq._job import Job
from streamq._logging import logger
from streamq._registry import JobType, Step, step_name
from streamq._worker.limits import Pausable
from streamq._worker.threads import Call, Threads
from streamq.exceptions import JobTimeoutError

#: What an async step returns (compared by identity on the hot path: no isinstance, no lookup).
COROUTINE = types.CoroutineType


async def _nothing() -> None:
    return None


class StepCaller:
    """Calls steps for one runner; owns the threads its sync steps run in.

    Args:
        threads: threads kept for sync steps (one per lane); as many again may start to stand
            in for threads stuck in steps past their time limit (see
            :mod:`streamq._worker.threads`).
    """

    def __init__(self, threads: int) -> None:
        self._threads = Threads(threads, 2 * threads)
        #: The logger of the per-job lines (the runner resolves it when the worker starts).
        self.log = logger
        # Steps whose detected kind was wrong, warned about once each (by id: steps live as
        # long as the registry, and need not be hashable).
        self._warned: set[int] = set()

    def close(self) -> None:
        """Stop the step threads (steps still running in them are not waited for; they are
        daemon threads, which interpreter exit does not wait for either)."""
        self._threads.close()

    async def run_steps(
        self, type_: str, job_type: JobType, job: Job[Any], span: Any, limit: Pausable
    ) -> None:
        """The job's steps, in order; each in a span of its own when tracing."""
        for index, (step, is_async) in enumerate(
            zip(job_type.steps, job_type.is_async, strict=True)
        ):
            if span is None:
                await self._step(step, is_async, job, limit)
            else:
                with _tracing.step_span(f"{type_}.{job_type.step_names[index]}", index):
                    await self._step(step, is_async, job, limit)

    async def _step(self, step: Step, is_async: bool, job: Job[Any], limit: Pausable) -> None:
        if is_async:
            result = step(job)
            if result.__class__ is not COROUTINE:
                result = self.awaitable(step, result)
            await result
            return
        ctx = contextvars.copy_context()  # the job's log fields, in the thread
        call = self._threads.submit(asyncio.get_running_loop(), ctx.run, step, job)
        try:
            if call.started is not None:
                await self._wait_for_thread(call, step, job, limit)
            result = await call.done
        except asyncio.CancelledError:
            # The time limit or shutdown: the call runs on (a thread cannot be stopped). Its
            # thread counts as stuck; the next call gets a new one in its place.
            if self._threads.withdraw(call):
                threads = self._threads
                self.log.warning(
                    "streamq.worker.thread_stuck",
                    step=step_name(step),
                    stuck=threads.stuck,
                    threads=threads.live,
                    cap=threads.cap,
                )
            raise
        if result is not None and inspect.isawaitable(result):
            # A sync-looking callable that returns a coroutine (a lambda or a decorator around
            # an async function that registration could not see through): the step is not done
            # until it is awaited, on the loop, as an async step would be.
            self._warn_once(step, "streamq.job.step_returned_awaitable", ran="in a thread")
            await result

    async def _wait_for_thread(
        self, call: Call, step: Step, job: Job[Any], limit: Pausable
    ) -> None:
        """Wait for a thread (every one alive is busy, up to the cap): the job's time limit is
        held meanwhile, so it covers the step's run, not its wait; the wait itself is bounded by
        what the limit had left, then the job fails saying why."""
        assert call.started is not None
        left = limit.pause()
        try:
            async with asyncio.timeout(None if math.isinf(left) else max(0.0, left)):
                await call.started
        except TimeoutError:
            self._threads.withdraw(call)
            threads = self._threads
            raise JobTimeoutError(
                f"step {step_name(step)!r} got no thread to run in before the job's timeout: "
                f"{threads.stuck} of the worker's {threads.live} step threads are stuck in steps "
                "past their time limit",
                job_id=job.id,
                job_type=job.type,
            ) from None
        limit.resume(left)

    def awaitable(self, step: Step, result: object) -> Awaitable[Any]:
        """What to await for an async-looking step that returned ``result`` (not a coroutine)."""
        if inspect.isawaitable(result):
            return result
        # Taken for async through its ``__wrapped__``, it is a sync function after all: it ran
        # (on the event loop, which it blocked meanwhile) and there is nothing to await.
        self._warn_once(step, "streamq.job.step_returned_no_awaitable", ran="on the event loop")
        return _nothing()

    def _warn_once(self, step: Step, event: str, *, ran: str) -> None:
        if id(step) not in self._warned:
            self._warned.add(id(step))
            self.log.warning(
                event,
                step=step_name(step),
                ran=ran,
                hint="register the async function itself, or wrap it with an async def",
            )
