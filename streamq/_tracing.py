"""Traces and metrics, through the OpenTelemetry API only (the CLI's SDK set-up is
:mod:`streamq._otel_setup`).

The hot path uses the API only. With no SDK configured the API is a no-op, and streamq does not
even create (non-recording) spans: :func:`enabled` is checked once per job. Span and attribute
names follow the OpenTelemetry messaging semantic conventions; streamq adds ``streamq.*`` ones.

``enqueue_many`` records ONE producer span for the whole batch (``messaging.batch.message_count``)
and every job of the batch carries that span's context: one span per job would cost more than
the enqueue itself.

A delivery is ONE consumer span (its steps get spans of their own only when its type has
several), started by :func:`start_process` with all its attributes at once; a delivery whose
trace was not sampled gets no span at all when the SDK's sampler would drop it anyway
(:func:`unsampled`). What each costs: docs/observability.md, "What tracing costs".
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

SYSTEM = "redis"
_tracer = trace.get_tracer("streamq")
_meter = metrics.get_meter("streamq")

ENQUEUED = _meter.create_counter("streamq.jobs.enqueued", "{job}", "Jobs enqueued")
PROCESSED = _meter.create_counter("streamq.jobs.processed", "{job}", "Jobs that succeeded")
FAILED = _meter.create_counter("streamq.jobs.failed", "{job}", "Deliveries whose handler failed")
RETRIED = _meter.create_counter("streamq.jobs.retried", "{job}", "Failed jobs scheduled again")
DEAD = _meter.create_counter("streamq.jobs.dead_lettered", "{job}", "Jobs moved to dead")
#: Bucket boundaries in seconds (the SDK's default ones are meant for milliseconds).
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
DURATION = _meter.create_histogram(
    "streamq.job.duration",
    "s",
    "Handler run time (all steps)",
    explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
)
WAIT = _meter.create_histogram(
    "streamq.job.queue_wait",
    "s",
    "Enqueue to handler start",
    explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
)

#: Sources of (type, in_flight, waiting) for the observable gauges; each worker adds one.
_gauge_sources: list[Callable[[], Iterable[tuple[str, int, int]]]] = []


def _observe(index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        for source in list(_gauge_sources):
            for job_type, *values in source():
                yield Observation(values[index], {"streamq.job.type": job_type})

    return callback


_meter.create_observable_gauge(
    "streamq.jobs.in_flight", [_observe(0)], "{job}", "Jobs in the PEL (all workers)"
)
_meter.create_observable_gauge(
    "streamq.jobs.waiting", [_observe(1)], "{job}", "Jobs not yet delivered"
)


def add_gauge_source(source: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
    """Report (type, in_flight, waiting) from ``source`` through the gauges."""
    _gauge_sources.append(source)


def remove_gauge_source(source: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
    """Stop reporting from ``source``."""
    with contextlib.suppress(ValueError):
        _gauge_sources.remove(source)


#: Bits of :func:`state`: an SDK tracer provider is installed; an SDK meter provider is.
TRACES = 1
METRICS = 2
_state = 0
_next_look = 0.0


def _sdk_meter_provider() -> bool:
    provider = metrics.get_meter_provider()
    # The API's own placeholder (until a provider is set) and its explicit no-op provider.
    return type(provider).__name__ != "_ProxyMeterProvider" and not isinstance(
        provider, metrics.NoOpMeterProvider
    )


def state() -> int:
    """Which SDKs are installed: ``TRACES | METRICS`` bits (without one, that half is skipped).

    Asking opentelemetry costs about a microsecond (it reads an environment variable), so the
    answer is looked up at most once a second until both SDKs appear, and a provider once seen
    is kept (one cannot be uninstalled). An SDK installed after jobs started is seen within 1 s.
    """
    global _state, _next_look
    if _state == TRACES | METRICS:
        return _state
    now = time.monotonic()
    if now < _next_look:
        return _state
    _next_look = now + 1.0
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        _state |= TRACES
    if _sdk_meter_provider():
        _state |= METRICS
    return _state


def enabled() -> bool:
    """Whether an SDK tracer provider is installed (otherwise spans are skipped entirely)."""
    return bool(state() & TRACES)


def recheck() -> None:
    """Look for SDKs again at the next :func:`state` (call after installing providers)."""
    global _next_look
    _next_look = 0.0


#: What the producer side uses instead of send_span when tracing is off: no generator, no span.
NO_CARRIER: contextlib.nullcontext[Mapping[str, str]] = contextlib.nullcontext({})


def count(counter: Any, job_type: str, n: int = 1) -> None:
    """Add ``n`` to a job counter for ``job_type``."""
    counter.add(n, {"streamq.job.type": job_type})


@contextlib.contextmanager
def send_span(
    destinations: Mapping[str, int], stream: Callable[[str], str] = str
) -> Iterator[dict[str, str]]:
    """A PRODUCER span around one enqueue (or a batch); yields the carrier to put in jobs.

    ``destinations`` maps each job type in the batch to how many of its jobs it holds;
    ``stream`` names a type's stream (the messaging destination). The span helpers assume
    :func:`enabled`; callers use NO_CARRIER (or, for deliveries, no span at all) otherwise.
    """
    names = sorted(destinations)
    label = names[0] if len(names) == 1 else "multiple"
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": stream(label) if len(names) == 1 else label,
        "streamq.job.types": names,
    }
    total = sum(destinations.values())
    if total > 1:
        attributes["messaging.batch.message_count"] = total
    with _tracer.start_as_current_span(
        f"send {label}", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier


def process_attributes(job_type: str, stream: str, group: str, consumer: str) -> dict[str, Any]:
    """The attributes every CONSUMER span of ``job_type`` has: built once per type (the
    runner keeps them), given to the sampler as the span starts."""
    attrs = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": stream,
        "messaging.consumer.group.name": group,
        "messaging.client.id": consumer,
        "streamq.job.type": job_type,
    }
    # An attribute without a value (no consumer group on the memory backend) is left out.
    return {k: v for k, v in attrs.items() if v not in ("", None)}


#: A W3C ``traceparent`` of version 00 as TraceContextTextMapPropagator accepts it (lowercase
#: hex, nothing after the flags).
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
#: The global propagator last looked at, and whether it is W3C's (see _parent).
_w3c: tuple[Any, bool] = (None, False)
#: The fields of the default propagators (W3C trace context and baggage).
_W3C_FIELDS = frozenset({"traceparent", "tracestate", "baggage"})


def _w3c_propagator() -> bool:
    """Whether the global propagator reads only W3C's trace context (and baggage) fields: the
    default, under which a carrier holding only ``traceparent`` means exactly its span."""
    global _w3c
    textmap = propagate.get_global_textmap()
    seen, is_w3c = _w3c
    if textmap is not seen:
        fields = set(textmap.fields)
        is_w3c = "traceparent" in fields and fields <= _W3C_FIELDS
        _w3c = (textmap, is_w3c)
    return is_w3c


#: The last traceparent parsed, and what it gave (jobs of one enqueue_many share one).
_last_parent: tuple[str, context.Context, trace.SpanContext | None, str] = (
    "",
    context.Context(),
    None,
    "",
)


def _parent(carrier: Mapping[str, str]) -> context.Context:
    """The producer's context from a job's ``carrier``, as ``propagate.extract`` gives it.

    The common carrier (what the default propagators inject for a span without trace state or
    baggage) is ``{"traceparent": "00-..."}``: that one is parsed here, in a fraction of the
    time extract takes (a regex search, a tracestate and a baggage lookup, three context
    copies). Anything else (trace state, baggage, another propagator configured, another
    version) goes to ``propagate.extract``."""
    return _remote(carrier)[0]


def _remote(
    carrier: Mapping[str, str],
) -> tuple[context.Context, trace.SpanContext | None, str]:
    """:func:`_parent`, and when it was parsed here the producer's span context and trace id
    (hex); else None and ""."""
    global _last_parent
    if len(carrier) == 1:
        header = carrier.get("traceparent")
        if header is not None and _w3c_propagator():
            last, ctx, remote, trace_hex = _last_parent
            if header == last:
                # Contexts are immutable: the same one serves again.
                return ctx, remote, trace_hex
            m = _TRACEPARENT.fullmatch(header)
            if m is not None:
                trace_hex, span_hex, flags = m.groups()
                if trace_hex != _ZERO_TRACE and span_hex != _ZERO_SPAN:
                    remote = trace.SpanContext(
                        int(trace_hex, 16),
                        int(span_hex, 16),
                        is_remote=True,
                        trace_flags=trace.TraceFlags(int(flags, 16)),
                    )
                    ctx = trace.set_span_in_context(
                        trace.NonRecordingSpan(remote), context.Context()
                    )
                    _last_parent = (header, ctx, remote, trace_hex)
                    return ctx, remote, trace_hex
                return context.Context(), None, ""
    elif not carrier:
        return context.Context(), None, ""
    return propagate.extract(carrier), None, ""


#: The tracer provider last looked at, and whether its sampler drops every span whose remote
#: parent is not sampled (see _drops_unsampled).
_drops: tuple[Any, bool] = (None, False)


def _drops_unsampled() -> bool:
    """Whether the SDK's sampler drops the span of an unsampled remote parent for certain: the
    SDK's own ``ParentBased`` (its default sampler, and the ratio recipe's) with its default
    ``remote_parent_not_sampled=ALWAYS_OFF``. Anything else (another sampler, a subclass, an
    SDK that keeps that delegate elsewhere) answers False: every span goes to the sampler."""
    global _drops
    provider = trace.get_tracer_provider()
    seen, drops = _drops
    if provider is not seen:
        drops = False
        sampler = getattr(provider, "sampler", None)
        if type(sampler).__module__ == "opentelemetry.sdk.trace.sampling":
            # Loaded already (the provider's sampler is one): not an import of the SDK's own.
            from opentelemetry.sdk.trace import sampling

            delegate = getattr(sampler, "_remote_parent_not_sampled", None)
            drops = type(sampler) is sampling.ParentBased and delegate is sampling.ALWAYS_OFF
        _drops = (provider, drops)
    return drops


def unsampled(carrier: Mapping[str, str]) -> tuple[context.Context, dict[str, str]] | None:
    """For a delivery whose producer's span was not sampled, when the SDK's sampler would drop
    its span for certain (:func:`_drops_unsampled`): the producer's context, to make current
    while its steps run (:func:`use`), and the ids its log lines carry (the trace id). No span
    at all: a non-recording one would cost an id, a sampler call and a context. The context is
    made current so that what the job enqueues stays in its unsampled trace.
    None for every other delivery (then :func:`start_process`)."""
    parent, remote, trace_hex = _remote(carrier)
    if remote is None or remote.trace_flags.sampled or not _drops_unsampled():
        return None
    return parent, {"trace_id": trace_hex}


def start_process(
    carrier: Mapping[str, str], name: str, attributes: dict[str, Any]
) -> tuple[Span, context.Context, dict[str, str]]:
    """Start the CONSUMER span of one delivery (``name``: ``process TYPE``; ``attributes``:
    its type's from :func:`process_attributes` and the delivery's, all given at the start:
    the sampler sees them, and one set of them is checked once), child of the producer's
    context in ``carrier``. Returns it, the context that holds it (to make current while the
    steps run: :func:`use`), and the ids its log lines carry (:func:`ids_of`).

    The sampler decides here: an unsampled span is a non-recording one (the caller then adds
    nothing to it and runs the job as untraced, with its ids for the log lines).
    """
    parent, _, trace_hex = _remote(carrier)
    span = _tracer.start_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )
    ctx = span.get_span_context()
    if trace_hex and ctx.is_valid:
        # A child of the parent parsed here: its trace id, already in hex.
        ids = {"trace_id": trace_hex, "span_id": format(ctx.span_id, "016x")}
    else:
        ids = ids_of(span)
    return span, trace.set_span_in_context(span, parent), ids


def use(ctx: context.Context) -> object:
    """Make ``ctx`` (from :func:`start_process` or :func:`unsampled`) the current context; the
    token :func:`restore` needs.

    The runner does this once the delivery's time limit has started (the lane's snapshot of
    its context: :mod:`streamq._worker.lanes`) and restores it before the job ends, so that a
    traced job leaves its context as it found it and the lane can start the next job in a copy
    of it, as it does without tracing."""
    return context.attach(ctx)


def restore(token: object) -> None:
    """Restore the context from before :func:`use`."""
    context.detach(token)  # type: ignore[arg-type]


@contextlib.contextmanager
def step_span(name: str, index: int) -> Iterator[None]:
    """One INTERNAL span per handler step, inside the delivery's span."""
    with _tracer.start_as_current_span(name, attributes={"streamq.step.index": index}):
        yield


def ids_of(span: Span | None) -> dict[str, str]:
    """trace_id and span_id of ``span`` as hex, for log lines (empty without a span)."""
    if span is None:
        return {}
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def failed(span: Span | None, exc: BaseException) -> None:
    """Record the exception on the span and mark it an error."""
    if span is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def event(span: Span | None, name: str, **attributes: Any) -> None:
    """Add an event (e.g. ``streamq.dead_lettered`` with the reason) to the span."""
    if span is not None:
        span.add_event(name, {k: v for k, v in attributes.items() if v is not None})
