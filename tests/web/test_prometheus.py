"""Prometheus: ``streamq web``'s ``/metrics`` and a worker's ``--metrics-port``, scraped over
real HTTP from real processes and read with prometheus-client's own parser."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_helpers import Web
from worker_procs import Workers, wait_until

from streamq import Job, SyncQueue
from streamq._server import PrivateServer

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
pytest.importorskip("opentelemetry.exporter.prometheus", reason="the metrics extra is absent")

from prometheus_client.parser import text_string_to_metric_families

TOKEN = "a-token-of-24-characters"
FAST = ("--claim-after", "2s", "--heartbeat", "300ms", "--retry-base", "50ms")
LABEL = "streamq_job_type"
N = 5


def scrape(url: str, **headers: str) -> dict[str, Any]:
    """family name -> the family, from one GET of ``url`` (a 200 in the text format)."""
    reply = httpx.get(url, headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(reply.text)}


def value(families: dict[str, Any], sample: str, job_type: str, **labels: str) -> float | None:
    """The value of ``sample`` for ``job_type`` (and ``labels``), None when there is none."""
    for family in families.values():
        for s in family.samples:
            wanted = {LABEL: job_type, **labels}
            if s.name == sample and all(s.labels.get(k) == v for k, v in wanted.items()):
                return float(s.value)
    return None


def metrics_url(workers: Workers, proc: subprocess.Popen[bytes]) -> str:
    """Where a worker started with --metrics-port 0 said it serves its metrics."""
    found = wait_until(
        lambda: re.search(r"metrics at (http://\S+/metrics)", workers.log_of(proc)),
        20,
        "the worker's start-up line with its metrics address",
    )
    return str(found.group(1))


def test_web_and_worker_expose_the_same_counts(
    queue: SyncQueue, workers: Workers, start_web: Any, prefix: str
) -> None:
    """After N jobs processed and one dead-lettered, both endpoints say so under the same
    names and label; the web one adds the numbers only the server knows (waiting, scheduled,
    paused, dead now), and the worker its histograms."""
    workers.redis.set(f"{prefix}:flaky:fail", 1)
    proc = workers.start(
        "--max-deliveries", "1", "--metrics-port", "0", *FAST, types=("sleepy", "flaky")
    )
    worker_url = metrics_url(workers, proc)
    assert worker_url.startswith("http://127.0.0.1:")  # the default host: loopback
    queue.enqueue_many([Job(type="sleepy", args={"sleep": 0}) for _ in range(N)])
    queue.enqueue(Job(type="flaky", args={}))
    # A type nobody serves: 3 waiting, 1 scheduled, paused.
    queue.enqueue_many([Job(type="idle", args={}) for _ in range(3)])
    queue.enqueue(Job(type="idle", args={}), delay=3600)
    queue.pause("idle", reason="maintenance")
    wait_until(lambda: len(workers.counts("done")) == N, 30, f"{N} sleepy jobs done")

    def worker_done() -> dict[str, Any] | None:
        fams = scrape(worker_url)
        counted = value(fams, "streamq_jobs_processed_total", "sleepy") == N
        dead = value(fams, "streamq_jobs_dead_lettered_total", "flaky") == 1
        gauges = value(fams, "streamq_jobs_waiting", "sleepy") == 0
        return fams if counted and dead and gauges else None

    worker = wait_until(worker_done, 30, "the worker's counters and gauges")
    assert worker["streamq_jobs_processed"].type == "counter"
    assert worker["streamq_jobs_in_flight"].type == "gauge"
    assert value(worker, "streamq_jobs_failed_total", "flaky") == 1
    assert value(worker, "streamq_jobs_processed_total", "flaky") is None
    duration = worker["streamq_job_duration_seconds"]
    assert duration.type == "histogram"
    assert value(worker, "streamq_job_duration_seconds_count", "sleepy") == N
    assert value(worker, "streamq_job_duration_seconds_bucket", "sleepy", le="+Inf") == N
    assert worker["streamq_job_queue_wait_seconds"].type == "histogram"
    assert value(worker, "streamq_jobs_enqueued_total", "sleepy") is None  # not this process

    web: Web = start_web(token=TOKEN)
    fams = scrape(f"{web.base}/metrics", authorization=f"Bearer {TOKEN}")
    expected = {
        "sleepy": {"waiting": 0, "in_flight": 0, "enqueued": N, "processed": N, "dead": 0},
        "flaky": {"failed": 1, "dead_lettered": 1, "dead": 1, "processed": 0},
        "idle": {"waiting": 3, "scheduled": 1, "paused": 1, "enqueued": 4, "consumers": 0},
    }
    names = {
        "waiting": "streamq_jobs_waiting",
        "in_flight": "streamq_jobs_in_flight",
        "scheduled": "streamq_jobs_scheduled",
        "dead": "streamq_jobs_dead",
        "paused": "streamq_paused",
        "consumers": "streamq_consumers",
        "enqueued": "streamq_jobs_enqueued_total",
        "processed": "streamq_jobs_processed_total",
        "failed": "streamq_jobs_failed_total",
        "dead_lettered": "streamq_jobs_dead_lettered_total",
    }
    for job_type, numbers in expected.items():
        for key, want in numbers.items():
            assert value(fams, names[key], job_type) == want, (job_type, key)
    assert value(fams, "streamq_oldest_in_flight_seconds", "sleepy") == 0
    assert value(fams, "streamq_jobs_held", "idle") == 0
    assert value(fams, "streamq_jobs_cancelled_total", "idle") == 0
    kinds = {name: f.type for name, f in fams.items()}
    assert kinds["streamq_jobs_processed"] == kinds["streamq_jobs_cancelled"] == "counter"
    assert kinds["streamq_jobs_waiting"] == kinds["streamq_oldest_in_flight_seconds"] == "gauge"
    # Same names and label in both: the worker's counts are this process's, the web's all
    # workers' (one worker here, so the same numbers).
    for sample in ("streamq_jobs_processed_total", "streamq_jobs_dead_lettered_total"):
        for job_type in ("sleepy", "flaky"):
            assert value(fams, sample, job_type) == (value(worker, sample, job_type) or 0)
    assert all(f.documentation for f in fams.values())  # a HELP line each


def test_web_metrics_follow_the_token_rule(start_web: Any) -> None:
    """/metrics is guarded like every route: a bearer token (what a scrape config sends), or
    401 with one line of text; the login cookie is not needed."""
    web: Web = start_web(token=TOKEN)
    assert httpx.get(f"{web.base}/metrics", timeout=10).status_code == 401
    wrong = httpx.get(f"{web.base}/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "Bearer" in wrong.text
    ok = httpx.get(f"{web.base}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert "# TYPE streamq_jobs_waiting gauge" in ok.text


def test_web_metrics_with_the_server_gone_is_a_503(
    private_server: PrivateServer, prefix: str, tmp_path: Path
) -> None:
    """With its server stopped, /metrics answers 503 with one line of text (a scrape that
    fails, not numbers that look like an empty queue); once a server is back, 200 again."""
    web = Web(private_server.url, prefix, tmp_path, token=TOKEN)
    try:
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{web.base}/metrics", headers=auth, timeout=10).status_code == 200
        private_server.stop()
        down = httpx.get(f"{web.base}/metrics", headers=auth, timeout=30)
        assert down.status_code == 503, down.text
        assert len(down.text.strip().splitlines()) == 1, down.text
        assert "streamq_jobs_waiting" not in down.text
        private_server.start()
        back = wait_until(
            lambda: (
                (r := httpx.get(f"{web.base}/metrics", headers=auth, timeout=30)).status_code == 200
                and r
            ),
            30,
            "/metrics answering again",
        )
        assert "# TYPE streamq_jobs_waiting gauge" in back.text
    finally:
        web.stop()


def _consume(*args: str, env: dict[str, str], code: str | None = None) -> Any:
    """``streamq consume sleepy ARGS`` (or ``python -c CODE`` that runs it) to its exit."""
    argv = ["consume", "sleepy", "--handlers", "itjobs", *args]
    cmd = [sys.executable, "-c", code, *argv] if code else [sys.executable, "-m", "streamq", *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def consume_env(workers: Workers) -> dict[str, str]:
    """The environment of a worker of the test (its server, prefix, handlers' folder)."""
    here = os.path.dirname(os.path.abspath(sys.modules[Workers.__module__].__file__ or ""))
    return {
        **os.environ,
        "STREAMQ_REDIS_URL": workers.url,
        "STREAMQ_PREFIX": workers.prefix,
        "PYTHONPATH": here,
    }


def test_metrics_port_in_use_is_one_line(consume_env: dict[str, str]) -> None:
    """A port another process holds: exit 1, one line naming the address, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _consume("--metrics-port", str(port), env=consume_env)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"streamq: error: cannot serve metrics on 127.0.0.1:{port}: ")


HIDE_EXTRA = """
import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "prometheus_client" or name.startswith(
            "opentelemetry.exporter.prometheus"
        ):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Hide())
