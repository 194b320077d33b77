"""What tracing costs a worker: end-to-end throughput with and without an OpenTelemetry SDK.

Seven variants of the same worker drain the same workload (test_bench_core's ``consume noop c32``:
20 000 noop jobs pre-enqueued untimed, one ``Worker`` at concurrency 32, ``block=0.01``,
``stop_when_empty``), each in a process of its own because the global providers can be set only
once per process (``benchmarks/tracing_variants.py`` says exactly what each one installs):

- ``off``: no SDK, as streamq runs by default (the instrumentation is there, the API no-ops);
- ``sdk-noop``: SDK tracer and meter providers, spans given to an exporter that drops them;
- ``sdk-memory``: SDK providers, ``BatchSpanProcessor(InMemorySpanExporter())``;
- ``sdk-batch``: a traced production worker, traces only: the default sampler (every trace),
  ``BatchSpanProcessor`` with an exporter that drops the spans; issue 20's target: >= 0.4 x off;
- ``sdk-batch-10``: the same with ``ParentBased(TraceIdRatioBased(0.1))`` (a tenth of the
  traces); target >= 0.85 x off;
- ``sdk-metrics``: an SDK ``MeterProvider`` alone: what the per-job metrics cost;
- ``stripped``: no SDK and streamq's tracing and metric calls patched out: the baseline of the
  claim "tracing switched off costs under 3 % of throughput" (``off`` against ``stripped``).

The variants are interleaved round by round (the order rotates each round), on the session's
server, so machine noise spreads over all of them. Each process times its own drain
(``perf_counter`` around ``worker.run``; the CPU time of the process too); pytest-benchmark's own
figure for the test is the time of a whole cycle of seven drains, which is only bookkeeping. The
per-variant rates and the ratios go into ``extra_info["tracing"]`` and the summary prints them.
The same variants also drain a ``MemoryBackend`` (no server, no round trips): there the
worker's own Python work is all there is, so the instrumentation's share is at its largest.
With the memory backend each process also times ``Runner.run`` alone over 2000 deliveries (best
of 5, three interleaved rounds): the per-job work without reads, acks or tasks, where what the
instrumentation adds per job shows with far less noise than end to end.

No timing is asserted; the benchmark checks only that every variant did the work it claims
(jobs processed, spans exported, the processed counter).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis.asyncio as aioredis
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.tracing_variants import (
    CONCURRENCY,
    METERED,
    SAMPLED_10,
    SPANS_PER_JOB,
    TRACED,
    VARIANTS,
)
from streamq._server import PrivateServer

#: Jobs per round and variant (as test_bench_core's consume pair), and rounds per variant.
JOBS = 20_000
ROUNDS = {"redis": 5, "memory": 3}
#: ratio name -> (numerator, denominator): the claim's ratio first, then the SDK's cost.
RATIOS = {
    "off/stripped": ("off", "stripped"),
    "sdk-noop/off": ("sdk-noop", "off"),
    "sdk-memory/off": ("sdk-memory", "off"),
    "sdk-batch/off": ("sdk-batch", "off"),
    "sdk-batch-10/off": ("sdk-batch-10", "off"),
    "sdk-metrics/off": ("sdk-metrics", "off"),
}
#: What issue 20 aims for ("tracing you can leave on"): a traced worker (batch processor, 100 %
#: sampling) keeps at least 0.4 of the untraced one's throughput, at 10 % sampling 0.85.
TARGETS = {"sdk-batch/off": 0.4, "sdk-batch-10/off": 0.85}
#: Rounds of the runner-only measurement (memory run only: it touches no backend), each a
#: best-of-5 over 2000 deliveries per variant, interleaved like the drains.
RUNNER_ROUNDS = 3
#: What tracing switched off may cost: ``off`` keeps at least this fraction of ``stripped``.
CLAIM = 0.97
ROOT = Path(__file__).resolve().parent.parent


class _Variant:
    """One child process: a worker in one tracing configuration, driven line by line."""

    def __init__(self, variant: str, backend: str, url: str, prefix: str) -> None:
        self.name = variant
        cmd = [sys.executable, "-m", "benchmarks.tracing_variants", variant, backend]
        cmd += ["--jobs", str(JOBS), "--prefix", f"{prefix}-{variant}"]
        if url:
            cmd += ["--url", url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.hello: dict[str, Any] = {}

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout

    def read(self) -> dict[str, Any]:
        line = self._pipes()[1].readline()
        if not line:
            code = self.proc.wait(timeout=30)
            raise RuntimeError(f"variant {self.name} exited ({code}): see its stderr above")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"variant {self.name}: {answer['error']}")
        return answer

    def ask(self, cmd: str) -> dict[str, Any]:
        stdin = self._pipes()[0]
        stdin.write(json.dumps({"cmd": cmd}) + "\n")
        stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit")
                self.proc.wait(timeout=30)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for pipe in self._pipes():
            pipe.close()


@pytest.fixture
def variants(
    request: pytest.FixtureRequest, server: PrivateServer, prefix: str, raw: aioredis.Redis
) -> Iterator[dict[str, _Variant]]:
    """The processes, warmed up (each drains 2000 jobs once before answering)."""
    backend: str = request.param
    url = server.url if backend == "redis" else ""
    started = {v: _Variant(v, backend, url, prefix) for v in VARIANTS}
    try:
        for v in started.values():
            v.hello = v.read()
        yield started
    finally:
        for v in started.values():
            v.close()


def _median_ratio(rates: dict[str, list[float]], num: str, den: str) -> float:
    return statistics.median(rates[num]) / statistics.median(rates[den])


def _runner_summary(runs: dict[str, list[float]], cpu_us: dict[str, float]) -> dict[str, Any]:
    """Best and median µs per delivery of ``Runner.run`` per variant, and what tracing off adds
    per job over the stripped runner, also as a share of the stripped worker's CPU per job."""
    best = {v: min(us) for v, us in runs.items()}
    added = best["off"] - best["stripped"]
    return {
        "us_per_job": {
            v: {
                "best": round(best[v], 2),
                "median": round(statistics.median(us), 2),
                "all": [round(x, 2) for x in us],
            }
            for v, us in runs.items()
        },
        "off_minus_stripped_us": round(added, 2),
        "off_minus_stripped_share_of_e2e_cpu": round(added / cpu_us["stripped"], 4),
    }


