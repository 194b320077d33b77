"""One subprocess of the tracing-overhead benchmark: a worker in one tracing configuration.

OpenTelemetry's global providers can be set only once per process, and ``_tracing.enabled()``
is true for the rest of the process once an SDK tracer provider is set. So every variant lives in
a process of its own, started by ``benchmarks/test_bench_tracing.py`` and driven over a pipe,
which interleaves the variants round by round on the same server with the same workload:

- ``off``: plain streamq with no SDK (``enabled()`` is false, no span is created; metric calls go
  to the API's proxy instruments, which drop them);
- ``sdk-noop``: an SDK ``TracerProvider`` with a ``SimpleSpanProcessor`` whose exporter drops
  every span, and an SDK ``MeterProvider`` with an ``InMemoryMetricReader`` (metrics aggregated,
  collected only when asked);
- ``sdk-memory``: the same, but ``BatchSpanProcessor(InMemorySpanExporter())`` (the processor the
  CLI uses), cleared after each round;
- ``sdk-batch``: a production worker with tracing on, traces only: the SDK's default sampler
  (``ParentBased(ALWAYS_ON)``: every trace), ``BatchSpanProcessor`` (export on its own thread)
  with an exporter that counts and drops the spans (no collector: its cost is the collector's
  network, not streamq's); no meter provider (metrics are measured on their own, next);
- ``sdk-batch-10``: the same with ``ParentBased(TraceIdRatioBased(0.1))``: a tenth of the traces
  (decided at the producer's span, which every job of an ``enqueue_many`` batch shares: the
  fill sends ``FILL_CHUNK`` jobs a call);
- ``sdk-metrics``: an SDK ``MeterProvider`` (``InMemoryMetricReader``) and no tracer provider:
  what the per-job metrics cost on their own (an application with both pays about the sum);
- ``stripped``: the baseline of the "tracing off costs < 3 %" claim. No SDK, and streamq's
  instrumentation neutralised by patching the ``streamq._tracing`` module: ``enabled`` returns
  False and ``state`` 0 (no SDK of either kind: ``Runner.run`` never reaches its traced path,
  ``start_process``), the other span helpers (``send_span``, ``step_span``) are bare
  ``contextlib.nullcontext``, ``ids_of`` returns ``{}``, ``count`` does nothing and the seven
  metric instruments are objects whose ``add``/``record`` do nothing. (Every module calls
  ``_tracing.X`` through the module object, so patching its attributes reaches every call site.)

Protocol (one JSON object per line): the parent writes ``{"cmd": "fill"}``, ``{"cmd": "drain"}``,
``{"cmd": "runner"}`` (see :meth:`_Child.runner`) or ``{"cmd": "quit"}`` on stdin; the child
answers each with one line on its original stdout.
Anything else the process prints (a worker warning) goes to stderr, never into the protocol.

    python -m benchmarks.tracing_variants VARIANT BACKEND [--url URL] [--prefix P] [--jobs N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

VARIANTS = (
    "off",
    "sdk-noop",
    "sdk-memory",
    "sdk-batch",
    "sdk-batch-10",
    "sdk-metrics",
    "stripped",
)
#: The variants with an SDK tracer provider, with an SDK meter provider, and the ones that
#: sample a tenth of the traces.
TRACED = ("sdk-noop", "sdk-memory", "sdk-batch", "sdk-batch-10")
METERED = ("sdk-noop", "sdk-memory", "sdk-metrics")
SAMPLED_10 = ("sdk-batch-10",)
#: Spans a sampled noop job (one step) finishes in the worker: its CONSUMER span (a type of one
#: step has no step span).
SPANS_PER_JOB = 1
BACKENDS = ("redis", "memory")
#: The workload of test_bench_core's consume benchmark at c32.
CONCURRENCY = 32
WORKER_BLOCK_S = 0.01
#: Jobs per ``enqueue_many`` of the (untimed) fill: each call is one producer span, so one
#: sampling decision. 10 gives 2000 decisions a round, so that "10 % sampled" is about a tenth
#: of the jobs (with 1000 a call a round had 20 decisions and its sampled share ran from 5 to
#: 15 %), and each parent is parsed once per 10 jobs (a web app's producer: once per job).
FILL_CHUNK = 10
WARMUP_JOBS = 2000
#: The runner-only measurement: deliveries per run, runs (the best one counts).
RUNNER_JOBS = 2000
RUNNER_REPEATS = 5
#: The in-memory variant's span queue: room for every span of a round (2 per job, 20 000 jobs),
#: so that the cost of exporting all of them is measured. With the SDK's default (2048) a fast
#: worker outruns the export thread and the SDK drops spans ("Queue full, dropping Span.").
SPAN_QUEUE = 65_536


class _Nothing:
    """A metric instrument that records nothing."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record(self, *args: Any, **kwargs: Any) -> None:
        pass


