"""A Redis ACL user limited to streamq's keys and commands runs everything end to end.

The user is exactly the one docs/security.md shows: its ``ACL SETUSER`` lines are read from
the page, so the page cannot drift from what is tested.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from cluster import LocalCluster

from streamq import Job, JobContext, Queue, RedisBackend, Registry, Worker
from streamq.exceptions import BackendError

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
#: Every ``ACL SETUSER streamq ...`` line of docs/security.md, by its first rule.
_LINES = {
    rules.split()[0]: rules
    for rules in re.findall(r"^ACL SETUSER streamq (.+)$", DOC.read_text(), re.MULTILINE)
}
_HEAD = "on >CHANGE-ME resetkeys ~streamq:* resetchannels "
assert _LINES["on"].startswith(_HEAD), f"docs/security.md's ACL line changed shape: {_LINES['on']}"
#: The commands of the page's user line (after its password, key and channel rules).
COMMANDS = _LINES["on"].removeprefix(_HEAD)
#: The page's line for enqueues that wait for replicas, and its line for a cluster.
WAIT_RULES = _LINES["+wait"]
CLUSTER_RULES = _LINES["+cluster|slots"]
#: What the page says a cluster user may go without.
UNBLOCK_RULES = "+client|id +client|unblock"


def create_user(
    admin: redis.Redis, prefix: str, *extra: str, user: str = "", password: str = ""
) -> tuple[str, str]:
    """The page's user, with the test's prefix and ``extra`` rules: (name, password); a new
    name and password unless given."""
    user, password = user or f"sq-{uuid.uuid4().hex[:8]}", password or uuid.uuid4().hex
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "resetkeys", f"~{prefix}:*",
        "resetchannels", *COMMANDS.split(), *(r for rules in extra for r in rules.split()),
    )  # fmt: skip
    return user, password


@dataclass(frozen=True)
class Args:
    """Fail when asked."""

    fail: bool = False


@pytest.fixture(params=["0", "1"], ids=["db0", "db1"])
def acl_url(redis_url: str, prefix: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The page's user, on database 0 and on database 1 (a URL ending ``/1``)."""
    admin = redis.Redis.from_url(redis_url)
    user, password = create_user(admin, prefix)
    host_port = redis_url.split("//", 1)[1].removesuffix("/0")
    yield f"redis://{user}:{password}@{host_port}/{request.param}"
    admin.execute_command("ACL", "DELUSER", user)
    admin.close()


async def test_limited_acl_user_runs_everything(acl_url: str, prefix: str) -> None:
    """Enqueue, run, retry, dead-letter, stats, pending, recover, find a job, re-drive, purge,
    workers, pause and resume (the worker reads the paused marks as it runs)."""
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
        unique = await queue.enqueue(Job(type="t", args=Args(), id="ok-u"), unique_key="u")
        assert not unique.duplicate
        assert (await queue.enqueue(Job(type="t", args=Args()), unique_key="u")).duplicate
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
        assert (stats.processed, stats.dead, stats.failed, stats.retried) == (6, 1, 2, 1)
        assert not (await queue.enqueue(Job(type="t", args=Args()), unique_key="u")).duplicate
        assert await queue.types() == ["t"]
        assert await queue.pending("t") == []
        assert await queue.recover("t", min_idle=0) == []
        assert (await queue.job("t", "bad")).state == "dead"
        assert (await queue.job("t", "never")).state == "unknown"
        assert await queue.retry_dead("t", ["bad"]) == ["bad"]
        assert await queue.purge_dead("t") == 0
        assert await queue.workers() == []
        assert await queue.prune_consumers() == []
        assert await queue.pause("t", reason="acl") is True
        assert await queue.pause("t") is False
        assert (await queue.stats(["t"]))[0].pause_reason == "acl"
        assert await queue.resume("t") is True


