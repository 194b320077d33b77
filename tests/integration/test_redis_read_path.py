"""The Redis backend's read path (one held connection, replies parsed as they come) under the
events a long-running worker meets: the server forgets its scripts or its groups, or drops the
connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from streamq import Job, Queue, RedisBackend, Registry, Worker
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


@dataclass(frozen=True, slots=True)
class _NoArgs:
    pass


class _Resume:
    """Await the rest of a coroutine that was stepped once by hand (it yielded ``first``)."""

    def __init__(self, coro: Any, first: Any) -> None:
        self._coro, self._first = coro, first

    def __await__(self) -> Generator[Any, Any, Any]:
        yielded = self._first
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:
                try:
                    yielded = self._coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = self._coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def test_a_read_is_on_the_wire_before_the_call_first_yields(
    backend: RedisBackend, redis_url: str
) -> None:
    """The worker wakes its lanes and then sends its next read: the read must reach the server
    before the lanes run (they may run a whole batch without yielding), or the server idles
    while the worker works. (redis-py's own send, on Python 3.11, went out in a task of its own
    on a later turn of the event loop.)"""
    await backend.read(["t"], "c", 1, 1)  # the held connection exists now
    await backend.enqueue("t", fields(0))
    read = backend.ack_and_read({}, ["t"], "c", 5)
    first = read.send(None)  # runs up to the first suspension, with no event loop turn

    # A blocking client: the event loop does not run while it waits.
    sync = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 5
        while sync.xpending(backend.jobs_key("t"), backend.group)["pending"] == 0:
            assert time.monotonic() < deadline, "the read was not sent before the call yielded"
            time.sleep(0.005)  # noqa: ASYNC251 - on purpose: the event loop must not run
    finally:
        sync.close()
    answer = await _Resume(read, first)
    assert [d.fields[b"id"] for d in answer.deliveries] == [b"job-0"]


async def test_the_worker_has_a_read_in_flight_while_its_lanes_run(
    redis_url: str, prefix: str
) -> None:
    """At most half the slots per read: while the lanes run the jobs one read brought, the next
    read is already out, so jobs that never suspend run while a read is in flight."""
    backend = RedisBackend(redis_url, prefix=prefix)
    registry = Registry()
    in_flight = 0
    seen: list[bool] = []
    asked: list[int] = []

    async def handler(job: Job[Any]) -> None:
        seen.append(in_flight > 0)

    registry.register("t", _NoArgs, handler)

    def tracked(call: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight
            # The count: read(types, consumer, count, block_ms), and ack_and_read(acks, types,
            # consumer, count, ...) (its ends and the finished-job records' setting after it).
            asked.append(args[3] if call.__name__ == "ack_and_read" else args[2])
            in_flight += 1
            try:
                return await call(*args, **kwargs)
            finally:
                in_flight -= 1

        return wrapper

    try:
        await Queue(backend, registry=registry).enqueue_many(
            [Job(type="t", args=_NoArgs()) for _ in range(400)]
        )
        backend.read = tracked(backend.read)  # type: ignore[method-assign]
        backend.ack_and_read = tracked(backend.ack_and_read)  # type: ignore[method-assign]
        worker = Worker(backend, registry, ["t"], concurrency=16, block=0.05)
        await asyncio.wait_for(worker.run(stop_when_empty=True), 30)
    finally:
        await backend.aclose()

    assert worker.processed == len(seen) == 400
    assert max(asked) == 8  # half of the 16 slots
    assert sum(seen) > 300, f"only {sum(seen)} of 400 jobs ran while a read was in flight"


async def test_entries_of_any_shape_read_as_their_fields(
    backend: RedisBackend, admin: aioredis.Redis
) -> None:
    """Entries of one to four fields, a field name repeated too, come out with exactly their
    fields (the last value of a repeated name, as a dict of the pairs gives it). Every entry
    streamq writes has three fields; the others are what another program may add."""
    shapes = [
        [("a", "1")],
        [("a", "1"), ("b", "2")],
        [("id", "x"), ("v", "1"), ("job", "{}")],
        [("a", "1"), ("a", "2"), ("b", "3")],
        [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
    ]
    for pairs in shapes:
        await admin.execute_command("XADD", backend.jobs_key("t"), "*", *sum(pairs, ()))
    got = await backend.read(["t"], "c", 10, 0)
    assert [d.fields for d in got] == [
        dict((k.encode(), v.encode()) for k, v in pairs) for pairs in shapes
    ]
    assert got[3].fields == {b"a": b"2", b"b": b"3"}
