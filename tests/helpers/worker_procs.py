"""Helpers for tests that run real worker processes (``streamq consume``) against a real server.

A module of its own (not conftest.py) so that test modules can import it by a unique name.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from itjobs import record_key

from streamq._urls import cluster_flag

HERE = Path(__file__).parent


def sync_client(url: str) -> redis.Redis | redis.RedisCluster:
    """A plain redis-py client for ``url``: the cluster client when it says ``?cluster=true``
    (an option streamq reads; redis-py is given the URL without it)."""
    address, cluster = cluster_flag(url)
    if cluster:
        return redis.RedisCluster.from_url(address)
    return redis.Redis.from_url(address)


class Workers:
    """Starts ``streamq consume`` subprocesses and cleans up after them.

    ``env`` adds to every worker's environment (e.g. ``STREAMQ_PARTITIONS``).
    """

    def __init__(
        self, url: str, prefix: str, logs: Path, env: dict[str, str] | None = None
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.logs = logs
        self.env = dict(env or {})
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis = sync_client(url)

    def start(
        self, *args: str, types: tuple[str, ...] = ("sleepy",), handlers: str = "itjobs"
    ) -> subprocess.Popen[bytes]:
        """Start one worker process of ``handlers`` (a module here) with extra CLI flags."""
        env = {
            **os.environ,
            "STREAMQ_REDIS_URL": self.url,
            "STREAMQ_PREFIX": self.prefix,
            "PYTHONPATH": str(HERE),
            **self.env,
        }
        # The child keeps its own copy of the descriptor; ours closes at once.
        with open(self.logs / f"worker-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamq",
                    "consume",
                    *types,
                    "--handlers",
                    handlers,
                    "--log-format",
                    "json",
                    *args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def counts(self, what: str) -> dict[str, int]:
        """job id -> how many times it started/finished (``what``: started or done)."""
        raw = self.redis.hgetall(record_key(self.prefix, what))
        return {k.decode(): int(v) for k, v in raw.items()}

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        """The output of one worker so far (for failure messages)."""
        i = self.procs.index(proc)
        return (self.logs / f"worker-{i}.log").read_text(errors="replace")

    def ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """Whether the worker reached the server and said so (its start-up line)."""
        return "streamq: consuming" in self.log_of(proc)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        """The worker processes still running."""
        return [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        """SIGKILL whatever still runs."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        self.redis.close()


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for: {what}")


def run(coro: Any) -> Any:
    """Run one coroutine to completion from a sync test."""
    return asyncio.run(coro)
