"""Worker processes against a real server: kills, long jobs, shutdown, restarts, global stats."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import itjobs
import pytest
from worker_procs import Workers, wait_until

from streamq import Job, Queue, SyncQueue
from streamq._server import PrivateServer
from streamq.backends.redis import RedisBackend

FAST = ("--claim-after", "1s", "--heartbeat", "200ms", "--retry-base", "100ms")


@pytest.fixture
def queue(redis_url: str, prefix: str) -> Iterator[SyncQueue]:
    """A sync queue on the test's prefix, with the test job types registered."""
    q = SyncQueue(lambda: Queue(RedisBackend(redis_url, prefix=prefix), registry=itjobs.registry))
    yield q
    q.close()


def enqueue(queue: SyncQueue, n: int, sleep: float) -> list[str]:
    """Enqueue ``n`` sleepy jobs."""
    return queue.enqueue_many([Job(type="sleepy", args={"sleep": sleep}) for _ in range(n)])


def assert_drained(queue: SyncQueue, w: Workers) -> None:
    """The stream holds only live jobs: once all are done it is empty, with nothing pending."""

    def settled() -> bool:
        # A handler records "done" just before its worker acks: give the ack its moment.
        (s,) = queue.stats(["sleepy"])
        return (s.waiting, s.in_flight, s.dead) == (0, 0, 0)

    wait_until(settled, 10, "nothing waiting, in flight or dead")
    assert w.redis.xlen(f"{w.prefix}:{{sleepy}}:jobs") == 0


def test_killed_worker_jobs_complete_elsewhere(workers: Workers, queue: SyncQueue) -> None:
    """SIGKILL a worker with jobs in flight: another finishes them after claim_after; none lost."""
    ids = enqueue(queue, 8, sleep=1.5)
    victim = workers.start("-c", "4", *FAST)
    wait_until(lambda: len(workers.counts("started")) == 4, 20, "4 jobs started")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert workers.counts("done") == {}
    workers.start("-c", "8", *FAST)
    wait_until(lambda: len(workers.counts("done")) == 8, 30, "all 8 jobs done")
    done = workers.counts("done")
    assert sorted(done) == sorted(ids)
    assert all(n == 1 for n in done.values())
    assert_drained(queue, workers)


def test_long_job_with_heartbeats_runs_once(workers: Workers, queue: SyncQueue) -> None:
    """A job running 5x claim_after keeps its lease: two other workers never run it again."""
    (job_id,) = enqueue(queue, 1, sleep=5.0)
    workers.start("-c", "2", *FAST)
    wait_until(lambda: workers.counts("started"), 20, "the long job started")
    workers.start("-c", "2", *FAST)
    workers.start("-c", "2", *FAST)
    wait_until(lambda: workers.counts("done"), 30, "the long job done")
    assert workers.counts("started") == {job_id: 1}
    assert workers.counts("done") == {job_id: 1}
    assert_drained(queue, workers)


def test_graceful_shutdown_loses_nothing(workers: Workers, queue: SyncQueue) -> None:
    """SIGTERM lets in-flight jobs finish and ack; the rest stay for the next worker, run once."""
    ids = enqueue(queue, 12, sleep=0.6)
    first = workers.start("-c", "4", "--shutdown-grace", "20s", *FAST)
    wait_until(lambda: len(workers.counts("started")) >= 4, 20, "jobs in flight")
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0, workers.log_of(first)
    started_by_first = set(workers.counts("started"))
    assert started_by_first <= set(workers.counts("done")), "a started job was left unfinished"
    workers.start("-c", "4", *FAST)
    wait_until(lambda: len(workers.counts("done")) == 12, 30, "all 12 jobs done")
    assert sorted(workers.counts("done")) == sorted(ids)
    assert set(workers.counts("started").values()) == {1}
    assert_drained(queue, workers)


def test_in_flight_is_global_across_workers(workers: Workers, queue: SyncQueue) -> None:
    """Stats report in flight = jobs running in two worker processes, per consumer too."""
    enqueue(queue, 10, sleep=4.0)
    workers.start("-c", "3", *FAST)
    workers.start("-c", "3", *FAST)
    wait_until(lambda: len(workers.counts("started")) == 6, 20, "6 jobs running")
    (s,) = queue.stats(["sleepy"])
    assert s.in_flight == 6
    assert s.waiting == 4
    assert sorted(c.in_flight for c in s.consumers.values()) == [3, 3]
    pending = queue.pending("sleepy")
    assert len(pending) == 6
    assert {p.job_id for p in pending} == set(workers.counts("started"))
    wait_until(lambda: len(workers.counts("done")) == 10, 30, "all done")
    assert_drained(queue, workers)


def test_server_restarted_empty(private_server: PrivateServer, prefix: str, tmp_path: Path) -> None:
    """The server comes back empty (no persistence): workers recreate the group and go on."""
    w = Workers(private_server.url, prefix, tmp_path)
    q = SyncQueue(
        lambda: Queue(RedisBackend(private_server.url, prefix=prefix), registry=itjobs.registry)
    )
    try:
        worker = w.start("-c", "4", *FAST)
        enqueue(q, 5, sleep=0.0)
        wait_until(lambda: len(w.counts("done")) == 5, 20, "first batch done")
        private_server.restart()
        assert w.counts("done") == {}, "the server should have come back empty"
        after = wait_until(lambda: _try_enqueue(q), 20, "enqueue after restart")
        wait_until(lambda: len(w.counts("done")) == 5, 30, "second batch done after restart")
        assert sorted(w.counts("done")) == sorted(after)
        assert worker.poll() is None, w.log_of(worker)
        groups = w.redis.xinfo_groups(f"{prefix}:{{sleepy}}:jobs")
        assert [g["name"] for g in groups] == [b"workers"]
        assert_drained(q, w)
    finally:
        w.stop_all()
        q.close()


def _try_enqueue(q: SyncQueue) -> list[str] | None:
    try:
        return enqueue(q, 5, sleep=0.0)
    except Exception:
        return None
