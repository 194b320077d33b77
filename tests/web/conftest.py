"""Fixtures of the dashboard tests: ``streamq web`` processes and a queue on the test's prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from web_helpers import Web

from streamq import Queue, SyncQueue
from streamq.backends.redis import RedisBackend

pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("uvicorn", reason="the web extra is not installed")


@pytest.fixture
def queue(redis_url: str, prefix: str) -> Iterator[SyncQueue]:
    """A sync queue on the test's prefix, without a registry: any args go in as given."""
    q = SyncQueue(lambda: Queue(RedisBackend(redis_url, prefix=prefix)))
    yield q
    q.close()


@pytest.fixture
def start_web(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Web]]:
    """Start ``streamq web ARGS`` on the test's server and prefix; stopped at teardown."""
    started: list[Web] = []

    def start(*args: str, token: str = "") -> Web:
        web = Web(redis_url, prefix, tmp_path, *args, token=token)
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()
