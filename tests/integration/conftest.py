"""Fixtures of the integration suites: the command line run as subprocesses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Cli


@pytest.fixture
def cli(redis_url: str, prefix: str, embedded_state: Path, tmp_path: Path) -> Iterator[Cli]:
    """``python -m streamq`` commands on the session server under this test's prefix; the
    consumers a test started are stopped at teardown."""
    c = Cli(redis_url, prefix, embedded_state, tmp_path)
    yield c
    c.stop_all()
