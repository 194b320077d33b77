"""The server dies, restarts or stalls while producers and workers run: nothing acknowledged is
lost, nobody crashes, and the outage shows as clear errors rather than a hang."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import itjobs
import pytest
import structlog
from worker_procs import Workers, wait_until

from streamq import Job, Queue, RedisBackend, SyncQueue
from streamq._server import PrivateServer
from streamq.exceptions import BackendError

WORKER_ARGS = ("-c", "16", "--claim-after", "1s", "--heartbeat", "200ms", "--max-deliveries", "50")


class Producer(threading.Thread):
    """Enqueues one job at a time until stopped; keeps the ids of the enqueues that succeeded."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.url, self.prefix = url, prefix
        self.ok: list[str] = []
        self.errors: list[str] = []
        self.longest_call = 0.0
        self.failures_logged = 0
        self.halt = threading.Event()

    def run(self) -> None:
        """Enqueue; on an error, note it and try again shortly (a real producer's retry)."""
        queue = SyncQueue(
            lambda: Queue(
                RedisBackend(self.url, prefix=self.prefix, socket_timeout=1),
                registry=itjobs.registry,
            )
        )
        try:
            # streamq logs each failed enqueue (the caller also gets the error).
            with structlog.testing.capture_logs() as logs:
                while not self.halt.is_set():
                    self._enqueue_one(queue)
        finally:
            queue.close()
        self.failures_logged = sum(e["event"] == "streamq.enqueue.failed" for e in logs)

    def _enqueue_one(self, queue: SyncQueue) -> None:
        started = time.monotonic()
        try:
            self.ok.append(queue.enqueue(Job(type="sleepy", args={"sleep": 0.01})))
        except BackendError as exc:
            self.errors.append(str(exc))
            time.sleep(0.05)
        self.longest_call = max(self.longest_call, time.monotonic() - started)
        time.sleep(0.002)


def run_outage(
    tmp_path: Path,
    prefix: str,
    outage: Callable[[PrivateServer], None],
    name: str,
    faults: dict[str, int],
) -> dict[str, Any]:
    """Producer and two workers run through ``outage``; returns the figures, asserts the rest."""
    server = PrivateServer(tmp_path / "server", appendonly=True)
    server.start()
    workers = Workers(server.url, prefix, tmp_path)
    producer = Producer(server.url, prefix)
    try:
        procs = [workers.start(*WORKER_ARGS) for _ in range(2)]
        # A worker that cannot reach the server at start-up exits at once (by design): the
        # outage must find them running.
        wait_until(lambda: all(workers.ready(p) for p in procs), 30, "workers up")
        producer.start()
        wait_until(lambda: len(producer.ok) >= 200, 30, "200 jobs enqueued before the outage")
        outage(server)
        after = len(producer.ok)
        wait_until(lambda: len(producer.ok) >= after + 200, 60, "enqueues succeed again")
        producer.halt.set()
        producer.join(30)
        wait_until(
            lambda: set(producer.ok) <= set(workers.counts("done")), 90, "every enqueued job done"
        )
        logs = [workers.log_of(p) for p in procs]
        figures = {
            "test": name,
            "jobs": len(producer.ok),
            "enqueue_errors": len(producer.errors),
            "longest_enqueue_s": round(producer.longest_call, 2),
            **faults,
            "lost": len(set(producer.ok) - set(workers.counts("done"))),
            "duplicates": sum(workers.counts("started").values()) - len(producer.ok),
            "workers_alive": sum(p.poll() is None for p in procs),
            "dead": queue_dead(server.url, prefix),
        }
        figures_logged = {"enqueue_failures_logged": producer.failures_logged}
        report = Path(os.environ.get("STREAMQ_FAULT_REPORT", tmp_path / "faults.jsonl"))
        with report.open("a") as fh:
            fh.write(json.dumps(figures) + "\n")
        print(figures)
        assert figures["lost"] == 0, figures
        assert figures["workers_alive"] == 2, logs
        assert not any("streamq.worker.crashed" in log for log in logs), logs
        return figures | figures_logged | {"logs": logs, "errors": producer.errors}
    finally:
        producer.halt.set()
        workers.stop_all()
        server.resume()
        server.stop()


def queue_dead(url: str, prefix: str) -> int:
    """How many jobs of the test are in the dead stream."""
    queue = SyncQueue(lambda: Queue(RedisBackend(url, prefix=prefix)))
    try:
        return queue.stats(["sleepy"])[0].dead
    finally:
        queue.close()


def test_server_killed_and_restarted_loses_no_acknowledged_job(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL the server (append-only, fsync always) and start it again: every enqueue that
    returned is processed; producers see clear errors meanwhile; workers log and reconnect."""
    monkeypatch.setenv("STREAMQ_SOCKET_TIMEOUT", "1")

    def outage(server: PrivateServer) -> None:
        server.kill()
        time.sleep(1.5)
        server.start()

    figures = run_outage(tmp_path, prefix, outage, "server killed and restarted", {"restarts": 1})
    assert figures["enqueue_errors"] > 0, "the producer should have seen the server gone"
    assert all("cannot reach Redis at redis://127.0.0.1" in e for e in figures["errors"])
    assert figures["enqueue_failures_logged"] == figures["enqueue_errors"]
    assert all("streamq.worker.read_failed" in log for log in figures["logs"])


def test_server_paused_past_the_socket_timeout_loses_nothing(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP the server for 3x the socket timeout, then SIGCONT: no crash, no loss."""
    monkeypatch.setenv("STREAMQ_SOCKET_TIMEOUT", "1")

    def outage(server: PrivateServer) -> None:
        server.pause()
        time.sleep(3)
        server.resume()

    figures = run_outage(tmp_path, prefix, outage, "server paused 3 s", {"pauses": 1})
    assert figures["enqueue_errors"] > 0, "the producer should have timed out, not hung"
