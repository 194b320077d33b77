"""A Redis ACL user limited to streamq's keys and commands runs everything end to end."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from streamq import Job, Queue, RedisBackend, Registry, Worker
from streamq.exceptions import BackendError

#: The commands streamq sends, directly or from its Lua scripts; docs/security.md shows the line.
COMMANDS = (
    "-@all +ping +time +multi +exec +scan +client|setinfo +evalsha +eval +script|load "
    "+xadd +xreadgroup +xack +xdel +xclaim +xautoclaim +xpending +xrange +xlen "
    "+xgroup|create +xgroup|delconsumer +xinfo|consumers "
    "+hincrby +hget +hgetall +hset +pexpire +del +sadd +srem +smembers"
)


@dataclass(frozen=True)
class Args:
    """Fail when asked."""

    fail: bool = False


@pytest.fixture
def acl_url(redis_url: str, prefix: str) -> Any:
    """A user that may touch only ``{prefix}:*`` keys, with only streamq's commands."""
    admin = redis.Redis.from_url(redis_url)
    user, password = f"sq-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "resetkeys", f"~{prefix}:*",
        "resetchannels", *COMMANDS.split(),
    )  # fmt: skip
    host_port = redis_url.split("//", 1)[1]
    yield f"redis://{user}:{password}@{host_port}"
    admin.execute_command("ACL", "DELUSER", user)
    admin.close()


async def test_limited_acl_user_runs_everything(acl_url: str, prefix: str) -> None:
    """Enqueue, run, retry, dead-letter, stats, pending, recover, re-drive, purge, workers."""
    registry = Registry()
    ran: list[str] = []

    async def step(job: Job[Any]) -> None:
        ran.append(job.id or "")
        if job.args.fail:
            raise RuntimeError("asked to fail")

    registry.register("t", Args, step)
    backend = RedisBackend(acl_url, prefix=prefix)
    async with Queue(backend, registry=registry) as queue:
        await queue.enqueue_many([Job(type="t", args=Args(), id=f"ok-{i}") for i in range(5)])
        await queue.enqueue(Job(type="t", args={"fail": True}, id="bad"))
        worker = Worker(
            backend,
            registry,
            ["t"],
            # Room for a loaded machine: a stalled loop must not lose a lease (that would add a
            # delivery and change the counters this test pins).
            claim_after=3.0,
            heartbeat=0.2,
            retry_base=0.02,
            block=0.05,
            max_deliveries=2,
        )
        await asyncio.wait_for(worker.run(stop_when_empty=True), 20)
        (stats,) = await queue.stats(["t"])
        assert (stats.processed, stats.dead, stats.failed, stats.retried) == (5, 1, 2, 1)
        assert await queue.types() == ["t"]
        assert await queue.pending("t") == []
        assert await queue.recover("t", min_idle=0) == []
        assert await queue.retry_dead("t", ["bad"]) == ["bad"]
        assert await queue.purge_dead("t") == 0
        assert await queue.workers() == []
        assert await queue.prune_consumers() == []


async def test_acl_user_cannot_reach_other_keys(acl_url: str) -> None:
    """The same user is refused outside its prefix: the ACL really is in force."""
    backend = RedisBackend(acl_url, prefix="elsewhere")
    async with Queue(backend) as queue:
        with pytest.raises(BackendError, match=r"NOPERM|No permissions"):
            await queue.enqueue(Job(type="t", args={}))
