"""The local cluster fixture itself: a real 3-master cluster with one replica each, slots spread
over the masters by hash tag, and a master's failover to its replica without losing WAITed keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from cluster import SLOTS, LocalCluster
from redis.cluster import RedisCluster

pytestmark = pytest.mark.cluster


def _cluster_client(url: str) -> RedisCluster:
    # The ?cluster=true query selects streamq's cluster backend; redis-py takes the bare URL.
    return RedisCluster.from_url(url.partition("?")[0], decode_responses=True, socket_timeout=2.0)


@pytest.fixture
def client(cluster_url: str) -> Iterator[RedisCluster]:
    rc = _cluster_client(cluster_url)
    yield rc
    rc.close()


def test_cluster_is_ok_with_three_masters_each_with_a_replica(redis_cluster: LocalCluster) -> None:
    assert redis_cluster.url.startswith("redis://127.0.0.1:")
    assert redis_cluster.url.endswith("/?cluster=true")
    assert len(redis_cluster.nodes) == 6
    masters = redis_cluster.masters()
    assert len(masters) == 3
    assert sorted(masters + redis_cluster.replicas()) == sorted(p for _, p in redis_cluster.nodes)
    for port in masters:
        assert len(redis_cluster.replicas_of(port)) == 1
    for _, port in redis_cluster.nodes:
        with redis.Redis(port=port, decode_responses=True, socket_timeout=2.0) as node:
            info = node.cluster("INFO")
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_slots_assigned"]) == SLOTS
    assert {redis_cluster.master_of_slot(s) for s in (0, SLOTS // 2, SLOTS - 1)} == set(masters)


def test_hash_tags_spread_keys_over_the_masters(
    redis_cluster: LocalCluster, client: RedisCluster, prefix: str
) -> None:
    owners: dict[int, str] = {}
    for i in range(100):
        key = f"{{{prefix}-{i}}}:jobs"
        owners.setdefault(redis_cluster.master_of_slot(client.keyslot(key)), key)
        if len(owners) == 3:
            break
    assert sorted(owners) == sorted(redis_cluster.masters())
    for port, key in owners.items():
        assert client.set(key, port)
        assert client.get(key) == str(port)
        # The key lives on that master: asked directly, it answers without a redirect.
        with redis.Redis(port=port, decode_responses=True, socket_timeout=2.0) as node:
            assert node.get(key) == str(port)
        other = next(p for p in owners if p != port)
        with (
            redis.Redis(port=other, socket_timeout=2.0) as node,
            pytest.raises(redis.ResponseError),
        ):
            node.get(key)  # MOVED


def test_failover_promotes_the_replica_and_keeps_waited_keys(
    private_cluster: LocalCluster,
) -> None:
    rc = _cluster_client(private_cluster.url)
    try:
        keys = [f"{{k{i}}}:v" for i in range(60)]
        for key in keys:
            rc.set(key, key)
            # The write is on a replica before we go on (WAIT runs on the connection that wrote).
            node = rc.get_node_from_key(key)
            assert rc.execute_command("WAIT", 1, 1000, target_nodes=node) == 1
        victim = private_cluster.masters()[0]
        replica = private_cluster.replicas_of(victim)
        victim_keys = [k for k in keys if private_cluster.master_of_slot(rc.keyslot(k)) == victim]
        assert victim_keys

        promoted = private_cluster.kill_master_and_wait_failover(victim)

        assert [promoted] == replica
        assert promoted in private_cluster.masters()
        assert victim not in private_cluster.masters()
        for key in keys:
            assert rc.get(key) == key
        assert rc.set("{k0}:after", "1")

        private_cluster.restart(victim)
        private_cluster.wait_ready()
        assert private_cluster.replicas_of(promoted) == [victim]
    finally:
        rc.close()