def _strip_instrumentation() -> None:
    from streamq import _tracing

    nothing = _Nothing()
    for name in ("ENQUEUED", "PROCESSED", "FAILED", "RETRIED", "DEAD", "DURATION", "WAIT"):
        assert hasattr(_tracing, name), name
        setattr(_tracing, name, nothing)
    no_carrier: dict[str, str] = {}
    patches: dict[str, Callable[..., Any]] = {
        "enabled": lambda: False,
        "state": lambda: 0,
        "count": lambda *args, **kwargs: None,
        "send_span": lambda *args, **kwargs: contextlib.nullcontext(no_carrier),
        "step_span": lambda *args, **kwargs: contextlib.nullcontext(),
        "ids_of": lambda span: {},
    }
    for name, fn in patches.items():
        assert callable(getattr(_tracing, name)), name
        setattr(_tracing, name, fn)


class _Probe:
    """What the SDK saw (spans exported, jobs counted as processed), to check each variant."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.spans: Any = None
        self.metrics: Any = None
        self.provider: Any = None
        self._processed_before = 0
        if variant in TRACED:
            self._install_traces()
        if variant in METERED:
            self._install_metrics()

    def _install_traces(self) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        class DropExporter(SpanExporter):
            """Counts the spans it is given and keeps none."""

            def __init__(self) -> None:
                self.count = 0

            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                self.count += len(spans)
                return SpanExportResult.SUCCESS

        if self.variant in SAMPLED_10:
            provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)))
        else:
            provider = TracerProvider()  # the default sampler: ParentBased(ALWAYS_ON)
        if self.variant == "sdk-noop":
            self.spans = DropExporter()
            provider.add_span_processor(SimpleSpanProcessor(self.spans))
        elif self.variant.startswith("sdk-batch"):
            # As a production worker runs: the batch processor, its export on its own thread.
            self.spans = DropExporter()
            provider.add_span_processor(BatchSpanProcessor(self.spans, max_queue_size=SPAN_QUEUE))
        else:
            self.spans = InMemorySpanExporter()
            provider.add_span_processor(BatchSpanProcessor(self.spans, max_queue_size=SPAN_QUEUE))
        trace.set_tracer_provider(provider)
        self.provider = provider

    def _install_metrics(self) -> None:
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        self.metrics = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.metrics]))

    def take_spans(self) -> int | None:
        """Spans finished since the last call (and forget them); None without an SDK."""
        if self.spans is None:
            return None
        self.provider.force_flush()
        if self.variant != "sdk-memory":  # a DropExporter: it only counts
            n, self.spans.count = self.spans.count, 0
            return int(n)
        n = len(self.spans.get_finished_spans())
        self.spans.clear()
        return n

    def take_processed(self) -> int | None:
        """The ``streamq.jobs.processed`` counter's growth since the last call."""
        if self.metrics is None:
            return None
        total = 0
        data = self.metrics.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "streamq.jobs.processed":
                        total += sum(p.value for p in m.data.data_points)
        grown, self._processed_before = total - self._processed_before, total
        return int(grown)


