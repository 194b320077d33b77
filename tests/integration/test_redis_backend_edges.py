"""The Redis backend's edges on real servers and clusters: error replies it must not hide,
partial cluster writes, slot migrations (ASK, TRYAGAIN), departed nodes, the eviction policy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import structlog
from test_acl_user import COMMANDS

from streamq import BackendError, Job, RedisBackend, Registry, Worker
from streamq._server import PrivateServer


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
