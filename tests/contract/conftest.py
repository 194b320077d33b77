"""Fixtures of the contract suite: every test runs on the memory backend, on one Redis server,
and on a real 3-master Redis Cluster (the last two plain, and with every type partitioned)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import structlog

from streamq import Backend, MemoryBackend, Queue, Registry, Worker
from streamq.backends._partitions import Partitions
from streamq.backends.redis import RedisBackend

#: Worker settings small enough that retries, recovery and stops take a fraction of a second.
FAST: dict[str, Any] = {
    "concurrency": 8,
    "claim_after": 0.5,
    "heartbeat": 0.1,
    "retry_base": 0.02,
    "block": 0.05,
    "max_deliveries": 3,
}


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    """Only warnings and errors from streamq's structlog logger, restored after the test."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.configure(**before)


class _ThreePerType(dict[str, Partitions]):
    """A partitions setting that gives every type three partitions (round robin, or by
    ``by``: a job field)."""

    def __init__(self, by: str | None = None) -> None:
        super().__init__()
        self.by = by

    def get(self, key: str, default: object = None) -> Partitions:  # type: ignore[override]
        return Partitions(3, self.by)


def partition_by(backend: Backend, field: str) -> None:
    """On a backend with every type partitioned, pick the partitions by ``field`` from now on
    (as ``Partitions(3, key=field)``); other backends are left as they are."""
    if isinstance(backend, EveryTypePartitioned):
        backend._keys.partitions = _ThreePerType(field)


class EveryTypePartitioned(RedisBackend):
    """A Redis backend on which every job type has three partitions (round robin)."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._keys.partitions = _ThreePerType()


@pytest.fixture(
    params=[
        "memory",
        "redis",
        "redis-partitioned",
        pytest.param("cluster", marks=pytest.mark.cluster),
        pytest.param("cluster-partitioned", marks=pytest.mark.cluster),
    ]
)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Which backend this run of the test is about: memory, one Redis server, a 3-master
    cluster; the last two also with every type spread over three partitions (on the cluster,
    three masters)."""
    return str(request.param)


@pytest.fixture
def make_backend(
    backend_kind: str, request: pytest.FixtureRequest, prefix: str
) -> Callable[[], Backend]:
    """Build a backend onto the same job store; the caller closes what it builds.

    memory: the same ``MemoryBackend`` every time (it is thread-safe and loop-agnostic);
    the others: a new ``RedisBackend`` on this test's key prefix, for use on the calling loop.
    """
    if backend_kind == "memory":
        shared = MemoryBackend()
        return lambda: shared
    if backend_kind.startswith("redis"):
        url = str(request.getfixturevalue("redis_url"))
        if backend_kind == "redis-partitioned":
            return lambda: EveryTypePartitioned(url, prefix=prefix)
        return lambda: RedisBackend(url, prefix=prefix)
    url = str(request.getfixturevalue("cluster_url"))
    if backend_kind == "cluster":
        return lambda: RedisBackend(url, prefix=prefix)
    return lambda: EveryTypePartitioned(url, prefix=prefix)


@pytest.fixture
async def backend(make_backend: Callable[[], Backend]) -> AsyncIterator[Backend]:
    """The backend under test, closed at teardown."""
    b = make_backend()
    yield b
    await b.aclose()


@pytest.fixture
def registry() -> Registry:
    """A registry of this test's own job types."""
    return Registry()


@pytest.fixture
def queue(backend: Backend, registry: Registry) -> Queue:
    """A queue that validates args against ``registry`` (the backend fixture closes it)."""
    return Queue(backend, registry=registry)


@pytest.fixture
def make_worker(backend: Backend, registry: Registry) -> Callable[..., Worker]:
    """``make_worker(*types, **settings)``: a Worker with FAST settings, overridable."""

    def make(*types: str, on: Backend | None = None, **settings: Any) -> Worker:
        return Worker(on or backend, registry, list(types), **(FAST | settings))

    return make