def _summary(drains: dict[str, list[dict[str, Any]]], loads: list[float]) -> dict[str, Any]:
    """Per-variant medians, the ratios of medians, and the per-round (paired) ratios."""
    rates = {v: [JOBS / d["seconds"] for d in ds] for v, ds in drains.items()}
    cpu_us = {v: [d["cpu_seconds"] / JOBS * 1e6 for d in ds] for v, ds in drains.items()}
    per_variant = {
        v: {
            "median_jobs_per_s": round(statistics.median(rates[v]), 1),
            "jobs_per_s": [round(r, 1) for r in rates[v]],
            "median_cpu_us_per_job": round(statistics.median(cpu_us[v]), 2),
            "cpu_us_per_job": [round(c, 2) for c in cpu_us[v]],
            # Spans the worker finished per job (None without an SDK): the sampled share.
            "spans_per_job": None
            if drains[v][0]["spans"] is None
            else round(statistics.median(d["spans"] for d in drains[v]) / JOBS, 4),
        }
        for v in VARIANTS
    }
    ratios = {}
    for name, (num, den) in RATIOS.items():
        paired = [n / d for n, d in zip(rates[num], rates[den], strict=True)]
        ratios[name] = {
            "of_medians": round(_median_ratio(rates, num, den), 4),
            "paired_median": round(statistics.median(paired), 4),
            "paired_min": round(min(paired), 4),
            "paired_max": round(max(paired), 4),
            "cpu_per_job": round(
                statistics.median(cpu_us[den]) / statistics.median(cpu_us[num]), 4
            ),
        }
        if name in TARGETS:
            ratios[name]["target_at_least"] = TARGETS[name]
    return {
        "jobs_per_round": JOBS,
        "concurrency": CONCURRENCY,
        "rounds": len(loads),
        "variants": per_variant,
        "ratios": ratios,
        "claim_off_over_stripped_at_least": CLAIM,
        "loadavg_1min_per_round": [round(x, 2) for x in loads],
    }


@pytest.mark.timeout(900)
@pytest.mark.parametrize("variants", ["redis", "memory"], indirect=True)
def test_tracing_overhead(
    benchmark: BenchmarkFixture, variants: dict[str, _Variant], request: pytest.FixtureRequest
) -> None:
    """No SDK, SDK + no-op exporter, SDK + in-memory exporter, instrumentation stripped."""
    backend = request.node.callspec.params["variants"]
    rounds = ROUNDS[backend]
    benchmark.group = f"tracing overhead, consume noop c{CONCURRENCY} ({backend})"
    for v in variants.values():
        assert v.hello["tracing_enabled"] is (v.name in TRACED), v.hello
    drains: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    loads: list[float] = []

    def fill_all() -> None:
        for v in variants.values():
            assert v.ask("fill")["filled"] == JOBS

    def cycle() -> None:
        # Rotate the order each round: no variant always runs first after the fill.
        shift = len(loads) % len(VARIANTS)
        loads.append(os.getloadavg()[0])
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            drains[name].append(variants[name].ask("drain"))

    benchmark.pedantic(cycle, setup=fill_all, rounds=rounds, iterations=1)

    for name, ds in drains.items():
        assert [d["processed"] for d in ds] == [JOBS] * rounds, name
        sdk = name in TRACED
        spans = [d["spans"] for d in ds]
        if name in SAMPLED_10:
            # Whole batches of the fill are sampled or not (their jobs share the send span).
            assert all(0 <= n <= SPANS_PER_JOB * JOBS for n in spans), spans
        else:
            # Every job's spans (see SPANS_PER_JOB); the counter saw every job.
            assert spans == ([SPANS_PER_JOB * JOBS] * rounds if sdk else [None] * rounds)
        metered = name in METERED
        assert [d["processed_metric"] for d in ds] == ([JOBS] if metered else [None]) * rounds
    summary = _summary(drains, loads)
    if backend == "memory":
        runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for r in range(RUNNER_ROUNDS):
            for name in VARIANTS[r:] + VARIANTS[:r]:
                answer = variants[name].ask("runner")
                sdk = name in TRACED
                if name in SAMPLED_10:
                    assert 0 <= answer["spans"] <= SPANS_PER_JOB * answer["jobs"], answer
                else:
                    expected = SPANS_PER_JOB * answer["jobs"] if sdk else None
                    assert answer["spans"] == expected, answer
                runs[name] += answer["us_per_job"]
        cpu = {v: summary["variants"][v]["median_cpu_us_per_job"] for v in VARIANTS}
        summary["runner"] = _runner_summary(runs, cpu)
    benchmark.extra_info.update(
        ops_per_round=JOBS * len(VARIANTS),
        unit="jobs",
        backend=backend,
        tracing=summary,
    )
