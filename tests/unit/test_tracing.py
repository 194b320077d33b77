"""Traces, metrics and log correlation, read back through the SDK's in-memory exporter and reader.

The global TracerProvider and MeterProvider can be set once per process: :func:`install_sdk` is
the one place in the test suite that sets them, and every later call returns the same pair. From
then on the rest of the session records spans too (harmless: nothing else reads them). Metrics
are cumulative over the session, so each test uses job types of its own (from ``prefix``) and
reads only the data points of those types.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from streamq import Job, MemoryBackend, Principal, Queue, Registry, Worker, _otel_setup, _tracing
from streamq.backends.redis import RedisBackend
from streamq.exceptions import ConfigError
from streamq.testing import FAST, run_jobs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
SECRET_USER = "very-secret-user"
IDENTITY = Principal(account_number="acct-42", org_id="org-7", user=SECRET_USER)

# The SDK pair of this process, once installed (see install_sdk).
_sdk: tuple[InMemorySpanExporter, InMemoryMetricReader] | None = None


def install_sdk() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """Install an SDK tracer and meter provider with in-memory export, once per process."""
    global _sdk
    if _sdk is not None:
        return _sdk
    if isinstance(trace.get_tracer_provider(), TracerProvider) or isinstance(
        metrics.get_meter_provider(), MeterProvider
    ):
        pytest.fail("a global OpenTelemetry provider was set elsewhere: set them only here")
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    _tracing.recheck()  # streamq looks for an SDK at most once a second otherwise
    _sdk = (exporter, reader)
    return _sdk


@pytest.fixture(scope="module")
def sdk() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """The process's SDK providers, installed on first use."""
    return install_sdk()