sys.argv[0] = "streamq"
from streamq._cli import main
main()
"""


def test_metrics_port_without_the_extra_is_a_usage_error(consume_env: dict[str, str]) -> None:
    """Without the metrics extra (its modules hidden by an import hook): exit 2, one line
    with the pip command; the worker never starts."""
    done = _consume("--metrics-port", "0", env=consume_env, code=HIDE_EXTRA)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "streamq: error: --metrics-port needs the metrics extra (prometheus_client not "
        "found): pip install 'streamq[metrics]'"
    ]


def test_metrics_port_and_an_otel_exporter_share_one_provider(
    queue: SyncQueue, workers: Workers
) -> None:
    """OTEL_METRICS_EXPORTER=console with --metrics-port: the same counts reach both readers
    (the scrape while it runs, the console export when it stops on SIGTERM)."""
    workers.env |= {"OTEL_METRICS_EXPORTER": "console", "OTEL_SERVICE_NAME": "both-readers"}
    proc = workers.start("--metrics-port", "0", *FAST, types=("sleepy",))
    url = metrics_url(workers, proc)
    queue.enqueue_many([Job(type="sleepy", args={"sleep": 0}) for _ in range(N)])

    def counted() -> dict[str, Any] | None:
        fams = scrape(url)
        return fams if value(fams, "streamq_jobs_processed_total", "sleepy") == N else None

    fams = wait_until(counted, 30, f"{N} jobs counted on the scrape")
    (target,) = [s for f in fams.values() for s in f.samples if s.name == "target_info"]
    assert target.labels["service_name"] == "both-readers"  # the one provider's resource
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    exported = [
        point["value"]
        for line in workers.log_of(proc).splitlines()
        if line.startswith('{"resource_metrics"')
        for rm in json.loads(line)["resource_metrics"]
        for sm in rm["scope_metrics"]
        for metric in sm["metrics"]
        if metric["name"] == "streamq.jobs.processed"
        for point in metric["data"]["data_points"]
    ]
    assert exported
    assert exported[-1] == N
