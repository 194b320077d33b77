"""Worker processes against a real server: kills, long jobs, shutdown, restarts, global stats.

The crash-recovery tests run on three deployments: one server, a 3-master cluster, and that
cluster with ``sleepy`` spread over three partitions (three masters).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import itjobs
import pytest
from worker_procs import Workers, wait_until

from streamq import Job, Queue, SyncQueue
from streamq._server import PrivateServer
from streamq.backends.redis import RedisBackend

FAST = ("--claim-after", "1s", "--heartbeat", "200ms", "--retry-base", "100ms")


@dataclass(frozen=True)
class Deployment:
    """Where the workers and the test's queue meet: a URL and the partitioned types."""

    url: str
    partitions: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What the worker processes need besides the URL (``STREAMQ_PARTITIONS``)."""
        if not self.partitions:
            return {}
        return {"STREAMQ_PARTITIONS": ",".join(f"{t}={n}" for t, n in self.partitions.items())}


@pytest.fixture(
    params=[
        "server",
        pytest.param("cluster", marks=pytest.mark.cluster),
        pytest.param("cluster-partitioned", marks=pytest.mark.cluster),
    ]
)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """One server, the session's 3-master cluster, or that cluster with ``sleepy`` in three
    partitions (workers told by ``STREAMQ_PARTITIONS``, the test's queue by ``partitions=``)."""
    if request.param == "server":
        return Deployment(str(request.getfixturevalue("redis_url")))
    url = str(request.getfixturevalue("cluster_url"))
    if request.param == "cluster":
        return Deployment(url)
    return Deployment(url, {"sleepy": 3})


@pytest.fixture
def workers(deployment: Deployment, prefix: str, tmp_path: Path) -> Iterator[Workers]:
    """``streamq consume`` processes on the deployment, killed at teardown."""
    w = Workers(deployment.url, prefix, tmp_path, env=deployment.env)
    yield w
    w.stop_all()


@pytest.fixture
def queue(deployment: Deployment, prefix: str) -> Iterator[SyncQueue]:
    """A sync queue on the deployment and the test's prefix, with the test job types."""
    q = SyncQueue(
        lambda: Queue(
            RedisBackend(deployment.url, prefix=prefix, partitions=deployment.partitions),
            registry=itjobs.registry,
        )
    )
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
    streams = queue.backend.streams("sleepy")
    assert [w.redis.xlen(s.jobs) for s in streams] == [0] * len(streams)


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
    """The server comes back empty (no persistence): workers recreate the group and go on.

    One server only: a cluster node that comes back empty is a failover case
    (test_cluster_failover)."""
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
        groups = w.redis.xinfo_groups(q.backend.jobs_key("sleepy"))
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
