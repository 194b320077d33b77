"""One delivery: decode, validate, run the steps in order under the timeout. No backend calls.

The worker hands a :class:`Delivery` to :meth:`Runner.run` and acts on the :class:`DeliveryOutcome`
(ack, retry, dead-letter); everything about *running* a job lives here, everything about the
stream lives in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import inspect
import logging
import math
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal, Protocol

from streamq import _codec, _tracing
from streamq._job import Job
from streamq._logging import bind_job, bind_only, job_fields, logger, resolved
from streamq._registry import JobType, Registry, Step, step_name
from streamq._worker.threads import Call, Threads
from streamq.backends._base import DeadLetter, Delivery
from streamq.exceptions import InvalidJobError, JobTimeoutError, UnknownJobTypeError


async def _ready(outcome: DeliveryOutcome) -> DeliveryOutcome:
    return outcome


async def _nothing() -> None:
    return None


#: What an async step returns (compared by identity on the hot path: no isinstance, no lookup).
_COROUTINE = types.CoroutineType


class _TimeLimit(Exception):
    """The job's own time limit ran out (a TimeoutError of the handler's is just an error)."""


class Pausable(Protocol):
    """A running time limit that can be held while a step waits for a thread."""

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

    def start(self, seconds: float) -> None: ...

    def stop(self) -> bool: ...


class _HeldTimeout:
    """:class:`Pausable` over an ``asyncio.timeout`` (a runner used without lanes)."""

    __slots__ = ("_timeout",)

    def __init__(self, timeout: asyncio.Timeout) -> None:
        self._timeout = timeout

    def pause(self) -> float:
        when = self._timeout.when()
        self._timeout.reschedule(None)
        return math.inf if when is None else when - asyncio.get_running_loop().time()

    def resume(self, seconds: float) -> None:
        if seconds != math.inf:
            self._timeout.reschedule(asyncio.get_running_loop().time() + seconds)


class DeliveryOutcome:
    """What one delivery came to.

    ``done``: ack it. ``retry``: the handler failed (``error``) with deliveries left.
    ``dead``: dead-letter it with ``letter`` (poison, a final failure, or too many deliveries).
    :meth:`log` gives the job's log fields (bound for the rest of the delivery already), for
    lines logged outside it.

    A ``done`` outcome keeps no reference to the job: it waits for its ack, and every object
    kept alive that long is one more for the garbage collector to look at. Most are the shared
    :data:`DONE`.
    """

    __slots__ = ("_extra", "_job", "error", "kind", "letter")

    def __init__(
        self,
        kind: Literal["done", "retry", "dead"],
        job: Job[Any] | None = None,
        *,
        error: str = "",
        letter: DeadLetter | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.error = error
        self.letter = letter
        self._job = job
        self._extra = extra

    def log(self, d: Delivery) -> dict[str, Any]:
        """The log fields of this outcome of ``d`` (built when asked: seldom needed)."""
        return log_fields(d, self._job, self._extra)


def log_fields(
    d: Delivery, job: Job[Any] | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The log fields of a delivery, for lines logged outside its own context. Without ``job``
    they are read from the entry again (when it decodes)."""
    fields: dict[str, Any] = {"job_type": d.type, "entry_id": d.entry_id}
    if extra:
        fields |= extra
    if job is None:
        with contextlib.suppress(InvalidJobError):
            job = _codec.decode(d.fields).job
    if job is not None:
        fields = job_fields(job, d.deliveries) | fields
    return fields


#: The outcome of most deliveries: done, with no trace ids to log.
DONE = DeliveryOutcome("done")


