"""Kill storm: worker processes SIGKILLed at random while thousands of jobs run. None is lost."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import itjobs
import pytest
from worker_procs import Workers, wait_until

from streamq import Job, Queue, RedisBackend, SyncQueue

#: CI size; `make soak` runs 100 000.
JOBS = int(os.environ.get("STREAMQ_STORM_JOBS", "20000"))
WORKERS = 4
#: A job can be in flight at several kills in a row; a high max_deliveries keeps the storm from
#: dead-lettering it as "a job that kills its workers" (what max_deliveries is for).
ARGS = ("-c", "32", "--claim-after", "1s", "--heartbeat", "200ms", "--max-deliveries", "50")
_CONSUMER = re.compile(rb"consumer ([^)\s]+)\)")


@pytest.fixture
def queue(redis_url: str, prefix: str) -> Iterator[SyncQueue]:
    """A sync queue on the test's prefix with the test job types."""
    q = SyncQueue(lambda: Queue(RedisBackend(redis_url, prefix=prefix), registry=itjobs.registry))
    yield q
    q.close()


def consumer_of(workers: Workers, proc: subprocess.Popen[bytes]) -> str | None:
    """The consumer name from a worker's start-up line (None before it printed it)."""
    log = workers.logs / f"worker-{workers.procs.index(proc)}.log"
    m = _CONSUMER.search(log.read_bytes()) if log.exists() else None
    return m.group(1).decode() if m else None


def test_kill_storm_loses_nothing(workers: Workers, queue: SyncQueue, tmp_path: Path) -> None:
    """SIGKILL a random worker every second (and start another): every job completes, and the
    extra executions are at most the jobs the killed workers held."""
    ids: list[str] = []
    for start in range(0, JOBS, 1000):
        batch = [Job(type="sleepy", args={"sleep": 0.005}) for _ in range(min(1000, JOBS - start))]
        ids += queue.enqueue_many(batch)
    alive = [workers.start(*ARGS) for _ in range(WORKERS)]
    kills, held_at_kills = 0, 0
    rng = random.Random(1234)
    deadline = time.monotonic() + 600
    while len(workers.counts("done")) < JOBS and time.monotonic() < deadline:
        time.sleep(1.0)
        ready = [p for p in alive if consumer_of(workers, p)]
        if not ready:
            continue
        victim = rng.choice(ready)
        name = consumer_of(workers, victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # Right after the kill, the victim's PEL entries are exactly what it held when it died
        # (another worker claims them only after claim_after): each may run once more.
        (stats,) = queue.stats(["sleepy"])
        held = stats.consumers[name].in_flight if name in stats.consumers else 0
        held_at_kills += held
        kills += 1
        alive.remove(victim)
        alive.append(workers.start(*ARGS))
    wait_until(lambda: len(workers.counts("done")) == JOBS, 120, "every job done")
    # A worker still importing has not installed its signal handlers (and holds nothing).
    wait_until(lambda: all(consumer_of(workers, p) for p in alive), 30, "workers up")
    for p in alive:
        p.send_signal(signal.SIGTERM)
    for p in alive:
        assert p.wait(60) == 0, workers.log_of(p)

    started, done = workers.counts("started"), workers.counts("done")
    executions = sum(started.values())
    (stats,) = queue.stats(["sleepy"])
    figures = {
        "test": "kill storm",
        "jobs": JOBS,
        "workers": WORKERS,
        "kills": kills,
        "held_at_kills": held_at_kills,
        "lost": len(set(ids) - set(done)),
        "executions": executions,
        "duplicates": executions - JOBS,
        "dead": stats.dead,
        "stream_length_after": stats.waiting + stats.in_flight,
    }
    report = Path(os.environ.get("STREAMQ_FAULT_REPORT", tmp_path / "faults.jsonl"))
    with report.open("a") as fh:
        fh.write(json.dumps(figures) + "\n")
    print(figures)
    assert kills >= 3, figures
    assert figures["lost"] == 0, figures
    assert set(done) == set(ids), figures
    assert figures["duplicates"] <= held_at_kills, figures
    assert (stats.dead, stats.waiting, stats.in_flight) == (0, 0, 0), figures
    assert workers.redis.xlen(f"{workers.prefix}:{{sleepy}}:jobs") == 0
