"""Fixtures for tests that run real worker processes (``streamq consume``) against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_procs import Workers


@pytest.fixture
def workers(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes on the session server, killed at teardown."""
    w = Workers(redis_url, prefix, tmp_path)
    yield w
    w.stop_all()