@pytest.fixture
def spans(sdk: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> InMemorySpanExporter:
    """The span exporter, emptied for this test."""
    sdk[0].clear()
    return sdk[0]


@pytest.fixture
def reader(sdk: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> InMemoryMetricReader:
    """The metric reader (cumulative since the providers were installed)."""
    return sdk[1]


@dataclass(frozen=True)
class Args:
    """Nothing needed."""

    n: int = 0


# helpers -------------------------------------------------------------------------------------


def of_type(exporter: InMemorySpanExporter, job_type: str) -> list[ReadableSpan]:
    """Finished spans about ``job_type``: its send, process and step spans, by start time."""
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.name in (f"send {job_type}", f"process {job_type}")
        or s.name.startswith(f"{job_type}.")
    ]
    return sorted(found, key=lambda s: s.start_time or 0)


def named(found: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The spans called ``name``, in start order."""
    return [s for s in found if s.name == name]


def deliveries(found: Sequence[ReadableSpan], job_type: str) -> list[ReadableSpan]:
    """The consumer spans of ``job_type``, ordered by their delivery count."""
    consumer = named(found, f"process {job_type}")
    return sorted(consumer, key=lambda s: attr(s, "streamq.job.deliveries"))


def attr(span: ReadableSpan, key: str) -> Any:
    """The attribute ``key`` of ``span`` (KeyError if missing)."""
    return (span.attributes or {})[key]


def parent_id(span: ReadableSpan) -> int | None:
    """The span id of ``span``'s parent, if it has one."""
    return span.parent.span_id if span.parent is not None else None


def events(span: ReadableSpan, name: str) -> list[Any]:
    """The events of ``span`` called ``name``."""
    return [e for e in span.events if e.name == name]


def everything_said(found: Sequence[ReadableSpan]) -> str:
    """Every name, attribute, event and status of ``found`` as one string, to search in."""
    parts: list[str] = []
    for s in found:
        parts += [s.name, repr(dict(s.attributes or {})), repr(s.status.description)]
        parts += [f"{e.name} {dict(e.attributes or {})!r}" for e in s.events]
        parts += [repr(dict(link.attributes or {})) for link in s.links]
    return "\n".join(parts)


def data_points(reader: InMemoryMetricReader, name: str, job_type: str) -> list[Any]:
    """The data points of metric ``name`` whose ``streamq.job.type`` is ``job_type``."""
    data = reader.get_metrics_data()
    found: list[Any] = []
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    found += [
                        p
                        for p in metric.data.data_points
                        if p.attributes.get("streamq.job.type") == job_type
                    ]
    return found


def total(reader: InMemoryMetricReader, name: str, job_type: str) -> int:
    """A counter's value for ``job_type`` (0 if never added to)."""
    return sum(p.value for p in data_points(reader, name, job_type))


def histogram_count(reader: InMemoryMetricReader, name: str, job_type: str) -> int:
    """How many values a histogram recorded for ``job_type``, over all its attribute sets."""
    return sum(p.count for p in data_points(reader, name, job_type))


async def eventually(check: Callable[[], Any], what: str, within: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not (value := check()):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {within}s waiting for: {what}")
        await asyncio.sleep(0.02)
    return value


def failing(times: int) -> tuple[Callable[[Job[Any]], Awaitable[None]], dict[str, int]]:
    """A step that raises on the first ``times`` deliveries of each job; and its call counts."""
    calls: dict[str, int] = {}

    async def flaky(job: Job[Any]) -> None:
        calls[job.id or ""] = calls.get(job.id or "", 0) + 1
        if calls[job.id or ""] <= times:
            raise RuntimeError(f"failure {calls[job.id or '']} of {times}")

    return flaky, calls


# traces --------------------------------------------------------------------------------------


async def test_one_trace_from_enqueue_through_steps(
    spans: InMemorySpanExporter, redis_url: str, prefix: str
) -> None:
    """send and process spans share a trace; steps are the process span's children, in order."""
    job_type = f"{prefix}-steps"
    registry = Registry()

    async def reserve(job: Job[Any]) -> None:
        await asyncio.sleep(0.005)

    def charge(job: Job[Any]) -> None:  # sync: runs in the worker's threads
        pass

    async def notify(job: Job[Any]) -> None:
        pass

    registry.register(job_type, Args, reserve, charge, notify)
    backend = RedisBackend(redis_url, prefix=prefix)
    try:
        queue = Queue(backend, registry=registry)
        job_id = await queue.enqueue(
            Job(type=job_type, args={"n": 1}, account_id=5, identity=IDENTITY)
        )
        worker = Worker(backend, registry, [job_type], **FAST)
        async with asyncio.timeout(30):
            await worker.run(stop_when_empty=True)
    finally:
        await backend.aclose()
    found = of_type(spans, job_type)
    (send,) = named(found, f"send {job_type}")
    (process,) = named(found, f"process {job_type}")
    assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert send.context is not None
    assert process.context is not None
    assert process.context.trace_id == send.context.trace_id
    assert parent_id(process) == send.context.span_id
    assert send.attributes is not None
    assert process.attributes is not None
    assert dict(send.attributes) == {
        "messaging.system": "redis",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": f"{prefix}:{{{job_type}}}:jobs",
        "streamq.job.types": (job_type,),
    }
    assert {
        k: process.attributes.get(k)
        for k in (
            "messaging.system",
            "messaging.operation.type",
            "messaging.destination.name",
            "messaging.message.id",
            "messaging.consumer.group.name",
            "messaging.client.id",
            "streamq.job.deliveries",
            "streamq.job.type",
            "streamq.account_id",
            "streamq.org_id",
        )
    } == {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.destination.name": f"{prefix}:{{{job_type}}}:jobs",
        "messaging.message.id": job_id,
        "messaging.consumer.group.name": "workers",
        "messaging.client.id": worker.consumer,
        "streamq.job.deliveries": 1,
        "streamq.job.type": job_type,
        "streamq.account_id": 5,
        "streamq.org_id": "org-7",
    }
    steps = [s for s in found if s.name.startswith(f"{job_type}.")]
    assert [s.name for s in steps] == [f"{job_type}.{n}" for n in ("reserve", "charge", "notify")]
    assert [attr(s, "streamq.step.index") for s in steps] == [0, 1, 2]
    assert all(parent_id(s) == process.context.span_id for s in steps)
    assert {s.context.trace_id for s in steps if s.context} == {send.context.trace_id}
    assert process.status.status_code == StatusCode.UNSET
    said = everything_said(spans.get_finished_spans())
    assert SECRET_USER not in said
    assert "Principal(" not in said


async def test_partial_and_callable_object_steps_get_named_spans(
    spans: InMemorySpanExporter, redis_url: str, prefix: str
) -> None:
    """Steps without a ``__name__`` (a partial, a callable object) run under tracing too, their
    spans named after the partial's function and the object's class."""
    job_type = f"{prefix}-unnamed"
    registry = Registry()

    async def tagged(tag: str, job: Job[Any]) -> None:
        pass

    class Charge:
        def __call__(self, job: Job[Any]) -> None:
            pass

    registry.register(job_type, Args, functools.partial(tagged, "x"), Charge())
    backend = RedisBackend(redis_url, prefix=prefix)
    try:
        queue = Queue(backend, registry=registry)
        await queue.enqueue(Job(type=job_type, args={"n": 1}, account_id=5, identity=IDENTITY))
        worker = Worker(backend, registry, [job_type], **FAST)
        async with asyncio.timeout(30):
            await worker.run(stop_when_empty=True)
        (stats,) = await queue.stats([job_type])
    finally:
        await backend.aclose()
    assert (stats.processed, stats.failed) == (1, 0)
    steps = [s for s in of_type(spans, job_type) if s.name.startswith(f"{job_type}.")]
    assert [s.name for s in steps] == [f"{job_type}.tagged", f"{job_type}.Charge"]


async def test_retried_job_is_one_consumer_span_per_delivery_in_one_trace(
    spans: InMemorySpanExporter, prefix: str
) -> None:
    """Fails twice then succeeds: three process spans, deliveries 1-3, errors and retry events."""
    job_type = f"{prefix}-retry"
    registry = Registry()
    flaky, calls = failing(2)
    registry.register(job_type, Args, flaky)
    job = Job(type=job_type, args={}, id=f"{prefix}-job", identity=IDENTITY)
    out = await run_jobs(registry, [job], max_deliveries=3)
    assert out.stats[job_type].processed == 1
    assert calls == {job.id: 3}
    found = of_type(spans, job_type)
    (send,) = named(found, f"send {job_type}")
    runs = deliveries(found, job_type)
    assert [attr(s, "streamq.job.deliveries") for s in runs] == [1, 2, 3]
    assert send.context is not None
    for s in runs:
        assert s.context is not None
        assert s.context.trace_id == send.context.trace_id
        assert parent_id(s) == send.context.span_id, "every delivery hangs off the producer"
        assert attr(s, "messaging.message.id") == job.id
    for n, s in enumerate(runs[:2], start=1):
        assert s.status.status_code == StatusCode.ERROR
        assert s.status.description == f"RuntimeError: failure {n} of 2"
        (exc,) = events(s, "exception")
        assert exc.attributes["exception.type"] == "RuntimeError"
        assert exc.attributes["exception.message"] == f"failure {n} of 2"
        (retry,) = events(s, "streamq.retry_scheduled")
        assert retry.attributes["error"] == f"RuntimeError: failure {n} of 2"
        assert events(s, "streamq.dead_lettered") == []
    # One step: no step span, the delivery's span is the step's (one span per delivery).
    assert named(found, f"{job_type}.flaky") == []
    last = runs[2]
    assert last.status.status_code == StatusCode.UNSET
    assert [e.name for e in last.events] == []
    assert SECRET_USER not in everything_said(found)


async def test_a_resumed_delivery_says_its_step_on_its_span(
    spans: InMemorySpanExporter, prefix: str
) -> None:
    """Three steps, the third failing once: each delivery's span carries ``streamq.job.step``
    (the step it reached: 2 both times); the retry has the ``streamq.job.resumed`` event and
    step spans only from step 2 on."""
    job_type = f"{prefix}-resume"
    registry = Registry()
    flaky, _calls = failing(1)

    async def reserve(job: Job[Any]) -> None:
        pass

    async def charge(job: Job[Any]) -> None:
        pass

    registry.register(job_type, Args, reserve, charge, flaky)
    job = Job(type=job_type, args={}, id=f"{prefix}-job", identity=IDENTITY)
    out = await run_jobs(registry, [job], max_deliveries=3)
    assert out.stats[job_type].processed == 1
    found = of_type(spans, job_type)
    first, second = deliveries(found, job_type)
    assert [attr(s, "streamq.job.step") for s in (first, second)] == [2, 2]
    assert events(first, "streamq.job.resumed") == []
    (resumed,) = events(second, "streamq.job.resumed")
    assert dict(resumed.attributes or {}) == {"step": 2, "step_name": "flaky"}
    under = {
        r.context.span_id: [
            s.name.split(".")[-1] for s in found if parent_id(s) == r.context.span_id
        ]
        for r in (first, second)
        if r.context
    }
    assert list(under.values()) == [["reserve", "charge", "flaky"], ["flaky"]]


async def test_dead_lettered_job_has_the_reason_on_its_last_span(
    spans: InMemorySpanExporter, prefix: str
) -> None:
    """A job failing up to max_deliveries: its last process span has the dead_lettered event."""
    job_type = f"{prefix}-dead"
    registry = Registry()
    always, _ = failing(99)
    registry.register(job_type, Args, always)
    out = await run_jobs(registry, [Job(type=job_type, args={})], max_deliveries=2)
    assert out.stats[job_type].dead_lettered == 1
    first, last = deliveries(of_type(spans, job_type), job_type)
    assert events(first, "streamq.retry_scheduled")
    assert not events(first, "streamq.dead_lettered")
    assert last.status.status_code == StatusCode.ERROR
    assert events(last, "exception")
    (dead,) = events(last, "streamq.dead_lettered")
    assert dict(dead.attributes) == {
        "reason": "failed 2 times (max_deliveries 2)",
        "error": "RuntimeError: failure 2 of 99",
    }
    assert out.dead[0].reason == dead.attributes["reason"]
    assert events(last, "streamq.retry_scheduled") == []


async def test_enqueue_many_is_one_producer_span_parent_of_every_job(
    spans: InMemorySpanExporter, prefix: str
) -> None:
    """enqueue_many of N jobs: ONE send span with the batch count, parent of N process spans."""
    job_type = f"{prefix}-batch"
    registry = Registry()

    async def nothing(job: Job[Any]) -> None:
        pass

    registry.register(job_type, Args, nothing)
    ids = [f"{prefix}-{i}" for i in range(4)]
    await run_jobs(registry, [Job(type=job_type, args={}, id=i) for i in ids])
    found = of_type(spans, job_type)
    (send,) = named(found, f"send {job_type}")
    assert send.attributes is not None
    assert send.context is not None
    assert send.attributes["messaging.batch.message_count"] == 4
    runs = named(found, f"process {job_type}")
    assert sorted(attr(s, "messaging.message.id") for s in runs) == ids
    assert all(parent_id(s) == send.context.span_id for s in runs)


async def test_batch_of_several_types_is_named_multiple(
    spans: InMemorySpanExporter, prefix: str
) -> None:
    """A batch spanning types: one ``send multiple`` span listing them, sorted."""
    registry = Registry()
    a, b = f"{prefix}-b", f"{prefix}-a"
    for t in (a, b):
        registry.register(t, Args, failing(0)[0])
    async with Queue(MemoryBackend(), registry=registry) as queue:
        await queue.enqueue_many([Job(type=a, args={}), Job(type=b, args={}), Job(type=a, args={})])
    (send,) = [
        s
        for s in spans.get_finished_spans()
        if s.attributes and s.attributes.get("streamq.job.types") == (b, a)
    ]
    assert send.name == "send multiple"
    assert send.attributes is not None
    assert send.attributes["messaging.destination.name"] == "multiple"
    assert send.attributes["messaging.batch.message_count"] == 3


async def test_an_unsampled_trace_gets_no_span_but_its_trace_id_in_the_logs(
    spans: InMemorySpanExporter, prefix: str
) -> None:
    """Enqueued under an unsampled span (the default sampler is ParentBased): the delivery has
    no span, its log lines carry the trace id (no span id), and what its step enqueues stays
    in that trace, unsampled (no span either)."""
    job_type, child_type = f"{prefix}-unsampled", f"{prefix}-unsampled-child"
    registry = Registry()
    ran: list[str] = []

    async def parent(job: Job[Any], ctx: Any) -> None:
        ran.append("parent")
        await ctx.enqueue(Job(type=child_type, args={}))

    async def child(job: Job[Any]) -> None:
        ran.append("child")

    registry.register(job_type, Args, parent)
    registry.register(child_type, Args, child)
    trace_id = 0x0AF7651916CD43DD8448EB211C80319C
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(trace_id, 0xB7AD6B7169203331, is_remote=False)
    )
    backend = MemoryBackend()
    with trace.use_span(unsampled):
        await Queue(backend, registry=registry).enqueue(Job(type=job_type, args={}))
    worker = Worker(backend, registry, [job_type, child_type], **FAST)
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        async with asyncio.timeout(30):
            await worker.run(stop_when_empty=True)
    assert sorted(ran) == ["child", "parent"]
    assert of_type(spans, job_type) == []
    assert of_type(spans, child_type) == []
    lines = [e for e in logs if e.get("job_type") in (job_type, child_type)]
    assert lines
    assert {e.get("trace_id") for e in lines} == {format(trace_id, "032x")}
    assert all("span_id" not in e for e in lines)


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"},
        {"traceparent": "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"},
        {"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"},
        {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01"},
        {"traceparent": "garbage"},
        {"traceparent": ""},
        {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "a=1",
        },
        {"baggage": "k=v"},
        {},
    ],
)
def test_the_parsed_parent_is_what_propagate_extract_gives(carrier: dict[str, str]) -> None:
    """_tracing parses the common carrier itself: the same parent span context as extract."""

    def seen(ctx: Any) -> Any:
        sc = trace.get_current_span(ctx).get_span_context()
        return (sc.trace_id, sc.span_id, sc.is_remote, sc.trace_flags, sc.trace_state, sc.is_valid)

    from opentelemetry import propagate

    for _ in range(2):  # the second time from the one-entry cache
        assert seen(_tracing._parent(carrier)) == seen(propagate.extract(carrier)), carrier


# metrics -------------------------------------------------------------------------------------


async def test_counters_and_histograms_match_what_happened(
    reader: InMemoryMetricReader, prefix: str
) -> None:
    """5 ok and 1 failing twice to dead: enqueued 6, processed 5, failed 2, retried 1, dead 1."""
    job_type = f"{prefix}-metrics"
    registry = Registry()
    flaky, _ = failing(2)

    async def step(job: Job[Any]) -> None:
        if job.args.n:
            await flaky(job)

    registry.register(job_type, Args, step)
    jobs = [Job(type=job_type, args={"n": 0}) for _ in range(5)]
    jobs.append(Job(type=job_type, args={"n": 1}, id=f"{prefix}-bad"))
    out = await run_jobs(registry, jobs, max_deliveries=2)
    assert (out.stats[job_type].processed, out.stats[job_type].dead_lettered) == (5, 1)
    counts = {
        name: total(reader, f"streamq.jobs.{name}", job_type)
        for name in ("enqueued", "processed", "failed", "retried", "dead_lettered")
    }
    assert counts == {"enqueued": 6, "processed": 5, "failed": 2, "retried": 1, "dead_lettered": 1}
    assert histogram_count(reader, "streamq.job.duration", job_type) == 7
    by_outcome = {
        p.attributes["streamq.outcome"]: p.count
        for p in data_points(reader, "streamq.job.duration", job_type)
    }
    assert by_outcome == {"success": 5, "failure": 2}
    assert histogram_count(reader, "streamq.job.queue_wait", job_type) == 7
    for name in ("streamq.job.duration", "streamq.job.queue_wait"):
        bounds = {tuple(p.explicit_bounds) for p in data_points(reader, name, job_type)}
        assert bounds == {tuple(float(b) for b in _tracing.SECONDS_BUCKETS)}, "in seconds"


async def test_gauges_report_in_flight_and_waiting_while_a_worker_runs(
    reader: InMemoryMetricReader, prefix: str
) -> None:
    """With 3 of 5 jobs blocked in a worker of concurrency 3: in_flight 3, waiting 2."""
    job_type = f"{prefix}-gauges"
    registry = Registry()
    release = asyncio.Event()
    started: list[str] = []

    async def blocked(job: Job[Any]) -> None:
        started.append(job.id or "")
        await release.wait()

    registry.register(job_type, Args, blocked)
    backend = MemoryBackend()
    await Queue(backend, registry=registry).enqueue_many(
        [Job(type=job_type, args={}) for _ in range(5)]
    )
    worker = Worker(backend, registry, [job_type], **(FAST | {"heartbeat": 0.1, "concurrency": 3}))
    run = asyncio.create_task(worker.run(stop_when_empty=True))
    try:
        await eventually(lambda: len(started) == 3, "3 jobs running")

        def gauges() -> tuple[list[Any], list[Any]] | None:
            in_flight = [p.value for p in data_points(reader, "streamq.jobs.in_flight", job_type)]
            waiting = [p.value for p in data_points(reader, "streamq.jobs.waiting", job_type)]
            return (in_flight, waiting) if in_flight and waiting else None

        assert await eventually(gauges, "a heartbeat sampled the queue") == ([3], [2])
    finally:
        release.set()
        async with asyncio.timeout(30):
            await run
    assert len(started) == 5
    assert data_points(reader, "streamq.jobs.in_flight", job_type) == [], "gone with the worker"


# logs ----------------------------------------------------------------------------------------


async def test_job_log_lines_carry_the_consumer_spans_ids(
    spans: InMemorySpanExporter, prefix: str
) -> None:
    """streamq.job.* lines carry trace_id and span_id (hex) of their delivery's process span."""
    job_type = f"{prefix}-logs"
    registry = Registry()
    flaky, _ = failing(1)
    registry.register(job_type, Args, flaky)
    job = Job(type=job_type, args={}, id=f"{prefix}-job")
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        await run_jobs(registry, [job], max_deliveries=2)
    first, second = deliveries(of_type(spans, job_type), job_type)
    lines = {e["event"]: e for e in logs if e.get("job_id") == job.id}
    assert {"streamq.job.failed", "streamq.job.redelivered"} <= lines.keys()
    for event, span in (("streamq.job.failed", first), ("streamq.job.redelivered", second)):
        line = lines[event]
        assert span.context is not None
        assert line["trace_id"] == format(span.context.trace_id, "032x")
        assert line["span_id"] == format(span.context.span_id, "016x")
        assert len(line["trace_id"]) == 32
        assert len(line["span_id"]) == 16


async def test_jobs_one_after_another_in_one_lane_each_run_in_their_own_trace_context(
    spans: InMemorySpanExporter, prefix: str
) -> None:
    """One lane runs a sampled job, an unsampled one and a sampled one in turn (concurrency 1):
    each handler sees its own delivery's span (the unsampled one its producer's context) as the
    current one, however the lane reuses what the job before it left in its context, and the
    worker's own context holds no job's span afterwards."""
    job_type = f"{prefix}-lane"
    registry = Registry()
    seen: dict[str, tuple[int, int, bool]] = {}

    async def step(job: Job[Any]) -> None:
        current = trace.get_current_span()
        sc = current.get_span_context()
        seen[job.id or ""] = (sc.trace_id, sc.span_id, current.is_recording())

    registry.register(job_type, Args, step)
    backend = MemoryBackend()
    queue = Queue(backend, registry=registry)
    first = await queue.enqueue(Job(type=job_type, args={}))
    unsampled_trace = 0x1AF7651916CD43DD8448EB211C80319C
    parent = trace.NonRecordingSpan(
        trace.SpanContext(unsampled_trace, 0xC7AD6B7169203331, is_remote=False)
    )
    with trace.use_span(parent):
        second = await queue.enqueue(Job(type=job_type, args={}))
    third = await queue.enqueue(Job(type=job_type, args={}))
    worker = Worker(backend, registry, [job_type], **(FAST | {"concurrency": 1}))
    async with asyncio.timeout(30):
        await worker.run(stop_when_empty=True)
    processed = {
        attr(s, "messaging.message.id"): s
        for s in named(of_type(spans, job_type), f"process {job_type}")
    }
    assert processed.keys() == {first, third}
    for job_id in (first, third):
        sc = processed[job_id].context
        assert sc is not None
        assert seen[job_id] == (sc.trace_id, sc.span_id, True)
    # The unsampled job's current span is its producer's (unsampled) send span.
    trace_id, _, recording = seen[second]
    assert (trace_id, recording) == (unsampled_trace, False)
    assert trace.get_current_span() is trace.INVALID_SPAN


# without an SDK, and the CLI's configuration -------------------------------------------------

# Runs jobs through streamq in a fresh interpreter, then prints what tracing did.
NO_SDK_SCRIPT = """
import asyncio, sys
from dataclasses import dataclass

{setup}

import streamq
from streamq import Job, Registry, _tracing
from streamq.testing import run_jobs

started = []
start = _tracing._tracer.start_as_current_span
_tracing._tracer.start_as_current_span = lambda *a, **k: started.append(a) or start(*a, **k)

@dataclass(frozen=True)
class Args:
    fail: bool = False

async def step(job):
    if job.args.fail:
        raise RuntimeError("asked to")

registry = Registry()
registry.register("t", Args, step)
jobs = [Job(type="t", args={{}}) for _ in range(3)] + [Job(type="t", args={{"fail": True}})]
out = asyncio.run(run_jobs(registry, jobs, max_deliveries=2))
assert (out.stats["t"].processed, out.stats["t"].dead_lettered) == (3, 1), out.stats
assert not _tracing.enabled()
assert started == [], started
print("sdk imported by", sorted(set(importers)) if "importers" in globals() else None)
print("sdk loaded", "opentelemetry.sdk" in sys.modules)
"""

# The SDK not installed at all: only opentelemetry-api can be imported.
WITHOUT_SDK = """
import importlib.abc

class NoSdk(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry.sdk" or name.startswith("opentelemetry.sdk."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoSdk())
"""

# The SDK installed but not configured: record every module that imports it (even when cached).
SDK_UNUSED = """
import builtins

importers = []
_import = builtins.__import__

def who(name, globals=None, locals=None, fromlist=(), level=0):
    sdk = name.startswith("opentelemetry.sdk")
    if sdk or (name == "opentelemetry" and "sdk" in (fromlist or ())):
        importer = (globals or {}).get("__name__") or ""
        if not importer.startswith("opentelemetry."):  # the SDK importing its own modules
            importers.append(importer)
    return _import(name, globals, locals, fromlist, level)

builtins.__import__ = who
"""


def run_script(setup: str) -> list[str]:
    """Run NO_SDK_SCRIPT with ``setup`` in a fresh interpreter; its stdout's last two lines."""
    done = subprocess.run(
        [sys.executable, "-c", NO_SDK_SCRIPT.format(setup=textwrap.dedent(setup))],
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout.splitlines()[-2:]


def test_without_the_sdk_jobs_run_and_no_span_is_created() -> None:
    """With only opentelemetry-api installed, streamq runs jobs and never starts a span."""
    assert run_script(WITHOUT_SDK) == ["sdk imported by None", "sdk loaded False"]


def test_streamq_never_imports_the_sdk_itself() -> None:
    """SDK installed but not configured: no span, and no streamq module imports the SDK."""
    imported_by, _ = run_script(SDK_UNUSED)
    modules = ast.literal_eval(imported_by.removeprefix("sdk imported by "))
    # redis-py 8 imports opentelemetry.sdk.metrics whenever it is installed; that one is not ours.
    assert not [m for m in modules if m == "streamq" or m.startswith("streamq.")], modules


def cli(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m streamq ARGS`` with ``env`` on top of an environment without OTEL_*."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STREAMQ_"))}
    return subprocess.run(
        [sys.executable, "-m", "streamq", *args],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def no_otlp() -> None:
    """Skip unless the OTLP exporter package is absent (the error it pins needs that)."""
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        return
    pytest.skip("opentelemetry-exporter-otlp-proto-http is installed")


@pytest.mark.usefixtures("no_otlp")
@pytest.mark.parametrize("variable", ["OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"])
def test_cli_otlp_without_its_package_is_a_one_line_error(variable: str, redis_url: str) -> None:
    """OTEL_*_EXPORTER=otlp without the exporter installed: exit 1, one line naming the package."""
    done = cli(["stats"], {variable: "otlp", "STREAMQ_REDIS_URL": redis_url})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("streamq: error: ")
    assert "opentelemetry-exporter-otlp-proto-http" in line


@pytest.mark.parametrize("variable", ["OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"])
def test_cli_unknown_exporter_is_a_one_line_error(variable: str, redis_url: str) -> None:
    """An exporter other than console, otlp or none: exit 1, one line naming the variable."""
    done = cli(["stats"], {variable: "zipkin", "STREAMQ_REDIS_URL": redis_url})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"streamq: error: {variable}='zipkin': use console, otlp or none"
    ]


