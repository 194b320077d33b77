"""Calling a job's steps: async ones on the loop, sync ones in the step threads, each in a span
of its own when tracing a type of several steps; the steps' JobContext, and for a type with
several steps the step progress (resume at the first step not done, record each step done:
:mod:`~streamq._worker.progress`); and what to do with a step that is not what registration took
it for.
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
from streamq._context import JobContext
from streamq._enqueue import Enqueuer
from streamq._job import Job
from streamq._logging import bind, logger
from streamq._registry import JobType, Step, step_name
from streamq._worker.limits import Pausable
from streamq._worker.progress import ProgressKeeper
from streamq._worker.threads import Call, Threads
from streamq.backends._base import Delivery
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

    def __init__(
        self,
        threads: int,
        progress: ProgressKeeper | None = None,
        enqueuer: Enqueuer | None = None,
    ) -> None:
        self._threads = Threads(threads, 2 * threads)
        #: what the steps' contexts enqueue follow-ups with (None: they cannot)
        self._enqueuer = enqueuer
        #: reads and records the step progress (None: steps are neither recorded nor skipped)
        self._progress = progress
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
        self, d: Delivery, job_type: JobType, job: Job[Any], span: Any, limit: Pausable
    ) -> None:
        """The job's steps, in order; with several steps, each in a span of its own when
        tracing (one step has none: the delivery's span is its span). A type with one step
        whose function takes no context runs it as it is: no context, nothing recorded."""
        if len(job_type.steps) > 1 or job_type.with_context[0]:
            await self._run_with_context(d, job_type, job, span, limit)
            return
        await self._step(job_type.steps[0], job_type.is_async[0], job, limit, None)

    async def _run_with_context(
        self, d: Delivery, job_type: JobType, job: Job[Any], span: Any, limit: Pausable
    ) -> None:
        """Steps with their JobContext; with several steps, from the first one not done, each
        one done recorded before the next starts (not the last: the ack ends the job)."""
        steps, names = job_type.steps, job_type.step_names
        n = len(steps)
        ctx: JobContext[Any] = JobContext(
            job_type.checkpoint_codec,
            job_id=job.id or "",
            job_type=d.type,
            deliveries=d.deliveries,
            steps=n,
            job=job,
            enqueuer=self._enqueuer,
        )
        limit.job_context = ctx  # a cancel request sets its flag (_worker.cancelling)
        ctx.attach(asyncio.get_running_loop())
        progress = self._progress if n > 1 else None
        start = 0
        if progress is not None and (d.deliveries > 1 or d.claimed):
            start = await progress.resume(d, job, job_type, ctx)
            if start:
                bind({"step": start, "step_name": names[start]})
                self.log.info("streamq.job.resumed")
                _tracing.event(span, "streamq.job.resumed", step=start, step_name=names[start])
        for index in range(start, n):
            ctx.step, ctx.step_name = index, names[index]
            arg = ctx if job_type.with_context[index] else None
            if n > 1:
                # Every line about the job from here on (its failure included) names its step.
                bind({"step": index, "step_name": names[index]})
            if span is None or n == 1:
                await self._step(steps[index], job_type.is_async[index], job, limit, arg)
            else:
                span.set_attribute("streamq.job.step", index)
                with _tracing.step_span(f"{d.type}.{names[index]}", index):
                    await self._step(steps[index], job_type.is_async[index], job, limit, arg)
            if progress is not None and index < n - 1:
                await progress.record(d, job, job_type, ctx, index + 1)

    async def _step(
        self,
        step: Step,
        is_async: bool,
        job: Job[Any],
        limit: Pausable,
        ctx: JobContext[Any] | None,
    ) -> None:
        # A Step is either kind of callable (with or without the context): which one it is was
        # decided at registration, so mypy cannot tell the call apart from the union.
        if is_async:
            result = step(job) if ctx is None else step(job, ctx)  # type: ignore[call-arg]
            if result.__class__ is not COROUTINE:
                result = self.awaitable(step, result)
            await result
            return
        context = contextvars.copy_context()  # the job's log fields, in the thread
        loop = asyncio.get_running_loop()
        if ctx is None:
            call = self._threads.submit(loop, context.run, step, job)
        else:
            call = self._threads.submit(loop, context.run, step, job, ctx)
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
