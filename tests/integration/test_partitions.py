"""Partitioned job types and the cluster client, end to end on a real 3-master cluster (and on
one server where the point is the partitions, not the cluster)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from cli_helpers import Cli, error_lines, wait_for
from cluster import LocalCluster
from redis.crc import key_slot
from test_acl_user import COMMANDS

from streamq import (
    BackendError,
    ConfigError,
    Job,
    Partitions,
    Principal,
    Queue,
    Registry,
    Worker,
    connect,
)
from streamq._codec import encode
from streamq._urls import cluster_flag
from streamq.backends import _partitions
from streamq.backends.redis import RedisBackend
from streamq.backends.redis._partitions import partition_of_key

pytestmark = pytest.mark.cluster

FAST: dict[str, Any] = {"claim_after": 0.5, "heartbeat": 0.1, "retry_base": 0.02, "block": 0.05}


@dataclass(frozen=True)
class Step:
    """Args of the ordering test's jobs."""

    n: int


async def drain(worker: Worker) -> None:
    """Run the worker until every stream of its types is empty and nothing runs."""
    await asyncio.wait_for(worker.run(stop_when_empty=True), 60)


@pytest.fixture
async def cluster_queue(cluster_url: str, prefix: str) -> AsyncIterator[Callable[..., Queue]]:
    """``make(partitions=..., registry=...)``: queues on the session cluster; closed after."""
    made: list[Queue] = []

    def make(registry: Registry | None = None, **settings: Any) -> Queue:
        q = Queue(RedisBackend(cluster_url, prefix=prefix, **settings), registry=registry)
        made.append(q)
        return q

    yield make
    for q in made:
        await q.aclose()


def test_three_partitions_land_on_three_masters(redis_cluster: LocalCluster) -> None:
    """The hash tags of partitions 0-2 of any type are owned by the three different masters of
    a cluster made by ``--cluster create`` (equal slot ranges)."""
    backend = RedisBackend(redis_cluster.url, partitions={"launch": 3, "noop": 3, "r-7": 3})
    for t in ("launch", "noop", "r-7"):
        owners = {redis_cluster.master_of_slot(s.slot) for s in backend.streams(t)}
        assert len(owners) == 3, t


def test_partition_tags_do_not_depend_on_the_count() -> None:
    """Growing a type from 2 to 3 partitions keeps its first two streams (and partition 0 is the
    unpartitioned type's own stream)."""
    two = RedisBackend("redis://127.0.0.1:1", partitions={"t": 2}).streams("t")
    three = RedisBackend("redis://127.0.0.1:1", partitions={"t": Partitions(3)}).streams("t")
    plain = RedisBackend("redis://127.0.0.1:1").streams("t")
    assert [s.jobs for s in three[:2]] == [s.jobs for s in two]
    assert three[0].jobs == plain[0].jobs == "streamq:{t}:jobs"
    assert len({key_slot(s.jobs.encode()) for s in three}) == 3