class _Child:
    def __init__(self, args: argparse.Namespace) -> None:
        # Structlog as the other benchmarks configure it (benchmarks/conftest.py).
        import structlog

        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            cache_logger_on_first_use=True,
        )
        self.variant: str = args.variant
        self.backend_kind: str = args.backend
        self.jobs: int = args.jobs
        self.probe = _Probe(self.variant)  # the SDK (if any) before streamq is imported
        if self.variant == "stripped":
            _strip_instrumentation()

        import handlers
        from handlers.noop import NoopArgs
        from streamq import Job, Queue, Worker, _tracing
        from streamq.backends.memory import MemoryBackend
        from streamq.backends.redis import RedisBackend

        self._tracing = _tracing
        self._registry = handlers.registry
        self._noop = Job(type="noop", args=NoopArgs())
        self._worker_cls = Worker
        self._queue_cls = Queue
        self.loop = asyncio.new_event_loop()
        if self.backend_kind == "redis":
            self.backend: Any = RedisBackend(args.url, prefix=args.prefix)
        else:
            self.backend = MemoryBackend()
        self.queue = Queue(self.backend, registry=handlers.registry)
        self.worker: Any = None
        self.tracing_enabled = _tracing.enabled()

    async def _fill(self, n: int) -> None:
        key_len = (await self.backend.stats("noop")).length
        assert key_len == 0, f"the previous round left {key_len} jobs"
        for start in range(0, n, FILL_CHUNK):
            await self.queue.enqueue_many([self._noop] * min(FILL_CHUNK, n - start))
        await self.backend.ensure_groups(["noop"])

    def fill(self, n: int) -> dict[str, Any]:
        """Untimed: ``n`` noop jobs on the (empty) stream, and the worker that will drain them."""
        self.loop.run_until_complete(self._fill(n))
        self.worker = self._worker_cls(
            self.backend,
            self._registry,
            ["noop"],
            concurrency=CONCURRENCY,
            block=WORKER_BLOCK_S,
        )
        producer_spans = self.probe.take_spans()  # the fill's send spans: not the drain's
        self.probe.take_processed()
        return {"filled": n, "producer_spans": producer_spans}

    def drain(self) -> dict[str, Any]:
        """Timed: the worker runs every job, then stops (``stop_when_empty``)."""
        worker, self.worker = self.worker, None
        assert worker is not None, "drain before fill"
        cpu0, t0 = time.process_time(), time.perf_counter()
        self.loop.run_until_complete(worker.run(stop_when_empty=True))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return {
            "seconds": wall,
            "cpu_seconds": cpu,
            "processed": worker.processed,
            "spans": self.probe.take_spans(),
            "processed_metric": self.probe.take_processed(),
        }

    def runner(self) -> dict[str, Any]:
        """Timed, no backend: ``Runner.run`` of RUNNER_JOBS noop deliveries, one after another.

        That is the per-job part of the worker (decode, args check, log fields, spans, metrics,
        the step) without reads, acks or a task per job: the instrumentation's cost per job shows
        here with far less noise than end to end. Best of RUNNER_REPEATS runs, in µs per job.
        """
        from streamq import _codec
        from streamq._worker.runner import Runner
        from streamq.backends._base import Delivery

        runner = Runner(
            self._registry,
            {"noop": self._registry.get("noop")},
            job_timeout=60.0,
            max_deliveries=5,
            threads=1,
            group="bench",
            consumer="bench-runner",
        )
        fields = []
        for _ in range(RUNNER_JOBS):
            # A send span (so a trace) per job, as enqueue does: with 10 % sampling about a
            # tenth of the deliveries are sampled, not all or none of them.
            with self._tracing.send_span({"noop": 1}) as carrier:
                fields.append(_codec.encode(self._noop, str(uuid.uuid4()), trace=carrier))
        deliveries = [Delivery("noop", f"1-{i}", f, 1) for i, f in enumerate(fields)]

        async def run_all() -> float:
            t0 = time.perf_counter()
            for d in deliveries:
                outcome = await runner.run(d)
                assert outcome.kind == "done", outcome
            return time.perf_counter() - t0

        async def each_in_a_task() -> list[float]:
            # A fresh task per repeat, as the worker runs each delivery in a task of its own.
            return [await asyncio.create_task(run_all()) for _ in range(RUNNER_REPEATS)]

        self.probe.take_spans()
        times = self.loop.run_until_complete(each_in_a_task())
        runner.close()
        spans = self.probe.take_spans()
        return {
            "us_per_job": [t / RUNNER_JOBS * 1e6 for t in times],
            "spans": spans,
            "jobs": RUNNER_JOBS * RUNNER_REPEATS,
        }

    def hello(self) -> dict[str, Any]:
        """Warm up (scripts loaded, code paths run once), then say what this process is."""
        self.fill(WARMUP_JOBS)
        warm = self.drain()
        assert warm["processed"] == WARMUP_JOBS, warm
        # What `streamq consume` does before it runs its worker: the same collector policy in
        # every variant (streamq._eventloop.tune_gc).
        from streamq._eventloop import tune_gc

        self.gc_tuned = tune_gc()
        from opentelemetry import trace

        return {
            "variant": self.variant,
            "backend": self.backend_kind,
            "pid": os.getpid(),
            "tracing_enabled": self.tracing_enabled,
            "tracer_provider": type(trace.get_tracer_provider()).__name__,
            "gc_tuned": self.gc_tuned,
        }

    def close(self) -> None:
        self.loop.run_until_complete(self.backend.aclose())
        self.loop.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve fill/drain commands from stdin until ``quit`` or end of input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("backend", choices=BACKENDS)
    parser.add_argument("--url", default="")
    parser.add_argument("--prefix", default="benchtracing")
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args(argv)
    if args.backend == "redis" and not args.url:
        parser.error("--url is needed with the redis backend")
    # The protocol gets the real stdout; fd 1 becomes stderr so that no print reaches the pipe.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    child = _Child(args)

    def reply(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")

    reply(child.hello())
    for line in sys.stdin:
        cmd = json.loads(line)["cmd"]
        if cmd == "fill":
            reply(child.fill(child.jobs))
        elif cmd == "drain":
            reply(child.drain())
        elif cmd == "runner":
            reply(child.runner())
        elif cmd == "quit":
            break
        else:
            reply({"error": f"unknown command {cmd!r}"})
    child.close()
    reply({"bye": True})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
