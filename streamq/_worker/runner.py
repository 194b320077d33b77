"""One delivery: decode, validate, run the steps in order under the timeout. No backend calls
but those of the step progress (:mod:`~streamq._worker.progress`, given by the worker).

The worker hands a :class:`Delivery` to :meth:`Runner.run` and acts on the
:class:`~streamq._worker.outcome.DeliveryOutcome` (ack, retry, dead-letter); everything about
*running* a job lives here and in :mod:`~streamq._worker.steps` (calling the steps, the step
threads) and :mod:`~streamq._worker.limits` (the time limit), everything about the stream in
the rest of the worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from streamq import _codec, _tracing
from streamq._enqueue import Enqueuer
from streamq._job import Job
from streamq._logging import bind_job, bind_only, logger, resolved
from streamq._registry import JobType, Registry
from streamq._worker.limits import HeldTimeout, JobCancelled, Limit, TimeLimitReached
from streamq._worker.outcome import DONE, DeliveryOutcome, log_fields
from streamq._worker.progress import ProgressKeeper, StepLeaseLost
from streamq._worker.steps import COROUTINE, StepCaller
from streamq.backends._base import (
    F_DELIVERIES,
    F_EXPIRES,
    DeadLetter,
    Delivery,
    prior_deliveries,
)
from streamq.exceptions import InvalidJobError, JobTimeoutError, Retry, UnknownJobTypeError

__all__ = ["DONE", "DeliveryOutcome", "Limit", "Runner", "log_fields"]


async def _outcome_now(outcome: DeliveryOutcome) -> DeliveryOutcome:
    return outcome


def error_text(failure: BaseException) -> str:
    """A failure as the job's last error: ``Type: message`` (a :class:`Retry` without a reason
    of its own speaks for the error it was raised from)."""
    if isinstance(failure, Retry) and not failure.reason and failure.__cause__ is not None:
        failure = failure.__cause__
    return f"{type(failure).__name__}: {failure}"


def expired(raw: bytes, deliveries: int) -> DeadLetter | None:
    """The dead letter of a job whose deadline (``raw``, ms since the epoch) has passed, by
    this worker's clock; None while it has not (or cannot be read: the job runs)."""
    try:
        deadline_ms = int(raw)
    except ValueError:
        return None
    late_ms = time.time_ns() // 1_000_000 - deadline_ms
    if late_ms < 0:
        return None
    at = datetime.fromtimestamp(deadline_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return DeadLetter(
        reason="expired",
        error=f"not started by its deadline {at.replace('+00:00', 'Z')} "
        f"({late_ms / 1000:.3f}s late)",
        deliveries=deliveries,
    )


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
        progress: ProgressKeeper | None = None,
        enqueuer: Enqueuer | None = None,
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
            t: jt.steps[0]
            if len(jt.steps) == 1 and jt.is_async[0] and not jt.with_context[0]
            else None
            for t, jt in types.items()
        }
        self._job_timeout = job_timeout
        self._max_deliveries = max_deliveries
        self._log = logger
        self._debug = True
        self._sdk = _tracing.state()
        # The CONSUMER span's name and per-type attributes, built once per type.
        self._span_names = {t: self._span_names_of(t) for t in types}
        # One thread for each lane for the sync steps (and stand-ins for stuck ones).
        self._steps = StepCaller(threads, progress, enqueuer)
        # Bound once: the multi-step and sync paths call these per job.
        self._run_steps = self._steps.run_steps
        self._awaitable = self._steps.awaitable

    def resolve_logger(self) -> None:
        """Resolve the per-job logger now (see ``_logging.resolved``): call when starting."""
        self._log = self._steps.log = resolved()
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
        self._steps.close()

    def run(self, d: Delivery, limit: Limit | None = None) -> Coroutine[Any, Any, DeliveryOutcome]:
        """Run one delivery to its outcome (await the result). CancelledError (shutdown)
        propagates.

        The entry is decoded when this is called; the coroutine runs the job. ``limit`` enforces
        the job's timeout for the task running it; without one the runner uses
        ``asyncio.timeout`` (a timer per delivery).
        """
        if F_DELIVERIES in d.fields:
            # A retry that waited in the schedule: its entry is new, its deliveries are not.
            d.deliveries += prior_deliveries(d.fields)
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
                return _outcome_now(self._poison(d, None, exc))
            job, meta = envelope.job, envelope
        sdk = self._sdk
        if not sdk & _tracing.TRACES:
            # The common case without an SDK: no span, no attributes, no context managers.
            return self._run(d, job, meta, typed, None, limit, sdk, None)
        skipped = _tracing.unsampled(meta.trace)
        if skipped is not None:
            # Not sampled (its producer's span was not): run as untraced, its trace id logged,
            # in the producer's context; no coroutine around the run's.
            parent, ids = skipped
            return self._run(d, job, meta, typed, None, limit, sdk, ids, parent)
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
        names = self._span_names.get(d.type)
        if names is None:
            # A type not served (its delivery dead-letters): named and attributed as served.
            names = self._span_names[d.type] = self._span_names_of(d.type)
        name, attributes = names
        attributes = {
            **attributes,
            "messaging.message.id": job.id,
            "streamq.job.deliveries": d.deliveries,
            "streamq.entry_id": d.entry_id,
        }
        if job.account_id is not None:
            attributes["streamq.account_id"] = job.account_id
        if job.identity.org_id:
            attributes["streamq.org_id"] = job.identity.org_id
        span, ctx, trace_ids = _tracing.start_process(meta.trace, name, attributes)
        try:
            if not span.is_recording():
                # Not sampled: nothing to record, run as untraced (its ids still in the logs).
                return await self._run(d, job, meta, typed, None, limit, sdk, trace_ids, ctx)
            outcome = await self._run(d, job, meta, typed, span, limit, sdk, trace_ids, ctx)
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
        finally:
            span.end()

    def _span_names_of(self, job_type: str) -> tuple[str, dict[str, Any]]:
        """The name and the per-type attributes of ``job_type``'s CONSUMER spans."""
        attributes = _tracing.process_attributes(
            job_type, self._stream(job_type), self._group, self._consumer
        )
        return f"process {job_type}", attributes

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
        trace_ids: dict[str, str] | None,
        otel: Any = None,
    ) -> DeliveryOutcome:
        """Run the delivery; ``span`` is its recording CONSUMER span (None: untraced, or not
        sampled), ``trace_ids`` the ids its log lines carry (None without a span), ``otel``
        the OpenTelemetry context its steps run in (None: the current one).

        ``otel`` is made current only once the time limit has started, and the one before it
        restored as the steps end: the lane compares the job's context at its start with the
        one it ends with (:mod:`streamq._worker.lanes`), and a job that changed nothing in
        its context (tracing included) lets the next job start from its log fields."""
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
        expires = d.fields.get(F_EXPIRES)
        if expires is not None:
            late = expired(expires, d.deliveries)
            if late is not None:
                return DeliveryOutcome("dead", job, letter=late, extra=trace_ids)
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
                token = _tracing.use(otel) if otel is not None else None
                try:
                    async with deadline:
                        await self._run_steps(d, job_type, job, span, HeldTimeout(deadline))
                except TimeoutError:
                    if deadline.expired():
                        raise TimeLimitReached from None
                    raise
                finally:
                    if token is not None:
                        _tracing.restore(token)
            else:
                limit.start(timeout)
                token = _tracing.use(otel) if otel is not None else None
                try:
                    only = self._only_step[d.type]
                    if only is not None:
                        # One async step that takes no context (no step span: the delivery's
                        # span, if any, is the step's).
                        result = only(job)  # type: ignore[call-arg]
                        if result.__class__ is not COROUTINE:
                            result = self._awaitable(only, result)
                        await result
                    else:
                        await self._run_steps(d, job_type, job, span, limit)
                finally:
                    if token is not None:
                        _tracing.restore(token)
                    by_request = limit.cancelling
                    if limit.stop():
                        # The time limit or a cancel request cancelled the steps (or they
                        # swallowed its cancel).
                        if by_request:
                            raise JobCancelled from None
                        raise TimeLimitReached
        except JobCancelled:
            # Queue.cancel asked for it (_worker.cancelling): ended as cancelled, not retried.
            self._log.info("streamq.job.cancelled_by_request")
            return DeliveryOutcome("cancelled", job, extra=trace_ids)
        except StepLeaseLost:
            # Another consumer holds the entry now (a step's record found it): it runs the job
            # on from the steps recorded; nothing is acked, retried or dead-lettered here.
            return DeliveryOutcome("lost", job, extra=trace_ids)
        except TimeLimitReached:
            failure: BaseException = JobTimeoutError(
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
            failure = exc
        except Exception as exc:
            failure = exc
        else:
            elapsed = time.monotonic() - started
            if metered:
                _tracing.DURATION.record(elapsed, on_success)
            if self._debug:
                self._log.debug("streamq.job.succeeded", duration_s=round(elapsed, 4))
            return DONE if trace_ids is None else DeliveryOutcome("done", extra=trace_ids)
        if metered:
            _tracing.DURATION.record(time.monotonic() - started, on_failure)
        _tracing.failed(span, failure)
        error = error_text(failure)
        not_retried = job_type.retries(failure)
        if not_retried is None and d.deliveries < limit_n:
            after = failure.after if isinstance(failure, Retry) else None
            return DeliveryOutcome("retry", job, error=error, extra=trace_ids, retry_in=after)
        letter = DeadLetter(
            reason=f"failed {d.deliveries} times (max_deliveries {limit_n})"
            if not_retried is None
            else f"not retryable: {not_retried}",
            error=error,
            deliveries=d.deliveries,
            failed=True,
        )
        return DeliveryOutcome("dead", job, error=error, letter=letter, extra=trace_ids)

    def _job_type_of(self, envelope_type: str, stream_type: str) -> JobType:
        if envelope_type == stream_type:
            return self._types[stream_type]
        if envelope_type not in self._registry:
            raise UnknownJobTypeError(f"unknown job type {envelope_type!r}", job_type=stream_type)
        raise InvalidJobError(
            f"a job of type {envelope_type!r} on the stream of {stream_type!r}",
            job_type=stream_type,
        )
