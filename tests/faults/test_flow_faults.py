"""Flow control under faults, with real worker processes (docs/flow-control.md): a worker
SIGKILLed while it holds both slots of an account frees them by their leases (after about
claim_after, not at once) and loses nothing held; several workers together never run more than
the limit of one account at once, while other accounts run on beside it; a key function that
fails on one job does not take the worker down with it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import flowjobs
import pytest
from worker_procs import Workers, wait_until

from streamq import Job, Limit, Queue, RedisBackend, Registry, SyncQueue, Worker

CLAIM_AFTER, HEARTBEAT = 2.0, 0.3
ARGS = ("--claim-after", f"{CLAIM_AFTER:g}s", "--heartbeat", f"{HEARTBEAT * 1000:g}ms")
TYPE = ("flowed",)
ACCOUNT = 7


@pytest.fixture
def queue(redis_url: str, prefix: str) -> Iterator[SyncQueue]:
    """A sync queue on the test's prefix with the flow tests' job types."""
    q = SyncQueue(lambda: Queue(RedisBackend(redis_url, prefix=prefix), registry=flowjobs.registry))
    yield q
    q.close()


@dataclass(frozen=True)
class Run:
    """One execution of a ``flowed`` job as it recorded itself."""

    id: str
    account: int
    pid: int
    start: float
    end: float | None


def runs(workers: Workers) -> list[Run]:
    """Every run so far: each start matched with the end of the same job in the same process."""
    r, prefix = workers.redis, workers.prefix
    ends = {}
    for raw in r.lrange(flowjobs.runs_key(prefix, "ends"), 0, -1):
        e = json.loads(raw)
        ends[e["id"], e["pid"]] = e["t"]
    out = []
    for raw in r.lrange(flowjobs.runs_key(prefix, "starts"), 0, -1):
        s = json.loads(raw)
        out.append(Run(s["id"], s["account"], s["pid"], s["t"], ends.get((s["id"], s["pid"]))))
    return out


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (one that ends as another starts: not both)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def ready(workers: Workers, proc: subprocess.Popen[bytes]) -> bool:
    """The worker's start-up line is out (or it died: the caller's assert says so)."""
    return workers.ready(proc) or proc.poll() is not None


def test_a_killed_worker_frees_its_slots_by_their_leases_and_loses_nothing(
    workers: Workers, queue: SyncQueue
) -> None:
    """Worker A runs both of account 7's slots (two jobs held in their handler), four more of
    account 7's jobs are held; worker B, started then, runs none of them (A's slots are
    renewed). A is SIGKILLed: B's first start of account 7 comes only when A's leases run out
    (claim_after after their last renewal), then every job ends once (A's two interrupted
    jobs run again, at least once), none is dead, and account 7 never ran more than 2 at once
    (A's interrupted runs counted up to the kill)."""
    r = workers.redis
    r.set(flowjobs.runs_key(workers.prefix, "hold"), 1)
    a = workers.start("-c", "8", *ARGS, types=TYPE, handlers="flowjobs")
    wait_until(lambda: ready(workers, a), 30, "worker A up")
    assert a.poll() is None, workers.log_of(a)
    first = [Job(type="flowed", account_id=ACCOUNT, args={"hold": True}) for _ in range(2)]
    rest = [Job(type="flowed", account_id=ACCOUNT, args={"sleep": 0.5}) for _ in range(4)]
    ids = queue.enqueue_many(first + rest)
    assert len(set(ids)) == 6

    def held() -> int:
        (stats,) = queue.stats(["flowed"])
        return stats.held

    wait_until(lambda: len(runs(workers)) == 2 and held() == 4, 30, "2 running, 4 held")
    assert {run.id for run in runs(workers)} == set(ids[:2])
    (load,) = queue.keys("flowed")
    assert (load.key, load.running, load.held) == (str(ACCOUNT), 2, 4)

    b = workers.start("-c", "8", *ARGS, types=TYPE, handlers="flowjobs")
    wait_until(lambda: ready(workers, b), 30, "worker B up")
    assert b.poll() is None, workers.log_of(b)
    # B sweeps and reads meanwhile: A's slots are renewed, so nothing of account 7 is B's.
    time.sleep(3 * HEARTBEAT)
    assert len(runs(workers)) == 2
    assert held() == 4

    a.send_signal(signal.SIGKILL)
    a.wait(10)
    killed_at = time.time()
    r.delete(flowjobs.runs_key(workers.prefix, "hold"))

    def all_ended() -> bool:
        return {run.id for run in runs(workers) if run.end is not None} == set(ids)

    wait_until(all_ended, 30, "every job ended")
    wait_until(lambda: held() == 0, 10, "nothing held")
    done = runs(workers)
    (stats,) = queue.stats(["flowed"])
    assert (stats.dead, stats.waiting, stats.held) == (0, 0, 0)
    wait_until(lambda: queue.stats(["flowed"])[0].in_flight == 0, 10, "every job acked")
    assert queue.stats(["flowed"])[0].processed == 6
    assert queue.keys("flowed") == []

    # A ran the two it was killed in, and nothing else; B ran every job to its end, once.
    on_a = [run for run in done if run.pid == a.pid]
    on_b = [run for run in done if run.pid == b.pid]
    assert sorted(run.id for run in on_a) == sorted(ids[:2])
    assert all(run.end is None for run in on_a)
    assert sorted(run.id for run in on_b) == sorted(ids)
    assert all(run.end is not None for run in on_b)

    # Slots are leases: B could take one only when A's ran out, not as soon as A was gone.
    first_on_b = min(run.start for run in on_b)
    assert first_on_b - killed_at >= CLAIM_AFTER - HEARTBEAT - 0.1, (killed_at, first_on_b)

    intervals = [(run.start, run.end if run.end is not None else killed_at) for run in done]
    assert most_at_once(intervals) == 2
    assert b.poll() is None, workers.log_of(b)


def test_three_workers_run_at_most_two_of_one_account_and_more_of_the_others(
    workers: Workers, queue: SyncQueue
) -> None:
    """3 workers at -c 16, 40 jobs of account 7 and 20 of other accounts (one each): account 7
    never has more than 2 running at once (across the processes), the others run side by side
    (more than 2 at once: account 7's backlog does not block them), every job runs once."""
    procs = [workers.start("-c", "16", *ARGS, types=TYPE, handlers="flowjobs") for _ in range(3)]
    wait_until(lambda: all(ready(workers, p) for p in procs), 30, "3 workers up")
    assert all(p.poll() is None for p in procs), [workers.log_of(p) for p in procs]
    mine = [Job(type="flowed", account_id=ACCOUNT, args={"sleep": 0.2}) for _ in range(40)]
    others = [Job(type="flowed", account_id=100 + i, args={"sleep": 1.0}) for i in range(20)]
    ids = queue.enqueue_many(mine + others)

    wait_until(
        lambda: {run.id for run in runs(workers) if run.end is not None} == set(ids),
        60,
        "every job ended",
    )
    done = runs(workers)
    assert sorted(run.id for run in done) == sorted(ids)  # each ran once
    of_7 = [(run.start, run.end) for run in done if run.account == ACCOUNT and run.end]
    of_others = [(run.start, run.end) for run in done if run.account != ACCOUNT and run.end]
    assert len(of_7) == 40
    assert len(of_others) == 20
    assert most_at_once(of_7) == 2
    assert most_at_once(of_others) > 2
    # Account 7's jobs ran on more than one worker: the limit held across processes.
    assert len({run.pid for run in done if run.account == ACCOUNT}) > 1
    wait_until(lambda: queue.stats(["flowed"])[0].in_flight == 0, 10, "every job acked")
    (stats,) = queue.stats(["flowed"])
    assert (stats.processed, stats.dead, stats.held, stats.waiting) == (60, 0, 0, 0)


@dataclass(frozen=True)
class Region:
    """A job's region, or None."""

    region: str | None = None


class Opaque:
    """A value JSON cannot encode."""


async def test_a_key_function_that_fails_on_one_job_does_not_stop_the_worker(
    redis_url: str, prefix: str
) -> None:
    """A Limit's key function that raises on one job (or returns what JSON cannot encode) gives
    that job no key value (``""``, as a job that does not decode), so it runs under the key
    ``""``: the worker does not crash on the batch (which would leave every job of it pending,
    to crash the next worker that claims them), and every job runs once."""
    ran: list[str | None] = []

    def region(job: Job[Region]) -> object:
        if job.args.region == "opaque":
            return Opaque()
        return job.args.region.upper()  # type: ignore[union-attr]  # None: AttributeError

    async def handler(job: Job[Region]) -> None:
        ran.append(job.args.region)

    registry = Registry()
    registry.register("keyed", Region, handler, limit=Limit(key=region, concurrency=1))
    backend = RedisBackend(redis_url, prefix=prefix)
    try:
        queue = Queue(backend, registry=registry)
        regions = ["eu", None, "opaque", "us"]
        await queue.enqueue_many([Job(type="keyed", args=Region(r)) for r in regions])
        worker = Worker(backend, registry, ["keyed"], claim_after=2.0, heartbeat=0.2, block=0.05)
        await asyncio.wait_for(worker.run(stop_when_empty=True), 30)
        (stats,) = await queue.stats(["keyed"])
        assert await queue.keys("keyed") == []
    finally:
        await backend.aclose()
    assert sorted(ran, key=str) == sorted(regions, key=str)
    assert (stats.processed, stats.dead, stats.in_flight, stats.held) == (4, 0, 0, 0)