def test_settings_are_checked_with_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad partition specs, type names with the partition mark, bad cluster flags: ConfigError."""
    assert _partitions.parse_partitions("launch=3, report=4:account_id") == {
        "launch": Partitions(3),
        "report": Partitions(4, "account_id"),
    }
    for bad in ("launch", "launch=x", "=3", "launch=0", "launch=2:a..b"):
        with pytest.raises(ConfigError):
            _partitions.parse_partitions(bad)
    with pytest.raises(ConfigError, match="tildes"):
        Queue(RedisBackend("redis://127.0.0.1:1"))._encode(
            Job(type="a~1", args={}), {}, "00000000-0000-4000-8000-000000000000"
        )
    with pytest.raises(ConfigError, match="cluster="):
        cluster_flag("redis://h:1/?cluster=maybe")
    assert cluster_flag("redis://h:1/?cluster=true&x=1") == ("redis://h:1/?x=1", True)
    monkeypatch.setenv("STREAMQ_PARTITIONS", "launch=3:identity.org_id")
    monkeypatch.setenv("STREAMQ_CLUSTER", "1")
    backend = connect("redis://127.0.0.1:1")
    assert isinstance(backend, RedisBackend)
    assert backend.cluster
    assert backend.partitions == {"launch": Partitions(3, "identity.org_id")}
    monkeypatch.setenv("STREAMQ_WAIT_REPLICAS", "two")
    with pytest.raises(ConfigError, match="STREAMQ_WAIT_REPLICAS"):
        connect("redis://127.0.0.1:1")


async def test_round_robin_spreads_jobs_evenly(cluster_queue: Callable[..., Queue]) -> None:
    """Round robin: 30 jobs, 10 per partition; ids say the partition; stats sum them all."""
    queue = cluster_queue(partitions={"t": 3})
    ids = await queue.enqueue_many([Job(type="t", args={"n": n}) for n in range(30)])
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    lengths = [await backend._wire.client.xlen(s.jobs) for s in backend.streams("t")]
    assert lengths == [10, 10, 10]
    (stats,) = await queue.stats(["t"])
    assert (stats.waiting, stats.enqueued) == (30, 30)
    assert len(set(ids)) == 30


async def test_a_partition_key_keeps_one_accounts_jobs_in_order(
    cluster_queue: Callable[..., Queue],
) -> None:
    """Partitioned by account_id: each account's jobs share a stream and run in enqueue order
    (one worker, concurrency 1), while the accounts spread over the partitions."""
    registry = Registry()
    seen: list[tuple[int, int]] = []

    @registry.job("ordered", Step)
    async def handle(job: Job[Step]) -> None:
        seen.append((job.account_id, job.args.n))

    queue = cluster_queue(registry, partitions={"ordered": Partitions(3, key="account_id")})
    accounts = list(range(1000, 1009))
    jobs = [
        Job(type="ordered", args=Step(n), account_id=a, identity=Principal(org_id="o"))
        for n in range(12)
        for a in accounts
    ]
    for start in range(0, len(jobs), 20):  # several calls, as a real producer would
        await queue.enqueue_many(jobs[start : start + 20])
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    partition_of = {a: partition_of_key(str(a).encode(), 3) for a in accounts}
    assert len(set(partition_of.values())) > 1  # the accounts do spread
    await drain(Worker(backend, registry, ["ordered"], concurrency=1, **FAST))
    assert len(seen) == len(jobs)
    for a in accounts:
        assert [n for acct, n in seen if acct == a] == list(range(12)), a


async def test_stats_pending_dead_and_retry_cover_every_partition(
    cluster_queue: Callable[..., Queue],
) -> None:
    """Failing jobs on three partitions: pending lists them all (ID@P), dead holds them all,
    and retrying the dead puts each back on its own partition, where it then succeeds."""
    registry = Registry()
    fail = True
    started = asyncio.Event()

    @registry.job("flaky", Step, max_deliveries=1)
    async def flaky(job: Job[Step]) -> None:
        started.set()
        if fail:
            raise RuntimeError(f"job {job.args.n} failed")

    queue = cluster_queue(registry, partitions={"flaky": 3})
    ids = await queue.enqueue_many([Job(type="flaky", args=Step(n)) for n in range(6)])
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    held = await backend.read(["flaky"], "holder", 6, 10)
    while len(held) < 6:
        held += await backend.read(["flaky"], "holder", 6 - len(held), 10)
    assert sorted(d.entry_id.rsplit("@", 1)[1] for d in held) == ["0", "0", "1", "1", "2", "2"]
    pending = await queue.pending("flaky")
    assert sorted(p.job_id or "" for p in pending) == sorted(ids)
    assert {p.consumer for p in pending} == {"holder"}
    # Hand them back at once, and let a worker fail each into the dead stream.
    handed_back = await queue.recover("flaky", min_idle=0)
    assert sorted(p.entry_id for p in handed_back) == sorted(d.entry_id for d in held)
    await drain(Worker(backend, registry, ["flaky"], concurrency=4, **FAST))
    dead = await queue.dead("flaky")
    assert sorted(d.job_id or "" for d in dead) == sorted(ids)
    assert {d.dead_id.rsplit("@", 1)[1] for d in dead} == {"0", "1", "2"}
    (stats,) = await queue.stats(["flaky"])
    assert (stats.dead, stats.dead_lettered, stats.failed) == (6, 6, 6)
    fail = False
    assert len(await queue.retry_dead("flaky")) == 6
    await drain(Worker(backend, registry, ["flaky"], concurrency=4, **FAST))
    (stats,) = await queue.stats(["flaky"])
    assert (stats.waiting, stats.in_flight, stats.dead, stats.processed) == (0, 0, 0, 6)
    assert await queue.purge_dead("flaky") == 0


async def test_several_types_on_several_masters_in_one_enqueue_and_one_worker(
    cluster_queue: Callable[..., Queue],
) -> None:
    """One enqueue_many of three types (three slots) returns the ids in order; one worker
    reading the three (one XREADGROUP per slot) runs them all."""
    registry = Registry()
    ran: Counter[str] = Counter()
    for t in ("alpha", "beta", "gamma"):

        async def handle(job: Job[Any]) -> None:
            ran[job.type] += 1

        registry.register(t, dict, handle)
    queue = cluster_queue(registry)
    jobs = [Job(type=t, args={"i": i}) for i in range(10) for t in ("alpha", "beta", "gamma")]
    ids = await queue.enqueue_many(jobs)
    assert len(set(ids)) == 30
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    assert len({s.slot for t in ("alpha", "beta", "gamma") for s in backend.streams(t)}) == 3
    await drain(Worker(backend, registry, ["alpha", "beta", "gamma"], concurrency=8, **FAST))
    assert ran == {"alpha": 10, "beta": 10, "gamma": 10}


async def test_an_idle_worker_wakes_for_a_job_on_any_slot(
    cluster_queue: Callable[..., Queue],
) -> None:
    """A worker blocked on several slots (one blocking read per slot) starts a new job on any
    of them at once, not after its block time: the other reads are unblocked.

    (Concurrency 9 gives each of the three types 3 slots, so every partition of w3 is watched;
    with fewer free slots than streams, a read watches a window of them that moves each time.)
    """
    registry = Registry()
    started: asyncio.Queue[str] = asyncio.Queue()

    async def handle(job: Job[Any]) -> None:
        started.put_nowait(job.type)

    for t in ("w1", "w2", "w3"):
        registry.register(t, dict, handle)
    queue = cluster_queue(registry, partitions={"w3": 3})
    backend = queue.backend
    worker = Worker(backend, registry, ["w1", "w2", "w3"], concurrency=9, **(FAST | {"block": 5}))
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)  # the worker is blocked now
        for t in ("w2", "w3", "w1", "w3"):
            await queue.enqueue(Job(type=t, args={}))
            # The reads block 5 s: a job started only when they time out misses this deadline.
            assert await asyncio.wait_for(started.get(), 2.5) == t
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


def test_cli_on_a_partitioned_type_of_the_cluster(
    redis_cluster: LocalCluster, prefix: str, embedded_state: Path, tmp_path: Path
) -> None:
    """The CLI with STREAMQ_PARTITIONS on the cluster: stats sum the partitions, pending and dead
    list entries of all of them, and a consumer drains them; a bad setting is one line."""
    cli = Cli(redis_cluster.url, prefix, embedded_state, tmp_path)
    cli.env["STREAMQ_PARTITIONS"] = "noop=3"
    cli.env["STREAMQ_HANDLERS"] = "handlers"
    cli.env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), cli.env["PYTHONPATH"]])
    try:
        ids = cli.enqueue("noop", '{"fail": true}', "--count", "6")
        assert len(ids) == 6
        assert cli.stats("noop")["waiting"] == 6
        consumer = cli.consume("noop", "--max-deliveries", "1")
        wait_for(lambda: cli.stats("noop")["dead"] == 6, "six dead noops", timeout=30)
        dead = cli.json("dead", "list", "noop")
        assert sorted(d["job_id"] for d in dead) == sorted(ids)
        assert {d["dead_id"].rsplit("@", 1)[1] for d in dead} == {"0", "1", "2"}
        consumer.terminate()
        consumer.wait(30)
        bad = cli.run("stats", "noop", env=cli.env | {"STREAMQ_PARTITIONS": "noop=many"})
        assert bad.returncode != 0
        (line,) = error_lines(bad.stderr)
        assert "noop=many" in line
    finally:
        cli.stop_all()


def test_cli_pending_shows_partitioned_entries(
    redis_cluster: LocalCluster, prefix: str, tmp_path: Path
) -> None:
    """``streamq pending`` lists entries held on every partition, with their ID@P."""
    env = os.environ | {
        "STREAMQ_REDIS_URL": redis_cluster.url,
        "STREAMQ_PREFIX": prefix,
        "STREAMQ_PARTITIONS": "held=3",
    }

    async def hold() -> list[str]:
        backend = RedisBackend(redis_cluster.url, prefix=prefix, partitions={"held": 3})
        try:
            await backend.ensure_groups(["held"])
            queue = Queue(backend)
            await queue.enqueue_many([Job(type="held", args={}) for _ in range(3)])
            got: list[str] = []
            while len(got) < 3:
                got += [d.entry_id for d in await backend.read(["held"], "c1", 3 - len(got), 10)]
            return got
        finally:
            await backend.aclose()

    held = asyncio.run(hold())
    done = subprocess.run(
        [sys.executable, "-m", "streamq", "pending", "held", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rows = json.loads(done.stdout)
    assert sorted(r["entry_id"] for r in rows) == sorted(held)
    assert {r["consumer"] for r in rows} == {"c1"}


def test_a_cluster_url_without_the_flag_names_the_fix(redis_cluster: LocalCluster) -> None:
    """Pointing the single-server client at a cluster gives MOVED errors; the flag fixes it."""

    async def go(url: str) -> int:
        backend = RedisBackend(url, prefix="x")
        try:
            await backend.ensure_groups(["a", "b", "c", "d"])
            return len(await backend.read(["a"], "c", 1, 1))
        finally:
            await backend.aclose()

    plain = redis_cluster.url.partition("?")[0]
    with pytest.raises(BackendError, match=r"MOVED.*add \?cluster=true"):
        asyncio.run(go(plain))
    assert asyncio.run(go(redis_cluster.url)) == 0


async def test_a_limited_acl_user_runs_a_partitioned_type_on_the_cluster(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    """The user of docs/security.md plus its cluster commands, created on every node: enqueue
    with WAIT, a worker with a blocking read over several slots, stats; NOPERM elsewhere."""
    user, password = f"sq-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    extra = "+cluster|slots +command +client|id +client|unblock +wait"
    for host, port in redis_cluster.nodes:
        with redis.Redis(host=host, port=port) as admin:
            admin.execute_command(
                "ACL", "SETUSER", user, "on", f">{password}", "resetkeys", f"~{prefix}:*",
                "resetchannels", *COMMANDS.split(), *extra.split(),
            )  # fmt: skip
    url = redis_cluster.url.replace("redis://", f"redis://{user}:{password}@")
    registry = Registry()
    ran: list[int] = []

    @registry.job("acl", Step)
    async def handle(job: Job[Step]) -> None:
        ran.append(job.args.n)

    backend = RedisBackend(url, prefix=prefix, partitions={"acl": 3}, wait_replicas=1)
    try:
        queue = Queue(backend, registry=registry)
        await queue.enqueue_many([Job(type="acl", args=Step(n)) for n in range(9)])
        await drain(Worker(backend, registry, ["acl"], concurrency=9, **FAST))
        assert sorted(ran) == list(range(9))
        (stats,) = await queue.stats(["acl"])
        assert (stats.processed, stats.waiting, stats.in_flight) == (9, 0, 0)
        other = RedisBackend(url, prefix="elsewhere")
        with pytest.raises(BackendError, match=r"(?i)noperm|no permissions"):
            await other.ensure_groups(["acl"])
        await other.aclose()
    finally:
        await backend.aclose()


async def test_the_server_records_the_count_for_processes_without_the_setting(
    cluster_queue: Callable[..., Queue], cluster_url: str, prefix: str
) -> None:
    """A producer set to 3 partitions records it; a process with no setting then inspects and
    drains all three, and a running worker set to none picks up partitions added later."""
    registry = Registry()
    ran: list[int] = []
    all_ran = asyncio.Event()

    @registry.job("grown", Step)
    async def handle(job: Job[Step]) -> None:
        ran.append(job.args.n)
        if len(ran) == 30:
            all_ran.set()

    plain = RedisBackend(cluster_url, prefix=prefix)
    plain.relearn_s = 0.2
    worker = Worker(plain, registry, ["grown"], concurrency=8, **FAST)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.3)  # running, reading the one stream "grown" has so far
        assert len(plain.streams("grown")) == 1
        producer = cluster_queue(registry, partitions={"grown": 3})
        ids = await producer.enqueue_many([Job(type="grown", args=Step(n)) for n in range(30)])
        assert len(set(ids)) == 30
        await asyncio.wait_for(all_ran.wait(), 20)
        assert sorted(ran) == list(range(30))
        assert len(plain.streams("grown")) == 3
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await plain.aclose()
    inspector = Queue(RedisBackend(cluster_url, prefix=prefix))
    try:
        (stats,) = await inspector.stats(["grown"])
        assert (stats.enqueued, stats.processed, stats.waiting) == (30, 30, 0)
        assert await inspector.types() == ["grown"]
    finally:
        await inspector.aclose()


async def test_lost_scripts_on_every_node_are_loaded_again(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    """SCRIPT FLUSH on every node (as after restarts): the acks and enqueues that follow load
    the scripts again and go through, on every partition's node."""
    backend = RedisBackend(redis_cluster.url, prefix=prefix, partitions={"t": 3})

    def flush() -> None:
        for host, port in redis_cluster.nodes:
            with redis.Redis(host=host, port=port) as node:
                node.script_flush()

    try:
        await backend.ensure_groups(["t"])
        await backend.enqueue_many([("t", {b"n": b"%d" % i}) for i in range(6)])
        held = await backend.read(["t"], "c", 6, 10)
        while len(held) < 6:
            held += await backend.read(["t"], "c", 6 - len(held), 10)
        flush()
        answer = await backend.ack_and_read({"t": [d.entry_id for d in held]}, ["t"], "c", 6)
        assert (answer.lost, answer.failed, answer.deliveries) == ({"t": []}, {}, [])
        flush()
        assert len(await backend.enqueue_many([("t", {b"n": b"x"})] * 6)) == 6
        stats = await backend.stats("t")
        assert (stats.counters["processed"], stats.counters["enqueued"], stats.length) == (6, 12, 6)
    finally:
        await backend.aclose()