def test_cli_exporters_none_or_unset_work(redis_url: str, prefix: str) -> None:
    """Unset (the CLI's default) and ``none`` configure nothing, and the command runs."""
    for env in ({}, {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": " NONE "}):
        done = cli(["stats"], env | {"STREAMQ_REDIS_URL": redis_url, "STREAMQ_PREFIX": prefix})
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_TRACES_EXPORTER", "jaeger"), ("OTEL_METRICS_EXPORTER", "prometheus")],
)
def test_configure_from_env_refuses_unknown_exporters(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """configure_from_env raises ConfigError before it installs anything."""
    monkeypatch.setenv(variable, value)
    before = trace.get_tracer_provider(), metrics.get_meter_provider()
    with pytest.raises(ConfigError, match=f"^{variable}='{value}': use console, otlp or none$"):
        _otel_setup.configure_from_env()
    assert (trace.get_tracer_provider(), metrics.get_meter_provider()) == before


def test_configure_from_env_unset_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unlike the SDK's default (otlp), unset exporters mean none: a no-op shutdown."""
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    before = trace.get_tracer_provider(), metrics.get_meter_provider()
    _otel_setup.configure_from_env()()
    assert (trace.get_tracer_provider(), metrics.get_meter_provider()) == before


def doc_example(name: str) -> str:
    """The python block after ``<!-- example: NAME -->`` in docs/observability.md."""
    after = DOCS.read_text().split(f"<!-- example: {name} -->\n```python\n", 1)[1]
    return after.split("\n```\n", 1)[0]


def test_embedding_example_in_the_docs_joins_logs_to_its_trace(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """The docs' embedding program: spans, metrics, and a log line with its span's ids."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STREAMQ_"))}
    env |= {
        "STREAMQ_REDIS_URL": redis_url,
        "STREAMQ_PREFIX": prefix,
        "STREAMQ_STATE_DIR": str(tmp_path / "state"),  # were the URL ignored: not the user's
    }
    done = subprocess.run(
        [sys.executable, "-c", doc_example("embedding")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    (process,) = [o for o in printed if o.get("name") == "process welcome"]
    (send,) = [o for o in printed if o.get("name") == "send welcome"]
    (line,) = [o for o in printed if o.get("event") == "welcome.sent"]
    assert process["parent_id"] == send["context"]["span_id"]
    assert process["resource"]["attributes"]["service.name"] == "billing-worker"
    assert line["trace_id"] == process["context"]["trace_id"].removeprefix("0x")
    assert line["span_id"] == process["context"]["span_id"].removeprefix("0x")
    assert line["email"] == "ada@example.com"
    metrics_out = {
        m["name"]: m["data"]
        for o in printed
        if "resource_metrics" in o
        for rm in o["resource_metrics"]
        for sm in rm["scope_metrics"]
        for m in sm["metrics"]
    }
    assert metrics_out["streamq.jobs.processed"]["data_points"][0]["value"] == 1
    (duration,) = metrics_out["streamq.job.duration"]["data_points"]
    assert duration["explicit_bounds"][:3] == [0.005, 0.01, 0.05], "the View applies"
