"""One trace across processes: ``streamq enqueue`` in one, ``streamq consume`` in others.

Each process exports its spans with OTEL_TRACES_EXPORTER=console: one JSON object per line on
stdout, written when the command ends (the batch span processor flushes at exit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from worker_procs import wait_until

ROOT = Path(__file__).resolve().parents[2]
# Short intervals, so a job of a killed worker is claimed within a second or so.
FAST = ("--claim-after", "1s", "--heartbeat", "200ms")


class Processes:
    """``python -m streamq`` subprocesses on the test's server and prefix, with span export."""

    def __init__(self, url: str, prefix: str, logs: Path) -> None:
        self.logs = logs
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STREAMQ_"))}
        self.env |= {
            "STREAMQ_REDIS_URL": url,
            "STREAMQ_PREFIX": prefix,
            "OTEL_TRACES_EXPORTER": "console",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis = redis.Redis.from_url(url)
        self.prefix = prefix

    def enqueue(self, args: str, service: str = "producer") -> tuple[str, list[dict[str, Any]]]:
        """``streamq enqueue noop --args ARGS``: the job id and the spans it exported."""
        done = subprocess.run(
            [sys.executable, "-m", "streamq", "enqueue", "noop", "--args", args],
            env=self.env | {"OTEL_SERVICE_NAME": service},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.splitlines()[0]
        return job_id, spans_in(done.stdout)

    def consume(self, *flags: str, service: str = "consumer") -> subprocess.Popen[bytes]:
        """Start ``streamq consume noop`` (stdout and stderr to files named after it)."""
        n = len(self.procs)
        with (
            open(self.logs / f"consume-{n}.out", "wb") as out,
            open(self.logs / f"consume-{n}.err", "wb") as err,
        ):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamq",
                    "consume",
                    "noop",
                    "--handlers",
                    "handlers",
                    "--log-format",
                    "json",
                    "--log-level",
                    "debug",
                    *flags,
                ],
                env=self.env | {"OTEL_SERVICE_NAME": service},
                cwd=ROOT,
                stdout=out,
                stderr=err,
            )
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes], stream: str) -> str:
        """What ``proc`` wrote so far to ``stream`` (out or err)."""
        path = self.logs / f"consume-{self.procs.index(proc)}.{stream}"
        return path.read_text(errors="replace")

    def stop(self, proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
        """SIGTERM ``proc``, wait for a clean exit, return the spans it exported."""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, self.output(proc, "err")
        return spans_in(self.output(proc, "out"))

    def processed(self) -> int:
        """The server's count of processed noop jobs under this prefix."""
        return int(self.redis.hget(f"{self.prefix}:{{noop}}:stats", "processed") or 0)

    def close(self) -> None:
        """SIGKILL whatever still runs."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        self.redis.close()


@pytest.fixture
def procs(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Processes]:
    """streamq subprocesses for this test, killed at teardown if still running."""
    p = Processes(redis_url, prefix, tmp_path)
    yield p
    p.close()


def spans_in(stdout: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed: the lines that are JSON objects."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def only(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The one span called ``name``."""
    (span,) = [s for s in spans if s["name"] == name]
    return span


def test_consumer_span_is_child_of_producer_span_across_processes(procs: Processes) -> None:
    """enqueue in one process, consume in another: process noop is the child of send noop."""
    job_id, produced = procs.enqueue("{}")
    send = only(produced, "send noop")
    assert send["kind"] == "SpanKind.PRODUCER"
    assert send["resource"]["attributes"]["service.name"] == "producer"
    consumer = procs.consume()
    wait_until(lambda: procs.processed() == 1, 30, "the job processed")
    consumed = procs.stop(consumer)
    process = only(consumed, "process noop")
    assert process["kind"] == "SpanKind.CONSUMER"
    assert process["context"]["trace_id"] == send["context"]["trace_id"]
    assert process["parent_id"] == send["context"]["span_id"]
    assert process["attributes"]["messaging.message.id"] == job_id
    assert process["attributes"]["messaging.consumer.group.name"] == "workers"
    assert process["attributes"]["streamq.job.deliveries"] == 1
    assert process["resource"]["attributes"]["service.name"] == "consumer"
    # noop has one step: no step span (the delivery's span is its step's).
    assert [s for s in consumed if s["name"] == "noop.run"] == []


def test_job_of_killed_worker_is_a_new_delivery_in_the_same_trace(procs: Processes) -> None:
    """A job recovered from a SIGKILLed worker: a process span with deliveries 2, same trace."""
    job_id, produced = procs.enqueue('{"sleep": 5}')
    send = only(produced, "send noop")
    victim = procs.consume(*FAST)
    wait_until(
        lambda: "streamq.job.started" in procs.output(victim, "err"), 30, "the job started on A"
    )
    victim.send_signal(signal.SIGKILL)  # its spans die with it
    victim.wait(10)
    assert procs.processed() == 0
    rescuer = procs.consume(*FAST)
    wait_until(lambda: procs.processed() == 1, 30, "the job processed on B")
    consumed = procs.stop(rescuer)
    assert "streamq.job.redelivered" in procs.output(rescuer, "err")
    process = only(consumed, "process noop")
    assert process["attributes"]["messaging.message.id"] == job_id
    assert process["attributes"]["streamq.job.deliveries"] == 2
    assert process["context"]["trace_id"] == send["context"]["trace_id"]
    assert process["parent_id"] == send["context"]["span_id"]
    assert [s["name"] for s in consumed] == ["process noop"]