async def partitions_of(backend: RedisBackend, jobs: list[Job[Any]]) -> list[str]:
    """Enqueue ``jobs`` on ``backend``; the partition each went to, in order."""
    items = [(j.type, encode(j, str(uuid.uuid4()))) for j in jobs]
    return [i.rsplit("@", 1)[1] for i in await backend.enqueue_many(items)]


async def _until(check: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Wait (polling) until ``check()`` holds; fail naming ``what`` after ``limit`` s."""
    async with asyncio.timeout(limit):
        while not check():  # noqa: ASYNC110 - state of other tasks: no event to wait on
            await asyncio.sleep(0.02)
    assert check(), what


async def test_a_type_grown_while_a_worker_holds_its_jobs(redis_url: str, prefix: str) -> None:
    """A type grows from one stream to three while a worker holds jobs delivered before (ids
    without ``@P``): they ack as partition 0's, and the worker runs on, new partitions too."""
    registry = Registry()
    started: list[int] = []
    ran: list[int] = []
    finish = asyncio.Event()

    @registry.job("grows", Step)
    async def handle(job: Job[Step]) -> None:
        started.append(job.args.n)
        if job.args.n < 4:
            await finish.wait()
        ran.append(job.args.n)

    plain = RedisBackend(redis_url, prefix=prefix)
    plain.relearn_s = 0.1
    grown = RedisBackend(redis_url, prefix=prefix, partitions={"grows": 3})
    await Queue(plain).enqueue_many([Job(type="grows", args=Step(n)) for n in range(4)])
    worker = Worker(plain, registry, ["grows"], concurrency=8, **FAST)
    task = asyncio.create_task(worker.run())
    try:
        await _until(lambda: len(started) == 4, "the four jobs started")
        await grown.ensure_groups(["grows"])  # another process, set to three partitions
        await _until(lambda: len(plain.streams("grows")) == 3, "the worker learned the count")
        await asyncio.sleep(0.3)  # lease refreshes of the held (unsuffixed) ids go on meanwhile
        finish.set()
        later = await partitions_of(grown, [Job(type="grows", args=Step(n)) for n in range(4, 10)])
        assert set(later) == {"0", "1", "2"}
        await _until(lambda: len(ran) == 10 or task.done(), "every job ran")
        assert not task.done(), task.exception()
        assert sorted(ran) == list(range(10))
        stats = await grown.stats("grows")
        await _until(lambda: worker.in_flight == 0, "nothing in flight")
        stats = await grown.stats("grows")
        assert (stats.counters["processed"], stats.pending, stats.length) == (10, 0, 0)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await plain.aclose()
        await grown.aclose()


async def test_a_producer_learns_a_grown_count_and_keeps_per_key_order(
    redis_url: str, prefix: str
) -> None:
    """A producer made when its type had two partitions learns (within ``relearn_s``) that
    another process grew it to three, and then sends each key where a fresh producer does."""
    jobs = [Job(type="k", args={}, account_id=a) for a in range(30)]
    old = RedisBackend(redis_url, prefix=prefix, partitions={"k": Partitions(2, "account_id")})
    old.relearn_s = 0.3
    new = RedisBackend(redis_url, prefix=prefix, partitions={"k": Partitions(3, "account_id")})
    try:
        await partitions_of(old, jobs)
        learned = old._keys.learned_at["k"]
        await partitions_of(old, jobs)
        assert old._keys.learned_at["k"] == learned  # no extra round trip within relearn_s
        await new.ensure_groups(["k"])
        fresh = await partitions_of(new, jobs)
        assert set(fresh) == {"0", "1", "2"}
        await asyncio.sleep(old.relearn_s + 0.1)
        again = await partitions_of(old, jobs)
        assert again == fresh
    finally:
        await old.aclose()
        await new.aclose()


async def test_ids_that_name_no_partition_are_lost_not_fatal(redis_url: str, prefix: str) -> None:
    """On a partitioned type, an unsuffixed id is partition 0's; an id naming no partition is
    answered as not owned (for that id only), and the other ids of the call go through."""
    backend = RedisBackend(redis_url, prefix=prefix, partitions={"p": 3})
    try:
        await backend.ensure_groups(["p"])
        await backend.enqueue_many([("p", {b"n": b"%d" % i}) for i in range(6)])
        held: list[str] = []
        while len(held) < 6:
            held += [d.entry_id for d in await backend.read(["p"], "c", 6 - len(held), 10)]
        first = next(i for i in held if i.endswith("@0"))
        plain = first.rsplit("@", 1)[0]
        bad = ["1-0@7", "nonsense", "1-0@x"]
        assert await backend.refresh("p", "c", [plain, *bad]) == bad
        rest = [i for i in held if i != first]
        assert await backend.ack("p", "c", [plain, *bad, *rest]) == bad
        assert not await backend.retry_later(
            "p", "c", "1-0@7", delay_ms=10, deliveries=1, error="boom"
        )
        await backend.release("p", "c", bad, 0)
        stats = await backend.stats("p")
        assert (stats.counters["processed"], stats.pending) == (6, 0)
    finally:
        await backend.aclose()
