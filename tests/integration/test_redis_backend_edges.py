"""The Redis backend's edges on real servers and clusters: error replies it must not hide,
partial cluster writes, slot migrations (ASK, TRYAGAIN), departed nodes, the eviction policy."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog
from cluster import LocalCluster
from test_acl_user import COMMANDS

from streamq import BackendError, Job, RedisBackend, Registry, Worker
from streamq._server import PrivateServer
from streamq.backends.redis import too_old


@pytest.fixture
def acl_user(redis_url: str, prefix: str) -> Iterator[Callable[[str], str]]:
    """``make(commands)``: the URL of a new user limited to those commands and ``{prefix}:*``
    keys (deleted after the test)."""
    admin = redis.Redis.from_url(redis_url)
    users: list[str] = []

    def make(commands: str) -> str:
        user, password = f"sq-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        admin.execute_command(
            "ACL", "SETUSER", user, "on", f">{password}", "resetkeys", f"~{prefix}:*",
            "resetchannels", *commands.split(),
        )  # fmt: skip
        users.append(user)
        return redis_url.replace("redis://", f"redis://{user}:{password}@")

    yield make
    for user in users:
        admin.execute_command("ACL", "DELUSER", user)
    admin.close()


async def test_stats_raise_when_the_pel_cannot_be_read(
    acl_user: Callable[[str], str], prefix: str
) -> None:
    """Stats show 0 in flight only when the group does not exist; any other XPENDING error
    (here NOPERM: a user without XPENDING) raises instead of reporting an empty PEL."""
    full = RedisBackend(acl_user(COMMANDS), prefix=prefix)
    denied = RedisBackend(acl_user(COMMANDS.replace(" +xpending", "")), prefix=prefix)
    try:
        assert (await full.stats("fresh")).pending == 0  # no group yet: nothing in flight
        await full.ensure_groups(["t"])
        await full.enqueue("t", {b"n": b"1"})
        assert len(await full.read(["t"], "c", 1, 10)) == 1
        assert (await full.stats("t")).pending == 1
        with pytest.raises(BackendError, match=r"(?i)noperm|permission"):
            await denied.stats("t")
    finally:
        await full.aclose()
        await denied.aclose()


async def _start_events(url: str, prefix: str) -> list[dict[str, Any]]:
    """The ``streamq.server.eviction_policy`` lines of a worker started (and stopped) on ``url``."""
    backend = RedisBackend(url, prefix=prefix)
    registry = Registry()

    async def nothing(job: Job[Any]) -> None:
        """Never runs: the stream stays empty."""

    registry.register("t", dict, nothing)
    worker = Worker(backend, registry, ["t"], block=0.05)
    try:
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(worker.run(stop_when_empty=True), 30)
    finally:
        await backend.aclose()
    return [e for e in logs if e["event"] == "streamq.server.eviction_policy"]


async def test_a_worker_warns_when_the_server_may_evict_keys(
    private_server: PrivateServer, acl_user: Callable[[str], str], redis_url: str, prefix: str
) -> None:
    """At start a worker warns when the server's maxmemory-policy can evict keys, says at INFO
    that it could not check when CONFIG GET is refused, and says nothing under noeviction."""
    assert await _start_events(redis_url, prefix) == []
    with redis.Redis.from_url(private_server.url) as admin:
        admin.config_set("maxmemory-policy", "allkeys-lru")
    (line,) = await _start_events(private_server.url, prefix)
    assert (line["log_level"], line["policy"]) == ("warning", "allkeys-lru")
    (line,) = await _start_events(acl_user(COMMANDS), prefix)
    assert (line["log_level"], line["checked"]) == ("info", False)


def _node(port: int) -> redis.Redis:
    """A plain client of one cluster node."""
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)


@pytest.mark.cluster
async def test_a_node_down_in_enqueue_many_says_how_many_were_written(
    private_cluster: LocalCluster,
) -> None:
    """One master down: enqueue_many still writes the other masters' share, then raises with
    how many jobs of the call were enqueued."""
    backend = RedisBackend(private_cluster.url, prefix="p", partitions={"t": 3}, socket_timeout=2)
    try:
        await backend.ensure_groups(["t"])
        streams = backend.streams("t")
        owners = [private_cluster.master_of_slot(s.slot) for s in streams]
        private_cluster.kill(owners[1])
        with pytest.raises(BackendError, match=r"20 of 30 jobs were enqueued"):
            await backend.enqueue_many([("t", {b"n": b"%d" % i}) for i in range(30)])
        for s, port in ((streams[0], owners[0]), (streams[2], owners[2])):
            with _node(port) as node:
                assert node.xlen(s.jobs) == 10
    finally:
        await backend.aclose()


@pytest.mark.cluster
async def test_connections_to_a_departed_node_are_dropped(private_cluster: LocalCluster) -> None:
    """After a failover replaced a master, the connections held to it are closed and forgotten
    once the backend learns the new slot table."""
    backend = RedisBackend(private_cluster.url, prefix="p", partitions={"t": 3}, socket_timeout=2)
    try:
        await backend.ensure_groups(["t"])
        await backend.enqueue_many([("t", {b"n": b"%d" % i}) for i in range(6)])
        held = await backend.read(["t"], "c", 6, 10)
        await backend.ack("t", "c", [d.entry_id for d in held])
        victim = private_cluster.master_of_slot(backend.streams("t")[1].slot)
        name = f"127.0.0.1:{victim}"
        lines = [line for key, line in backend._wire.held_connections.items() if key[1] == name]
        assert lines
        private_cluster.kill_master_and_wait_failover(victim)
        for _ in range(50):  # the first calls meet the dead node and learn the slots again
            try:
                await backend.enqueue_many([("t", {b"n": b"x"})] * 3)
                break
            except BackendError:
                await asyncio.sleep(0.1)
        assert [key for key in backend._wire.held_connections if key[1] == name] == []
        assert all(line.conn is None for line in lines)
    finally:
        await backend.aclose()


@pytest.mark.cluster
async def test_a_slot_migration_is_followed_with_asking_and_tryagain(tmp_path: Path) -> None:
    """While a type's slot migrates: a script whose keys are split between the nodes (TRYAGAIN)
    is tried again after a pause until they are together, and once all keys moved, enqueues,
    reads and acks follow ASK to the importing node (ASKING), without the slot table changing."""
    with LocalCluster(tmp_path / "cluster", replicas=0) as cluster:
        backend = RedisBackend(cluster.url, prefix="m")
        try:
            await backend.ensure_groups(["mig"])
            s = backend.streams("mig")[0]
            await backend.enqueue_many([("mig", {b"n": b"%d" % i}) for i in range(3)])
            held = [d.entry_id for d in await backend.read(["mig"], "c", 3, 10)]
            assert len(held) == 3
            source = cluster.master_of_slot(s.slot)
            target = next(p for p in cluster.masters() if p != source)
            src, dst = _node(source), _node(target)
            src_id, dst_id = (
                src.execute_command("CLUSTER MYID"),
                dst.execute_command("CLUSTER MYID"),
            )
            dst.execute_command("CLUSTER SETSLOT", s.slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER SETSLOT", s.slot, "MIGRATING", dst_id)

            def migrate(*keys: str) -> None:
                src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)

            migrate(s.jobs)  # the stream moved, its counters not yet: ack.lua gets TRYAGAIN
            later = threading.Timer(0.2, migrate, (s.stats,))
            later.start()
            try:
                assert await backend.ack("mig", "c", held[:1]) == []
            finally:
                later.join()
            assert src.execute_command("CLUSTER COUNTKEYSINSLOT", s.slot) == 0
            # Every key is on the target now: the source answers ASK.
            assert len(await backend.enqueue_many([("mig", {b"n": b"y"})] * 2)) == 2
            new = [d.entry_id for d in await backend.read(["mig"], "c", 2, 10)]
            assert len(new) == 2
            assert await backend.ack("mig", "c", held[1:] + new) == []
            # ASK left the slot table as it was.
            assert backend._wire.client.get_node_from_key(s.jobs).port == source
            for port in cluster.masters():
                with _node(port) as node:
                    node.execute_command("CLUSTER SETSLOT", s.slot, "NODE", dst_id)
            stats = await backend.stats("mig")
            assert (stats.counters["processed"], stats.length, stats.pending) == (5, 0, 0)
            src.close()
            dst.close()
        finally:
            await backend.aclose()


@pytest.mark.cluster
async def test_a_blocking_read_over_slots_follows_ask_and_does_not_spin(tmp_path: Path) -> None:
    """An idle read over two slots, one of them migrating (its source answers ASK at once),
    reads that slot where the ASK points and pauses, instead of coming back at once in a tight
    loop; a job enqueued meanwhile on the migrating type is still read."""
    with LocalCluster(tmp_path / "cluster", replicas=0) as cluster:
        backend = RedisBackend(cluster.url, prefix="a")
        try:
            types = ["mig", "calm"]
            await backend.ensure_groups(types)
            mig, calm = (backend.streams(t)[0] for t in types)
            # One job through first, so that every key of the type exists (a script on the
            # importing node finds them all there, not TRYAGAIN), then none waiting.
            await backend.enqueue_many([("mig", {b"n": b"0"})])
            (first,) = await backend.read(["mig"], "c", 1, 10)
            assert await backend.ack("mig", "c", [first.entry_id]) == []
            source = cluster.master_of_slot(mig.slot)
            assert cluster.master_of_slot(calm.slot) != source or mig.slot != calm.slot
            target = next(p for p in cluster.masters() if p != source)
            with _node(source) as src, _node(target) as dst:
                src_id, dst_id = (n.execute_command("CLUSTER MYID") for n in (src, dst))
                dst.execute_command("CLUSTER SETSLOT", mig.slot, "IMPORTING", src_id)
                src.execute_command("CLUSTER SETSLOT", mig.slot, "MIGRATING", dst_id)
                keys = src.execute_command("CLUSTER GETKEYSINSLOT", mig.slot, 100)
                assert mig.jobs in keys
                src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            reads = 0
            loop = asyncio.get_running_loop()
            end = loop.time() + 1.0
            while loop.time() < end:
                assert await backend.read(types, "c", 10, 1000) == []
                reads += 1
            # Each read waited (a partial read's pause at least); a spin makes hundreds.
            assert reads <= 30, reads
            (job_id,) = await backend.enqueue_many([("mig", {b"n": b"1"})])
            got = await backend.read(types, "c", 10, 1000)
            assert [(d.type, d.entry_id) for d in got] == [("mig", job_id)]
            assert await backend.ack("mig", "c", [job_id]) == []
        finally:
            await backend.aclose()


def test_servers_older_than_redis_7_are_told_apart() -> None:
    """The version check at ensure_groups refuses Redis 6.x (INFO's redis_version) and passes
    7.0 and later, and Valkey (which reports a Redis version of 7.2.4)."""
    assert too_old("6.2.14") == "6.2.14"
    assert too_old("5.0.7") == "5.0.7"
    assert [too_old(v) for v in ("7.0.0", "7.0.15", "7.2.4", "8.2.1", None, "")] == [None] * 6


@pytest.mark.cluster
async def test_closing_while_another_task_opens_held_connections(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    """A backend closed while a worker sharing it still runs (``async with Queue(backend)`` around
    a running worker) closes every held connection even as the worker takes new ones: the close
    used to iterate the live table and raise ``dictionary changed size during iteration``."""
    backend = RedisBackend(redis_cluster.url, prefix=prefix, partitions={"t": 3})
    await backend.ensure_groups(["t"])
    await backend.enqueue_many([("t", {b"n": b"%d" % i}) for i in range(6)])
    held = await backend.read(["t"], "c", 6, 10)
    await backend.ack("t", "c", [d.entry_id for d in held])
    wire = backend._wire
    lines = list(wire.held_connections.values())
    assert sum(line.conn is not None for line in lines) >= 2  # one per node that holds a stream
    node = wire.client.get_node_from_key(backend.streams("t")[0].jobs)
    stop = asyncio.Event()

    async def take_new_lines() -> int:
        n = 0
        while not stop.is_set():  # what a running worker does: a first ack, heartbeat, read...
            wire.held(f"purpose-{n}", node)
            n += 1
            await asyncio.sleep(0)
        return n

    taker = asyncio.ensure_future(take_new_lines())
    await asyncio.sleep(0)
    try:
        await backend.aclose()
    finally:
        stop.set()
        taken = await taker
    assert taken > 1  # lines were taken while the close awaited
    assert all(line.conn is None or not line.conn.is_connected for line in lines)
