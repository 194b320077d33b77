"""Bad input and a stalled server: clear errors, nothing half-written, nothing lost."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamq import Job, JobTooLargeError, Queue, RedisBackend, Registry, Worker
from streamq._codec import F_BODY, F_ID, F_VERSION, encode
from streamq._server import PrivateServer
from streamq.exceptions import BackendError

FAST: dict[str, Any] = {"claim_after": 1.0, "heartbeat": 0.2, "retry_base": 0.02, "block": 0.05}


@dataclass(frozen=True)
class Args:
    """A typed field, so wrong shapes are refused."""

    n: int = 0


def recording_registry(ran: list[str]) -> Registry:
    """Type ``t`` records the id of every job it runs."""
    registry = Registry()

    async def step(job: Job[Any]) -> None:
        ran.append(job.id or "")

    registry.register("t", Args, step)
    return registry


_bytes = st.binary(max_size=64)
_names = st.sampled_from([F_ID, F_VERSION, F_BODY]) | _bytes.filter(bool)
_bodies = st.one_of(
    _bytes,
    st.just(b"\xff\xfe not utf-8"),
    st.just(b'{"type": "t", "args": {"n": "not an int"}}'),
    st.just(b'{"type": "t", "args": [1, 2]}'),
    st.just(b'{"type": "other", "args": {}}'),
    st.just(b'{"args": {}}'),
    st.just(b"[]"),
    st.binary(min_size=100_000, max_size=100_000),
)
#: Entries that are never a valid job: random fields, or the right fields with bad contents.
poison_entries = st.one_of(
    st.dictionaries(_names, _bytes, min_size=1, max_size=6),
    st.fixed_dictionaries(
        {F_ID: _bytes, F_VERSION: st.sampled_from([b"1", b"2", b"", b"\xff"]), F_BODY: _bodies}
    ),
)


@pytest.fixture(scope="module")
def poison_figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Totals over every generated example, written to the fault report at the end."""
    figures: dict[str, Any] = {"test": "poison (hypothesis)", "examples": 0, "jobs": 0}
    figures |= {"poison": 0, "lost": 0, "dead": 0}
    yield figures
    default = tmp_path_factory.getbasetemp() / "faults.jsonl"
    with Path(os.environ.get("STREAMQ_FAULT_REPORT", default)).open("a") as fh:
        fh.write(json.dumps(figures) + "\n")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(poison=st.lists(poison_entries, min_size=1, max_size=5))
def test_poison_entries_go_dead_and_valid_jobs_complete(
    redis_server: PrivateServer,
    poison_figures: dict[str, Any],
    poison: list[dict[bytes, bytes]],
) -> None:
    """Random entries XADDed beside valid jobs: each poison one is dead with a reason, every
    valid job completes, and the worker keeps running."""
    redis_url = redis_server.url
    prefix = f"p{uuid.uuid4().hex[:10]}"  # fresh per generated example
    ran: list[str] = []
    registry = recording_registry(ran)

    async def scenario() -> None:
        backend = RedisBackend(redis_url, prefix=prefix)
        async with Queue(backend, registry=registry) as queue:
            await backend.ensure_groups(["t"])
            valid = [f"ok-{i}" for i in range(3)]
            await backend.enqueue("t", encode(Job(type="t", args=Args()), valid[0]))
            for fields in poison:
                await backend.enqueue("t", fields)
            for job_id in valid[1:]:
                await queue.enqueue(Job(type="t", args={"n": 1}, id=job_id))
            worker = Worker(backend, registry, ["t"], **FAST)
            await asyncio.wait_for(worker.run(stop_when_empty=True), 20)
            assert sorted(ran) == valid
            dead = await queue.dead("t", limit=100)
            assert len(dead) == len(poison)
            assert all(d.reason.startswith("poison: ") for d in dead), [d.reason for d in dead]
            # The dead stream keeps the original fields, byte for byte.
            assert sorted(sorted(d.fields.items()) for d in dead) == sorted(
                sorted(p.items()) for p in poison
            )
            (stats,) = await queue.stats(["t"])
            assert (stats.waiting, stats.in_flight, stats.processed) == (0, 0, 3)
            poison_figures["examples"] += 1
            poison_figures["jobs"] += len(valid) + len(poison)
            poison_figures["poison"] += len(poison)
            poison_figures["dead"] += len(dead)
            poison_figures["lost"] += len(set(valid) - set(ran))

    asyncio.run(scenario())


async def test_oversized_job_is_refused_and_nothing_is_written(redis_url: str, prefix: str) -> None:
    """A job over the size limit (1 MiB by default) fails at enqueue; its batch writes nothing."""
    backend = RedisBackend(redis_url, prefix=prefix)
    async with Queue(backend) as queue:
        huge = Job(type="t", args={"blob": "x" * (1024 * 1024)})
        with pytest.raises(JobTooLargeError, match="over the limit of 1048576"):
            await queue.enqueue(huge)
        with pytest.raises(JobTooLargeError):
            await queue.enqueue_many([Job(type="t", args={}), huge, Job(type="t", args={})])
        (stats,) = await queue.stats(["t"])
        assert (stats.enqueued, stats.waiting) == (0, 0)
        assert await queue.enqueue(Job(type="t", args={"blob": "x" * 1000}))


def test_paused_server_gives_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    """A stalled server (SIGSTOP) makes enqueue fail after the socket timeout; it works again
    once the server resumes."""
    server = PrivateServer(tmp_path / "paused")
    server.start()
    try:

        async def enqueue_once(socket_timeout: float) -> str:
            backend = RedisBackend(server.url, socket_timeout=socket_timeout)
            async with Queue(backend) as queue:
                return await queue.enqueue(Job(type="t", args={}))

        assert asyncio.run(enqueue_once(5))
        server.pause()
        with pytest.raises(BackendError, match=r"cannot reach Redis at redis://127\.0\.0\.1"):
            asyncio.run(enqueue_once(0.5))
        # It returned (with the error): a hang would end in pytest's per-test timeout instead.
        server.resume()
        assert asyncio.run(enqueue_once(5))
    finally:
        server.resume()
        server.stop()


async def test_dead_stream_is_capped(redis_url: str, prefix: str) -> None:
    """The dead stream keeps at most max_dead entries, the newest; the counter counts them all."""
    backend = RedisBackend(redis_url, prefix=prefix)
    ran: list[str] = []
    async with Queue(backend) as queue:
        await backend.ensure_groups(["t"])
        for i in range(5):
            await backend.enqueue("t", {b"garbage": str(i).encode()})
        worker = Worker(backend, recording_registry(ran), ["t"], max_dead=3, **FAST)
        await asyncio.wait_for(worker.run(stop_when_empty=True), 20)
        dead = await queue.dead("t")
        assert [d.fields for d in dead] == [{b"garbage": str(i).encode()} for i in (2, 3, 4)]
        (stats,) = await queue.stats(["t"])
        assert (stats.dead, stats.dead_lettered) == (3, 5)