class Runner:
    """Runs deliveries of the served ``types``: async steps on the loop, sync ones in threads."""

    def __init__(
        self,
        registry: Registry,
        types: Mapping[str, JobType],
        *,
        job_timeout: float,
        max_deliveries: int,
        threads: int,
        group: str = "",
        consumer: str = "",
        stream: Callable[[str], str] = str,
    ) -> None:
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._registry = registry
        self._types = types
        # Metric attributes per type, built once: (base, outcome success, outcome failure).
        self._metric_attrs = {
            t: (
                {"streamq.job.type": t},
                {"streamq.job.type": t, "streamq.outcome": "success"},
                {"streamq.job.type": t, "streamq.outcome": "failure"},
            )
            for t in types
        }
        # One-pass decoders (envelope and args together) for the served types.
        self._decoders = {t: _codec.TypedDecoder(t, jt.args) for t, jt in types.items()}
        self._only_step = {
            t: jt.steps[0] if len(jt.steps) == 1 and jt.is_async[0] else None
            for t, jt in types.items()
        }
        self._job_timeout = job_timeout
        self._max_deliveries = max_deliveries
        self._log = logger
        self._debug = True
        self._sdk = _tracing.state()
        # Steps whose detected kind was wrong, warned about once each (by id: steps live as
        # long as the registry, and need not be hashable).
        self._warned: set[int] = set()
        # One thread for each lane, and as many again to stand in for threads stuck in steps
        # past their time limit (see streamq/_threads.py).
        self._threads = Threads(threads, 2 * threads)

    def resolve_logger(self) -> None:
        """Resolve the per-job logger now (see ``_logging.resolved``): call when starting."""
        self._log = resolved()
        # Two debug lines per job: skip building their arguments when debug is filtered out.
        is_enabled_for = getattr(self._log, "is_enabled_for", None)
        self._debug = is_enabled_for is None or bool(is_enabled_for(logging.DEBUG))

    def check_tracing_sdks(self) -> None:
        """See again which OpenTelemetry SDKs (traces, metrics) are installed. The worker calls
        this once per batch it reads or claims, not per job (what asking costs:
        benchmarks/README.md, "Figures behind the code"); the deliveries of a batch all run
        with what it saw."""
        self._sdk = _tracing.state()

    def close(self) -> None:
        """Stop the step threads (steps still running in them are not waited for; they are
        daemon threads, which interpreter exit does not wait for either)."""
        self._threads.close()

    def run(self, d: Delivery, limit: Limit | None = None) -> Coroutine[Any, Any, DeliveryOutcome]:
        """Run one delivery to its outcome (await the result). CancelledError (shutdown)
        propagates.

        The entry is decoded when this is called; the coroutine runs the job. ``limit`` enforces
        the job's timeout for the task running it; without one the runner uses
        ``asyncio.timeout`` (a timer per delivery).
        """
        decoder = self._decoders.get(d.type)
        found = decoder(d.fields) if decoder is not None else None
        typed = found is not None
        if found is not None:
            job, meta = found
        else:
            try:
                envelope = _codec.decode(d.fields)
            except InvalidJobError as exc:
                # Nothing readable, so no trace context either: no span for this one.
                return _ready(self._poison(d, None, exc))
            job, meta = envelope.job, envelope
        sdk = self._sdk
        if not sdk & _tracing.TRACES:
            # The common case without an SDK: no span, no attributes, no context managers.
            return self._run(d, job, meta, typed, None, limit, sdk)
        return self._traced(d, job, meta, typed, limit, sdk)

    async def _traced(
        self,
        d: Delivery,
        job: Job[Any],
        meta: _codec.Meta,
        typed: bool,
        limit: Limit | None,
        sdk: int,
    ) -> DeliveryOutcome:
        attributes = {
            "messaging.message.id": job.id,
            "messaging.consumer.group.name": self._group,
            "messaging.client.id": self._consumer,
            "streamq.job.type": d.type,
            "streamq.job.deliveries": d.deliveries,
            "streamq.entry_id": d.entry_id,
            "streamq.account_id": job.account_id,
            "streamq.org_id": job.identity.org_id,
        }
        stream = self._stream(d.type)
        with _tracing.process_span(meta.trace, attributes, d.type, stream) as span:
            outcome = await self._run(d, job, meta, typed, span, limit, sdk)
            if outcome.letter is not None:
                _tracing.event(
                    span,
                    "streamq.dead_lettered",
                    reason=outcome.letter.reason,
                    error=outcome.letter.error or None,
                )
            elif outcome.kind == "retry":
                _tracing.event(span, "streamq.retry_scheduled", error=outcome.error)
            return outcome

    def _poison(
        self, d: Delivery, trace_ids: dict[str, str] | None, exc: Exception
    ) -> DeliveryOutcome:
        extra = {"job_id": _codec.job_id_of(d.fields)} | (trace_ids or {})
        outcome = DeliveryOutcome(
            "dead",
            extra=extra,
            letter=DeadLetter(reason=f"poison: {exc}", deliveries=d.deliveries),
        )
        bind_only(outcome.log(d))
        return outcome

    async def _run(
        self,
        d: Delivery,
        job: Job[Any],
        meta: _codec.Meta,
        typed: bool,
        span: Any,
        limit: Limit | None,
        sdk: int,
    ) -> DeliveryOutcome:
        trace_ids = _tracing.ids_of(span) if span is not None else None
        if typed:
            # The typed decoder checked the type and the args already.
            job_type = self._types[d.type]
        else:
            try:
                job_type = self._job_type_of(job.type, d.type)
                args = _codec.convert_args(job_type.args, job.args, job_id=job.id, job_type=d.type)
            except (InvalidJobError, UnknownJobTypeError) as exc:
                return self._poison(d, trace_ids, exc)
            job = dataclasses.replace(job, args=args)
        bind_job(job, d.deliveries, d.entry_id, trace_ids)
        limit_n = job_type.max_deliveries or self._max_deliveries
        if d.deliveries > limit_n:
            letter = DeadLetter(
                reason=f"delivered {d.deliveries} times, over max_deliveries {limit_n}; "
                "its last deliveries never finished (did the worker die?)",
                deliveries=d.deliveries,
            )
            return DeliveryOutcome("dead", job, letter=letter, extra=trace_ids)
        if d.deliveries > 1:
            self._log.info("streamq.job.redelivered")
        if self._debug:
            self._log.debug("streamq.job.started")
        # Without a metrics SDK the instruments are no-ops: skip them and their arguments.
        metered = sdk & _tracing.METRICS
        if metered:
            metric_attrs, on_success, on_failure = self._metric_attrs[d.type]
            if meta.enqueued_at:
                _tracing.WAIT.record(max(0.0, time.time() - meta.enqueued_at), metric_attrs)
        # The duration is only for the metrics and the debug line.
        started = time.monotonic() if metered or self._debug else 0.0
        timeout = job_type.timeout or self._job_timeout
        try:
            if limit is None:
                deadline = asyncio.timeout(timeout)
                try:
                    async with deadline:
                        await self._steps(d.type, job_type, job, span, _HeldTimeout(deadline))
                except TimeoutError:
                    if deadline.expired():
                        raise _TimeLimit from None
                    raise
            else:
                limit.start(timeout)
                try:
                    only = self._only_step[d.type]
                    if only is not None and span is None:
                        # One async step, no span.
                        result = only(job)
                        if result.__class__ is not _COROUTINE:
                            result = self._awaitable(only, result)
                        await result
                    else:
                        await self._steps(d.type, job_type, job, span, limit)
                finally:
                    if limit.stop():
                        # The time limit cancelled the steps (or they swallowed its cancel).
                        raise _TimeLimit
        except _TimeLimit:
            exc2: BaseException = JobTimeoutError(
                f"job ran longer than its timeout of {timeout}s", job_id=job.id, job_type=job.type
            )
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                # Shutdown past the grace period: not acked, so it stays pending for another
                # worker.
                self._log.warning("streamq.job.cancelled")
                raise
            # Nobody cancelled this task: the handler let a CancelledError of its own out (a
            # future it awaited was cancelled). An ordinary failure.
            exc2 = exc
        except Exception as exc:
            exc2 = exc
        else:
            elapsed = time.monotonic() - started
            if metered:
                _tracing.DURATION.record(elapsed, on_success)
            if self._debug:
                self._log.debug("streamq.job.succeeded", duration_s=round(elapsed, 4))
            return DONE if trace_ids is None else DeliveryOutcome("done", extra=trace_ids)
        if metered:
            _tracing.DURATION.record(time.monotonic() - started, on_failure)
        _tracing.failed(span, exc2)
        error = f"{type(exc2).__name__}: {exc2}"
        if d.deliveries < limit_n:
            return DeliveryOutcome("retry", job, error=error, extra=trace_ids)
        letter = DeadLetter(
            reason=f"failed {d.deliveries} times (max_deliveries {limit_n})",
            error=error,
            deliveries=d.deliveries,
            failed=True,
        )
        return DeliveryOutcome("dead", job, error=error, letter=letter, extra=trace_ids)

    async def _steps(
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
            if result.__class__ is not _COROUTINE:
                result = self._awaitable(step, result)
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
                self._log.warning(
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

    def _awaitable(self, step: Step, result: object) -> Awaitable[Any]:
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
            self._log.warning(
                event,
                step=step_name(step),
                ran=ran,
                hint="register the async function itself, or wrap it with an async def",
            )

    def _job_type_of(self, envelope_type: str, stream_type: str) -> JobType:
        if envelope_type == stream_type:
            return self._types[stream_type]
        if envelope_type not in self._registry:
            raise UnknownJobTypeError(f"unknown job type {envelope_type!r}", job_type=stream_type)
        raise InvalidJobError(
            f"a job of type {envelope_type!r} on the stream of {stream_type!r}",
            job_type=stream_type,
        )