async def test_limited_acl_user_runs_jobs_with_several_steps(acl_url: str, prefix: str) -> None:
    """Step progress through the same user: recorded, read by the retry (which resumes at step
    2), deleted by the ack and by the dead letter; what a step saved reaches the next one."""
    registry = Registry()
    runs: list[tuple[str, str]] = []

    async def one(job: Job[Any], ctx: JobContext[Any]) -> None:
        runs.append(("one", job.id or ""))
        ctx.save({"from": "one"})

    async def two(job: Job[Any], ctx: JobContext[Any]) -> None:
        runs.append(("two", job.id or ""))
        assert ctx.checkpoint == {"from": "one"}
        if job.args.fail or ctx.deliveries == 1:
            raise RuntimeError("not yet")

    registry.register("s", Args, one, two)
    backend = RedisBackend(acl_url, prefix=prefix)
    async with Queue(backend, registry=registry) as queue:
        await queue.enqueue(Job(type="s", args=Args(), id="ok"))
        await queue.enqueue(Job(type="s", args={"fail": True}, id="bad"))
        worker = Worker(
            backend,
            registry,
            ["s"],
            claim_after=3.0,
            heartbeat=0.2,
            retry_base=0.02,
            block=0.05,
            max_deliveries=2,
        )
        await asyncio.wait_for(worker.run(stop_when_empty=True), 20)
        (stats,) = await queue.stats(["s"])
        assert (stats.processed, stats.dead, stats.failed, stats.retried) == (1, 1, 3, 2)
        assert sorted(runs) == sorted(
            [("one", "ok"), ("two", "ok"), ("two", "ok"), ("one", "bad")] + [("two", "bad")] * 2
        )
        assert await backend.job_progress("s", "ok") is None
        assert await backend.job_progress("s", "bad") is None


async def test_acl_user_cannot_reach_other_keys(acl_url: str) -> None:
    """The same user is refused outside its prefix: the ACL really is in force."""
    backend = RedisBackend(acl_url, prefix="elsewhere")
    async with Queue(backend) as queue:
        with pytest.raises(BackendError, match=r"NOPERM|No permissions"):
            await queue.enqueue(Job(type="t", args={}))


@pytest.mark.parametrize("extra", [(), (WAIT_RULES,)], ids=["base", "with-wait"])
async def test_an_enqueue_that_waits_for_replicas_needs_the_wait_line(
    redis_url: str, prefix: str, extra: Sequence[str]
) -> None:
    """On a single server too, an enqueue that waits for a replica sends WAIT: refused without
    the page's +wait line; with it, WAIT runs (and reports the missing replica)."""
    with redis.Redis.from_url(redis_url) as admin:
        user, password = create_user(admin, prefix, *extra)
        url = redis_url.replace("redis://", f"redis://{user}:{password}@")
        backend = RedisBackend(url, prefix=prefix, wait_replicas=1, wait_timeout_ms=10)
        try:
            with pytest.raises(BackendError) as raised:
                await Queue(backend).enqueue(Job(type="t", args={}))
        finally:
            await backend.aclose()
            admin.execute_command("ACL", "DELUSER", user)
    refused = re.search(r"(?i)noperm|no permissions", str(raised.value)) is not None
    assert refused == (not extra), raised.value
    if extra:
        assert "only 0 of 1 replicas confirmed it" in str(raised.value)


@pytest.mark.cluster
@pytest.mark.parametrize("unblock", [True, False], ids=["cluster-line", "without-unblock"])
async def test_cluster_user_with_and_without_client_unblock(
    redis_cluster: LocalCluster, prefix: str, unblock: bool
) -> None:
    """The page's cluster line runs an idle worker over types in several slots; without
    +client|id +client|unblock (which let the user unblock any client) it still runs every job
    that arrives while it blocks, its reads ending at their own timeout."""
    rules = CLUSTER_RULES if unblock else CLUSTER_RULES.replace(UNBLOCK_RULES, "")
    assert unblock or "unblock" not in rules
    user, password = f"sq-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    for host, port in redis_cluster.nodes:  # a cluster does not copy users between nodes
        with redis.Redis(host=host, port=port) as admin:
            create_user(admin, prefix, rules, user=user, password=password)
    url = redis_cluster.url.replace("redis://", f"redis://{user}:{password}@")
    types = ["a", "b", "c"]  # three hash tags: three slots
    registry = Registry()
    ran: asyncio.Queue[str] = asyncio.Queue()

    async def step(job: Job[Any]) -> None:
        await ran.put(job.type)

    for t in types:
        registry.register(t, Args, step)
    backend = RedisBackend(url, prefix=prefix)
    worker = Worker(backend, registry, types, claim_after=5.0, heartbeat=0.5, block=0.2)
    running = asyncio.ensure_future(worker.run())
    try:
        async with Queue(backend, registry=registry) as queue:
            for t in [*types, *types]:
                await asyncio.sleep(0.3)  # the worker is idle, blocking on every slot
                await queue.enqueue(Job(type=t, args=Args()))
                assert await asyncio.wait_for(ran.get(), 10) == t
    finally:
        worker.stop()
        await asyncio.wait_for(running, 20)
        await backend.aclose()
        for host, port in redis_cluster.nodes:
            with redis.Redis(host=host, port=port) as admin:
                admin.execute_command("ACL", "DELUSER", user)
