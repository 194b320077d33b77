"""The Redis backend's read path (one held connection, replies parsed as they come) under the
events a long-running worker meets: the server forgets its scripts or its groups, or drops the
connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from streamq import Job, RedisBackend
from streamq._codec import encode
from streamq.exceptions import BackendError


def fields(n: int) -> dict[bytes, bytes]:
    return encode(Job(type="t", args={}), f"job-{n}")


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    await b.ensure_groups(["t"])
    yield b
    await b.aclose()


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_ack_goes_through_after_the_server_lost_its_scripts(
    backend: RedisBackend, admin: aioredis.Redis
) -> None:
    for i in range(3):
        await backend.enqueue("t", fields(i))
    ids = [d.entry_id for d in await backend.read(["t"], "c", 2, 10)]
    await admin.script_flush()

    answer = await backend.ack_and_read({"t": ids}, ["t"], "c", 5)

    assert (answer.lost, answer.failed) == ({"t": []}, {})
    assert [d.fields[b"id"] for d in answer.deliveries] == [b"job-2"]
    assert (await backend.stats("t")).length == 1


async def test_a_failed_ack_does_not_lose_the_read(
    backend: RedisBackend, admin: aioredis.Redis
) -> None:
    """An ack that fails (here: its stats key holds a string, so HINCRBY errs) is reported for
    its type; the entries the same round trip read are still handed over."""
    for i in range(3):
        await backend.enqueue("t", fields(i))
    ids = [d.entry_id for d in await backend.read(["t"], "c", 2, 10)]
    await admin.set(backend.stats_key("t"), "not a hash")

    answer = await backend.ack_and_read({"t": ids}, ["t"], "c", 5)

    assert list(answer.failed) == ["t"]
    assert "WRONGTYPE" in answer.failed["t"]
    assert [d.fields[b"id"] for d in answer.deliveries] == [b"job-2"]


async def test_a_lost_group_is_recreated_and_the_next_read_gets_the_jobs(
    backend: RedisBackend, admin: aioredis.Redis
) -> None:
    await backend.enqueue("t", fields(0))
    await admin.xgroup_destroy(backend.jobs_key("t"), backend.group)

    assert await backend.read(["t"], "c", 5, 10) == []
    assert [d.fields[b"id"] for d in await backend.read(["t"], "c", 5, 10)] == [b"job-0"]


async def test_held_connections_closed_by_the_server_are_replaced(
    backend: RedisBackend, admin: aioredis.Redis
) -> None:
    """The read loop's and the producers' connections, killed while idle, reconnect at once."""
    await backend.enqueue("t", fields(0))
    assert await backend.read(["t"], "c", 5, 10) != []
    killed = await admin.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 2

    await backend.enqueue("t", fields(1))
    assert [d.fields[b"id"] for d in await backend.read(["t"], "c", 5, 10)] == [b"job-1"]


async def test_a_server_that_is_gone_gives_a_clear_error(redis_url: str, prefix: str) -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0", prefix=prefix, socket_timeout=1)
    try:
        with pytest.raises(BackendError, match="cannot reach Redis"):
            await backend.read(["t"], "c", 5, 10)
        with pytest.raises(BackendError, match="cannot reach Redis"):
            await backend.enqueue("t", fields(0))
    finally:
        await backend.aclose()
