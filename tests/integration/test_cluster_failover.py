"""A master of a real cluster dies while workers drain and a producer enqueues: its replica takes
over, everyone reconnects, and no job the producer saw acknowledged (with ``WAIT``) is lost."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import itjobs
import pytest
import redis
from cluster import LocalCluster
from redis.crc import key_slot
from worker_procs import Workers, sync_client, wait_until

from streamq import Job, Queue, SyncQueue
from streamq.backends.redis import RedisBackend
from streamq.exceptions import BackendError

pytestmark = pytest.mark.cluster

FAST = ("--claim-after", "1s", "--heartbeat", "200ms", "--retry-base", "100ms")
PARTITIONS = {"sleepy": 3}


def make_queue(url: str, prefix: str, **settings: int) -> SyncQueue:
    """A sync queue on ``url`` with ``sleepy`` in three partitions and the given settings."""
    return SyncQueue(
        lambda: Queue(
            RedisBackend(url, prefix=prefix, partitions=PARTITIONS, **settings),
            registry=itjobs.registry,
        )
    )


@pytest.fixture
def producer(private_cluster: LocalCluster, prefix: str) -> Iterator[SyncQueue]:
    """A queue whose enqueues return only once one replica has the jobs (``wait_replicas=1``)."""
    q = make_queue(private_cluster.url, prefix, wait_replicas=1, wait_timeout_ms=500)
    yield q
    q.close()


class Producer(threading.Thread):
    """Enqueues one ``sleepy`` job at a time until stopped, retrying after a failure as a real
    producer would; only the ids of enqueues that returned count as acknowledged."""

    def __init__(self, queue: SyncQueue) -> None:
        super().__init__(daemon=True, name="producer")
        self.queue = queue
        self.acknowledged: list[str] = []
        self.failures: list[tuple[float, str]] = []
        self.unexpected: BaseException | None = None
        self.streak = 0  # acknowledged enqueues since the last failure
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                job_id = self.queue.enqueue(Job(type="sleepy", args={"sleep": 0.05}))
            except BackendError as exc:
                self.failures.append((time.monotonic(), str(exc)))
                self.streak = 0
                self.stopping.wait(0.05)
                continue
            except BaseException as exc:
                self.unexpected = exc
                return
            self.acknowledged.append(job_id)
            self.streak += 1
            self.stopping.wait(0.01)

    def stop(self) -> None:
        """Stop after the enqueue under way."""
        self.stopping.set()
        self.join(15)
        assert not self.is_alive(), "the producer hangs in an enqueue"


def settled(queue: SyncQueue) -> bool:
    """Nothing of ``sleepy`` waiting or in flight (a just-finished job's ack may be on its way)."""
    (s,) = queue.stats(["sleepy"])
    return s.waiting == s.in_flight == 0


def test_failover_mid_run_loses_no_acknowledged_job(
    private_cluster: LocalCluster, producer: SyncQueue, prefix: str, tmp_path: Path
) -> None:
    """Kill the master of one partition mid-run: its replica takes over, the workers and the
    producer carry on, every acknowledged job runs, nothing is left, no worker crashed."""
    workers = Workers(private_cluster.url, prefix, tmp_path, env={"STREAMQ_PARTITIONS": "sleepy=3"})
    feed = Producer(producer)
    try:
        for _ in range(2):
            workers.start("-c", "8", *FAST)
        wait_until(lambda: all(map(workers.ready, workers.procs)), 20, "workers consuming")
        # Spare the master holding the test's own records (sleepy's started/done hashes): they
        # are not WAITed for, and they are what this test counts.
        records = private_cluster.master_of_slot(
            key_slot(itjobs.record_key(prefix, "done").encode())
        )
        owners = [
            private_cluster.master_of_slot(s.slot) for s in producer.backend.streams("sleepy")
        ]
        assert len(set(owners)) == 3, f"the partitions should sit on 3 masters: {owners}"
        victim = next(port for port in owners if port != records)

        feed.start()
        wait_until(lambda: len(workers.counts("done")) >= 30, 20, "jobs flowing")
        acked_at_kill = len(feed.acknowledged)
        killed_at = time.monotonic()
        promoted = private_cluster.kill_master_and_wait_failover(victim)
        failover_s = time.monotonic() - killed_at
        # The new master has no replica until the old one rejoins as its replica (as an
        # orchestrator would restart it): until then WAIT cannot confirm its jobs.
        private_cluster.restart(victim)
        private_cluster.wait_ready()
        rejoined_s = time.monotonic() - killed_at
        acked_at_rejoin = len(feed.acknowledged)
        # Twelve acknowledged in a row since then: round robin put four on each partition.
        wait_until(
            lambda: feed.streak >= 12 and len(feed.acknowledged) - acked_at_rejoin >= 12,
            20,
            "the producer acknowledged again on every partition",
        )
        feed.stop()
        assert feed.unexpected is None, repr(feed.unexpected)

        acked = set(feed.acknowledged)
        wait_until(lambda: acked <= set(workers.counts("done")), 20, "every acknowledged job done")
        wait_until(lambda: settled(producer), 20, "nothing waiting or in flight")
        (stats,) = producer.stats(["sleepy"])
        done = workers.counts("done")
        figures = {
            "killed": victim,
            "promoted": promoted,
            "failover_s": round(failover_s, 2),
            "rejoined_s": round(rejoined_s, 2),
            "acknowledged": len(acked),
            "acknowledged_after_kill": len(acked) - acked_at_kill,
            "failed_enqueues": len(feed.failures),
            "producer_failing_s": round(feed.failures[-1][0] - feed.failures[0][0], 2)
            if feed.failures
            else 0.0,
            "ran_unacknowledged": len(set(done) - acked),
            "ran_twice_or_more": sum(1 for n in done.values() if n > 1),
        }
        print(figures)
        assert (stats.waiting, stats.in_flight, stats.dead) == (0, 0, 0), figures
        for proc in workers.procs:
            assert proc.poll() is None, workers.log_of(proc)
    finally:
        feed.stopping.set()
        workers.stop_all()


def test_acknowledged_enqueue_is_on_the_replica(
    private_cluster: LocalCluster, producer: SyncQueue, prefix: str
) -> None:
    """With wait_replicas=1 an enqueue returns once a replica has the jobs: killing a master
    right after it returned loses none of them; the promoted replica serves them all."""
    ids = producer.enqueue_many(Job(type="sleepy", args={"sleep": 0.0}) for _ in range(300))
    streams = producer.backend.streams("sleepy")
    victim = private_cluster.master_of_slot(streams[1].slot)
    private_cluster.kill_master_and_wait_failover(victim)
    # Fresh clients, so nothing is answered from what the old ones knew.
    with make_queue(private_cluster.url, prefix) as after:
        (stats,) = after.stats(["sleepy"])
    assert (stats.waiting, stats.enqueued) == (len(ids), len(ids))
    raw = sync_client(private_cluster.url)
    try:
        # Round robin: a hundred on each partition, the failed-over one's on its new master.
        assert [raw.xlen(s.jobs) for s in streams] == [100, 100, 100]
    finally:
        raw.close()
    # The old master comes back as a replica at the same address. The producer still holds its
    # connection there and its old map of the slots: its next enqueue is answered MOVED (and
    # WAIT refused, on a replica), goes again to the new master, and is confirmed there.
    private_cluster.restart(victim)
    private_cluster.wait_ready()
    more = producer.enqueue_many(Job(type="sleepy", args={"sleep": 0.0}) for _ in range(30))
    assert len(set(more)) == 30
    with make_queue(private_cluster.url, prefix) as after:
        (stats,) = after.stats(["sleepy"])
    assert stats.waiting == len(ids) + 30


def test_unconfirmed_enqueue_raises(private_cluster: LocalCluster, producer: SyncQueue) -> None:
    """An enqueue no replica confirms within wait_timeout_ms raises instead of returning ids."""
    streams = producer.backend.streams("sleepy")
    master = private_cluster.master_of_slot(streams[0].slot)
    (replica,) = private_cluster.replicas_of(master)
    pid = _pid_of(replica)
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(BackendError, match="replicas confirmed"):
            # Three jobs: round robin puts one on each partition, the stopped replica's too.
            producer.enqueue_many(Job(type="sleepy", args={"sleep": 0.0}) for _ in range(3))
    finally:
        os.kill(pid, signal.SIGCONT)


def _pid_of(port: int) -> int:
    """The process id of the node on ``port`` (its own word, INFO server)."""
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as r:
        return int(r.info("server")["process_id"])
